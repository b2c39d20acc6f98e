"""STUN (RFC 8489, formerly RFC 5389): messages, attributes and a Binding server.

Sans-IO: :func:`parse` and :func:`encode` convert between bytes and :class:`StunMessage`;
:func:`answer` is the whole Binding server as one pure function from a received datagram
and its source address to the datagram to send back (or ``None``).

Wire format: a 20-byte header — type (2 bits zero, 12-bit method, 2-bit class interleaved),
body length (a multiple of 4), the magic cookie ``0x2112A442`` and a 96-bit transaction id —
then TLV attributes, each padded to 4 bytes (padding bytes are ignored on receipt).

Server policy implemented by :func:`answer` (the usual "public STUN server" behaviour):

* Binding requests are answered with XOR-MAPPED-ADDRESS (the source address seen), a plain
  MAPPED-ADDRESS for pre-RFC 5389 clients, SOFTWARE and FINGERPRINT;
* a request carrying comprehension-required attributes (type < 0x8000) this server does not
  know gets a 420 error listing them in UNKNOWN-ATTRIBUTES (e.g. RFC 3489's CHANGE-REQUEST:
  RFC 5780 NAT-behaviour discovery needs a second IP address, which ivcloud does not have);
* requests of other methods (a TURN Allocate sent to the wrong port) get 400, so the client
  fails at once instead of retransmitting into silence;
* no authentication: USERNAME / MESSAGE-INTEGRITY(-SHA256) / REALM / NONCE are understood
  (parsed) and ignored, as on any public STUN server;
* indications, responses, datagrams that are not STUN and malformed STUN (bad lengths,
  attributes running past the end, FINGERPRINT not last or not matching) get no answer;
* a request without the magic cookie is an RFC 3489 client (RFC 8489 §12): Binding requests
  are answered with MAPPED-ADDRESS only, the request's cookie field copied back, and no
  FINGERPRINT;
* a source address that is an IPv4-mapped IPv6 address (a dual-stack socket receiving IPv4)
  is reported as the IPv4 address the client actually has.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from ivcloud.protocol.errors import ProtocolError

__all__ = [
    "BINDING",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "SOFTWARE",
    "Attr",
    "StunClass",
    "StunFormatError",
    "StunMessage",
    "answer",
    "decode_address",
    "decode_error_code",
    "decode_text",
    "decode_unknown_attributes",
    "decode_xor_address",
    "encode",
    "encode_address",
    "encode_error_code",
    "encode_unknown_attributes",
    "encode_xor_address",
    "looks_like_stun",
    "parse",
    "verify_message_integrity",
]


class StunFormatError(ProtocolError):
    """Bytes that are not a well-formed STUN message (or attribute value)."""


MAGIC_COOKIE: Final = 0x2112A442
HEADER_SIZE: Final = 20
FINGERPRINT_XOR: Final = 0x5354554E
#: The SOFTWARE value ivcloud sends. No version number: nothing for a scanner to match.
SOFTWARE: Final = "ivcloud"
#: The only method this server answers.
BINDING: Final = 0x001

_COOKIE_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")
_FAMILY_IPV4: Final = 0x01
_FAMILY_IPV6: Final = 0x02
_MAX_BODY: Final = 0xFFFF - 3  # the largest multiple of 4 a 16-bit length can hold


class StunClass(enum.IntEnum):
    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Attr(enum.IntEnum):
    """Attribute types this module knows by name (RFC 8489 §18.3, RFC 8445 for ICE)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A


#: Comprehension-required attributes a Binding request may carry without a 420: the base
#: spec's (parsed, not acted on: this server does not authenticate) and ICE's, which are
#: harmless to ignore.  Everything >= 0x8000 is comprehension-optional and always ignored.
_UNDERSTOOD: Final = frozenset(a.value for a in Attr if a.value < 0x8000)


def _message_type(method: int, cls: int) -> int:
    """Interleave the 12-bit method and the 2-bit class: M11..M7 C1 M6..M4 C0 M3..M0."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def _split_type(message_type: int) -> tuple[int, StunClass]:
    method = (
        (message_type & 0x000F) | ((message_type >> 1) & 0x0070) | ((message_type >> 2) & 0x0F80)
    )
    cls = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    return method, StunClass(cls)


@dataclass(frozen=True, slots=True)
class StunMessage:
    """One STUN message.

    ``attributes`` are raw ``(type, value)`` pairs in wire order, without padding and without
    FINGERPRINT: ``fingerprint`` says whether the message carries one (:func:`encode` computes
    it, :func:`parse` has checked it).  Decode values with the ``decode_*`` helpers or the
    properties below.  ``cookie`` is :data:`MAGIC_COOKIE` except for RFC 3489 messages, where
    that field is the first 32 bits of their 128-bit transaction id.
    """

    method: int
    cls: StunClass
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()
    fingerprint: bool = False
    cookie: int = MAGIC_COOKIE

    def __post_init__(self) -> None:
        if not 0 <= self.method <= 0xFFF:
            raise StunFormatError("STUN method must fit in 12 bits")
        if len(self.transaction_id) != 12:
            raise StunFormatError("STUN transaction id must be 12 bytes")
        if not 0 <= self.cookie <= 0xFFFFFFFF:
            raise StunFormatError("STUN cookie must fit in 32 bits")
        for attr_type, value in self.attributes:
            if not 0 <= attr_type <= 0xFFFF or len(value) > 0xFFFF:
                raise StunFormatError("STUN attribute type or length out of range")
            if attr_type == Attr.FINGERPRINT:
                raise StunFormatError("FINGERPRINT is added by encode(fingerprint=True)")

    @property
    def legacy(self) -> bool:
        """An RFC 3489 message (no magic cookie)."""
        return self.cookie != MAGIC_COOKIE

    def get(self, attr_type: int) -> bytes | None:
        """The value of the first attribute of this type, if any."""
        for t, value in self.attributes:
            if t == attr_type:
                return value
        return None

    @property
    def xor_mapped_address(self) -> tuple[str, int] | None:
        value = self.get(Attr.XOR_MAPPED_ADDRESS)
        return None if value is None else decode_xor_address(value, self.transaction_id)

    @property
    def mapped_address(self) -> tuple[str, int] | None:
        value = self.get(Attr.MAPPED_ADDRESS)
        return None if value is None else decode_address(value)

    @property
    def error_code(self) -> tuple[int, str] | None:
        value = self.get(Attr.ERROR_CODE)
        return None if value is None else decode_error_code(value)

    @property
    def unknown_attributes(self) -> list[int] | None:
        value = self.get(Attr.UNKNOWN_ATTRIBUTES)
        return None if value is None else decode_unknown_attributes(value)

    @property
    def software(self) -> str | None:
        value = self.get(Attr.SOFTWARE)
        return None if value is None else decode_text(value)

    @property
    def username(self) -> str | None:
        value = self.get(Attr.USERNAME)
        return None if value is None else decode_text(value)


# -- attribute values ---------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone ("%eth0")
    except ValueError as exc:
        raise StunFormatError(f"not an IP address: {host!r}") from exc


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise StunFormatError("port out of range")
    return port


def encode_address(address: tuple[str, int]) -> bytes:
    """MAPPED-ADDRESS (and ALTERNATE-SERVER) value: 0, family, port, address."""
    ip = _ip(address[0])
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    return struct.pack("!BBH", 0, family, _check_port(address[1])) + ip.packed


def decode_address(value: bytes) -> tuple[str, int]:
    if len(value) < 4:
        raise StunFormatError("address attribute shorter than 4 bytes")
    family, port = value[1], int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == _FAMILY_IPV4 and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw)), port
    if family == _FAMILY_IPV6 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw)), port
    raise StunFormatError("address attribute: unknown family or wrong length")


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=False))


def encode_xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS value: the port XORed with the cookie's top 16 bits, the address
    with the cookie (IPv4) or the cookie followed by the transaction id (IPv6)."""
    return _xor_value(encode_address(address), transaction_id)


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    if len(value) < 4:
        raise StunFormatError("address attribute shorter than 4 bytes")
    return decode_address(_xor_value(value, transaction_id))


def _xor_value(value: bytes, transaction_id: bytes) -> bytes:
    """XOR (an involution) of an address value: port with the cookie's top half, address
    with the cookie and then the transaction id."""
    pad = _COOKIE_BYTES + transaction_id
    return value[:2] + _xor(value[2:4], pad[:2]) + _xor(value[4:], pad)


def encode_error_code(code: int, reason: str) -> bytes:
    if not 300 <= code <= 699:
        raise StunFormatError("STUN error codes are 300-699")
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def decode_error_code(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunFormatError("ERROR-CODE shorter than 4 bytes")
    cls, number = value[2] & 0x07, value[3]
    if not 3 <= cls <= 6 or number > 99:
        raise StunFormatError("ERROR-CODE class/number out of range")
    return cls * 100 + number, decode_text(value[4:])


def encode_unknown_attributes(types: Iterable[int]) -> bytes:
    return b"".join(struct.pack("!H", t) for t in types)


def decode_unknown_attributes(value: bytes) -> list[int]:
    if len(value) % 2:
        raise StunFormatError("UNKNOWN-ATTRIBUTES length is odd")
    return [int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2)]


def decode_text(value: bytes) -> str:
    """USERNAME, SOFTWARE, REALM, NONCE, reason phrases: UTF-8."""
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise StunFormatError("STUN text attribute is not UTF-8") from exc


# -- messages --------------------------------------------------------------------------------


def looks_like_stun(data: bytes) -> bool:
    """The cheap RFC 7983 demultiplexing test: first two bits zero, a consistent length
    and the magic cookie."""
    return (
        len(data) >= HEADER_SIZE
        and data[0] < 0x40
        and len(data) == HEADER_SIZE + int.from_bytes(data[2:4], "big")
        and len(data) % 4 == 0
        and data[4:8] == _COOKIE_BYTES
    )


def _walk(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """Check the header and yield ``(type, value, offset)`` for each attribute."""
    if len(data) < HEADER_SIZE:
        raise StunFormatError("shorter than a STUN header")
    if data[0] & 0xC0:
        raise StunFormatError("first two bits are not zero: not STUN")
    length = int.from_bytes(data[2:4], "big")
    if length % 4 or len(data) != HEADER_SIZE + length:
        raise StunFormatError("STUN length does not match the datagram")
    pos = HEADER_SIZE
    while pos < len(data):
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + attr_len
        if end + (-attr_len % 4) > len(data):
            raise StunFormatError("STUN attribute runs past the end of the message")
        yield attr_type, data[pos + 4 : end], pos
        pos = end + (-attr_len % 4)


def parse(data: bytes) -> StunMessage:
    """Parse one STUN message; raises :class:`StunFormatError`.  A FINGERPRINT, when present,
    must be the last attribute and must match."""
    attributes: list[tuple[int, bytes]] = []
    fingerprint = False
    for attr_type, value, offset in _walk(data):
        if fingerprint:
            raise StunFormatError("attribute after FINGERPRINT")
        if attr_type == Attr.FINGERPRINT:
            if len(value) != 4:
                raise StunFormatError("FINGERPRINT must be 4 bytes")
            # The header length already covers FINGERPRINT, as the CRC's input requires.
            expected = binascii.crc32(data[:offset]) ^ FINGERPRINT_XOR
            if int.from_bytes(value, "big") != expected:
                raise StunFormatError("FINGERPRINT does not match")
            fingerprint = True
        else:
            attributes.append((attr_type, value))
    method, cls = _split_type(int.from_bytes(data[0:2], "big"))
    return StunMessage(
        method=method,
        cls=cls,
        transaction_id=data[8:20],
        attributes=tuple(attributes),
        fingerprint=fingerprint,
        cookie=int.from_bytes(data[4:8], "big"),
    )


def encode(message: StunMessage) -> bytes:
    """Serialize (padding with zero bytes); appends FINGERPRINT when ``message.fingerprint``."""
    body = bytearray()
    for attr_type, value in message.attributes:
        body += struct.pack("!HH", attr_type, len(value))
        body += value
        body += bytes(-len(value) % 4)
    length = len(body) + (8 if message.fingerprint else 0)
    if length > _MAX_BODY:
        raise StunFormatError("STUN message too long")
    out = bytearray(
        struct.pack(
            "!HHI12s",
            _message_type(message.method, message.cls),
            length,
            message.cookie,
            message.transaction_id,
        )
    )
    out += body
    if message.fingerprint:
        crc = binascii.crc32(out) ^ FINGERPRINT_XOR
        out += struct.pack("!HHI", Attr.FINGERPRINT, 4, crc)
    return bytes(out)


def verify_message_integrity(data: bytes, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY (HMAC-SHA1) with ``key`` (short-term: the password; long-term:
    MD5(username:realm:password)).  ``False`` when absent, wrong or the message is malformed.
    ivcloud's STUN server does not authenticate; this is for tests and clients."""
    try:
        for attr_type, value, offset in _walk(data):
            if attr_type == Attr.MESSAGE_INTEGRITY:
                # The HMAC covers the message up to this attribute, with the header length
                # counting up to and including it.
                covered = bytearray(data[:offset])
                covered[2:4] = (offset - HEADER_SIZE + 24).to_bytes(2, "big")
                digest = hmac.new(key, covered, hashlib.sha1).digest()
                return len(value) == 20 and hmac.compare_digest(digest, value)
    except StunFormatError:
        return False
    return False


# -- the Binding server ------------------------------------------------------------------------


def _reflexive(source: tuple[str, int]) -> tuple[str, int]:
    ip = _ip(source[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), _check_port(source[1])


def _response(
    request: StunMessage, cls: StunClass, attributes: list[tuple[int, bytes]], software: str | None
) -> bytes:
    if software:
        attributes.append((Attr.SOFTWARE, software[:127].encode()))  # < 128 characters
    return encode(
        StunMessage(
            method=request.method,
            cls=cls,
            transaction_id=request.transaction_id,
            attributes=tuple(attributes),
            fingerprint=not request.legacy,
            cookie=request.cookie,
        )
    )


def _error(request: StunMessage, code: int, reason: str, software: str | None) -> bytes:
    return _response(
        request, StunClass.ERROR, [(Attr.ERROR_CODE, encode_error_code(code, reason))], software
    )


def answer(
    datagram: bytes, source: tuple[str, int], *, software: str | None = SOFTWARE
) -> bytes | None:
    """The Binding server: what to send back to ``source`` for ``datagram`` (see the module
    docstring for the policy).  Never raises; ``None`` means "send nothing"."""
    try:
        request = parse(datagram)
        if request.cls is not StunClass.REQUEST:
            return None
        if request.legacy and request.method != BINDING:
            return None  # without the cookie, only a Binding request is evidently STUN
        if request.method != BINDING:
            return _error(request, 400, "Bad Request: only Binding is served here", software)
        unknown = list(
            dict.fromkeys(t for t, _ in request.attributes if t < 0x8000 and t not in _UNDERSTOOD)
        )
        if unknown:
            return _response(
                request,
                StunClass.ERROR,
                [
                    (Attr.ERROR_CODE, encode_error_code(420, "Unknown Attribute")),
                    (Attr.UNKNOWN_ATTRIBUTES, encode_unknown_attributes(unknown)),
                ],
                software,
            )
        reflexive = _reflexive(source)
        attributes: list[tuple[int, bytes]] = []
        if not request.legacy:
            attributes.append(
                (Attr.XOR_MAPPED_ADDRESS, encode_xor_address(reflexive, request.transaction_id))
            )
        attributes.append((Attr.MAPPED_ADDRESS, encode_address(reflexive)))
        return _response(request, StunClass.SUCCESS, attributes, software)
    except StunFormatError:
        return None

"""STUN messages and the Binding server (RFC 8489): RFC 5769 test vectors, round trips,
the server's answers, and arbitrary bytes never making ``answer`` raise."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct

import pytest
from aioice import stun as aioice_stun
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.stun import (
    BINDING,
    MAGIC_COOKIE,
    Attr,
    StunClass,
    StunFormatError,
    StunMessage,
    answer,
    decode_address,
    decode_error_code,
    decode_unknown_attributes,
    decode_xor_address,
    encode,
    encode_address,
    encode_error_code,
    encode_unknown_attributes,
    encode_xor_address,
    looks_like_stun,
    parse,
    verify_message_integrity,
)

# -- RFC 5769 test vectors -------------------------------------------------------------------

RFC5769_TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

# 2.1 Sample Request (USERNAME padded with spaces, as the RFC does).
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "80220010" + b"STUN test client".hex() + "00240004" + "6e0001ff"
    "80290008" + "932ff9b151263b36"
    "00060009" + b"evtj:h6vY".hex() + "202020"
    "00080014" + "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004" + "e57a3bcf"
)
# 2.2 Sample IPv4 Response: 192.0.2.1 port 32853.
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b" + b"test vector".hex() + "20"
    "00200008" + "0001a147e112a643"
    "00080014" + "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004" + "c07d4c96"
)
# 2.3 Sample IPv6 Response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b" + b"test vector".hex() + "20"
    "00200014" + "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014" + "a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004" + "c8fb0b4c"
)
# 2.4 Sample Request with Long-Term Authentication (no FINGERPRINT).
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
SAMPLE_LONG_TERM_REQUEST = bytes.fromhex(
    "000100602112a44278ad3433c6ad72c029da412e"
    "00060012" + LONG_TERM_USERNAME.encode().hex() + "0000"
    "0015001c" + b"f//499k954d6OL34oL9FSTvy64sA".hex() + "0014000b" + b"example.org".hex() + "00"
    "00080014" + "f67024656dd64a3e02b8e0712e85c9a28ca89666"
)


def test_rfc5769_sample_request() -> None:
    msg = parse(SAMPLE_REQUEST)
    assert (msg.method, msg.cls, msg.transaction_id) == (BINDING, StunClass.REQUEST, RFC5769_TXID)
    assert msg.fingerprint and not msg.legacy
    assert msg.software == "STUN test client"
    assert msg.username == "evtj:h6vY"  # the space padding is not part of the value
    assert msg.get(Attr.PRIORITY) == bytes.fromhex("6e0001ff")
    assert msg.get(Attr.ICE_CONTROLLED) == bytes.fromhex("932ff9b151263b36")
    assert verify_message_integrity(SAMPLE_REQUEST, RFC5769_PASSWORD)
    assert not verify_message_integrity(SAMPLE_REQUEST, b"wrong password")


@pytest.mark.parametrize(
    ("vector", "address"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses(vector: bytes, address: tuple[str, int]) -> None:
    msg = parse(vector)  # checks the FINGERPRINT
    assert (msg.method, msg.cls, msg.transaction_id) == (BINDING, StunClass.SUCCESS, RFC5769_TXID)
    assert msg.fingerprint
    assert msg.software == "test vector"
    assert msg.xor_mapped_address == address
    assert verify_message_integrity(vector, RFC5769_PASSWORD)
    # Our encoder produces the RFC's XOR-MAPPED-ADDRESS bytes exactly.
    assert encode_xor_address(address, RFC5769_TXID) == msg.get(Attr.XOR_MAPPED_ADDRESS)


def test_rfc5769_long_term_request() -> None:
    msg = parse(SAMPLE_LONG_TERM_REQUEST)
    assert msg.username == LONG_TERM_USERNAME
    assert not msg.fingerprint
    assert msg.get(Attr.REALM) == b"example.org"
    assert msg.get(Attr.NONCE) == b"f//499k954d6OL34oL9FSTvy64sA"
    # Long-term key: MD5(username ":" realm ":" SASLprep(password)).
    key = hashlib.md5(f"{LONG_TERM_USERNAME}:example.org:TheMatrIX".encode()).digest()  # noqa: S324
    assert verify_message_integrity(SAMPLE_LONG_TERM_REQUEST, key)


@pytest.mark.parametrize(
    "vector", [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE], ids=["req", "v4", "v6"]
)
def test_no_flipped_bit_passes_the_fingerprint(vector: bytes) -> None:
    """Every single-bit corruption is refused, except those that turn the message into one
    without a FINGERPRINT (a changed attribute type or length that hides it), which are
    then not fingerprinted: a corrupted message never passes the check."""
    refused = 0
    for index in range(len(vector)):
        for bit in range(8):
            corrupted = bytearray(vector)
            corrupted[index] ^= 1 << bit
            try:
                msg = parse(bytes(corrupted))
            except StunFormatError:
                refused += 1
                continue
            assert not msg.fingerprint, (index, bit)
    assert refused >= len(vector) * 8 - 32  # all but a few dozen: the 16 type bits and more


# -- codec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "cls", "wire"),
    [
        (BINDING, StunClass.REQUEST, 0x0001),
        (BINDING, StunClass.INDICATION, 0x0011),
        (BINDING, StunClass.SUCCESS, 0x0101),
        (BINDING, StunClass.ERROR, 0x0111),
        (0x003, StunClass.REQUEST, 0x0003),  # TURN Allocate
        (0x003, StunClass.ERROR, 0x0113),
        (0x007, StunClass.INDICATION, 0x0017),  # TURN Data indication
        (0xFFF, StunClass.ERROR, 0x3FFF),
    ],
)
def test_message_type_interleaving(method: int, cls: StunClass, wire: int) -> None:
    data = encode(StunMessage(method, cls, bytes(12)))
    assert data[:2] == wire.to_bytes(2, "big")
    assert data[2:8] == bytes(2) + MAGIC_COOKIE.to_bytes(4, "big")
    assert parse(data) == StunMessage(method, cls, bytes(12))


attribute = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda t: t != Attr.FINGERPRINT), st.binary(max_size=40)
)
messages = st.builds(
    StunMessage,
    method=st.integers(0, 0xFFF),
    cls=st.sampled_from(StunClass),
    transaction_id=st.binary(min_size=12, max_size=12),
    attributes=st.lists(attribute, max_size=8).map(tuple),
    fingerprint=st.booleans(),
    cookie=st.one_of(st.just(MAGIC_COOKIE), st.integers(0, 0xFFFFFFFF)),
)


@given(messages)
def test_round_trip(msg: StunMessage) -> None:
    data = encode(msg)
    assert len(data) % 4 == 0
    assert parse(data) == msg
    assert looks_like_stun(data) == (not msg.legacy)
    # aioice reads the same header (and checks our FINGERPRINT) when it knows the method.
    if msg.method in {m.value for m in aioice_stun.Method} and all(
        t not in aioice_stun.ATTRIBUTES_BY_TYPE for t, _ in msg.attributes
    ):
        theirs = aioice_stun.parse_message(data)
        assert theirs.transaction_id == msg.transaction_id
        assert ("FINGERPRINT" in theirs.attributes) == msg.fingerprint


@given(st.ip_addresses(), st.integers(0, 0xFFFF), st.binary(min_size=12, max_size=12))
def test_address_round_trips(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, txid: bytes
) -> None:
    address = (str(ip), port)
    assert decode_address(encode_address(address)) == address
    assert decode_xor_address(encode_xor_address(address, txid), txid) == address
    # The XOR form hides the address from middleboxes that rewrite it.
    assert encode_xor_address(address, txid)[4:] != encode_address(address)[4:] or port == 0


def test_attribute_helpers() -> None:
    assert decode_error_code(encode_error_code(420, "Unknown Attribute")) == (
        420,
        "Unknown Attribute",
    )
    assert decode_unknown_attributes(encode_unknown_attributes([0x0003, 0x7777])) == [3, 0x7777]


@pytest.mark.parametrize(
    "build",
    [
        lambda: StunMessage(0x1000, StunClass.REQUEST, bytes(12)),
        lambda: StunMessage(BINDING, StunClass.REQUEST, bytes(11)),
        lambda: StunMessage(BINDING, StunClass.REQUEST, bytes(12), ((Attr.FINGERPRINT, b"x"),)),
        lambda: StunMessage(BINDING, StunClass.REQUEST, bytes(12), ((0x10000, b""),)),
        lambda: encode_error_code(200, "OK"),
        lambda: decode_error_code(bytes.fromhex("00000763")),  # class 7
        lambda: decode_error_code(bytes.fromhex("00000464")),  # number 100
        lambda: decode_unknown_attributes(b"\x00\x01\x00"),
        lambda: decode_address(bytes.fromhex("0003000a01020304")),  # family 3
        lambda: decode_address(bytes.fromhex("0001000a010203")),  # short IPv4
        lambda: encode_address(("not-an-ip", 1)),
        lambda: encode_address(("127.0.0.1", 70000)),
        lambda: parse(bytes.fromhex("000100082112a442") + bytes(12) + bytes.fromhex("80220005")),
    ],
)
def test_builder_and_decoder_errors(build: object) -> None:
    assert callable(build)
    with pytest.raises(StunFormatError) as info:
        build()
    assert isinstance(info.value, ProtocolError)


# -- the Binding server ------------------------------------------------------------------------


def binding_request(*attributes: tuple[int, bytes], fingerprint: bool = False) -> bytes:
    return encode(StunMessage(BINDING, StunClass.REQUEST, os.urandom(12), attributes, fingerprint))


@pytest.mark.parametrize(
    ("source", "reported"),
    [
        (("203.0.113.7", 54321), ("203.0.113.7", 54321)),
        (("2001:db8::7", 3478), ("2001:db8::7", 3478)),
        (("::ffff:203.0.113.7", 40000), ("203.0.113.7", 40000)),  # dual-stack socket
        (("fe80::1%eth0", 5000), ("fe80::1", 5000)),  # link-local with a zone
    ],
)
@pytest.mark.parametrize("fingerprint", [False, True])
def test_binding_success(
    source: tuple[str, int], reported: tuple[str, int], fingerprint: bool
) -> None:
    request = binding_request(fingerprint=fingerprint)
    data = answer(request, source)
    assert data is not None
    response = parse(data)
    assert (response.method, response.cls) == (BINDING, StunClass.SUCCESS)
    assert response.transaction_id == request[8:20]
    assert response.xor_mapped_address == reported
    assert response.mapped_address == reported
    assert response.software == "ivcloud"
    assert response.fingerprint
    # aioice, the STUN client aiortc uses, reads it the same way.
    theirs = aioice_stun.parse_message(data)
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == reported
    assert theirs.attributes["MAPPED-ADDRESS"] == reported


def test_the_rfc5769_ice_request_is_answered() -> None:
    # USERNAME, MESSAGE-INTEGRITY, PRIORITY: understood, and ignored (no authentication).
    data = answer(SAMPLE_REQUEST, ("192.0.2.1", 32853))
    assert data is not None
    response = parse(data)
    assert response.cls is StunClass.SUCCESS
    assert response.transaction_id == RFC5769_TXID
    assert response.xor_mapped_address == ("192.0.2.1", 32853)


def test_unknown_comprehension_required_attributes_get_420() -> None:
    request = binding_request(
        (0x0003, bytes(4)),  # RFC 3489 CHANGE-REQUEST
        (0x7777, b"x"),
        (0x8055, b"optional: ignored"),
        (0x7777, b"again"),
        (Attr.PRIORITY, bytes(4)),
    )
    data = answer(request, ("198.51.100.1", 1))
    assert data is not None
    response = parse(data)
    assert (response.method, response.cls) == (BINDING, StunClass.ERROR)
    assert response.transaction_id == request[8:20]
    assert response.error_code == (420, "Unknown Attribute")
    assert response.unknown_attributes == [0x0003, 0x7777]
    assert response.xor_mapped_address is None
    assert response.fingerprint


def test_only_comprehension_optional_unknowns_are_ignored() -> None:
    data = answer(binding_request((0x8055, b"x"), (0xFFFF, b"")), ("198.51.100.1", 9))
    assert data is not None
    assert parse(data).cls is StunClass.SUCCESS


def test_other_methods_get_400() -> None:
    allocate = encode(StunMessage(0x003, StunClass.REQUEST, os.urandom(12)))
    data = answer(allocate, ("198.51.100.1", 1))
    assert data is not None
    response = parse(data)
    assert (response.method, response.cls) == (0x003, StunClass.ERROR)
    assert response.error_code is not None and response.error_code[0] == 400


@pytest.mark.parametrize("cls", [StunClass.INDICATION, StunClass.SUCCESS, StunClass.ERROR])
@pytest.mark.parametrize("method", [BINDING, 0x003])
def test_non_requests_get_no_answer(cls: StunClass, method: int) -> None:
    assert answer(encode(StunMessage(method, cls, os.urandom(12))), ("198.51.100.1", 1)) is None


def test_rfc3489_client_gets_mapped_address_only() -> None:
    cookie = 0x01020304
    request = encode(StunMessage(BINDING, StunClass.REQUEST, os.urandom(12), cookie=cookie))
    assert not looks_like_stun(request)
    data = answer(request, ("203.0.113.9", 1234))
    assert data is not None
    response = parse(data)
    assert response.cookie == cookie  # the 128-bit transaction id is echoed whole
    assert response.transaction_id == request[8:20]
    assert response.mapped_address == ("203.0.113.9", 1234)
    assert response.get(Attr.XOR_MAPPED_ADDRESS) is None
    assert not response.fingerprint
    # A legacy "request" of another method is not evidently STUN: silence.
    other = encode(StunMessage(0x003, StunClass.REQUEST, os.urandom(12), cookie=cookie))
    assert answer(other, ("203.0.113.9", 1234)) is None


def test_software_can_be_left_out() -> None:
    data = answer(binding_request(), ("198.51.100.1", 1), software=None)
    assert data is not None
    assert parse(data).software is None


_VALID = binding_request(fingerprint=True)


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"hello",
        bytes(19),
        bytes.fromhex("80c8000612345678") + bytes(24),  # RTCP sender report
        bytes.fromhex("8060") + bytes(30),  # RTP
        bytes.fromhex("16fefd") + bytes(40),  # DTLS handshake
        _VALID[:-4],  # truncated
        _VALID + bytes(4),  # trailing bytes the length does not cover
        _VALID[:-1] + bytes([_VALID[-1] ^ 1]),  # bad FINGERPRINT
        _VALID[:2] + b"\x00\x07" + _VALID[4:],  # length not a multiple of 4
        # an attribute whose length runs past the end
        bytes.fromhex("000100082112a442") + bytes(12) + struct.pack("!HH4s", 0x8022, 16, b"abcd"),
        # FINGERPRINT not last
        _VALID[:2]
        + (len(_VALID) - 20 + 8).to_bytes(2, "big")
        + _VALID[4:]
        + struct.pack("!HH4s", 0x8022, 4, b"late"),
    ],
)
def test_garbage_gets_no_answer(datagram: bytes) -> None:
    assert answer(datagram, ("198.51.100.1", 1)) is None


def _check_answer(datagram: bytes, source: tuple[str, int]) -> None:
    data = answer(datagram, source)
    if data is None:
        return
    response = parse(data)
    assert response.cls in (StunClass.SUCCESS, StunClass.ERROR)
    assert response.transaction_id == datagram[8:20]
    if response.cls is StunClass.SUCCESS:
        assert response.mapped_address == source
        if not response.legacy:
            assert response.xor_mapped_address == source


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(datagram: bytes) -> None:
    _check_answer(datagram, ("192.0.2.50", 4242))


@given(
    method=st.sampled_from([BINDING, BINDING, 0x003, 0x0FF]),
    cls=st.sampled_from(StunClass),
    cookie=st.sampled_from([MAGIC_COOKIE, MAGIC_COOKIE, 0xDEADBEEF]),
    body=st.lists(
        st.tuples(
            st.integers(0, 0xFFFF), st.integers(0, 64), st.binary(max_size=48), st.integers(0, 3)
        ),
        max_size=6,
    ),
    fix_length=st.booleans(),
)
def test_near_stun_never_raises(
    method: int,
    cls: StunClass,
    cookie: int,
    body: list[tuple[int, int, bytes, int]],
    fix_length: bool,
) -> None:
    """Well-formed headers around attribute TLVs whose declared lengths and padding may lie."""
    attrs = b"".join(struct.pack("!HH", t, n) + v + bytes(p) for t, n, v, p in body)
    header = encode(StunMessage(method, cls, os.urandom(12), cookie=cookie))
    length = len(attrs) if fix_length else (len(attrs) + 3) // 4 * 4
    datagram = header[:2] + (length & 0xFFFF).to_bytes(2, "big") + header[4:20] + attrs
    _check_answer(datagram, ("2001:db8::50", 4242))

"""The Wi-Fi provisioning QR string (device-protocol.md §8.1): ``len str`` three times.

A camera or camera-equipped lock scans a QR code holding the SSID, the Wi-Fi password and a
bind token, each preceded by its length as two decimal digits and with no separators:
``12Tencent-wifi01l32v3_00d02b0248546d5a5fbf95a5812e4``.

Length unit. Tencent's wording ("the UTF-8-decoded length of the following content") does not
say whether a non-ASCII SSID counts characters or UTF-8 bytes, and firmware in the field may
do either. We therefore *encode* counting characters (what the wording most plausibly means,
and what a scanner that decodes the QR to text sees) and *parse* counting characters first;
if that fails and the string is not pure ASCII we retry counting UTF-8 bytes, so a string
produced by a byte-counting generator still parses. A string valid both ways is read the
character way. ASCII strings are unaffected: both units agree.

Parsing is strict otherwise: no whitespace stripping, no trailing data, lengths exactly two
ASCII digits, an empty SSID refused (a device cannot join a network without a name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ivcloud.protocol.errors import QRFormatError

__all__ = [
    "FIELD_MAX",
    "LengthUnit",
    "ProvisionQR",
    "encode_provision_qr",
    "parse_provision_qr",
]

#: Two decimal digits cannot say more.
FIELD_MAX = 99

LengthUnit = Literal["chars", "bytes"]

_FIELDS = ("SSID", "password", "token")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class ProvisionQR:
    ssid: str
    # Kept out of repr so a logged ProvisionQR does not leak the Wi-Fi password.
    password: str = field(repr=False)
    token: str


def encode_provision_qr(ssid: str, password: str, token: str, *, unit: LengthUnit = "chars") -> str:
    """Build the QR text. ``unit="bytes"`` produces the byte-counting variant, for testing
    devices (or our own parser) against generators that count UTF-8 bytes."""
    parts = []
    for label, text in zip(_FIELDS, (ssid, password, token), strict=True):
        if not isinstance(text, str):
            raise QRFormatError(f"{label} must be a string, got {type(text).__name__}")
        try:
            n = len(text) if unit == "chars" else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise QRFormatError(f"{label} is not encodable as UTF-8") from None
        if n > FIELD_MAX:
            what = "characters" if unit == "chars" else "UTF-8 bytes"
            raise QRFormatError(f"{label} is {n} {what} long, the limit is {FIELD_MAX}")
        parts.append(f"{n:02d}{text}")
    if not ssid:
        raise QRFormatError("SSID is empty")
    return "".join(parts)


def parse_provision_qr(s: object) -> ProvisionQR:
    """Read a scanned QR string; :class:`QRFormatError` says what is wrong and where."""
    if not isinstance(s, str):
        raise QRFormatError(f"provisioning QR must be a string, got {type(s).__name__}")
    if not s:
        raise QRFormatError("provisioning QR string is empty")
    try:
        return _parse(s, "chars")
    except QRFormatError as by_chars:
        if s.isascii():
            raise
        try:
            return _parse(s, "bytes")
        except QRFormatError as by_bytes:
            raise QRFormatError(f"{by_chars} (counting UTF-8 bytes instead: {by_bytes})") from None


def _parse(s: str, unit: LengthUnit) -> ProvisionQR:
    if unit == "chars":
        data: str | bytes = s
        what = "characters"
    else:
        try:
            data = s.encode("utf-8")
        except UnicodeEncodeError:
            raise QRFormatError("not encodable as UTF-8") from None
        what = "bytes"
    out: list[str] = []
    i = 0
    for label in _FIELDS:
        head = data[i : i + 2]
        if len(head) < 2:
            raise QRFormatError(f"{label} length at offset {i}: the string ends (truncated)")
        digits = head if isinstance(head, str) else head.decode("latin-1")
        if not (digits[0] in _DIGITS and digits[1] in _DIGITS):
            raise QRFormatError(
                f"{label} length at offset {i}: {digits!r} is not a 2-digit decimal number"
            )
        n = int(digits)
        i += 2
        if i + n > len(data):
            left = len(data) - i
            raise QRFormatError(f"{label} is {n} {what} long but only {left} remain (truncated)")
        chunk = data[i : i + n]
        i += n
        if isinstance(chunk, bytes):
            try:
                chunk = chunk.decode("utf-8")
            except UnicodeDecodeError:
                raise QRFormatError(f"{label} of {n} bytes splits a UTF-8 character") from None
        out.append(chunk)
    if i != len(data):
        raise QRFormatError(f"{len(data) - i} {what} of trailing data after the token (overlong)")
    ssid, password, token = out
    if not ssid:
        raise QRFormatError("SSID is empty (length 00)")
    return ProvisionQR(ssid=ssid, password=password, token=token)

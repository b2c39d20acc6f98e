"""The device QR code behind ``AppSecureAddDeviceInFamily`` ("scan to bind").

Tencent's apps scan a code and send its ``DeviceSignature`` unparsed: the code is either
JSON ``{"Signature": "…"}`` or a URL whose query has ``signature=…`` (iOS
``processQRCodeResult``; Android ``scanBindDevice``).  What the signature contains is not
public, so ivcloud defines it (docs/app-api.md, "AppSecureAddDeviceInFamily"):

    ``IVB1.<base64url(JSON {"p": ProductId, "d": DeviceName, "e": expiry})>.<hex MAC>``

``e`` is Unix seconds, or 0 for a code that does not expire (a label printed on the box —
binding still needs the device to be unbound, as in Tencent's flow).  The MAC is
HMAC-SHA256 over the text before the last dot, keyed with the base64-decoded device secret,
so the console *and* the device itself (a camera showing a code on its screen) can make
one, and nobody without the secret can.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from ivcloud.protocol.credentials import decode_device_secret
from ivcloud.protocol.errors import ProtocolError

PREFIX = "IVB1"
MAX_LENGTH = 512
_MAC = re.compile(r"[0-9a-f]{64}")


class BindSignatureError(ProtocolError):
    """A ``DeviceSignature`` that is not ivcloud's format (the MAC is checked separately)."""


@dataclass(frozen=True, slots=True)
class BindSignature:
    product_id: str
    device_name: str
    expires: int  # Unix seconds; 0 = never
    signed_text: str
    mac: str

    def verify(self, device_secret_b64: str) -> bool:
        key = decode_device_secret(device_secret_b64)
        expected = hmac.new(key, self.signed_text.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)

    def expired(self, now_s: int) -> bool:
        return self.expires != 0 and now_s > self.expires


def make_signature(product_id: str, device_name: str, device_secret_b64: str, expires: int) -> str:
    doc = json.dumps({"p": product_id, "d": device_name, "e": expires}, separators=(",", ":"))
    body = base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")
    text = f"{PREFIX}.{body}"
    key = decode_device_secret(device_secret_b64)
    return f"{text}.{hmac.new(key, text.encode(), hashlib.sha256).hexdigest()}"


def parse_signature(value: str) -> BindSignature:
    if not value.isascii() or len(value) > MAX_LENGTH:
        raise BindSignatureError("DeviceSignature is not an ivcloud device code")
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not _MAC.fullmatch(parts[2]):
        raise BindSignatureError("DeviceSignature is not an ivcloud device code")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BindSignatureError("DeviceSignature payload is not valid") from None
    if not isinstance(doc, dict):
        raise BindSignatureError("DeviceSignature payload is not valid")
    pid, dn, expires = doc.get("p"), doc.get("d"), doc.get("e")
    if not (isinstance(pid, str) and pid and isinstance(dn, str) and dn):
        raise BindSignatureError("DeviceSignature names no device")
    if isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < 2**40:
        raise BindSignatureError("DeviceSignature expiry is not valid")
    return BindSignature(pid, dn, expires, f"{parts[0]}.{parts[1]}", parts[2])


def qr_text(signature: str, base_url: str) -> str:
    """The text to put in the QR code: a URL, as Tencent's apps accept
    (``…?page=bind&signature=…``)."""
    return f"{base_url.rstrip('/')}/bind?page=bind&signature={quote(signature, safe='')}"


def signature_from_scan(scanned: str) -> str | None:
    """What an app extracts from a scanned code (JSON ``Signature`` or URL ``signature``)."""
    try:
        doc = json.loads(scanned)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        sig = doc.get("Signature")
        return sig if isinstance(sig, str) else None
    if scanned.startswith("http"):
        for name, value in parse_qsl(urlsplit(scanned).query):
            if name == "signature":
                return value
    return None

"""Device → ivcloud HTTP authentication (an ivcloud extension; docs/cloud-storage.md).

Tencent's device → COS upload path is not public (device-protocol spec §7.6), so a device
proves who it is to ivcloud's HTTP upload API the way it does on MQTT: with an HMAC keyed by
its base64-decoded DeviceSecret. One header, no session, no token to leak::

    Authorization: IvDevice pid=<ProductId>,dn=<DeviceName>,expires=<unix s>,sig=<hex>
    sig = hex(HMAC-SHA256(key, METHOD "\\n" target "\\n" pid "/" dn "\\n" expires "\\n"
                               hex(SHA-256(body))))

``target`` is the request path plus ``?`` and the query string exactly as sent (not decoded,
not re-ordered), so the signature pins what is uploaded *and* where it goes (time range,
channel, event); the device's own ids are signed too, so a signature binds one device even
if two devices were ever given the same secret.

``expires`` bounds a captured request's life: the server accepts it while
``now - skew <= expires <= now + MAX_LIFETIME_S + skew``. A replay inside that window is
harmless by design: every upload is idempotent (same key → same stored object).

Pure functions: the clock is passed in, nothing is read from the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from ivcloud.protocol.credentials import decode_device_secret
from ivcloud.protocol.errors import CredentialError, ProtocolError

__all__ = [
    "MAX_LIFETIME_S",
    "SCHEME",
    "DeviceAuth",
    "DeviceAuthError",
    "DeviceAuthRejected",
    "MalformedDeviceAuth",
    "authorization_header",
    "body_digest",
    "parse_authorization",
    "sign",
    "string_to_sign",
    "verify",
]

SCHEME: Final[str] = "IvDevice"
#: How far past ``now`` a device may set ``expires`` (on top of the allowed clock skew).
MAX_LIFETIME_S: Final[int] = 300
MAX_HEADER_LEN: Final[int] = 512
_KEYS: Final[tuple[str, ...]] = ("pid", "dn", "expires", "sig")
_VALUE_RE: Final[dict[str, re.Pattern[str]]] = {
    "pid": re.compile(r"[A-Za-z0-9]{1,32}"),
    # Tencent's DeviceName alphabet: none of these characters is a separator here.
    "dn": re.compile(r"[A-Za-z0-9:_\-.@]{1,48}"),
    "expires": re.compile(r"[0-9]{1,12}"),
    "sig": re.compile(r"[0-9a-f]{64}"),
}
_METHOD_RE: Final = re.compile(r"[A-Z]{1,10}")


class DeviceAuthError(ProtocolError):
    """Base: the request is not authenticated (the API answers 401 for every subclass)."""


class MalformedDeviceAuth(DeviceAuthError):
    """No ``Authorization`` header, another scheme, or a header not in the format above."""


class DeviceAuthRejected(DeviceAuthError):
    """Well-formed, but the signature is wrong or ``expires`` is outside the window.

    One class for both on purpose: a guesser must not learn which part failed; the signature
    is checked first, so only a holder of the secret ever learns about its clock."""


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    product_id: str
    device_name: str
    expires: int
    signature: str  # 64 lowercase hex digits


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    method: str, target: str, product_id: str, device_name: str, expires: int, body_sha256: str
) -> str:
    return f"{method}\n{target}\n{product_id}/{device_name}\n{expires}\n{body_sha256}"


def sign(
    secret_b64: str,
    method: str,
    target: str,
    product_id: str,
    device_name: str,
    expires: int,
    body_sha256: str,
) -> str:
    """The hex signature (raises :class:`CredentialError` for a secret that is not base64)."""
    if _METHOD_RE.fullmatch(method) is None or not target.startswith("/"):
        raise MalformedDeviceAuth("method must be upper-case letters and target start with /")
    key = decode_device_secret(secret_b64)
    text = string_to_sign(method, target, product_id, device_name, expires, body_sha256)
    message = text.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def authorization_header(
    secret_b64: str,
    product_id: str,
    device_name: str,
    method: str,
    target: str,
    body: bytes,
    expires: int,
) -> str:
    """The ``Authorization`` value a device sends (``expires``: unix seconds)."""
    for name, value in (("pid", product_id), ("dn", device_name), ("expires", str(expires))):
        if _VALUE_RE[name].fullmatch(value) is None:
            raise MalformedDeviceAuth(f"{name} is not in the allowed format")
    sig = sign(secret_b64, method, target, product_id, device_name, expires, body_digest(body))
    return f"{SCHEME} pid={product_id},dn={device_name},expires={expires},sig={sig}"


def parse_authorization(value: str | None) -> DeviceAuth:
    """Parse the header; every deviation is :class:`MalformedDeviceAuth` (never another
    exception): exactly the four keys, once each, any order, optional spaces after commas."""
    if not value:
        raise MalformedDeviceAuth("missing Authorization header")
    if len(value) > MAX_HEADER_LEN or not value.isascii():
        raise MalformedDeviceAuth("Authorization header too long or not ASCII")
    scheme, _, rest = value.partition(" ")
    if scheme != SCHEME or not rest:
        raise MalformedDeviceAuth(f"Authorization scheme must be {SCHEME}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, item = part.strip(" ").partition("=")
        if not sep or key not in _KEYS or key in fields:
            raise MalformedDeviceAuth("Authorization fields must be pid, dn, expires, sig")
        if _VALUE_RE[key].fullmatch(item) is None:
            raise MalformedDeviceAuth(f"Authorization field {key} is malformed")
        fields[key] = item
    if len(fields) != len(_KEYS):
        raise MalformedDeviceAuth("Authorization fields must be pid, dn, expires, sig")
    return DeviceAuth(fields["pid"], fields["dn"], int(fields["expires"]), fields["sig"])


def verify(
    auth: DeviceAuth,
    secret_b64: str,
    method: str,
    target: str,
    body_sha256: str,
    now_s: int,
    *,
    clock_skew_s: int,
) -> None:
    """Raise :class:`DeviceAuthRejected` unless ``auth`` signs this request and is current."""
    try:
        expected = sign(
            secret_b64,
            method,
            target,
            auth.product_id,
            auth.device_name,
            auth.expires,
            body_sha256,
        )
    except CredentialError:
        raise DeviceAuthRejected("bad signature") from None
    if not hmac.compare_digest(expected, auth.signature):
        raise DeviceAuthRejected("bad signature")
    if not now_s - clock_skew_s <= auth.expires <= now_s + MAX_LIFETIME_S + clock_skew_s:
        raise DeviceAuthRejected("request expired or not yet valid (check the device clock)")

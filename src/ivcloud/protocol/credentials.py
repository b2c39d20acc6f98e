"""MQTT key-mode credentials (device-protocol.md §1.2–1.3).

A device proves it holds its DeviceSecret by sending, as the MQTT password, an HMAC of the
literal username ``{ProductId}{DeviceName};{sdkappid};{connid};{expiry}`` keyed with the
base64-decoded secret, as lowercase hex plus ``;hmacsha1`` or ``;hmacsha256``.

Server policy implemented by :func:`verify_password`:

* the HMAC is recomputed over the *exact* username received (no re-formatting) and compared
  in constant time, case-insensitively;
* ``sdkappid`` and ``connid`` are not checked: SDKs send different values (12010126 vs
  21010406) and they only identify the SDK flavour and the connection in logs;
* ``expiry`` is compared as-is with the current Unix time in seconds. The Python SDK 1.0.0
  writes *milliseconds* there (13 digits); read as seconds that is simply far in the future,
  which the real cloud evidently accepts, so we do too rather than guess units;
* the signature is checked before the expiry, so only a holder of the secret ever learns
  that a username expired;
* that the username's client-id part equals the CONNECT ClientId is the caller's check (it
  has the ClientId; see :attr:`MqttUsername.client_id`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ivcloud.protocol.errors import BadSignature, CredentialError, CredentialExpired

__all__ = [
    "DEFAULT_SDKAPPID",
    "PRODUCT_ID_LEN",
    "Algorithm",
    "MqttUsername",
    "decode_device_secret",
    "generate_connid",
    "generate_device_secret",
    "generate_product_id",
    "make_username",
    "parse_username",
    "sign_password",
    "verify_password",
]

Algorithm = Literal["hmacsha1", "hmacsha256"]

#: The value Tencent's docs call fixed (console-generated credentials, Java SDK). The C and
#: Python SDKs send 21010406; both are accepted.
DEFAULT_SDKAPPID = "12010126"
#: ClientId = ProductId + DeviceName with no separator; ProductIds are 10 characters.
PRODUCT_ID_LEN = 10

_DIGESTS: dict[str, Callable[..., Any]] = {
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}
_HEX_LEN = {"hmacsha1": 40, "hmacsha256": 64}
_EXPIRY_RE = re.compile(r"[0-9]{1,20}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_PRODUCT_ID_ALPHABET = string.ascii_uppercase + string.digits
_CONNID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class MqttUsername:
    client_id: str
    sdkappid: str
    connid: str
    expiry: int

    @property
    def product_id(self) -> str:
        return self.client_id[:PRODUCT_ID_LEN]

    @property
    def device_name(self) -> str:
        return self.client_id[PRODUCT_ID_LEN:]


def parse_username(username: object) -> MqttUsername:
    """Split a key-mode username; anything but exactly four ``;``-separated fields with a
    non-empty client id and an all-digit expiry is a :class:`CredentialError`."""
    if not isinstance(username, str):
        raise CredentialError(f"username must be a string, got {type(username).__name__}")
    fields = username.split(";")
    if len(fields) != 4:
        raise CredentialError(f"username has {len(fields)} ';'-separated fields, expected 4")
    client_id, sdkappid, connid, expiry = fields
    if not client_id:
        raise CredentialError("username has an empty client id")
    if not _EXPIRY_RE.fullmatch(expiry):
        raise CredentialError("username expiry is not a decimal number of at most 20 digits")
    return MqttUsername(client_id, sdkappid, connid, int(expiry))


def make_username(
    product_id: str,
    device_name: str,
    *,
    now: int,
    ttl: int = 3600,
    sdkappid: str = DEFAULT_SDKAPPID,
    connid: str,
) -> str:
    """The username a device sends; ``now`` and ``connid`` are passed in (no clock, no
    randomness here) — see :func:`generate_connid`."""
    for label, part in (
        ("product id", product_id),
        ("device name", device_name),
        ("sdkappid", sdkappid),
        ("connid", connid),
    ):
        if ";" in part:
            raise CredentialError(f"{label} must not contain ';'")
    if not product_id or not device_name:
        raise CredentialError("product id and device name must not be empty")
    if now < 0 or ttl < 0:
        raise CredentialError("now and ttl must not be negative")
    return f"{product_id}{device_name};{sdkappid};{connid};{now + ttl}"


def decode_device_secret(device_secret_b64: str) -> bytes:
    """The raw HMAC key behind a console DeviceSecret (base64 text, usually 16 bytes)."""
    try:
        key = base64.b64decode(device_secret_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise CredentialError("device secret is not valid base64") from None
    if not key:
        raise CredentialError("device secret is empty")
    return key


def sign_password(
    device_secret_b64: str, username: str, algorithm: Algorithm = "hmacsha256"
) -> str:
    """The MQTT password for ``username``: ``<lowercase hex HMAC>;<algorithm>``."""
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise ValueError(f"unknown algorithm {algorithm!r} (hmacsha1 or hmacsha256)")
    key = decode_device_secret(device_secret_b64)
    mac = hmac.new(key, username.encode("utf-8"), digest).hexdigest()
    return f"{mac};{algorithm}"


def verify_password(
    device_secret_b64: str, username: str | None, password: str | bytes | None, now: int
) -> None:
    """Accept or refuse a CONNECT's credentials (policy in the module docstring).

    Raises :class:`BadSignature` for anything that does not prove the secret (wrong secret,
    unknown algorithm suffix, malformed username or password), :class:`CredentialExpired`
    for a valid signature whose expiry is before ``now``, and plain :class:`CredentialError`
    when the *stored* secret is not base64 (a server-side fault, not the device's).
    """
    try:
        user = parse_username(username)
    except CredentialError as e:
        raise BadSignature(f"malformed username: {e}") from None
    assert isinstance(username, str)
    if isinstance(password, bytes):
        try:
            password = password.decode("ascii")
        except UnicodeDecodeError:
            raise BadSignature("password is not ASCII") from None
    if not isinstance(password, str):
        raise BadSignature("password is missing")
    token, sep, algorithm = password.rpartition(";")
    algorithm = algorithm.lower()
    digest = _DIGESTS.get(algorithm) if sep else None
    if digest is None:
        raise BadSignature("password does not end in ;hmacsha1 or ;hmacsha256")
    if len(token) != _HEX_LEN[algorithm] or not _HEX_RE.fullmatch(token):
        raise BadSignature(f"password token is not {_HEX_LEN[algorithm]} hex digits")
    key = decode_device_secret(device_secret_b64)
    expected = hmac.new(key, username.encode("utf-8"), digest).hexdigest()
    if not hmac.compare_digest(expected, token.lower()):
        raise BadSignature("signature does not match the device secret")
    if user.expiry < now:
        raise CredentialExpired(f"credentials expired at {user.expiry} (now {now})")


def generate_device_secret() -> str:
    """A new DeviceSecret: 16 random bytes, base64 (the console's format)."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def generate_product_id() -> str:
    """A new ProductId: 10 upper-case letters and digits (ClientIds rely on the length)."""
    return "".join(secrets.choice(_PRODUCT_ID_ALPHABET) for _ in range(PRODUCT_ID_LEN))


def generate_connid() -> str:
    """A 5-character alphanumeric connection id, as the SDKs send."""
    return "".join(secrets.choice(_CONNID_ALPHABET) for _ in range(5))

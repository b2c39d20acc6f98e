"""TRTC ``UserSig`` tickets ("TLS sig api v2"): minted here, checked here.

A device maker who owns a Tencent Real-Time Communication (TRTC) application lets ivcloud
hand out room parameters for app ↔ device calls (``App::IotRTC::CallDevice``); TRTC admits a
user id into its rooms only with a ``UserSig`` signed by that application's secret key.
ivcloud mints them itself, so the key never leaves the server. The format is the one of
Tencent's public ``tls-sig-api-v2`` libraries (Python, Go, Java, …), which TRTC accepts:

1. ``content = "TLS.identifier:<id>\\nTLS.sdkappid:<app>\\nTLS.time:<t>\\nTLS.expire:<s>\\n"``
   (+ ``"TLS.userbuf:<base64>\\n"`` when a user buffer is attached); ``t`` is the issue time
   in Unix seconds and ``s`` the lifetime in seconds (the ticket is valid until ``t + s``);
2. ``TLS.sig = base64(HMAC-SHA256(key = secret key as UTF-8, content))``;
3. the JSON object ``{"TLS.ver": "2.0", "TLS.identifier", "TLS.sdkappid", "TLS.expire",
   "TLS.time", ["TLS.userbuf",] "TLS.sig"}``, zlib-compressed;
4. base64 with ``+`` → ``*``, ``/`` → ``-``, ``=`` → ``_`` (TRTC's URL-safe alphabet).

:func:`verify_user_sig` undoes all of it and checks the HMAC and the expiry, the way the
libraries' own verifiers do. Every malformed ticket is a :class:`UserSigError` — never another
exception, however garbled (a compressed payload is inflated only up to a bound).

Sans-IO: no clock (``now`` is passed in), no logging. Tickets and keys are credentials: callers
never log them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, loads_strict

__all__ = [
    "MAX_USER_SIG_CHARS",
    "VERSION",
    "UserSig",
    "UserSigError",
    "content_to_sign",
    "decode_user_sig",
    "mint_user_sig",
    "valid_user_id",
    "verify_user_sig",
]

VERSION: Final = "2.0"
#: Longest ticket accepted by the decoder (minted ones are ~200 characters).
MAX_USER_SIG_CHARS: Final = 4096
#: Largest inflated JSON document accepted (a zlib bomb stops here).
_MAX_JSON_BYTES: Final = 8192
#: TRTC user ids: at most 32 bytes of letters, digits, underscore and hyphen.
_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TICKET = re.compile(r"[A-Za-z0-9*_-]+")
_TO_STD = str.maketrans("*-_", "+/=")
_FROM_STD = str.maketrans("+/=", "*-_")
_MAX_U32: Final = 2**32 - 1
_MAX_SECONDS: Final = 2**40


class UserSigError(ProtocolError):
    """A ticket that is malformed or does not verify. ``reason`` is one of ``malformed``,
    ``sdkappid``, ``identifier``, ``expired``, ``userbuf``, ``signature``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UserSig:
    """A decoded ticket (not yet verified: see :func:`verify_user_sig`)."""

    identifier: str
    sdk_app_id: int
    time: int
    expire: int
    userbuf: bytes | None
    sig: bytes = field(repr=False)

    @property
    def expires_at(self) -> int:
        """Unix seconds after which TRTC refuses the ticket."""
        return self.time + self.expire


def valid_user_id(user_id: str) -> bool:
    """Whether TRTC accepts ``user_id`` (1-32 of ``A-Z a-z 0-9 _ -``)."""
    return _USER_ID.fullmatch(user_id) is not None


def content_to_sign(
    identifier: str, sdk_app_id: int, time: int, expire: int, userbuf: bytes | None = None
) -> str:
    """The text the HMAC covers (step 1 of the module docstring)."""
    text = (
        f"TLS.identifier:{identifier}\n"
        f"TLS.sdkappid:{sdk_app_id}\n"
        f"TLS.time:{time}\n"
        f"TLS.expire:{expire}\n"
    )
    if userbuf is not None:
        text += f"TLS.userbuf:{base64.b64encode(userbuf).decode('ascii')}\n"
    return text


def _hmac(key: str, content: str) -> bytes:
    return hmac.new(key.encode("utf-8"), content.encode("utf-8"), hashlib.sha256).digest()


def mint_user_sig(
    *,
    sdk_app_id: int,
    key: str,
    identifier: str,
    now: int,
    expire_s: int,
    userbuf: bytes | None = None,
) -> str:
    """A ticket for ``identifier`` issued at ``now`` (Unix seconds), valid ``expire_s``
    seconds. ``ValueError`` (a :class:`UserSigError`) for an id TRTC would refuse or
    numbers out of range — a caller's bug, not client input."""
    if not valid_user_id(identifier):
        raise UserSigError("identifier", "a TRTC user id is 1-32 of A-Z a-z 0-9 _ -")
    if not 0 < sdk_app_id <= _MAX_U32:
        raise UserSigError("sdkappid", "SdkAppId must be a positive 32-bit number")
    if not 0 <= now < _MAX_SECONDS or not 0 < expire_s < _MAX_SECONDS:
        raise UserSigError("malformed", "issue time or lifetime out of range")
    doc: dict[str, Any] = {
        "TLS.ver": VERSION,
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdk_app_id,
        "TLS.expire": expire_s,
        "TLS.time": now,
    }
    if userbuf is not None:
        doc["TLS.userbuf"] = base64.b64encode(userbuf).decode("ascii")
    sig = _hmac(key, content_to_sign(identifier, sdk_app_id, now, expire_s, userbuf))
    doc["TLS.sig"] = base64.b64encode(sig).decode("ascii")
    packed = zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return base64.b64encode(packed).decode("ascii").translate(_FROM_STD)


def _malformed(message: str) -> UserSigError:
    return UserSigError("malformed", message)


def _b64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"{name} is not a string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _malformed(f"{name} is not base64") from None


def _number(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_SECONDS:
        raise _malformed(f"{name} is not a non-negative integer")
    return value


def _inflate(text: str) -> bytes:
    if not 0 < len(text) <= MAX_USER_SIG_CHARS or _TICKET.fullmatch(text) is None:
        raise _malformed("not a UserSig (wrong length or alphabet)")
    try:
        packed = base64.b64decode(text.translate(_TO_STD).encode("ascii"), validate=True)
    except binascii.Error:
        raise _malformed("not base64") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, _MAX_JSON_BYTES)
    except zlib.error:
        raise _malformed("not zlib data") from None
    if not inflater.eof or inflater.unconsumed_tail:
        raise _malformed("truncated, or inflates beyond the bound")
    return raw


def decode_user_sig(text: str) -> UserSig:
    """Steps 4 → 3 of the module docstring: the ticket's fields, or :class:`UserSigError`
    (``malformed``) for anything that is not a version 2.0 ticket."""
    if not isinstance(text, str):
        raise _malformed("not a string")
    try:
        doc = loads_strict(_inflate(text))
    except BadJson:
        raise _malformed("the inflated ticket is not JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("the inflated ticket is not a JSON object")
    if doc.get("TLS.ver") != VERSION:
        raise _malformed("TLS.ver is not 2.0")
    identifier = doc.get("TLS.identifier")
    if not isinstance(identifier, str):
        raise _malformed("TLS.identifier is not a string")
    userbuf = doc.get("TLS.userbuf")
    return UserSig(
        identifier=identifier,
        sdk_app_id=_number(doc, "TLS.sdkappid"),
        time=_number(doc, "TLS.time"),
        expire=_number(doc, "TLS.expire"),
        userbuf=None if userbuf is None else _b64(userbuf, "TLS.userbuf"),
        sig=_b64(doc.get("TLS.sig"), "TLS.sig"),
    )


def verify_user_sig(
    text: str,
    *,
    sdk_app_id: int,
    key: str,
    identifier: str,
    now: int,
    userbuf: bytes | None = None,
) -> UserSig:
    """The decoded ticket if it was signed with ``key`` for ``identifier`` in ``sdk_app_id``,
    carries exactly ``userbuf`` and has not expired at ``now`` (Unix seconds; valid through
    ``time + expire`` inclusive, as the reference verifiers count). Otherwise
    :class:`UserSigError` with the first failing ``reason``."""
    sig = decode_user_sig(text)
    if sig.sdk_app_id != sdk_app_id:
        raise UserSigError("sdkappid", "issued for another SdkAppId")
    if sig.identifier != identifier:
        raise UserSigError("identifier", "issued for another user id")
    if now > sig.expires_at:
        raise UserSigError("expired", "the ticket has expired")
    if sig.userbuf != userbuf:
        raise UserSigError("userbuf", "the user buffer does not match")
    content = content_to_sign(sig.identifier, sig.sdk_app_id, sig.time, sig.expire, sig.userbuf)
    if not hmac.compare_digest(_hmac(key, content), sig.sig):
        raise UserSigError("signature", "the signature does not match")
    return sig

"""Expiring HMAC-signed URLs (firmware downloads now, media playback later).

The signature covers the path and the expiry, so a URL cannot be reused for another object
or beyond its lifetime."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from ivcloud.protocol.errors import ProtocolError


class BadSignedUrl(ProtocolError):
    """Missing, wrong or expired URL signature."""


def _mac(key: bytes, path: str, expires: int) -> str:
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def sign_path(key: bytes, path: str, expires: int) -> str:
    """``path?expires=..&sign=..`` valid until ``expires`` (unix seconds)."""
    return f"{path}?{urlencode({'expires': expires, 'sign': _mac(key, path, expires)})}"


def verify_path(key: bytes, path: str, expires: str | None, sign: str | None, now: int) -> None:
    if not expires or not sign or not (expires.isascii() and expires.isdigit()):
        raise BadSignedUrl("missing signature")
    if not hmac.compare_digest(_mac(key, path, int(expires)).encode(), sign.encode()):
        raise BadSignedUrl("bad signature")
    if int(expires) < now:
        raise BadSignedUrl("signature expired")

"""ICE servers for a live view: ivcloud's own STUN URL, and TURN with credentials it mints.

:meth:`IceService.ice_servers` returns the list a WebRTC peer is configured with, in the
``RTCIceServer`` shape (``{"urls": [...], "username": ..., "credential": ...}``) that browsers,
aiortc and the device SDK all take as is.

TURN credentials follow the "REST API for Access to TURN Services" draft
(draft-uberti-behave-turn-rest) as coturn implements it with ``use-auth-secret`` /
``static-auth-secret``: ivcloud and the TURN server share a secret and nothing else — no user
database, no call between them:

* ``username   = "<expiry unix seconds>:<user_ref>"``
* ``credential = base64(HMAC-SHA1(secret, username))``

The TURN server recomputes the HMAC over the username it receives and refuses (401) a
username whose expiry has passed, so a leaked credential is useless after ``ttl`` seconds
and cannot be stretched.  ``user_ref`` only labels the allocation in the TURN server's logs;
it is never trusted for anything.  The secret is kept out of ``repr`` and logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ivcloud.services.errors import InvalidInput

if TYPE_CHECKING:
    from ivcloud.config import Settings

__all__ = [
    "DEFAULT_TURN_TTL_S",
    "IceService",
    "TurnCredentials",
    "public_stun_host",
    "stun_url",
    "turn_rest_credentials",
    "validate_turn_url",
]

DEFAULT_TURN_TTL_S: Final = 3600

# RFC 7065: turn:/turns: host [":" port] ["?transport=" udp|tcp]
_TURN_URL = re.compile(
    r"turns?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?:udp|tcp))?"
)
# Printable ASCII without ':' (the username separator) or spaces; STUN USERNAME is short.
_USER_REF = re.compile(r"[!-9;-~]{1,128}")


def validate_turn_url(url: str) -> str:
    """Return ``url`` if it is a ``turn:``/``turns:`` URL (RFC 7065); else raise ValueError."""
    m = _TURN_URL.fullmatch(url)
    if m is None or (m["port"] is not None and not 1 <= int(m["port"]) <= 65535):
        raise ValueError(
            f"not a TURN URL: {url!r} (expected turn:host[:port][?transport=udp|tcp] or turns:…)"
        )
    return url


def stun_url(host: str, port: int) -> str:
    """``stun:host:port`` (RFC 7064), IPv6 literals in brackets."""
    return f"stun:[{host}]:{port}" if ":" in host else f"stun:{host}:{port}"


def public_stun_host(settings: Settings) -> str:
    """The host clients are told to send STUN to: ``stun_public_host``, else the host of
    ``public_url``, else the bind address (loopback for a wildcard bind)."""
    if settings.stun_public_host:
        return settings.stun_public_host
    if settings.public_url:
        hostname = urlsplit(settings.public_url).hostname
        if hostname:
            return hostname
    host = settings.stun_host or settings.host
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    username: str
    credential: str = field(repr=False)
    expires_at: int


def turn_rest_credentials(secret: bytes, user_ref: str, expires_at: int) -> TurnCredentials:
    """TURN REST API credentials valid until ``expires_at`` (Unix seconds)."""
    username = f"{expires_at}:{user_ref}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode(), expires_at)


class IceService:
    """Builds the ICE server list for one peer of a live view.

    ``stun_urls`` is assigned by the composition root once the STUN listener has its port
    (empty while STUN is disabled)."""

    def __init__(
        self,
        *,
        stun_urls: Sequence[str] = (),
        turn_urls: Sequence[str] = (),
        turn_secret: str | None = None,
        turn_ttl_seconds: int = DEFAULT_TURN_TTL_S,
    ) -> None:
        self.turn_urls = [validate_turn_url(u) for u in turn_urls]
        if self.turn_urls and not turn_secret:
            raise ValueError("turn_urls need turn_secret (the TURN server's static-auth-secret)")
        if turn_ttl_seconds < 1:
            raise ValueError("turn_ttl_seconds must be positive")
        self.stun_urls = list(stun_urls)
        self.turn_ttl_seconds = turn_ttl_seconds
        self._secret = turn_secret.encode() if turn_secret else None

    @classmethod
    def from_settings(cls, settings: Settings) -> IceService:
        secret = settings.turn_secret
        return cls(
            turn_urls=settings.turn_urls,
            turn_secret=secret.get_secret_value() if secret is not None else None,
            turn_ttl_seconds=settings.turn_ttl_seconds,
        )

    def __repr__(self) -> str:
        return f"IceService(stun_urls={self.stun_urls!r}, turn_urls={self.turn_urls!r})"

    @property
    def turn_enabled(self) -> bool:
        return bool(self.turn_urls) and self._secret is not None

    def turn_credentials(self, user_ref: str, now: int) -> TurnCredentials | None:
        """Credentials valid for ``turn_ttl_seconds`` from ``now`` (Unix seconds); ``None``
        when no TURN server is configured.  ``user_ref``: printable ASCII, no ':' or space,
        at most 128 characters (e.g. a user id)."""
        if not _USER_REF.fullmatch(user_ref):
            raise InvalidInput("user_ref must be 1-128 printable ASCII characters without ':'")
        if self._secret is None or not self.turn_urls:
            return None
        return turn_rest_credentials(self._secret, user_ref, now + self.turn_ttl_seconds)

    def ice_servers(self, user_ref: str, now: int) -> list[dict[str, Any]]:
        """``RTCIceServer`` dicts: ivcloud's STUN URL(s), then the TURN URLs with fresh
        credentials.  Possibly empty (STUN disabled, no TURN): host candidates only."""
        servers: list[dict[str, Any]] = []
        creds = self.turn_credentials(user_ref, now)
        if self.stun_urls:
            servers.append({"urls": list(self.stun_urls)})
        if creds is not None:
            servers.append(
                {
                    "urls": list(self.turn_urls),
                    "username": creds.username,
                    "credential": creds.credential,
                }
            )
        return servers

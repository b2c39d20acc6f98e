"""Cloud-storage playback URLs: their paths, their signatures, and reading a ``VideoURL``.

Every playback URL (playlist, init and media segments, thumbnails) is signed with
:mod:`ivcloud.protocol.signing`. That module signs a path; a playlist URL also carries its
time window in the query (``starttime_epoch``/``endtime_epoch``, the names the App API docs
tell apps to append), so the signed "path" here is the path *plus* the canonical window
query — changing the window breaks the signature just like changing the device would.

The App API hands apps the unsigned ``VideoURL`` (``<base>/api/cs/v1/P/D/timeshift.m3u8``);
apps append the window and ask ``IotVideoGenerateSignedVideoURL`` to sign it, so
:func:`parse_video_url` reads such a URL back — strictly, since it comes from the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.signing import sign_path, verify_path

__all__ = [
    "PREFIX",
    "BadVideoUrl",
    "CsUrls",
    "VideoWindow",
    "parse_video_url",
    "playlist_path",
    "window_query",
]

PREFIX: Final[str] = "/api/cs/v1"
PLAYLIST_NAME: Final[str] = "timeshift.m3u8"
_PID = r"[A-Za-z0-9]{1,32}"
_DN = r"[A-Za-z0-9:_\-.@]{1,48}"
_PLAYLIST_RE: Final = re.compile(rf"{PREFIX}/({_PID})/({_DN})/{re.escape(PLAYLIST_NAME)}")
_EPOCH_RE: Final = re.compile(r"[0-9]{1,11}")
_MAX_URL_LEN: Final[int] = 2048


class BadVideoUrl(ProtocolError):
    """A ``VideoURL`` that is not an ivcloud cloud-storage playlist URL with a window."""


@dataclass(frozen=True, slots=True)
class VideoWindow:
    """A parsed ``VideoURL``: whose recordings, which window (unix seconds, start < end)."""

    product_id: str
    device_name: str
    start_s: int
    end_s: int


def playlist_path(product_id: str, device_name: str) -> str:
    return f"{PREFIX}/{product_id}/{device_name}/{PLAYLIST_NAME}"


def window_query(start_s: int, end_s: int) -> str:
    return urlencode({"starttime_epoch": start_s, "endtime_epoch": end_s})


def parse_video_url(url: str) -> VideoWindow:
    """``<anything>/api/cs/v1/<P>/<D>/timeshift.m3u8?starttime_epoch=S&endtime_epoch=E``;
    any ``expires``/``sign`` already present are dropped (re-signing a signed URL works),
    any other query parameter is refused. Scheme and host are not kept: the signed URL is
    always built on this instance's own base URL, never on one a client supplied."""
    if not url or len(url) > _MAX_URL_LEN or not url.isascii() or not url.isprintable():
        raise BadVideoUrl("VideoURL is empty, too long or not printable ASCII")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BadVideoUrl("VideoURL is not a URL") from None
    cut = parts.path.rfind(PREFIX + "/")
    match = _PLAYLIST_RE.fullmatch(parts.path[cut:]) if cut >= 0 else None
    if match is None or parts.fragment:
        raise BadVideoUrl(
            f"VideoURL must end with {PREFIX}/<ProductId>/<DeviceName>/timeshift.m3u8"
        )
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise BadVideoUrl("VideoURL has a malformed query") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in ("expires", "sign"):
            continue
        if key not in ("starttime_epoch", "endtime_epoch") or key in query:
            raise BadVideoUrl("VideoURL query must be starttime_epoch and endtime_epoch")
        query[key] = value
    start, end = query.get("starttime_epoch", ""), query.get("endtime_epoch", "")
    if _EPOCH_RE.fullmatch(start) is None or _EPOCH_RE.fullmatch(end) is None:
        raise BadVideoUrl("VideoURL needs starttime_epoch and endtime_epoch (unix seconds)")
    if int(start) >= int(end):
        raise BadVideoUrl("VideoURL starttime_epoch must be before endtime_epoch")
    if parts.scheme not in ("http", "https", "") or bool(parts.scheme) != bool(parts.netloc):
        raise BadVideoUrl("VideoURL must be an http(s) URL or a path")
    return VideoWindow(match.group(1), match.group(2), int(start), int(end))


class CsUrls:
    """Signs and checks playback URLs with the instance's URL key. ``base_url`` is the
    public HTTP base (set once the HTTP port is known)."""

    def __init__(self, key: bytes, base_url: str) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")

    # -- paths ---------------------------------------------------------------------------

    @staticmethod
    def device_path(product_id: str, device_name: str) -> str:
        return f"{PREFIX}/{product_id}/{device_name}"

    def video_url(self, product_id: str, device_name: str) -> str:
        """The unsigned ``VideoURL`` the App API returns (apps append the window)."""
        return self.base_url + playlist_path(product_id, device_name)

    # -- signing -------------------------------------------------------------------------

    def sign(self, path: str, expires: int) -> str:
        """``path?expires=..&sign=..`` (a path relative to the device path stays relative)."""
        return sign_path(self._key, path, expires)

    def verify(self, path: str, expires: str | None, sign: str | None, now_s: int) -> None:
        verify_path(self._key, path, expires, sign, now_s)

    def sign_playlist(
        self, product_id: str, device_name: str, start_s: int, end_s: int, expires: int
    ) -> str:
        """The signed playlist path with its window: ``…/timeshift.m3u8?starttime_epoch=…
        &endtime_epoch=…&expires=…&sign=…``."""
        canonical = f"{playlist_path(product_id, device_name)}?{window_query(start_s, end_s)}"
        signed = sign_path(self._key, canonical, expires)
        return canonical + "&" + signed[len(canonical) + 1 :]

    def verify_playlist(
        self,
        product_id: str,
        device_name: str,
        start_s: int,
        end_s: int,
        expires: str | None,
        sign: str | None,
        now_s: int,
    ) -> None:
        canonical = f"{playlist_path(product_id, device_name)}?{window_query(start_s, end_s)}"
        verify_path(self._key, canonical, expires, sign, now_s)

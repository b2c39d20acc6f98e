"""HLS media playlists (RFC 8216) of fMP4 segments, for cloud-storage playback.

What players need from a recording playlist, and why each tag is here:

* ``#EXT-X-MAP`` before the first segment and again whenever the init segment changes (a
  camera that changed resolution uploads a new one), with ``#EXT-X-DISCONTINUITY`` at that
  point, since the RFC requires one when encoding parameters or tracks change;
* ``#EXT-X-DISCONTINUITY`` also where the caller says the timeline jumps (a gap between two
  events), so players do not try to bridge it;
* ``#EXTINF`` from each segment's real media duration (ms precision) and
  ``#EXT-X-TARGETDURATION`` as the ceiling of the longest one (the RFC: every rounded
  ``EXTINF`` must be ≤ the target);
* ``#EXT-X-PROGRAM-DATE-TIME`` per segment when its wall-clock start is known, so a player
  can seek by time of day;
* ``#EXT-X-INDEPENDENT-SEGMENTS``: every segment starts with a keyframe;
* ``VOD`` + ``#EXT-X-ENDLIST`` for a window in the past, ``EVENT`` without it while the
  window is still being recorded (players poll for more).

Pure text building; URIs are checked so a value can never inject a tag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from ivcloud.protocol.errors import ProtocolError

__all__ = ["HLS_VERSION", "HlsError", "HlsSegment", "PlaylistType", "media_playlist"]

#: EXT-X-MAP in a playlist that is not I-frames-only needs protocol version 6 or later.
HLS_VERSION: Final[int] = 7
PlaylistType = Literal["VOD", "EVENT"]
_MAX_DURATION_MS: Final[int] = 24 * 3600 * 1000


class HlsError(ProtocolError):
    """A segment that cannot be written into a playlist (bad URI or duration)."""


@dataclass(frozen=True, slots=True)
class HlsSegment:
    uri: str
    duration_ms: int
    map_uri: str
    discontinuity: bool = False  # the timeline jumps before this segment
    program_date_ms: int | None = None  # wall-clock start, ms since the epoch (UTC)


def _check_uri(uri: str, what: str) -> None:
    if not uri or uri.startswith("#") or uri != uri.strip():
        raise HlsError(f"{what} must be a non-empty URI not starting with #")
    if any(c in uri for c in '"\r\n') or not uri.isprintable():
        raise HlsError(f"{what} must not contain quotes, line breaks or control characters")


def _date(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def media_playlist(
    segments: Sequence[HlsSegment],
    *,
    playlist_type: PlaylistType = "VOD",
    ended: bool = True,
    media_sequence: int = 0,
) -> str:
    """The playlist text (LF line endings, trailing newline)."""
    if playlist_type not in ("VOD", "EVENT"):
        raise HlsError(f"unknown playlist type {playlist_type!r}")
    if playlist_type == "VOD" and not ended:
        raise HlsError("a VOD playlist is always ended")
    if media_sequence < 0:
        raise HlsError("media sequence must not be negative")
    for seg in segments:
        _check_uri(seg.uri, "segment URI")
        _check_uri(seg.map_uri, "map URI")
        if not 0 < seg.duration_ms <= _MAX_DURATION_MS:
            raise HlsError(f"segment duration {seg.duration_ms} ms out of range")
        if seg.program_date_ms is not None and not 0 <= seg.program_date_ms < 2**47:
            raise HlsError("program date out of range")
    target = max((math.ceil(s.duration_ms / 1000) for s in segments), default=1)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
        f"#EXT-X-PLAYLIST-TYPE:{playlist_type}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    current_map: str | None = None
    for index, seg in enumerate(segments):
        jump = index > 0 and (seg.discontinuity or seg.map_uri != current_map)
        if jump:
            lines.append("#EXT-X-DISCONTINUITY")
        if jump or current_map is None:
            lines.append(f'#EXT-X-MAP:URI="{seg.map_uri}"')
            current_map = seg.map_uri
        if seg.program_date_ms is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(seg.program_date_ms)}")
        lines.append(f"#EXTINF:{seg.duration_ms // 1000}.{seg.duration_ms % 1000:03d},")
        lines.append(seg.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"

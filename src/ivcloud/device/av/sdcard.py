"""A camera's local "SD card": recorded FLV segments on disk, queried by the XP2P playback
commands (spec device-protocol.md §7.5, §7.7).

Layout: one directory per card (per channel), one file per segment, the index *is* the
file names — there is no index file that a power cut could tear:

    rec_<start_ms>_<end_ms>_<type>.flv       a finished segment (times: wall clock, Unix ms)
    rec_<start_ms>_<type>.flv.part           the segment being recorded

Each segment is a complete FLV file (header, sequence headers, tags stamped from 0 at its
first keyframe), so it can be downloaded and played on its own. A segment becomes final by
an atomic rename after an fsync. At start-up a leftover ``.part`` (the camera lost power
mid-write) is recovered: its complete tags are kept, the torn tail is truncated and the file
renamed with the time of its last tag; a part without a keyframe is deleted.

Times: the card keeps milliseconds; replies are in seconds (start floored, end rounded up so
the span covers the recording). ``get_month_record`` days are device-local days: Tencent's
apps ask for ``yyyymm`` in the phone's local time, so the card takes ``utc_offset_s`` (e.g.
28800 for China; default 0 = UTC). Retention keeps the last ``retention_hours`` of recordings
(measured from the newest recorded time, not the wall clock, so a camera with a wrong clock
does not wipe its card) and, with ``capacity_bytes``, deletes the oldest segments while the
card is over capacity — like a camera's loop recording.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog

from ivcloud.protocol.av.flv import FILE_HEADER_SIZE, PREVIOUS_TAG_SIZE, TAG_HEADER_SIZE
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.protocol.xp2p_replies import FileInfo, RecordSpan

if TYPE_CHECKING:
    from ivcloud.device.av.playback import PlaybackSession
    from ivcloud.device.av.source import Clock, Sleep

__all__ = ["BadOffset", "NoSuchFile", "SdCard", "SdCardError", "Segment"]

log = structlog.get_logger("ivcloud.device.sdcard")

DAY_MS = 86_400_000
_FINAL = re.compile(r"rec_([0-9]{1,15})_([0-9]{1,15})_([0-9]{1,9})\.flv")
_PART = re.compile(r"rec_([0-9]{1,15})_([0-9]{1,9})\.flv\.part")
_HEAD = FILE_HEADER_SIZE + PREVIOUS_TAG_SIZE
READ_CHUNK = 256 * 1024


class SdCardError(Exception):
    """A card request that cannot be served (the XP2P edge answers 404)."""


class NoSuchFile(SdCardError):
    """``file_name`` is not a finished recording on this card."""


class BadOffset(SdCardError):
    """A download offset past the end of the file."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One recording file. ``complete`` is false for the one being written, whose
    ``end_ms``/``size`` grow with every flushed GOP."""

    start_ms: int
    end_ms: int
    type: int
    size: int
    path: Path
    complete: bool = True

    @property
    def name(self) -> str:
        return self.path.name


class SdCard:
    """The segments of one channel in ``root``; queries and retention. Not thread-safe:
    one event loop owns it (file reads run in worker threads, index updates do not)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        retention_hours: float = 24.0,
        capacity_bytes: int | None = None,
        utc_offset_s: int = 0,
        merge_gap_ms: int = 2000,
    ) -> None:
        if retention_hours <= 0:
            raise ValueError("retention_hours must be positive")
        if not -14 * 3600 <= utc_offset_s <= 14 * 3600:
            raise ValueError("utc_offset_s outside -14 h..+14 h")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.retention_ms = round(retention_hours * 3_600_000)
        self.capacity_bytes = capacity_bytes
        self.utc_offset_ms = utc_offset_s * 1000
        self.merge_gap_ms = merge_gap_ms
        self._segments: dict[int, Segment] = {}
        self.recovered: list[str] = []  # parts repaired at start-up (for logs and tests)
        self._scan()

    # -- index ------------------------------------------------------------------------------

    def _scan(self) -> None:
        for path in sorted(self.root.iterdir()):
            final = _FINAL.fullmatch(path.name)
            if final:
                start, end, kind = (int(g) for g in final.groups())
                if end >= start:
                    size = path.stat().st_size
                    self._segments[start] = Segment(start, end, kind, size, path)
                continue
            part = _PART.fullmatch(path.name)
            if part:
                self._recover(path, int(part.group(1)), int(part.group(2)))

    def _recover(self, path: Path, start_ms: int, kind: int) -> None:
        """Keep the complete tags of an interrupted segment, drop the torn tail."""
        data = path.read_bytes()
        good, last_ts, keyframe = _valid_prefix(data)
        if not keyframe:
            path.unlink()
            log.warning("sdcard_part_dropped", file=path.name, bytes=len(data))
            return
        with path.open("r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        final = self._final_path(start_ms, start_ms + last_ts, kind)
        path.rename(final)
        self._segments[start_ms] = Segment(start_ms, start_ms + last_ts, kind, good, final)
        self.recovered.append(final.name)
        log.warning("sdcard_part_recovered", file=final.name, kept=good, torn=len(data) - good)

    def _final_path(self, start_ms: int, end_ms: int, kind: int) -> Path:
        return self.root / f"rec_{start_ms}_{end_ms}_{kind}.flv"

    @property
    def segments(self) -> list[Segment]:
        """All segments, oldest first (the one being recorded included)."""
        return [self._segments[k] for k in sorted(self._segments)]

    def segment_at(self, start_ms: int) -> Segment | None:
        return self._segments.get(start_ms)

    def overlapping(
        self, start_ms: int | None, end_ms: int | None, kind: int | None = None
    ) -> list[Segment]:
        lo = -1 if start_ms is None else start_ms
        hi = 1 << 62 if end_ms is None else end_ms
        return [
            s
            for s in self.segments
            if s.end_ms >= lo and s.start_ms <= hi and (kind is None or s.type == kind)
        ]

    @property
    def used_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    # -- queries (the inner_define commands) -------------------------------------------------

    def record_index(
        self, start_s: int | None = None, end_s: int | None = None, kind: int | None = None
    ) -> list[RecordSpan]:
        """``get_record_index``: recordings overlapping the window, contiguous segments of
        one type (gap ≤ ``merge_gap_ms``) merged into one span."""
        found = self.overlapping(
            None if start_s is None else start_s * 1000,
            None if end_s is None else end_s * 1000 + 999,
            kind,
        )
        spans: list[list[int]] = []  # [type, start_ms, end_ms]
        for seg in found:
            last = spans[-1] if spans else None
            if last and last[0] == seg.type and seg.start_ms - last[2] <= self.merge_gap_ms:
                last[2] = max(last[2], seg.end_ms)
            else:
                spans.append([seg.type, seg.start_ms, seg.end_ms])
        return [RecordSpan(t, s // 1000, -(-e // 1000)) for t, s, e in spans]

    def month_days(self, year: int, month: int) -> list[int]:
        """``get_month_record``: the device-local days of the month with recordings."""
        first = (date(year, month, 1) - date(1970, 1, 1)).days
        nxt = date(year + month // 12, month % 12 + 1, 1)
        last = (nxt - date(1970, 1, 1)).days - 1
        off = self.utc_offset_ms
        days: set[int] = set()
        for seg in self.segments:
            lo = max((seg.start_ms + off) // DAY_MS, first)
            hi = min((seg.end_ms + off) // DAY_MS, last)
            days.update(d - first + 1 for d in range(lo, hi + 1))
        return sorted(days)

    def file_list(
        self, start_s: int | None = None, end_s: int | None = None, file_type: int = 0
    ) -> list[FileInfo]:
        """``get_file_list``: finished video files overlapping the window. The simulated
        camera stores no pictures, so ``file_type`` 1 lists nothing."""
        if file_type != 0:
            return []
        found = self.overlapping(
            None if start_s is None else start_s * 1000,
            None if end_s is None else end_s * 1000 + 999,
        )
        return [
            FileInfo(
                0,
                s.name,
                s.size,
                s.start_ms // 1000,
                -(-s.end_ms // 1000),
                {"record_type": s.type},
            )
            for s in found
            if s.complete
        ]

    # -- reading -----------------------------------------------------------------------------

    def open_file(self, file_name: str, offset: int = 0) -> AsyncIterator[bytes]:
        """``action=download``: the file's bytes from ``offset``. The name must be one the
        card listed (never joined into a path as given). The file is opened now, so a
        segment that retention deletes during the download is still read to its end."""
        seg = next((s for s in self._segments.values() if s.name == file_name), None)
        if seg is None or not seg.complete:
            raise NoSuchFile(f"no recording named {file_name!r}")
        try:
            f = seg.path.open("rb")
        except FileNotFoundError:
            raise NoSuchFile(f"no recording named {file_name!r}") from None
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            f.close()
            raise BadOffset(f"offset {offset} is past the end of {file_name} ({size} bytes)")
        f.seek(offset)
        return _read_chunks(f)

    def open_playback(
        self,
        start_ms: int,
        end_ms: int,
        *,
        kind: int | None = None,
        pace: bool = True,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> PlaybackSession:
        """FLV of the recordings in [start, end] (see :class:`PlaybackSession`)."""
        from ivcloud.device.av.playback import PlaybackSession

        return PlaybackSession(
            self, start_ms, end_ms, kind=kind, pace=pace, clock=clock, sleep=sleep
        )

    # -- the recorder's side (SdCardRecorder only) ---------------------------------------------

    def begin_segment(self, start_ms: int, kind: int) -> tuple[int, Path]:
        """Register a new ``.part`` segment; returns its (unique) start and path."""
        while start_ms in self._segments:  # a clock set back onto an existing segment
            start_ms += 1
        path = self.root / f"rec_{start_ms}_{kind}.flv.part"
        self._segments[start_ms] = Segment(start_ms, start_ms, kind, 0, path, complete=False)
        return start_ms, path

    def grow_segment(self, start_ms: int, end_ms: int, size: int) -> None:
        """The open segment now holds ``size`` flushed bytes up to ``end_ms``."""
        seg = self._segments.get(start_ms)
        if seg is not None:
            self._segments[start_ms] = replace(seg, end_ms=end_ms, size=size)

    def finish_segment(self, start_ms: int, end_ms: int, size: int) -> Segment | None:
        """Rename the closed (fsynced) part to its final name, then apply retention."""
        seg = self._segments.get(start_ms)
        if seg is None:
            return None
        final = self._final_path(start_ms, end_ms, seg.type)
        seg.path.rename(final)
        done = Segment(start_ms, end_ms, seg.type, size, final)
        self._segments[start_ms] = done
        self.enforce_retention()
        return done

    def enforce_retention(self) -> list[str]:
        """Delete finished segments older than the retention window (from the newest
        recorded time) and, over capacity, the oldest ones. Returns the deleted names."""
        if not self._segments:
            return []
        newest = max(s.end_ms for s in self._segments.values())
        deleted: list[str] = []
        used = self.used_bytes
        for seg in self.segments:
            too_old = newest - seg.end_ms > self.retention_ms
            too_full = self.capacity_bytes is not None and used > self.capacity_bytes
            if not seg.complete or not (too_old or too_full):
                continue
            seg.path.unlink(missing_ok=True)
            del self._segments[seg.start_ms]
            used -= seg.size
            deleted.append(seg.name)
        if deleted:
            log.info("sdcard_retention", deleted=len(deleted), used_bytes=used)
        return deleted


def _valid_prefix(data: bytes) -> tuple[int, int, bool]:
    """(bytes of complete, valid tags incl. the file header; last tag timestamp; whether a
    video keyframe is among them). Tags are fed one by one so the first bad or torn tag
    stops the scan without losing the good ones before it."""
    reader = FlvReader()
    try:
        reader.feed(data[:_HEAD])
    except MediaFormatError:
        return 0, 0, False
    if reader.header is None:
        return 0, 0, False
    pos, last_ts, keyframe = _HEAD, 0, False
    while pos + TAG_HEADER_SIZE <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        end = pos + TAG_HEADER_SIZE + size + PREVIOUS_TAG_SIZE
        if end > len(data):
            break
        try:
            tags = reader.feed(data[pos:end])
        except MediaFormatError:
            break
        if len(tags) != 1:
            break
        last_ts = max(last_ts, tags[0].timestamp)
        keyframe = keyframe or tags[0].is_video_keyframe
        pos = end
    return pos, last_ts, keyframe


async def _read_chunks(f: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(f.read, READ_CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        f.close()

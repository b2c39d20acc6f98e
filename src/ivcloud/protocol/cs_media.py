"""Vetting what devices upload to cloud storage: fMP4 init and media segments, JPEGs.

An uploaded segment is stored once and served to every later viewer, so it is checked on
the way in, not on the way out: the box tree must be sound to the last byte, every track
fragment must belong to a track of the init segment it names, sample data must lie inside
the segment, and the first video sample must be a keyframe (the playlist promises
independent segments). The media duration is computed from the sample tables — that is
what ``#EXTINF`` reports, rather than the device's word.

Only :class:`~ivcloud.protocol.errors.MediaFormatError` escapes, whatever the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.av.boxes import Box, find_boxes, iter_boxes
from ivcloud.protocol.errors import MediaFormatError

__all__ = [
    "InitInfo",
    "SegmentInfo",
    "TrackInfo",
    "vet_init_segment",
    "vet_jpeg",
    "vet_media_segment",
]

_SEGMENT_TOP: Final = frozenset((b"styp", b"sidx", b"prft", b"emsg", b"free", b"skip"))
_NON_SYNC: Final[int] = 0x00010000  # sample_is_non_sync_sample
# tfhd flags
_BASE_DATA_OFFSET: Final[int] = 0x01
_SAMPLE_DESCRIPTION: Final[int] = 0x02
_DEFAULT_DURATION: Final[int] = 0x08
_DEFAULT_SIZE: Final[int] = 0x10
_DEFAULT_FLAGS: Final[int] = 0x20
# trun flags
_DATA_OFFSET: Final[int] = 0x001
_FIRST_FLAGS: Final[int] = 0x004
_DURATION: Final[int] = 0x100
_SIZE: Final[int] = 0x200
_FLAGS: Final[int] = 0x400
_COMPOSITION: Final[int] = 0x800
_MAX_SAMPLES: Final[int] = 1_000_000


@dataclass(frozen=True, slots=True)
class TrackInfo:
    track_id: int
    handler: bytes  # b"vide", b"soun", …
    timescale: int
    default_duration: int = 0  # from trex
    default_size: int = 0
    default_flags: int = 0


@dataclass(frozen=True, slots=True)
class InitInfo:
    tracks: dict[int, TrackInfo] = field(default_factory=dict)

    @property
    def has_video(self) -> bool:
        return any(t.handler == b"vide" for t in self.tracks.values())


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    duration_ms: int  # of the video track if there is one, else the longest track
    fragments: int


def _u32(buf: memoryview, pos: int) -> int:
    if pos + 4 > len(buf):
        raise MediaFormatError("box too short")
    value: int = struct.unpack_from(">I", buf, pos)[0]
    return value


def vet_init_segment(data: BytesLike) -> InitInfo:
    """``ftyp`` + ``moov`` of a *fragmented* file (``mvex`` present) with at least one track."""
    top = list(iter_boxes(data))
    kinds = [b.type for b in top if b.type not in (b"free", b"skip")]
    if kinds[:2] != [b"ftyp", b"moov"] or kinds.count(b"moov") != 1:
        raise MediaFormatError("an init segment is ftyp followed by moov")
    if b"moof" in kinds or b"mdat" in kinds:
        raise MediaFormatError("an init segment carries no media")
    if not find_boxes(data, "moov/mvex"):
        raise MediaFormatError("moov has no mvex: not a fragmented MP4")
    tracks: dict[int, TrackInfo] = {}
    for trak in find_boxes(data, "moov/trak"):
        tkhd = [b for b in trak.children() if b.type == b"tkhd"]
        mdia = [b for b in trak.children() if b.type == b"mdia"]
        if len(tkhd) != 1 or len(mdia) != 1:
            raise MediaFormatError("trak needs one tkhd and one mdia")
        version, _ = tkhd[0].full_box_header
        track_id = _u32(tkhd[0].payload, 4 + (16 if version == 1 else 8))
        mdhd = [b for b in mdia[0].children() if b.type == b"mdhd"]
        hdlr = [b for b in mdia[0].children() if b.type == b"hdlr"]
        if len(mdhd) != 1 or len(hdlr) != 1:
            raise MediaFormatError("mdia needs one mdhd and one hdlr")
        mversion, _ = mdhd[0].full_box_header
        timescale = _u32(mdhd[0].payload, 4 + (16 if mversion == 1 else 8))
        if timescale == 0 or track_id == 0 or track_id in tracks:
            raise MediaFormatError("track with a zero timescale, a zero or duplicate id")
        handler = bytes(hdlr[0].payload[8:12])
        if len(handler) != 4:
            raise MediaFormatError("hdlr too short")
        tracks[track_id] = TrackInfo(track_id, handler, timescale)
    if not tracks:
        raise MediaFormatError("init segment without tracks")
    for trex in find_boxes(data, "moov/mvex/trex"):
        tid = _u32(trex.payload, 4)
        if tid not in tracks:
            raise MediaFormatError("trex for an unknown track")
        old = tracks[tid]
        tracks[tid] = TrackInfo(
            tid,
            old.handler,
            old.timescale,
            _u32(trex.payload, 12),
            _u32(trex.payload, 16),
            _u32(trex.payload, 20),
        )
    return InitInfo(tracks)


def vet_media_segment(data: BytesLike, init: InitInfo) -> SegmentInfo:
    """One or more ``moof`` + ``mdat`` pairs (``styp``/``sidx``/``prft``/``emsg`` allowed
    around them) whose fragments describe tracks of ``init``."""
    top = list(iter_boxes(data))
    ticks: dict[int, int] = {}
    fragments = 0
    first_video_checked = False
    index = 0
    while index < len(top):
        item = top[index]
        if item.type in _SEGMENT_TOP:
            index += 1
            continue
        if item.type != b"moof":
            raise MediaFormatError(f"unexpected {item.type!r} box in a media segment")
        if index + 1 >= len(top) or top[index + 1].type != b"mdat":
            raise MediaFormatError("moof must be followed by mdat")
        mdat = top[index + 1]
        fragment_end = mdat.offset + mdat.size - item.offset  # relative to the moof start
        children = list(item.children())
        if sum(1 for c in children if c.type == b"mfhd") != 1:
            raise MediaFormatError("moof needs one mfhd")
        trafs = [c for c in children if c.type == b"traf"]
        if not trafs:
            raise MediaFormatError("moof without a traf")
        for traf in trafs:
            tid, duration, first_sync = _vet_traf(traf, init, fragment_end)
            ticks[tid] = ticks.get(tid, 0) + duration
            track = init.tracks[tid]
            if track.handler == b"vide" and not first_video_checked:
                first_video_checked = True
                if first_sync is False:
                    raise MediaFormatError("a segment must start with a video keyframe")
        fragments += 1
        index += 2
    if fragments == 0:
        raise MediaFormatError("media segment without a moof + mdat")
    ms = {tid: t * 1000 // init.tracks[tid].timescale for tid, t in ticks.items()}
    video = [ms[t] for t in ms if init.tracks[t].handler == b"vide"]
    return SegmentInfo(max(video) if video else max(ms.values()), fragments)


def _vet_traf(traf: Box, init: InitInfo, fragment_end: int) -> tuple[int, int, bool | None]:
    """(track id, total duration in the track timescale, is the first sample sync)."""
    children = list(traf.children())
    tfhds = [c for c in children if c.type == b"tfhd"]
    if len(tfhds) != 1:
        raise MediaFormatError("traf needs one tfhd")
    _, flags = tfhds[0].full_box_header
    payload = tfhds[0].payload
    tid = _u32(payload, 4)
    track = init.tracks.get(tid)
    if track is None:
        raise MediaFormatError(f"fragment of track {tid}, which the init segment lacks")
    if flags & _BASE_DATA_OFFSET:
        raise MediaFormatError("explicit base data offsets are not supported")
    pos = 8 + (4 if flags & _SAMPLE_DESCRIPTION else 0)
    default_duration, default_size, default_flags = (
        track.default_duration,
        track.default_size,
        track.default_flags,
    )
    if flags & _DEFAULT_DURATION:
        default_duration, pos = _u32(payload, pos), pos + 4
    if flags & _DEFAULT_SIZE:
        default_size, pos = _u32(payload, pos), pos + 4
    if flags & _DEFAULT_FLAGS:
        default_flags = _u32(payload, pos)
    for tfdt in (c for c in children if c.type == b"tfdt"):
        version, _ = tfdt.full_box_header
        if len(tfdt.payload) != (12 if version == 1 else 8):
            raise MediaFormatError("tfdt has the wrong size")
    total = 0
    first_sync: bool | None = None
    for trun in (c for c in children if c.type == b"trun"):
        duration, sync = _vet_trun(
            trun, default_duration, default_size, default_flags, fragment_end
        )
        total += duration
        if first_sync is None:
            first_sync = sync
    return tid, total, first_sync


def _vet_trun(
    trun: Box, default_duration: int, default_size: int, default_flags: int, fragment_end: int
) -> tuple[int, bool | None]:
    _, flags = trun.full_box_header
    buf = trun.payload
    count = _u32(buf, 4)
    if count > _MAX_SAMPLES:
        raise MediaFormatError("too many samples in a trun")
    pos = 8
    data_offset = 0
    if flags & _DATA_OFFSET:
        data_offset = struct.unpack(">i", struct.pack(">I", _u32(buf, pos)))[0]
        pos += 4
    first_flags: int | None = None
    if flags & _FIRST_FLAGS:
        first_flags, pos = _u32(buf, pos), pos + 4
    entry = 4 * sum(1 for bit in (_DURATION, _SIZE, _FLAGS, _COMPOSITION) if flags & bit)
    if pos + entry * count != len(buf):
        raise MediaFormatError("trun sample table does not match its size")
    duration = size = 0
    sync: bool | None = None
    for i in range(count):
        duration += _u32(buf, pos) if flags & _DURATION else default_duration
        pos += 4 if flags & _DURATION else 0
        size += _u32(buf, pos) if flags & _SIZE else default_size
        pos += 4 if flags & _SIZE else 0
        sample_flags = _u32(buf, pos) if flags & _FLAGS else default_flags
        pos += 4 if flags & _FLAGS else 0
        pos += 4 if flags & _COMPOSITION else 0
        if i == 0:
            if first_flags is not None:
                sample_flags = first_flags
            sync = not sample_flags & _NON_SYNC
    if count and (data_offset < 0 or data_offset + size > fragment_end):
        raise MediaFormatError("trun sample data lies outside the fragment")
    return duration, sync


def vet_jpeg(data: BytesLike, max_bytes: int) -> None:
    """A baseline check that ``data`` is one JPEG image: SOI at the start, EOI at the end."""
    view = memoryview(data)
    if len(view) > max_bytes:
        raise MediaFormatError(f"JPEG larger than {max_bytes} bytes")
    if len(view) < 4 or bytes(view[:3]) != b"\xff\xd8\xff" or bytes(view[-2:]) != b"\xff\xd9":
        raise MediaFormatError("not a JPEG image (must start with FFD8 and end with FFD9)")

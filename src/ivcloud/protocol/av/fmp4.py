"""Fragmented MP4 for browser MSE: the init segment and media segments (moof + mdat).

The layout follows what Chromium's MSE parser and ffmpeg's ``mov`` demuxer accept: empty
sample tables in ``moov`` (all samples live in fragments), ``mvex/trex`` per track, and
fragments whose ``tfhd`` says default-base-is-moof with a 64-bit ``tfdt``, so each fragment
is placed on the timeline by itself and a viewer may start at any fragment whose first video
sample is a keyframe.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ivcloud.protocol.av.aac import parse_asc
from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.av.boxes import box, full_box
from ivcloud.protocol.av.h264 import parse_avc_decoder_config, parse_sps
from ivcloud.protocol.errors import MediaFormatError

VIDEO_TIMESCALE = 90000
MOVIE_TIMESCALE = 1000

SAMPLE_SYNC = 0x02000000  # sample_depends_on = 2 (depends on no other sample)
SAMPLE_NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample = 1

_MATRIX = struct.pack(">9i", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_COMPOSITION = 0x000800
_U16_MAX = 0xFFFF


@dataclass(frozen=True, slots=True)
class VideoTrack:
    avc_config: bytes  # avcC record
    width: int
    height: int
    codec_string: str
    track_id: int = 1

    @classmethod
    def from_avc_config(cls, avc_config: BytesLike, track_id: int = 1) -> VideoTrack:
        """Dimensions and codec string from the record's first SPS."""
        config = parse_avc_decoder_config(avc_config)
        if not config.sps:
            raise MediaFormatError("avcC without an SPS")
        sps = parse_sps(config.sps[0])
        if sps.width > _U16_MAX or sps.height > _U16_MAX:
            raise MediaFormatError("picture too large for an MP4 sample entry")
        return cls(bytes(avc_config), sps.width, sps.height, config.codec_string, track_id)


@dataclass(frozen=True, slots=True)
class AudioTrack:
    asc: bytes  # AudioSpecificConfig
    sample_rate: int  # also the track timescale
    channels: int
    codec_string: str
    track_id: int = 2

    @classmethod
    def from_asc(cls, asc: BytesLike, track_id: int = 2) -> AudioTrack:
        config = parse_asc(asc)
        channels = {0: 2, 7: 8}.get(config.channel_config, config.channel_config)
        return cls(bytes(asc), config.sample_rate, min(channels, 8), config.codec_string, track_id)


@dataclass(frozen=True, slots=True)
class Sample:
    data: BytesLike
    duration: int  # in the track timescale
    sync: bool = True
    composition_offset: int = 0  # pts - dts in the track timescale


@dataclass(frozen=True, slots=True)
class TrackRun:
    """The samples of one track in one fragment, starting at ``base_decode_time``."""

    track_id: int
    base_decode_time: int
    samples: Sequence[Sample]
    composition_offsets: bool  # write per-sample offsets (video) or not (audio)


# ------------------------------------------------------------------------ init segment


def init_segment(video: VideoTrack | None, audio: AudioTrack | None) -> bytes:
    """ftyp + moov for the given tracks (at least one)."""
    if video is None and audio is None:
        raise MediaFormatError("an init segment needs at least one track")
    traks: list[bytes] = []
    trexs: list[bytes] = []
    ids: list[int] = []
    if video is not None:
        traks.append(_video_trak(video))
        ids.append(video.track_id)
    if audio is not None:
        traks.append(_audio_trak(audio))
        ids.append(audio.track_id)
    trexs = [full_box(b"trex", 0, 0, struct.pack(">5I", tid, 1, 0, 0, 0)) for tid in ids]
    moov = box(b"moov", _mvhd(max(ids) + 1), *traks, box(b"mvex", *trexs))
    return _ftyp() + moov


def _ftyp() -> bytes:
    return box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5", b"iso6", b"mp41")


def _mvhd(next_track_id: int) -> bytes:
    fields = struct.pack(">4IiH10x", 0, 0, MOVIE_TIMESCALE, 0, 0x00010000, 0x0100)
    return full_box(b"mvhd", 0, 0, fields, _MATRIX, bytes(24), struct.pack(">I", next_track_id))


def _tkhd(track_id: int, volume: int, width: int, height: int) -> bytes:
    head = struct.pack(">5I8xhhhH", 0, 0, track_id, 0, 0, 0, 0, volume, 0)
    size = struct.pack(">II", width << 16, height << 16)
    return full_box(b"tkhd", 0, 0x000003, head, _MATRIX, size)  # enabled | in movie


def _mdhd(timescale: int) -> bytes:
    return full_box(b"mdhd", 0, 0, struct.pack(">4IHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))


def _hdlr(handler: bytes, name: bytes) -> bytes:
    return full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\x00")


def _dinf() -> bytes:
    url = full_box(b"url ", 0, 0x000001)  # media data is in this file
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), url))


def _stbl(sample_entry: bytes) -> bytes:
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )


def _trak(tkhd: bytes, timescale: int, hdlr: bytes, media_header: bytes, entry: bytes) -> bytes:
    minf = box(b"minf", media_header, _dinf(), _stbl(entry))
    return box(b"trak", tkhd, box(b"mdia", _mdhd(timescale), hdlr, minf))


def _video_trak(video: VideoTrack) -> bytes:
    entry = box(
        b"avc1",
        struct.pack(">6xH16xHHIIIH", 1, video.width, video.height, 0x00480000, 0x00480000, 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),
        box(b"avcC", video.avc_config),
    )
    return _trak(
        _tkhd(video.track_id, 0, video.width, video.height),
        VIDEO_TIMESCALE,
        _hdlr(b"vide", b"VideoHandler"),
        full_box(b"vmhd", 0, 0x000001, bytes(8)),
        entry,
    )


def _audio_trak(audio: AudioTrack) -> bytes:
    rate_field = audio.sample_rate << 16 if audio.sample_rate <= _U16_MAX else 0
    entry = box(
        b"mp4a",
        struct.pack(">6xH8xHHHHI", 1, audio.channels, 16, 0, 0, rate_field),
        _esds(audio),
    )
    return _trak(
        _tkhd(audio.track_id, 0x0100, 0, 0),
        audio.sample_rate,
        _hdlr(b"soun", b"SoundHandler"),
        full_box(b"smhd", 0, 0, bytes(4)),
        entry,
    )


def _esds(audio: AudioTrack) -> bytes:
    """ES_Descriptor → DecoderConfigDescriptor (MPEG-4 audio, 0x40) → DecoderSpecificInfo
    holding the ASC, then the mandatory SLConfigDescriptor (predefined 2)."""
    decoder_config = _descriptor(
        0x04,
        struct.pack(">BB3sII", 0x40, 0x15, bytes(3), 0, 0),
        _descriptor(0x05, audio.asc),
    )
    es = _descriptor(
        0x03, struct.pack(">HB", audio.track_id, 0), decoder_config, _descriptor(0x06, b"\x02")
    )
    return full_box(b"esds", 0, 0, es)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = len(body)
    length = bytearray((size & 0x7F,))
    size >>= 7
    while size:
        length.insert(0, 0x80 | (size & 0x7F))
        size >>= 7
    return bytes((tag,)) + bytes(length) + body


# ------------------------------------------------------------------------ media segments


def media_segment(sequence_number: int, runs: Sequence[TrackRun]) -> bytes:
    """moof + mdat for one fragment; each run's data follows the previous one's in mdat.

    Sizes are computed up front (they do not depend on the data offsets), so the moof is
    built once with the right offsets instead of being patched.
    """
    if not runs or any(not run.samples for run in runs):
        raise MediaFormatError("a fragment needs at least one sample per track run")
    moof_size = 8 + 16 + sum(_traf_size(run) for run in runs)
    offset = moof_size + 8
    trafs: list[bytes] = []
    payload: list[BytesLike] = []
    for run in runs:
        trafs.append(_traf(run, offset))
        for sample in run.samples:
            payload.append(sample.data)
            offset += len(sample.data)
    mdat_size = offset - moof_size
    if mdat_size > 0xFFFFFFFF:
        raise MediaFormatError("fragment too large for a 32-bit mdat")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number & 0xFFFFFFFF))
    moof = box(b"moof", mfhd, *trafs)
    return moof + struct.pack(">I4s", mdat_size, b"mdat") + b"".join(payload)


def _sample_entry_size(run: TrackRun) -> int:
    return 16 if run.composition_offsets else 12


def _traf_size(run: TrackRun) -> int:
    trun = 20 + len(run.samples) * _sample_entry_size(run)
    return 8 + 16 + 20 + trun


def _traf(run: TrackRun, data_offset: int) -> bytes:
    tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", run.track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", run.base_decode_time))
    return box(b"traf", tfhd, tfdt, _trun(run, data_offset))


def _trun(run: TrackRun, data_offset: int) -> bytes:
    flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | _TRUN_FLAGS
    entries = bytearray()
    version = 0
    if run.composition_offsets:
        flags |= _TRUN_COMPOSITION
        # Version 1 (signed offsets) only when needed: version 0 is what every reader knows.
        version = 1 if any(s.composition_offset < 0 for s in run.samples) else 0
        entry = struct.Struct(">IIIi" if version else ">IIII")
        for s in run.samples:
            sample_flags = SAMPLE_SYNC if s.sync else SAMPLE_NON_SYNC
            entries += entry.pack(s.duration, len(s.data), sample_flags, s.composition_offset)
    else:
        for s in run.samples:
            sample_flags = SAMPLE_SYNC if s.sync else SAMPLE_NON_SYNC
            entries += struct.pack(">III", s.duration, len(s.data), sample_flags)
    head = struct.pack(">Ii", len(run.samples), data_offset)
    return full_box(b"trun", version, flags, head, entries)

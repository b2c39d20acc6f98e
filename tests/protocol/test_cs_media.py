"""Vetting uploads: real fMP4 from the muxer passes with its true duration; truncated,
re-ordered, foreign-track or keyframe-less segments and non-JPEGs are refused; arbitrary
bytes never raise anything but MediaFormatError."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.protocol.av import VideoTrack, media_segment
from ivcloud.protocol.av.fmp4 import Sample, TrackRun
from ivcloud.protocol.cs_media import vet_init_segment, vet_jpeg, vet_media_segment
from ivcloud.protocol.errors import MediaFormatError
from tests.cloud_storage_support import Clip, make_clip

CLIP: Clip = make_clip(1_700_000_000_000, 3)
INIT = vet_init_segment(CLIP.init)


def test_muxer_output_passes_with_its_real_duration() -> None:
    assert sorted(INIT.tracks) == [1, 2]
    assert INIT.tracks[1].handler == b"vide" and INIT.tracks[1].timescale == 90000
    assert INIT.tracks[2].handler == b"soun" and INIT.tracks[2].timescale == 16000
    assert INIT.has_video
    for segment in CLIP.segments:
        info = vet_media_segment(segment.data, INIT)
        assert info.duration_ms == segment.end_ms - segment.start_ms == 1000
        assert info.fragments == 1


def test_several_fragments_in_one_segment_add_up() -> None:
    both = CLIP.segments[0].data + CLIP.segments[1].data
    info = vet_media_segment(both, INIT)
    assert (info.duration_ms, info.fragments) == (2000, 2)
    styp = struct.pack(">I4s4sI4s", 20, b"styp", b"msdh", 0, b"msdh")
    assert vet_media_segment(styp + both, INIT).fragments == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:-1], "does not fit"),
        (lambda d: d[: len(d) // 2], "does not fit"),
        (lambda d: b"", "without a moof"),
        (lambda d: _mdat_only(d), "unexpected"),
        (lambda d: _moof_only(d), "followed by mdat"),
        (lambda d: d + _moof_only(d), "followed by mdat"),
        (lambda d: _retrack(d, 7), "lacks"),
        (lambda d: _shrink_mdat(d), "outside the fragment"),
    ],
)
def test_broken_segments_are_refused(mutate: object, message: str) -> None:
    data = mutate(CLIP.segments[0].data)  # type: ignore[operator]
    with pytest.raises(MediaFormatError, match=message):
        vet_media_segment(data, INIT)


def test_segment_must_start_with_a_keyframe() -> None:
    video = VideoTrack.from_avc_config(_avcc(CLIP.init))
    run = TrackRun(video.track_id, 0, [Sample(b"\x00\x00\x00\x01\x41", 3000, sync=False)], True)
    with pytest.raises(MediaFormatError, match="keyframe"):
        vet_media_segment(media_segment(1, [run]), INIT)
    run = TrackRun(video.track_id, 0, [Sample(b"\x00\x00\x00\x01\x65", 3000, sync=True)], True)
    assert vet_media_segment(media_segment(1, [run]), INIT).duration_ms == 33


def test_init_segment_checks() -> None:
    with pytest.raises(MediaFormatError, match="ftyp followed by moov"):
        vet_init_segment(CLIP.segments[0].data)
    with pytest.raises(MediaFormatError, match="carries no media"):
        vet_init_segment(CLIP.init + CLIP.segments[0].data)
    with pytest.raises(MediaFormatError):
        vet_init_segment(CLIP.init[:-3])
    moov_without_mvex = CLIP.init.replace(b"mvex", b"free")
    with pytest.raises(MediaFormatError, match="mvex"):
        vet_init_segment(moov_without_mvex)


def test_jpeg_checks() -> None:
    jpeg = CLIP.jpeg()
    vet_jpeg(jpeg, 1 << 20)
    for bad in (b"", b"\xff\xd8", jpeg[:-2], b"\x89PNG" + jpeg[4:], jpeg + b"\x00"):
        with pytest.raises(MediaFormatError, match="not a JPEG"):
            vet_jpeg(bad, 1 << 20)
    with pytest.raises(MediaFormatError, match="larger than"):
        vet_jpeg(jpeg, len(jpeg) - 1)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_media_format_error(data: bytes) -> None:
    with contextlib.suppress(MediaFormatError):
        assert vet_media_segment(data, INIT).fragments >= 1
    with contextlib.suppress(MediaFormatError):
        assert vet_init_segment(data).tracks


@settings(max_examples=300)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_single_byte_corruption_is_caught_or_harmless(position: int, value: int) -> None:
    """Flip any byte of a real segment: either it still vets (payload bytes) with the
    same shape, or it is refused — never a crash, never a wild duration."""
    data = bytearray(CLIP.segments[0].data)
    data[position % len(data)] = value
    try:
        info = vet_media_segment(bytes(data), INIT)
    except MediaFormatError:
        return
    assert info.fragments >= 1 and info.duration_ms >= 0


# -- helpers that build the broken variants from a good segment -----------------------------


def _split(data: bytes) -> tuple[bytes, bytes]:
    moof_size = struct.unpack(">I", data[:4])[0]
    return data[:moof_size], data[moof_size:]


def _mdat_only(data: bytes) -> bytes:
    return _split(data)[1]


def _moof_only(data: bytes) -> bytes:
    return _split(data)[0]


def _retrack(data: bytes, track_id: int) -> bytes:
    at = data.index(b"tfhd") + 8
    return data[:at] + struct.pack(">I", track_id) + data[at + 4 :]


def _shrink_mdat(data: bytes) -> bytes:
    moof, mdat = _split(data)
    return moof + struct.pack(">I4s", 8 + 10, b"mdat") + mdat[8:18]


def _avcc(init: bytes) -> bytes:
    at = init.index(b"avcC")
    size = struct.unpack(">I", init[at - 4 : at])[0]
    return init[at + 4 : at - 4 + size]

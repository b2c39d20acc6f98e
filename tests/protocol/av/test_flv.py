"""FLV: our muxer's output decoded by PyAV, our reader over PyAV's and our own FLV, in any
chunking, and property tests for the reader."""

from __future__ import annotations

import functools
import io
import struct
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivcloud.protocol.av.aac import add_adts, parse_asc
from ivcloud.protocol.av.flv import (
    AAC_RAW,
    AVC_END_OF_SEQUENCE,
    AVC_NALU,
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    FlvMuxer,
    aac_raw_body,
    aac_sequence_header_body,
    avc_end_of_sequence_body,
    avc_nalu_body,
    avc_sequence_header_body,
    encode_tag,
    flv_header,
    rewrite_timestamp,
)
from ivcloud.protocol.av.flv_reader import FlvHeader, FlvReader, FlvTag, FlvTagTooLarge
from ivcloud.protocol.av.h264 import parse_avc_decoder_config, parse_sps, split_avcc
from ivcloud.protocol.errors import MediaFormatError
from tests.protocol.av import (
    EncodedAudio,
    EncodedVideo,
    _picture,
    encode_aac,
    encode_h264,
    interleaved,
    open_container,
)


def mux(
    video: tuple[EncodedVideo, ...],
    audio: EncodedAudio | None,
    *,
    shift_ms: int = 0,
    adts: bool = False,
) -> bytes:
    config = None if audio is None or adts else audio.asc
    muxer = FlvMuxer(has_audio=audio is not None, audio_config=config)
    out = [muxer.header()]
    for ts, item in interleaved(video, audio, shift_ms):
        if isinstance(item, EncodedVideo):
            out.append(muxer.add_video(item.annexb, item.pts_ms + shift_ms, ts))
        else:
            assert audio is not None
            out.append(muxer.add_audio(add_adts(item, audio.asc) if adts else item, ts))
    return b"".join(out)


def decode_all(data: bytes) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
    video: list[av.VideoFrame] = []
    audio: list[av.AudioFrame] = []
    with open_container(data, "flv") as container:
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    video.append(frame)
                elif isinstance(frame, av.AudioFrame):
                    audio.append(frame)
    return video, audio


def read_all(
    data: bytes, chunks: list[int] | None = None, *, expect_header: bool = True
) -> list[FlvTag]:
    reader = FlvReader(expect_header=expect_header)
    if chunks is None:
        return reader.feed(data)
    tags: list[FlvTag] = []
    pos = 0
    for size in chunks:
        tags += reader.feed(data[pos : pos + size])
        pos += size
    tags += reader.feed(data[pos:])
    assert reader.buffered == 0
    return tags


# ------------------------------------------------------------------------ muxer → PyAV


def test_muxer_output_decodes_in_pyav() -> None:
    video, audio = encode_h264(), encode_aac()
    decoded_video, decoded_audio = decode_all(mux(video, audio))
    assert len(decoded_video) == len(video) == 36
    assert {(f.width, f.height) for f in decoded_video} == {(320, 240)}
    assert [f.pts for f in decoded_video] == [f.pts_ms for f in video]
    assert len(decoded_audio) == len(audio.frames) == 50
    assert [f.pts for f in decoded_audio] == [i * 1024 * 1000 // 44100 for i in range(50)]
    assert {(f.sample_rate, f.samples) for f in decoded_audio} == {(44100, 1024)}


def test_muxer_tags_and_sequence_headers() -> None:
    video, audio = encode_h264(), encode_aac()
    data = mux(video, audio)
    tags = read_all(data)
    from_adts = read_all(mux(video, audio, adts=True))  # ADTS in: same frames, minimal ASC
    assert [t for t in tags if not t.is_audio_sequence_header] == [
        t for t in from_adts if not t.is_audio_sequence_header
    ]
    configs = [parse_asc(t.payload) for t in tags + from_adts if t.is_audio_sequence_header]
    assert len(configs) == 2 and configs[0] == configs[1]
    video_tags = [t for t in tags if t.tag_type == TAG_VIDEO]
    audio_tags = [t for t in tags if t.tag_type == TAG_AUDIO]
    assert video_tags[0].is_video_sequence_header and audio_tags[0].is_audio_sequence_header
    assert sum(t.is_video_sequence_header for t in tags) == 1  # SPS/PPS repeat unchanged
    assert sum(t.is_audio_sequence_header for t in tags) == 1
    assert [t.is_video_keyframe for t in video_tags[1:]] == [f.keyframe for f in video]
    config = parse_avc_decoder_config(video_tags[0].payload)
    assert (parse_sps(config.sps[0]).width, config.length_size) == (320, 4)
    assert bytes(audio_tags[0].payload) == audio.asc
    assert [bytes(t.payload) for t in audio_tags[1:]] == list(audio.frames)
    assert all(t.packet_type == AAC_RAW and t.data[11] == 0xAF for t in audio_tags[1:])
    for tag in video_tags[1:]:  # SPS/PPS/AUD are not repeated in frames
        assert all(nal[0] & 0x1F not in (7, 8, 9) for nal in split_avcc(tag.payload))


def test_muxer_composition_time_with_b_frames() -> None:
    video = encode_h264(320, 240, 24, profile="main", bframes=2, preset="veryfast")
    assert any(f.pts_ms != f.dts_ms for f in video)
    shift = -min(f.dts_ms for f in video)
    data = mux(video, None, shift_ms=shift)
    tags = [t for t in read_all(data) if t.packet_type == AVC_NALU]
    assert [t.composition_time for t in tags] == [f.pts_ms - f.dts_ms for f in video]
    decoded, _ = decode_all(data)
    assert [f.pts for f in decoded] == sorted(f.pts_ms + shift for f in video)


def test_muxer_reemits_sequence_header_when_sps_changes() -> None:
    first, second = encode_h264(320, 240, 12), encode_h264(176, 144, 12)
    moved = tuple(
        EncodedVideo(f.annexb, f.pts_ms + 480, f.dts_ms + 480, f.keyframe) for f in second
    )
    data = mux(first + moved, None)
    assert sum(t.is_video_sequence_header for t in read_all(data)) == 2
    decoded, _ = decode_all(data)
    sizes = [(f.width, f.height) for f in decoded]
    assert sizes == [(320, 240)] * 12 + [(176, 144)] * 12


def test_muxer_drops_frames_before_parameter_sets_and_ends_sequence() -> None:
    video = encode_h264()
    muxer = FlvMuxer(has_audio=False)
    assert muxer.add_video(video[1].annexb, 40) == b""  # a P-frame, no SPS/PPS yet
    assert muxer.add_video(video[0].annexb, 80) != b""
    tag = read_all(muxer.end_of_sequence(120), expect_header=False)[0]
    assert (tag.packet_type, tag.timestamp, tag.is_video_keyframe) == (
        AVC_END_OF_SEQUENCE,
        120,
        False,
    )
    with pytest.raises(MediaFormatError):
        FlvMuxer(audio_config=b"\x00")


def test_encoding_refusals() -> None:
    with pytest.raises(MediaFormatError):
        encode_tag(TAG_VIDEO, -1, b"")
    with pytest.raises(MediaFormatError):
        encode_tag(TAG_VIDEO, 0, bytes(1 << 24))
    with pytest.raises(MediaFormatError):
        avc_nalu_body(b"", keyframe=False, composition_time_ms=1 << 23)
    with pytest.raises(MediaFormatError):
        rewrite_timestamp(b"\x09\x00", 5)


def test_extended_timestamp_and_negative_composition_time() -> None:
    ts = (1 << 24) + 12345  # needs the extension byte
    body = avc_nalu_body(b"\x00\x00\x00\x01\x41", keyframe=False, composition_time_ms=-40)
    tag = read_all(encode_tag(TAG_VIDEO, ts, body), expect_header=False)[0]
    assert (tag.timestamp, tag.composition_time) == (ts, -40)
    assert encode_tag(TAG_VIDEO, ts + (1 << 32), body) == tag.data  # 32-bit wrap


def test_rewrite_timestamp_concatenates_recordings() -> None:
    """Two copies of a recording glued with rewritten timestamps play as one stream."""
    video = encode_h264()
    tags = read_all(mux(video, None))
    second = [rewrite_timestamp(t.data, t.timestamp + 36 * 40) for t in tags]
    data = flv_header(has_audio=False, has_video=True) + b"".join(t.data for t in tags)
    data += b"".join(second)
    reread = read_all(b"".join(second), expect_header=False)
    assert [t.timestamp for t in reread] == [t.timestamp + 1440 for t in tags]
    decoded, _ = decode_all(data)
    assert [f.pts for f in decoded] == [i * 40 for i in range(72)]


# ------------------------------------------------------------------------ reader over ffmpeg's FLV


@functools.cache
def ffmpeg_flv() -> tuple[bytes, tuple[tuple[str, int, bool], ...]]:
    """FLV written by ffmpeg's own muxer, and the (kind, dts ms, keyframe) it was given."""
    buf = io.BytesIO()
    muxed: list[tuple[str, int, bool]] = []
    with av.open(buf, "w", format="flv") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        vs.codec_context.gop_size = 10
        vs.codec_context.options = {"profile": "baseline", "tune": "zerolatency"}
        aud = out.add_stream("aac", rate=44100, layout="stereo")

        def put(packets: list[av.Packet[Any]]) -> None:
            for p in packets:
                if p.dts is not None:
                    ms = int(p.dts * p.time_base * 1000)
                    muxed.append((p.stream.type, ms, bool(p.is_keyframe)))
                out.mux(p)

        for i in range(30):
            frame = av.VideoFrame.from_ndarray(_picture(320, 240, i), format="rgb24")
            frame.pts = i
            put(vs.encode(frame))
            for j in range(i * 43 // 25, (i + 1) * 43 // 25):
                pcm = av.AudioFrame.from_ndarray(
                    np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
                )
                pcm.sample_rate, pcm.pts = 44100, j * 1024
                put(aud.encode(pcm))
        put(vs.encode(None))
        put(aud.encode(None))
    return buf.getvalue(), tuple(muxed)


def test_reader_over_ffmpeg_flv() -> None:
    data, muxed = ffmpeg_flv()
    reader = FlvReader()
    tags = reader.feed(data)
    assert reader.header == FlvHeader(has_audio=True, has_video=True)
    assert tags[0].tag_type == TAG_SCRIPT and b"onMetaData" in bytes(tags[0].payload)
    frames = [t for t in tags if t.tag_type == TAG_VIDEO and t.packet_type == AVC_NALU]
    sent = [m for m in muxed if m[0] == "video"]
    shift = frames[0].timestamp  # ffmpeg shifts everything by the AAC priming (23 ms)
    assert shift == 23
    assert [(t.timestamp - shift, t.is_video_keyframe) for t in frames] == [
        (m[1], m[2]) for m in sent
    ]
    assert sum(t.is_video_keyframe for t in frames) == 3
    assert sum(t.is_video_sequence_header for t in tags) == 1
    assert sum(t.is_audio_sequence_header for t in tags) == 1
    assert tags[-1].packet_type == AVC_END_OF_SEQUENCE  # ffmpeg closes AVC streams with it
    audio = [t for t in tags if t.tag_type == TAG_AUDIO and t.packet_type == AAC_RAW]
    assert len(audio) == sum(1 for m in muxed if m[0] == "audio")
    header_size = 13
    assert b"".join(t.data for t in tags) == data[header_size:]  # wire bytes, unchanged
    seq = next(t for t in tags if t.is_video_sequence_header)
    assert parse_sps(parse_avc_decoder_config(seq.payload).sps[0]).width == 320


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 3000), max_size=40))
def test_reader_chunking_does_not_change_ffmpeg_tags(chunks: list[int]) -> None:
    data, _ = ffmpeg_flv()
    assert read_all(data, chunks) == read_all(data)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 2000), max_size=40))
def test_reader_chunking_does_not_change_own_tags(chunks: list[int]) -> None:
    data = mux(encode_h264(), encode_aac())
    assert read_all(data, chunks) == read_all(data)


def test_reader_one_byte_at_a_time() -> None:
    data = mux(encode_h264(), encode_aac())
    assert read_all(data, [1] * len(data)) == read_all(data)


# ------------------------------------------------------------------------ reader refusals


def test_oversized_tag_refused_before_its_body_is_buffered() -> None:
    reader = FlvReader(max_tag_size=1 << 20)
    reader.feed(flv_header(has_audio=False, has_video=True))
    announced = struct.pack(">I", (TAG_VIDEO << 24) | ((1 << 24) - 1)) + bytes(7)
    with pytest.raises(FlvTagTooLarge):
        reader.feed(announced)
    assert reader.buffered == 0
    with pytest.raises(MediaFormatError):
        reader.feed(b"")  # stays failed


def test_tag_at_the_limit_is_accepted() -> None:
    tag = encode_tag(TAG_SCRIPT, 0, bytes(100))
    assert len(FlvReader(max_tag_size=len(tag), expect_header=False).feed(tag)) == 1
    with pytest.raises(FlvTagTooLarge):
        FlvReader(max_tag_size=len(tag) - 1, expect_header=False).feed(tag)
    with pytest.raises(ValueError, match="empty tag"):
        FlvReader(max_tag_size=10)


def seq_body() -> bytes:
    return aac_sequence_header_body(b"\x12\x10")


@pytest.mark.parametrize(
    "stream",
    [
        b"FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00",  # signature
        b"FLV\x02\x05\x00\x00\x00\x09\x00\x00\x00\x00",  # version
        b"FLV\x01\x05\x00\x00\x00\x05\x00\x00\x00\x00",  # data offset below 9
        b"FLV\x01\x05\x00\x01\x00\x00",  # data offset absurd
        b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x07",  # PreviousTagSize0
        flv_header(has_audio=True, has_video=True) + encode_tag(7, 0, b"x"),  # tag type
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_AUDIO | 0x20, 0, b"x"),
        flv_header(has_audio=True, has_video=True)
        + encode_tag(TAG_AUDIO, 0, seq_body())[:-1]
        + b"\x00",  # PreviousTagSize
        flv_header(has_audio=True, has_video=True)
        + encode_tag(TAG_AUDIO, 0, seq_body())[:10]
        + b"\x01"
        + encode_tag(TAG_AUDIO, 0, seq_body())[11:],  # stream id
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_AUDIO, 0, b""),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_AUDIO, 0, b"\xaf"),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_AUDIO, 0, b"\xaf\x02"),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_VIDEO, 0, b""),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_VIDEO, 0, b"\x07\x01"),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_VIDEO, 0, b"\x97\x01"),
        flv_header(has_audio=True, has_video=True) + encode_tag(TAG_VIDEO, 0, b"\x17\x01\x00"),
        flv_header(has_audio=True, has_video=True)
        + encode_tag(TAG_VIDEO, 0, b"\x17\x03\x00\x00\x00"),
    ],
)
def test_reader_refusals(stream: bytes) -> None:
    with pytest.raises(MediaFormatError):
        FlvReader().feed(stream)


def test_reader_passes_other_codecs_through() -> None:
    stream = flv_header(has_audio=True, has_video=True)
    stream += encode_tag(TAG_VIDEO, 5, b"\x22payload")  # H.263 inter frame
    stream += encode_tag(TAG_VIDEO, 6, b"\x57\x00")  # AVC info/command frame
    stream += encode_tag(TAG_AUDIO, 7, b"\x2fmp3")  # MP3
    h263, info, mp3 = FlvReader().feed(stream)
    assert (h263.codec_id, h263.frame_type, bytes(h263.payload)) == (2, 2, b"payload")
    assert (info.codec_id, info.packet_type, info.is_video_keyframe) == (7, -1, False)
    assert (mp3.codec_id, mp3.packet_type, bytes(mp3.payload)) == (2, -1, b"mp3")


# ------------------------------------------------------------------------ property tests

tag_bodies = st.one_of(
    st.builds(
        lambda key, cts, data: avc_nalu_body(data, keyframe=key, composition_time_ms=cts),
        st.booleans(),
        st.integers(-(1 << 23), (1 << 23) - 1),
        st.binary(max_size=20),
    ),
    st.binary(max_size=20).map(avc_sequence_header_body),
    st.just(avc_end_of_sequence_body()),
    st.binary(max_size=20).map(aac_raw_body),
    st.binary(max_size=5).map(aac_sequence_header_body),
    st.binary(max_size=20),
)
tags = st.tuples(
    st.sampled_from([TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT]), st.integers(0, 2**32 - 1), tag_bodies
)


@st.composite
def flv_streams(draw: st.DrawFn) -> bytes:
    data = flv_header(has_audio=draw(st.booleans()), has_video=draw(st.booleans()))
    data += b"".join(encode_tag(*t) for t in draw(st.lists(tags, max_size=8)))
    if draw(st.booleans()) and data:  # corrupt one byte
        index = draw(st.integers(0, len(data) - 1))
        data = data[:index] + bytes((draw(st.integers(0, 255)),)) + data[index + 1 :]
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


def read_until_error(data: bytes, chunks: list[int]) -> tuple[list[FlvTag], bool]:
    reader = FlvReader(max_tag_size=64)
    out: list[FlvTag] = []
    pos = 0
    try:
        for size in [*chunks, len(data)]:
            out += reader.feed(data[pos : pos + size])
            pos += size
    except MediaFormatError:
        return out, True
    return out, False


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(flv_streams(), st.lists(st.integers(1, 40), max_size=30))
def test_reader_output_is_independent_of_chunking(data: bytes, chunks: list[int]) -> None:
    """Same tags and same verdict whatever the chunking; tags a failing chunk completed are
    dropped with it, so a chunked run yields a prefix of the byte-by-byte run."""
    reference, failed = read_until_error(data, [1] * len(data))
    chunked, chunked_failed = read_until_error(data, chunks)
    assert chunked_failed == failed
    assert chunked == reference[: len(chunked)]
    if not failed:
        assert chunked == reference
    for tag in reference:
        assert tag.data in data and len(tag.data) == int.from_bytes(tag.data[-4:], "big") + 4


@given(st.binary(max_size=120), st.booleans())
def test_reader_returns_tags_or_refuses_arbitrary_bytes(data: bytes, bare: bool) -> None:
    reader = FlvReader(max_tag_size=64, expect_header=not bare)
    try:
        found = reader.feed(data)
    except MediaFormatError:
        return
    assert sum(len(t.data) for t in found) + reader.buffered <= len(data)
    for tag in found:
        assert tag.tag_type in (TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT)
        assert len(tag.payload) <= len(tag.data) - 15

"""AAC framing against ffmpeg's encoder, ADTS muxer and demuxer, plus property tests."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.av.aac import (
    SAMPLE_RATES,
    AudioSpecificConfig,
    add_adts,
    build_asc,
    is_adts,
    parse_adts_header,
    parse_asc,
    split_adts,
    strip_adts,
)
from ivcloud.protocol.errors import MediaFormatError
from tests.protocol.av import encode_aac, open_container


def test_parse_ffmpeg_asc_with_trailing_sbr_signalling() -> None:
    audio = encode_aac()
    assert len(audio.asc) > 2  # ffmpeg appends a sync extension after the 2 core bytes
    config = parse_asc(audio.asc)
    assert config == AudioSpecificConfig(2, 44100, 2, 4)
    assert config.codec_string == "mp4a.40.2"


@pytest.mark.parametrize(
    ("object_type", "rate", "channels", "expected"),
    [
        (2, 44100, 2, b"\x12\x10"),
        (2, 48000, 1, b"\x11\x88"),
        (5, 22050, 2, None),
        (2, 44000, 2, None),  # not in the table: explicit 24-bit frequency
        (42, 16000, 1, None),  # escaped object type (USAC)
    ],
)
def test_asc_build_parse_round_trip(
    object_type: int, rate: int, channels: int, expected: bytes | None
) -> None:
    asc = build_asc(object_type, rate, channels)
    if expected is not None:
        assert asc == expected
    config = parse_asc(asc)
    assert (config.object_type, config.sample_rate, config.channel_config) == (
        object_type,
        rate,
        channels,
    )
    assert config.frequency_index == (SAMPLE_RATES.index(rate) if rate in SAMPLE_RATES else 15)


def test_asc_refusals() -> None:
    for bad in (b"", b"\x12", b"\x00\x10", b"\x16\x80", b"\x17\x80\x00\x00\x00"):
        with pytest.raises(MediaFormatError):
            parse_asc(bad)  # truncated, object type 0, reserved index 13, explicit rate 0
    with pytest.raises(MediaFormatError):
        build_asc(2, 0, 2)
    for object_type in (0, 31, 96):
        with pytest.raises(MediaFormatError):
            build_asc(object_type, 44100, 2)


@given(
    st.integers(1, 95).filter(lambda t: t != 31),  # 31 is the escape code, not a type
    st.integers(1, (1 << 24) - 1),
    st.integers(0, 15),
)
def test_asc_round_trip_property(object_type: int, rate: int, channels: int) -> None:
    config = parse_asc(build_asc(object_type, rate, channels))
    assert (config.object_type, config.sample_rate, config.channel_config) == (
        object_type,
        rate,
        channels,
    )


@given(st.binary(max_size=12))
def test_asc_parser_returns_a_config_or_refuses(data: bytes) -> None:
    try:
        config = parse_asc(data)
    except MediaFormatError:
        return
    assert config.object_type >= 1 and config.sample_rate > 0 and config.channel_config < 16


# ------------------------------------------------------------------------ ADTS


def ffmpeg_adts(frames: int = 20) -> tuple[bytes, list[bytes], bytes]:
    """ADTS written by ffmpeg's muxer, the packets it was given, and the encoder's ASC."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=48000, layout="mono")
        packets: list[bytes] = []
        for index in range(frames):
            pcm = np.full((1, 1024), 0.1 * (index % 3), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, index * 1024
            for packet in stream.encode(frame):
                packets.append(bytes(packet))
                out.mux(packet)
        for packet in stream.encode(None):
            packets.append(bytes(packet))
            out.mux(packet)
        asc = bytes(stream.codec_context.extradata or b"")
    return buf.getvalue(), packets, asc


def test_split_ffmpeg_adts_gives_back_the_encoder_packets() -> None:
    data, packets, asc = ffmpeg_adts()
    frames = split_adts(data)
    assert [raw for raw, _ in frames] == packets
    assert {parse_asc(config) for _, config in frames} == {parse_asc(asc)}
    header = parse_adts_header(data)
    assert (header.sample_rate, header.channel_config, header.has_crc) == (48000, 1, False)


def test_add_adts_output_decodes_in_pyav() -> None:
    audio = encode_aac(frames=30)
    stream = b"".join(add_adts(raw, audio.asc) for raw in audio.frames)
    with open_container(stream, "aac") as container:
        decoded = [f for p in container.demux() for f in p.decode() if isinstance(f, av.AudioFrame)]
    assert len(decoded) == len(audio.frames)
    assert {(f.sample_rate, f.samples) for f in decoded} == {(44100, 1024)}
    assert [strip_adts(add_adts(raw, audio.asc))[0] for raw in audio.frames] == list(audio.frames)


def with_crc(frame: bytes) -> bytes:
    """Turn a 7-byte-header ADTS frame into the CRC variant (9-byte header)."""
    head = bytearray(frame[:7])
    head[1] &= 0xFE  # protection_absent = 0
    length = ((head[3] & 0x03) << 11 | head[4] << 3 | head[5] >> 5) + 2
    head[3] = (head[3] & 0xFC) | (length >> 11)
    head[4] = (length >> 3) & 0xFF
    head[5] = (head[5] & 0x1F) | ((length & 0x07) << 5)
    return bytes(head) + b"\xbe\xef" + frame[7:]


def test_adts_crc_variant_is_stripped() -> None:
    audio = encode_aac(frames=3)
    frames = [with_crc(add_adts(raw, audio.asc)) for raw in audio.frames]
    header = parse_adts_header(frames[0])
    assert header.has_crc and header.header_size == 9
    assert [raw for raw, _ in split_adts(b"".join(frames))] == list(audio.frames)


def test_adts_refusals() -> None:
    audio = encode_aac(frames=2)
    frame = add_adts(audio.frames[0], audio.asc)
    with pytest.raises(MediaFormatError):
        parse_adts_header(frame[:6])
    with pytest.raises(MediaFormatError):
        strip_adts(frame[:-1])  # truncated payload
    with pytest.raises(MediaFormatError):
        parse_adts_header(b"\xff\xf3" + frame[2:])  # layer 1: MPEG audio, not ADTS
    with pytest.raises(MediaFormatError):
        strip_adts(frame[:6] + bytes((frame[6] | 0x01,)) + frame[7:])  # 2 raw data blocks
    with pytest.raises(MediaFormatError):
        parse_adts_header(frame[:2] + bytes((frame[2] | 0x34,)) + frame[3:])  # index 13
    with pytest.raises(MediaFormatError):
        add_adts(b"x", build_asc(5, 44100, 2))  # HE-AAC object type: no ADTS profile
    with pytest.raises(MediaFormatError):
        add_adts(b"x", build_asc(2, 44000, 2))  # explicit rate: no ADTS index
    with pytest.raises(MediaFormatError):
        add_adts(bytes(8190), audio.asc)
    assert is_adts(frame) and not is_adts(audio.frames[0]) and not is_adts(b"\xff")


@given(st.binary(max_size=40))
def test_adts_parsers_return_frames_or_refuse(data: bytes) -> None:
    try:
        header = parse_adts_header(data)
    except MediaFormatError:
        header = None
    if header is not None:
        assert header.frame_length >= header.header_size and header.sample_rate > 0
    try:
        frames = split_adts(data)
    except MediaFormatError:
        return
    assert sum(len(raw) for raw, _ in frames) < len(data) or not data


@given(st.binary(max_size=300), st.sampled_from(SAMPLE_RATES), st.integers(1, 7))
def test_adts_round_trip_property(raw: bytes, rate: int, channels: int) -> None:
    asc = build_asc(2, rate, channels)
    assert strip_adts(add_adts(raw, asc)) == (raw, asc)

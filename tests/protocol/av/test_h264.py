"""H.264 framing against libx264 output and PyAV's decoder, plus property tests."""

from __future__ import annotations

import av
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivcloud.protocol.av.bits import BitReader
from ivcloud.protocol.av.h264 import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    annexb_to_avcc,
    avcc_to_annexb,
    build_avc_decoder_config,
    is_keyframe,
    join_annexb,
    join_avcc,
    nal_type,
    parse_avc_decoder_config,
    parse_sps,
    split_annexb,
    split_avcc,
    unescape_rbsp,
)
from ivcloud.protocol.errors import MediaFormatError
from tests.protocol.av import encode_h264


def parameter_sets(annexb: bytes) -> tuple[list[bytes], list[bytes]]:
    nals = split_annexb(annexb)
    return [n for n in nals if nal_type(n) == NAL_SPS], [n for n in nals if nal_type(n) == NAL_PPS]


def decoded_size(annexb: bytes) -> tuple[int, int]:
    codec = av.CodecContext.create("h264", "r")
    frames = codec.decode(av.Packet(annexb)) + codec.decode(None)
    return frames[0].width, frames[0].height


# ------------------------------------------------------------------------ Annex B / AVCC


def test_split_annexb_handles_3_and_4_byte_start_codes_and_trailing_zeros() -> None:
    stream = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x00\x01\x65\xcc\x00"
    assert split_annexb(stream) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc"]


def test_split_annexb_leading_zeros_empty_units_and_garbage() -> None:
    assert split_annexb(b"\x00\x00\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x00\x00\x01\x41") == [
        b"\x09\xf0",
        b"\x41",
    ]
    assert split_annexb(b"") == []
    assert split_annexb(b"\x00\x00") == []
    with pytest.raises(MediaFormatError):
        split_annexb(b"\x65\x88\x84")
    with pytest.raises(MediaFormatError):
        split_annexb(b"\x01\x00\x00\x01\x65")


def test_real_stream_annexb_avcc_round_trip_and_keyframes() -> None:
    frames = encode_h264()
    assert [f.keyframe for f in frames] == [is_keyframe(f.annexb) for f in frames]
    assert sum(f.keyframe for f in frames) == 3  # gop 12, 36 frames
    for frame in frames:
        avcc = annexb_to_avcc(frame.annexb)
        assert split_avcc(avcc) == split_annexb(frame.annexb)
        assert split_annexb(avcc_to_annexb(avcc)) == split_annexb(frame.annexb)
    first = split_annexb(frames[0].annexb)
    types = [nal_type(n) for n in first if nal_type(n) != 6]  # SEI: libx264's banner
    assert types[:2] == [NAL_SPS, NAL_PPS] and set(types[2:]) == {NAL_IDR}  # sliced threads
    assert is_keyframe(first) and not is_keyframe(split_annexb(frames[1].annexb))


def test_avcc_conversion_decodes_in_pyav() -> None:
    """AVCC → Annex B output is a stream ffmpeg's decoder accepts whole."""
    frames = encode_h264()
    stream = b"".join(avcc_to_annexb(annexb_to_avcc(f.annexb)) for f in frames)
    codec = av.CodecContext.create("h264", "r")
    decoded = [f for p in codec.parse(stream) for f in codec.decode(p)]
    decoded += [f for p in codec.parse(b"") for f in codec.decode(p)] + codec.decode(None)
    assert len(decoded) == len(frames)


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_avcc_length_sizes(length_size: int) -> None:
    nals = [b"\x65" + bytes(range(200)), b"\x41\x01"]
    assert split_avcc(join_avcc(nals, length_size), length_size) == nals


def test_avcc_refusals() -> None:
    with pytest.raises(MediaFormatError):
        join_avcc([bytes(256)], 1)
    with pytest.raises(MediaFormatError):
        split_avcc(b"\x00\x00\x00\x05\x65", 4)
    with pytest.raises(MediaFormatError):
        split_avcc(b"\x00\x00", 4)
    with pytest.raises(MediaFormatError):
        split_avcc(b"", 3)
    with pytest.raises(MediaFormatError):
        nal_type(b"")


@given(st.binary(max_size=200))
def test_split_annexb_is_a_fixpoint_or_refuses(data: bytes) -> None:
    try:
        nals = split_annexb(data)
    except MediaFormatError:
        return
    for nal in nals:
        assert nal and b"\x00\x00\x01" not in nal and nal[-1] != 0
    assert split_annexb(join_annexb(nals)) == nals
    assert split_avcc(join_avcc(nals)) == nals


@given(st.binary(max_size=100), st.sampled_from([1, 2, 4]))
def test_split_avcc_partitions_or_refuses(data: bytes, length_size: int) -> None:
    try:
        nals = split_avcc(data, length_size)
    except MediaFormatError:
        return
    assert join_avcc(nals, length_size) == data


# ------------------------------------------------------------------------ SPS vs PyAV


@pytest.mark.parametrize(
    ("width", "height", "profile_idc", "pix_fmt", "params"),
    [
        (1920, 1080, 66, "yuv420p", ""),  # 1088 coded rows, 8 cropped
        (640, 360, 66, "yuv420p", ""),  # 368 coded rows
        (176, 144, 66, "yuv420p", ""),  # no cropping
        (322, 242, 66, "yuv420p", ""),  # crop on both axes
        (640, 360, 100, "yuv420p", "interlaced=1"),  # High, 4:2:0 signalled, frame_mbs_only 0
        (640, 360, 122, "yuv422p", ""),  # chroma_format_idc 2: SubHeightC 1
        (1920, 1080, 244, "yuv444p", ""),  # chroma_format_idc 3: crop unit 1
    ],
)
def test_sps_dimensions_match_pyav(
    width: int, height: int, profile_idc: int, pix_fmt: str, params: str
) -> None:
    profile = {66: "baseline", 100: "high", 122: "high422", 244: "high444"}[profile_idc]
    preset = "medium" if profile_idc == 100 else "ultrafast"  # medium uses 8x8dct: High
    frames = encode_h264(
        width, height, 1, profile=profile, pix_fmt=pix_fmt, x264_params=params, preset=preset
    )
    sps_list, _ = parameter_sets(frames[0].annexb)
    sps = parse_sps(sps_list[0])
    assert (sps.width, sps.height) == decoded_size(frames[0].annexb) == (width, height)
    assert sps.frame_mbs_only == (params != "interlaced=1")
    expected_chroma = {"yuv420p": 1, "yuv422p": 2, "yuv444p": 3}[pix_fmt]
    assert (sps.profile_idc, sps.chroma_format_idc) == (profile_idc, expected_chroma)


def test_sps_codec_string_and_emulation_prevention() -> None:
    frames = encode_h264()
    sps_nal = parameter_sets(frames[0].annexb)[0][0]
    assert b"\x00\x00\x03" in sps_nal  # libx264's 320x240 SPS needs emulation prevention
    sps = parse_sps(sps_nal)
    assert sps.codec_string == f"avc1.{sps_nal[1]:02X}{sps_nal[2]:02X}{sps_nal[3]:02X}"
    assert sps.codec_string.startswith("avc1.42")  # constrained baseline
    assert unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03") == b"\x00\x00\x01\x00\x00"


def test_sps_refusals() -> None:
    sps_nal = parameter_sets(encode_h264()[0].annexb)[0][0]
    with pytest.raises(MediaFormatError):
        parse_sps(b"\x68" + sps_nal[1:])  # a PPS header
    for cut in range(1, 8):
        with pytest.raises(MediaFormatError):
            parse_sps(sps_nal[:cut])
    with pytest.raises(MediaFormatError):
        parse_sps(b"\x67\x42\x00\x1e" + bytes(8))  # exp-Golomb code longer than 32 bits


class BitWriter:
    """Test-side SPS writer: an independent implementation of the encoding the parser reads."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, width: int, value: int) -> None:
        self.bits += [(value >> (width - 1 - i)) & 1 for i in range(width)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@st.composite
def sps_fields(draw: st.DrawFn) -> dict[str, int]:
    profile = draw(st.sampled_from([66, 77, 88, 100, 110, 122, 244]))
    high = profile >= 100
    return {
        "profile": profile,
        "flags": draw(st.integers(0, 255)),
        "level": draw(st.integers(0, 255)),
        "sps_id": draw(st.integers(0, 31)),
        "chroma": draw(st.integers(0, 3)) if high else 1,
        "separate": draw(st.integers(0, 1)),
        "scaling": draw(st.integers(0, 1)) if high else 0,
        "poc_type": draw(st.integers(0, 2)),
        "poc_cycle": draw(st.integers(0, 3)),
        "poc_offset": draw(st.integers(-(1 << 30), 1 << 30)),
        "width_mbs": draw(st.one_of(st.integers(1, 120), st.integers(1, 1 << 16))),
        "height_units": draw(st.integers(1, 68)),
        "frame_mbs_only": draw(st.integers(0, 1)),
        "crop": draw(st.integers(0, 1)),
        "left": draw(st.integers(0, 8)),
        "right": draw(st.integers(0, 8)),
        "top": draw(st.integers(0, 8)),
        "bottom": draw(st.integers(0, 8)),
    }


def write_sps(f: dict[str, int]) -> bytes:
    w = BitWriter()
    w.u(8, f["profile"])
    w.u(8, f["flags"])
    w.u(8, f["level"])
    w.ue(f["sps_id"])
    if f["profile"] >= 100:
        w.ue(f["chroma"])
        if f["chroma"] == 3:
            w.u(1, f["separate"])
        w.ue(0)  # bit_depth_luma_minus8
        w.ue(2)  # bit_depth_chroma_minus8
        w.u(1, 0)
        w.u(1, f["scaling"])
        for i in range(8 if f["chroma"] != 3 else 12) if f["scaling"] else ():
            w.u(1, i % 2)
            if i % 2 and i < 6:  # 4x4 list: scales 9, 10, 11, then 0 ends the deltas
                for delta in (1, 1, 1, -11):
                    w.se(delta)
            elif i % 2:  # 8x8 list: every one of the 64 deltas present
                for j in range(64):
                    w.se(-3 if j % 2 else 4)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(f["poc_type"])
    if f["poc_type"] == 0:
        w.ue(2)
    elif f["poc_type"] == 1:
        w.u(1, 0)
        w.se(f["poc_offset"])  # offset_for_non_ref_pic: long codes, zero runs
        w.se(5)
        w.ue(f["poc_cycle"])
        for k in range(f["poc_cycle"]):
            w.se(k - 1)
    w.ue(4)  # max_num_ref_frames
    w.u(1, 0)
    w.ue(f["width_mbs"] - 1)
    w.ue(f["height_units"] - 1)
    w.u(1, f["frame_mbs_only"])
    if not f["frame_mbs_only"]:
        w.u(1, 1)
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, f["crop"])
    if f["crop"]:
        for side in ("left", "right", "top", "bottom"):
            w.ue(f[side])
    w.u(1, 0)  # no VUI
    return b"\x67" + escape(w.rbsp())


def expected_size(f: dict[str, int]) -> tuple[int, int]:
    chroma = 0 if f["profile"] >= 100 and f["chroma"] == 3 and f["separate"] else f["chroma"]
    field = 2 - f["frame_mbs_only"]
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma]
    crop = f["crop"]
    width = f["width_mbs"] * 16 - sub_w * crop * (f["left"] + f["right"])
    height = field * f["height_units"] * 16 - sub_h * field * crop * (f["top"] + f["bottom"])
    return width, height


MINIMAL_SPS = dict.fromkeys(
    ("flags", "level", "sps_id", "separate", "scaling", "poc_type", "poc_cycle", "poc_offset"), 0
) | {"profile": 66, "chroma": 1, "width_mbs": 1, "height_units": 1, "frame_mbs_only": 1}
MINIMAL_SPS |= dict.fromkeys(("crop", "left", "right", "top", "bottom"), 0)


@given(sps_fields())
@example(MINIMAL_SPS)
def test_sps_parser_reads_what_an_independent_writer_wrote(fields: dict[str, int]) -> None:
    nal = write_sps(fields)
    width, height = expected_size(fields)
    if width <= 0 or height <= 0:
        with pytest.raises(MediaFormatError):
            parse_sps(nal)
        return
    sps = parse_sps(nal)
    assert (sps.width, sps.height) == (width, height)
    assert (sps.profile_idc, sps.constraint_flags, sps.level_idc, sps.sps_id) == (
        fields["profile"],
        fields["flags"],
        fields["level"],
        fields["sps_id"],
    )
    assert sps.frame_mbs_only == bool(fields["frame_mbs_only"])


def test_sps_writer_example_exercises_emulation_prevention() -> None:
    fields = MINIMAL_SPS | {"width_mbs": 20, "height_units": 15}
    fields |= {"poc_type": 1, "poc_offset": 1 << 28}  # se(2^28): 29 zero bits in a row
    nal = write_sps(fields)
    assert b"\x00\x00\x03" in nal
    assert (parse_sps(nal).width, parse_sps(nal).height) == (320, 240)


@given(st.binary(max_size=64))
def test_sps_parser_returns_a_picture_or_refuses(payload: bytes) -> None:
    try:
        sps = parse_sps(b"\x67" + payload)
    except MediaFormatError:
        return
    assert sps.width > 0 and sps.height > 0
    assert 0 <= sps.chroma_format_idc <= 3
    assert 8 <= sps.bit_depth_luma <= 14 and 8 <= sps.bit_depth_chroma <= 14


@given(st.binary(max_size=16), st.integers(0, 40))
def test_bit_reader_never_reads_past_the_end(data: bytes, width: int) -> None:
    reader = BitReader(data)
    try:
        value = reader.u(width)
    except MediaFormatError:
        assert width > len(data) * 8
        return
    assert 0 <= value < (1 << width)


# ------------------------------------------------------------------------ avcC


def test_avcc_record_round_trip_and_ffmpeg_record() -> None:
    frames = encode_h264()
    sps, pps = parameter_sets(frames[0].annexb)
    record = build_avc_decoder_config(sps, pps)
    config = parse_avc_decoder_config(record)
    assert (list(config.sps), list(config.pps), config.length_size) == (sps, pps, 4)
    assert config.codec_string == parse_sps(sps[0]).codec_string
    # ffmpeg's decoder accepts the record as extradata and decodes AVCC samples with it.
    codec = av.CodecContext.create("h264", "r")
    codec.extradata = record
    packet = av.Packet(annexb_to_avcc(frames[0].annexb))
    assert [f.width for f in codec.decode(packet)] + [f.width for f in codec.decode(None)] == [320]


def test_avcc_record_high_profile_extension_is_written_and_tolerated() -> None:
    frames = encode_h264(640, 360, 1, profile="high422", pix_fmt="yuv422p")
    sps, pps = parameter_sets(frames[0].annexb)
    record = build_avc_decoder_config(sps, pps)
    assert record[-4:] == bytes((0xFC | 2, 0xF8, 0xF8, 0))  # chroma 4:2:2, 8-bit, no ext
    assert parse_avc_decoder_config(record).profile_idc == 122


def test_avcc_record_refusals() -> None:
    sps, pps = parameter_sets(encode_h264()[0].annexb)
    record = build_avc_decoder_config(sps, pps)
    for cut in (0, 5, 6, 8, len(record) - 1):
        with pytest.raises(MediaFormatError):
            parse_avc_decoder_config(record[:cut])
    with pytest.raises(MediaFormatError):
        parse_avc_decoder_config(b"\x02" + record[1:])
    with pytest.raises(MediaFormatError):
        parse_avc_decoder_config(record[:4] + b"\xfe" + record[5:])  # length size 3
    with pytest.raises(MediaFormatError):
        build_avc_decoder_config(sps, [])
    with pytest.raises(MediaFormatError):
        build_avc_decoder_config(pps, sps)


@given(st.binary(max_size=80))
def test_avcc_record_parser_returns_a_record_or_refuses(data: bytes) -> None:
    try:
        config = parse_avc_decoder_config(data)
    except MediaFormatError:
        return
    assert config.length_size in (1, 2, 4)
    assert all(nal_type(s) == NAL_SPS for s in config.sps)
    assert all(nal_type(p) == NAL_PPS for p in config.pps)

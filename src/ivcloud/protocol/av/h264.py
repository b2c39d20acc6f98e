"""H.264 framing: Annex B ↔ AVCC, NAL unit types, the SPS and the avcC record.

Cameras and encoders hand out Annex B (start-code delimited) access units; FLV and MP4 carry
AVCC (length-prefixed NAL units) plus an AVCDecoderConfigurationRecord ("avcC") holding the
SPS/PPS. Converting between the two and reading the few SPS fields a container needs
(dimensions, profile/level for the MSE codec string) is all the media layer does with H.264:
slices are never parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ivcloud.protocol.av.bits import BitReader, BytesLike
from ivcloud.protocol.errors import MediaFormatError

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (7.3.2.1.1).
HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))

# ------------------------------------------------------------------------ Annex B / AVCC


def split_annexb(data: BytesLike) -> list[bytes]:
    """Split an Annex B byte stream into NAL units (start codes and trailing zeros removed).

    3- and 4-byte start codes both work because a 4-byte code is a 3-byte one preceded by a
    zero byte, and trailing zero bytes never belong to a NAL unit (its last byte holds the
    RBSP stop bit). Empty NAL units are dropped. Anything other than zero bytes before the
    first start code is not Annex B and raises :class:`MediaFormatError`.
    """
    raw = bytes(data)
    first = raw.find(b"\x00\x00\x01")
    if first < 0:
        if raw.strip(b"\x00"):
            raise MediaFormatError("no Annex B start code")
        return []
    if raw[:first].strip(b"\x00"):
        raise MediaFormatError("bytes before the first Annex B start code")
    nals: list[bytes] = []
    pos = first + 3
    while True:
        nxt = raw.find(b"\x00\x00\x01", pos)
        end = len(raw) if nxt < 0 else nxt
        nal = raw[pos:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        if nxt < 0:
            return nals
        pos = nxt + 3


def join_annexb(nals: Iterable[BytesLike]) -> bytes:
    """Annex B with 4-byte start codes, the form decoders and RTP packetizers accept best."""
    return b"".join(START_CODE + bytes(nal) for nal in nals)


def join_avcc(nals: Iterable[BytesLike], length_size: int = 4) -> bytes:
    """Length-prefix NAL units as FLV and MP4 samples carry them."""
    _check_length_size(length_size)
    limit = 1 << (8 * length_size)
    out = bytearray()
    for nal in nals:
        if len(nal) >= limit:
            raise MediaFormatError(
                f"NAL unit of {len(nal)} bytes exceeds {length_size}-byte length"
            )
        out += len(nal).to_bytes(length_size, "big")
        out += nal
    return bytes(out)


def split_avcc(data: BytesLike, length_size: int = 4) -> list[bytes]:
    """Split a length-prefixed sample into NAL units; a length running past the end raises."""
    _check_length_size(length_size)
    raw = bytes(data)
    nals: list[bytes] = []
    pos = 0
    while pos < len(raw):
        head = pos + length_size
        if head > len(raw):
            raise MediaFormatError("truncated AVCC length prefix")
        end = head + int.from_bytes(raw[pos:head], "big")
        if end > len(raw):
            raise MediaFormatError("AVCC NAL unit runs past the end of the sample")
        nals.append(raw[head:end])
        pos = end
    return nals


def annexb_to_avcc(data: BytesLike, length_size: int = 4) -> bytes:
    return join_avcc(split_annexb(data), length_size)


def avcc_to_annexb(data: BytesLike, length_size: int = 4) -> bytes:
    return join_annexb(split_avcc(data, length_size))


def _check_length_size(length_size: int) -> None:
    if length_size not in (1, 2, 4):
        raise MediaFormatError(f"AVCC length size must be 1, 2 or 4, not {length_size}")


# ------------------------------------------------------------------------ NAL unit types


def nal_type(nal: BytesLike) -> int:
    if not nal:
        raise MediaFormatError("empty NAL unit")
    return nal[0] & 0x1F


def is_keyframe(access_unit: BytesLike | Sequence[BytesLike]) -> bool:
    """True when the access unit (Annex B bytes, or its NAL units) holds an IDR slice.

    Only IDR counts: a recovery-point SEI would let a decoder start elsewhere, but MSE and
    FLV players need an IDR to start, and that is what the hub caches GOPs by.
    """
    nals = split_annexb(access_unit) if isinstance(access_unit, BytesLike) else access_unit
    return any(nal and nal[0] & 0x1F == NAL_IDR for nal in nals)


# ------------------------------------------------------------------------ SPS


@dataclass(frozen=True, slots=True)
class Sps:
    """The SPS fields a container needs (dimensions are after frame cropping)."""

    profile_idc: int
    constraint_flags: int  # the whole byte: constraint_set0_flag is its top bit
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    frame_mbs_only: bool
    width: int
    height: int

    @property
    def codec_string(self) -> str:
        return avc_codec_string(self.profile_idc, self.constraint_flags, self.level_idc)


def avc_codec_string(profile_idc: int, constraint_flags: int, level_idc: int) -> str:
    """The RFC 6381 ``avc1.PPCCLL`` string MSE's ``isTypeSupported`` and ``addSourceBuffer``
    want; it must match the stream or Chromium refuses the source buffer."""
    return f"avc1.{profile_idc:02X}{constraint_flags:02X}{level_idc:02X}"


def unescape_rbsp(payload: BytesLike) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 → 00 00)."""
    raw = bytes(payload)
    if b"\x00\x00\x03" not in raw:
        return raw
    out = bytearray()
    zeros = 0
    for byte in raw:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def parse_sps(nal: BytesLike) -> Sps:
    """Parse an SPS NAL unit (with its one-byte NAL header) up to the frame cropping fields.

    VUI is not read: nothing the containers need lives there, and skipping it avoids
    rejecting streams over VUI quirks that decoders tolerate.
    """
    if nal_type(nal) != NAL_SPS:
        raise MediaFormatError("not an SPS NAL unit")
    r = BitReader(unescape_rbsp(bytes(nal[1:])))
    profile, flags, level = r.u(8), r.u(8), r.u(8)
    sps_id = _ue_max(r, 31, "seq_parameter_set_id")
    chroma, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
    if profile in HIGH_PROFILES:
        chroma, separate_planes, depth_luma, depth_chroma = _high_profile_fields(r)
    _skip_frame_num_and_poc(r)
    _ue_max(r, 32, "max_num_ref_frames")
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = _ue_max(r, 1 << 16, "pic_width_in_mbs_minus1") + 1
    height_units = _ue_max(r, 1 << 16, "pic_height_in_map_units_minus1") + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.flag() else (0, 0, 0, 0)
    unit_x, unit_y = _crop_units(0 if separate_planes else chroma, frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise MediaFormatError("SPS frame cropping leaves no picture")
    return Sps(
        profile,
        flags,
        level,
        sps_id,
        chroma,
        depth_luma,
        depth_chroma,
        frame_mbs_only,
        width,
        height,
    )


def _ue_max(r: BitReader, limit: int, name: str) -> int:
    value = r.ue()
    if value > limit:
        raise MediaFormatError(f"SPS {name} {value} out of range")
    return value


def _high_profile_fields(r: BitReader) -> tuple[int, bool, int, int]:
    chroma = _ue_max(r, 3, "chroma_format_idc")
    separate_planes = r.flag() if chroma == 3 else False
    depth_luma = _ue_max(r, 6, "bit_depth_luma_minus8") + 8
    depth_chroma = _ue_max(r, 6, "bit_depth_chroma_minus8") + 8
    r.u(1)  # qpprime_y_zero_transform_bypass_flag
    if r.flag():  # seq_scaling_matrix_present_flag
        for i in range(8 if chroma != 3 else 12):
            if r.flag():
                _skip_scaling_list(r, 16 if i < 6 else 64)
    return chroma, separate_planes, depth_luma, depth_chroma


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se()) % 256
        last = last if nxt == 0 else nxt


def _skip_frame_num_and_poc(r: BitReader) -> None:
    _ue_max(r, 12, "log2_max_frame_num_minus4")
    poc_type = _ue_max(r, 2, "pic_order_cnt_type")
    if poc_type == 0:
        _ue_max(r, 12, "log2_max_pic_order_cnt_lsb_minus4")
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(_ue_max(r, 255, "num_ref_frames_in_pic_order_cnt_cycle")):
            r.se()


def _crop_units(chroma_array_type: int, frame_mbs_only: bool) -> tuple[int, int]:
    """CropUnitX/CropUnitY of equations 7-19..7-22 (SubWidthC/SubHeightC by chroma format)."""
    field_factor = 1 if frame_mbs_only else 2
    if chroma_array_type == 0:
        return 1, field_factor
    sub_width, sub_height = {1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_array_type]
    return sub_width, sub_height * field_factor


# ------------------------------------------------------------------------ avcC


@dataclass(frozen=True, slots=True)
class AvcDecoderConfig:
    """An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @property
    def codec_string(self) -> str:
        return avc_codec_string(self.profile_idc, self.constraint_flags, self.level_idc)


def build_avc_decoder_config(
    sps: Sequence[BytesLike], pps: Sequence[BytesLike], length_size: int = 4
) -> bytes:
    """Build the avcC record FLV sequence headers and MP4 ``avc1`` entries carry.

    Profile/level come from the first SPS. For the high profiles the trailing chroma /
    bit-depth fields are written, as 14496-15 requires and Chromium's parser expects.
    """
    _check_length_size(length_size)
    if not sps or not pps:
        raise MediaFormatError("avcC needs at least one SPS and one PPS")
    if len(sps) > 31 or len(pps) > 255:
        raise MediaFormatError("too many parameter sets for avcC")
    info = parse_sps(sps[0])
    out = bytearray((1, info.profile_idc, info.constraint_flags, info.level_idc))
    out.append(0xFC | (length_size - 1))
    out.append(0xE0 | len(sps))
    _append_sized(out, sps)
    out.append(len(pps))
    _append_sized(out, pps)
    if info.profile_idc in HIGH_PROFILES:
        out.append(0xFC | info.chroma_format_idc)
        out.append(0xF8 | (info.bit_depth_luma - 8))
        out.append(0xF8 | (info.bit_depth_chroma - 8))
        out.append(0)  # numOfSequenceParameterSetExt
    return bytes(out)


def _append_sized(out: bytearray, units: Sequence[BytesLike]) -> None:
    for unit in units:
        if not 0 < len(unit) <= 0xFFFF:
            raise MediaFormatError("parameter set size does not fit avcC")
        out += len(unit).to_bytes(2, "big")
        out += unit


def parse_avc_decoder_config(data: BytesLike) -> AvcDecoderConfig:
    """Parse an avcC record; trailing high-profile extension fields are accepted and ignored."""
    raw = bytes(data)
    if len(raw) < 7 or raw[0] != 1:
        raise MediaFormatError("not an avcC record (version 1)")
    length_size = (raw[4] & 0x03) + 1
    if length_size == 3:
        raise MediaFormatError("avcC length size 3 is invalid")
    sps, pos = _read_sized(raw, 6, raw[5] & 0x1F)
    if pos >= len(raw):
        raise MediaFormatError("avcC truncated before the PPS count")
    pps, _ = _read_sized(raw, pos + 1, raw[pos])
    for unit in sps:
        if unit[0] & 0x1F != NAL_SPS:
            raise MediaFormatError("avcC SPS entry is not an SPS NAL unit")
    for unit in pps:
        if unit[0] & 0x1F != NAL_PPS:
            raise MediaFormatError("avcC PPS entry is not a PPS NAL unit")
    return AvcDecoderConfig(raw[1], raw[2], raw[3], length_size, sps, pps)


def _read_sized(raw: bytes, pos: int, count: int) -> tuple[tuple[bytes, ...], int]:
    units: list[bytes] = []
    for _ in range(count):
        if pos + 2 > len(raw):
            raise MediaFormatError("avcC truncated in a parameter set length")
        end = pos + 2 + int.from_bytes(raw[pos : pos + 2], "big")
        if end > len(raw) or end == pos + 2:
            raise MediaFormatError("avcC parameter set empty or truncated")
        units.append(raw[pos + 2 : end])
        pos = end
    return tuple(units), pos

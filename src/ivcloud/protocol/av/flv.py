"""FLV tags: encoding (device side, recordings) and the tag layout shared with the reader.

FLV is what devices push to the hub and what HTTP-FLV / WS-FLV viewers receive. Only H.264
(CodecID 7) and AAC (SoundFormat 10) are produced. Opus is deliberately absent: classic FLV
has no SoundFormat for it and flv.js / ffmpeg would not play it; Opus audio travels over
WebRTC, and the hub path carries AAC.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ivcloud.protocol.av.aac import SAMPLES_PER_FRAME, parse_asc, split_adts
from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.av.h264 import (
    NAL_AUD,
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    build_avc_decoder_config,
    join_avcc,
    split_annexb,
)
from ivcloud.protocol.errors import MediaFormatError

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

TAG_HEADER_SIZE = 11
PREVIOUS_TAG_SIZE = 4
MAX_BODY_SIZE = (1 << 24) - 1

VIDEO_CODEC_AVC = 7
FRAME_KEY = 1
FRAME_INTER = 2
FRAME_INFO = 5  # video info/command frame: no AVC packet header follows
AVC_SEQUENCE_HEADER = 0
AVC_NALU = 1
AVC_END_OF_SEQUENCE = 2

SOUND_AAC = 10
AAC_SEQUENCE_HEADER = 0
AAC_RAW = 1
# SoundFormat 10, 44 kHz, 16-bit, stereo: the flags players expect for any AAC (the real
# parameters are in the AudioSpecificConfig; the FLV spec says AAC always uses these).
AAC_FLAGS = 0xAF

FILE_HEADER_SIZE = 9
_TAG_HEAD = struct.Struct(">IIHB")  # type+size, timestamp+ext, stream id (3 bytes)


def flv_header(*, has_audio: bool, has_video: bool) -> bytes:
    """The 9-byte file header plus PreviousTagSize0, i.e. everything before the first tag."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + struct.pack(">II", FILE_HEADER_SIZE, 0)


def encode_tag(tag_type: int, timestamp_ms: int, body: BytesLike) -> bytes:
    """A complete tag: header, body and trailing PreviousTagSize.

    FLV timestamps are 32-bit milliseconds (24 bits plus an extension byte) and wrap after
    ~49.7 days; larger values wrap, negative ones are refused (players would read them as
    far in the future).
    """
    if len(body) > MAX_BODY_SIZE:
        raise MediaFormatError(f"FLV tag body of {len(body)} bytes exceeds 24-bit size")
    size = len(body)
    head = _TAG_HEAD.pack((tag_type << 24) | size, _timestamp_field(timestamp_ms), 0, 0)
    return head + bytes(body) + struct.pack(">I", TAG_HEADER_SIZE + size)


def _timestamp_field(timestamp_ms: int) -> int:
    if timestamp_ms < 0:
        raise MediaFormatError(f"negative FLV timestamp {timestamp_ms}")
    ts = timestamp_ms & 0xFFFFFFFF
    return ((ts & 0xFFFFFF) << 8) | (ts >> 24)


def rewrite_timestamp(tag_bytes: BytesLike, timestamp_ms: int) -> bytes:
    """A copy of a complete tag with another timestamp, for concatenating recorded segments
    without re-muxing (only the 4 timestamp bytes change)."""
    if len(tag_bytes) < TAG_HEADER_SIZE + PREVIOUS_TAG_SIZE:
        raise MediaFormatError("not a complete FLV tag")
    out = bytearray(tag_bytes)
    struct.pack_into(">I", out, 4, _timestamp_field(timestamp_ms))
    return bytes(out)


def avc_sequence_header_body(avc_config: BytesLike) -> bytes:
    """Video body carrying the avcC record (keyframe, AVCPacketType 0, composition time 0)."""
    return bytes((FRAME_KEY << 4 | VIDEO_CODEC_AVC, AVC_SEQUENCE_HEADER, 0, 0, 0)) + bytes(
        avc_config
    )


def avc_nalu_body(avcc_sample: BytesLike, *, keyframe: bool, composition_time_ms: int) -> bytes:
    """Video body for one access unit in AVCC form; composition time is pts - dts (signed)."""
    if not -(1 << 23) <= composition_time_ms < (1 << 23):
        raise MediaFormatError(f"composition time {composition_time_ms} ms exceeds 24 bits")
    frame_type = FRAME_KEY if keyframe else FRAME_INTER
    head = bytes((frame_type << 4 | VIDEO_CODEC_AVC, AVC_NALU))
    return head + (composition_time_ms & 0xFFFFFF).to_bytes(3, "big") + bytes(avcc_sample)


def avc_end_of_sequence_body() -> bytes:
    return bytes((FRAME_KEY << 4 | VIDEO_CODEC_AVC, AVC_END_OF_SEQUENCE, 0, 0, 0))


def aac_sequence_header_body(asc: BytesLike) -> bytes:
    return bytes((AAC_FLAGS, AAC_SEQUENCE_HEADER)) + bytes(asc)


def aac_raw_body(raw_frame: BytesLike) -> bytes:
    return bytes((AAC_FLAGS, AAC_RAW)) + bytes(raw_frame)


class FlvMuxer:
    """Encoder output → FLV tags, with the sequence headers players need.

    Video arrives as Annex B access units (SPS/PPS in keyframes, as encoders and cameras
    produce them). A video sequence header is emitted before the first frame and whenever
    the SPS/PPS change; SPS, PPS and AUD NAL units are then left out of the frame tags since
    the sequence header carries them. Frames before the first SPS/PPS are dropped: no player
    could decode them.

    Audio arrives either as ADTS (the default: the AudioSpecificConfig is read from each
    header, several frames in one call are fine) or, when ``audio_config`` (an ASC) is given,
    as raw AAC frames. An audio sequence header precedes the first frame and any change.
    """

    def __init__(
        self, *, has_video: bool = True, has_audio: bool = True, audio_config: bytes | None = None
    ) -> None:
        self._has_video = has_video
        self._has_audio = has_audio
        self._raw_audio_config = audio_config
        if audio_config is not None:
            parse_asc(audio_config)  # refuse a bad config now, not at the first frame
        self._video_params: tuple[tuple[bytes, ...], tuple[bytes, ...]] | None = None
        self._audio_asc: bytes | None = None

    def header(self) -> bytes:
        return flv_header(has_audio=self._has_audio, has_video=self._has_video)

    def add_video(self, access_unit: BytesLike, pts_ms: int, dts_ms: int | None = None) -> bytes:
        """Tags for one Annex B access unit (``dts_ms`` defaults to ``pts_ms``: no B-frames).

        Returns ``b""`` while no SPS/PPS has been seen."""
        dts = pts_ms if dts_ms is None else dts_ms
        nals = split_annexb(access_unit)
        out = self._video_sequence_header(nals, dts)
        if self._video_params is None:
            return b""
        frame = [nal for nal in nals if nal[0] & 0x1F not in (NAL_SPS, NAL_PPS, NAL_AUD)]
        if frame:
            keyframe = any(nal[0] & 0x1F == NAL_IDR for nal in frame)
            body = avc_nalu_body(
                join_avcc(frame), keyframe=keyframe, composition_time_ms=pts_ms - dts
            )
            out += encode_tag(TAG_VIDEO, dts, body)
        return out

    def _video_sequence_header(self, nals: Sequence[bytes], dts: int) -> bytes:
        sps = tuple(nal for nal in nals if nal[0] & 0x1F == NAL_SPS)
        pps = tuple(nal for nal in nals if nal[0] & 0x1F == NAL_PPS)
        if not sps or not pps or (sps, pps) == self._video_params:
            return b""
        body = avc_sequence_header_body(build_avc_decoder_config(sps, pps))
        self._video_params = (sps, pps)
        return encode_tag(TAG_VIDEO, dts, body)

    def add_audio(self, frame: BytesLike, pts_ms: int) -> bytes:
        """Tags for AAC: one raw frame (``audio_config`` given) or a run of ADTS frames, the
        ones after the first stamped 1024 samples apart."""
        if self._raw_audio_config is not None:
            return self._audio_tags(frame, self._raw_audio_config, pts_ms)
        out = b""
        for index, (raw, asc) in enumerate(split_adts(frame)):
            rate = parse_asc(asc).sample_rate
            ts = pts_ms + index * SAMPLES_PER_FRAME * 1000 // rate
            out += self._audio_tags(raw, asc, ts)
        return out

    def _audio_tags(self, raw: BytesLike, asc: bytes, ts: int) -> bytes:
        out = b""
        if asc != self._audio_asc:
            out = encode_tag(TAG_AUDIO, ts, aac_sequence_header_body(asc))
            self._audio_asc = asc
        return out + encode_tag(TAG_AUDIO, ts, aac_raw_body(raw))

    def end_of_sequence(self, timestamp_ms: int) -> bytes:
        """The AVC end-of-sequence tag some players want before a stream closes."""
        return encode_tag(TAG_VIDEO, timestamp_ms, avc_end_of_sequence_body())

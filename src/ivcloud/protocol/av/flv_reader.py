"""Incremental FLV demuxing for the stream hub: bytes in arbitrary chunks → tags.

The hub runs this on every tag of every published stream, so the reader parses tag headers
and the first bytes of each body only (enough to know keyframes, sequence headers and codec
ids) and hands out each tag's complete wire bytes as one ``bytes`` object: the hub writes
that same object to every FLV viewer, no per-viewer copy or re-encoding.

As in the MQTT reader: a chunk holding whole tags is parsed in place; the size limit is
checked as soon as a tag header is complete, before its body is buffered; a tag trickling in
is not re-parsed for every small chunk; and after an error the reader stays failed (the
stream position is lost, the publisher is dropped).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.av.flv import (
    AAC_SEQUENCE_HEADER,
    AVC_NALU,
    AVC_SEQUENCE_HEADER,
    FILE_HEADER_SIZE,
    FRAME_INFO,
    FRAME_KEY,
    PREVIOUS_TAG_SIZE,
    SOUND_AAC,
    TAG_AUDIO,
    TAG_HEADER_SIZE,
    TAG_SCRIPT,
    TAG_VIDEO,
    VIDEO_CODEC_AVC,
)
from ivcloud.protocol.errors import MediaFormatError

_TAG_HEAD = struct.Struct(">IIHB")
_U32 = struct.Struct(">I")
_TAG_OVERHEAD = TAG_HEADER_SIZE + PREVIOUS_TAG_SIZE
MAX_HEADER_OFFSET = 1024  # a v1 header is 9 bytes; room for odd writers, not for abuse


class FlvTagTooLarge(MediaFormatError):
    """A tag announcing more bytes than the reader's limit; refused before buffering, so a
    publisher cannot make the hub allocate memory by announcing a huge tag."""


@dataclass(frozen=True, slots=True)
class FlvHeader:
    has_audio: bool
    has_video: bool


@dataclass(slots=True)
class FlvTag:
    """One tag: its complete wire bytes plus the header facts the hub routes by.

    ``data`` is header + body + PreviousTagSize, ready to forward unchanged. ``codec_id`` is
    the video CodecID or audio SoundFormat (-1 for script data); ``packet_type`` is the
    AVCPacketType / AACPacketType (-1 for other codecs); ``composition_time`` is the signed
    AVC pts - dts in ms. Not frozen on purpose: one is built per tag on the hub's hot path,
    and a frozen dataclass's ``__init__`` costs about twice as much; treat it as read-only.
    """

    data: bytes
    tag_type: int
    timestamp: int
    codec_id: int
    frame_type: int
    packet_type: int
    composition_time: int
    payload_offset: int  # where ``payload`` starts in ``data``

    @property
    def payload(self) -> memoryview:
        """The body past the codec headers: avcC / AVCC NAL units for AVC, ASC / raw frame
        for AAC, the body past the flags byte for other codecs, the whole script body."""
        return memoryview(self.data)[self.payload_offset : len(self.data) - PREVIOUS_TAG_SIZE]

    @property
    def is_video_keyframe(self) -> bool:
        """A coded keyframe; not the AVC sequence header, which also carries frame type 1."""
        return (
            self.tag_type == TAG_VIDEO
            and self.frame_type == FRAME_KEY
            and (self.codec_id != VIDEO_CODEC_AVC or self.packet_type == AVC_NALU)
        )

    @property
    def is_video_sequence_header(self) -> bool:
        return (
            self.tag_type == TAG_VIDEO
            and self.codec_id == VIDEO_CODEC_AVC
            and self.packet_type == AVC_SEQUENCE_HEADER
        )

    @property
    def is_audio_sequence_header(self) -> bool:
        return (
            self.tag_type == TAG_AUDIO
            and self.codec_id == SOUND_AAC
            and self.packet_type == AAC_SEQUENCE_HEADER
        )


class FlvReader:
    """``feed(bytes) -> list[FlvTag]`` over an FLV stream cut anywhere.

    ``expect_header=False`` reads bare tags (e.g. a recorded segment without file header).
    """

    __slots__ = ("_buf", "_failed", "_max", "_need", "header")

    def __init__(self, *, max_tag_size: int = 8 * 1024 * 1024, expect_header: bool = True) -> None:
        if max_tag_size < _TAG_OVERHEAD:
            raise ValueError("max_tag_size must allow an empty tag")
        self._max = max_tag_size
        self._buf = bytearray()
        self._need = 0
        self._failed = False
        self.header: FlvHeader | None = None if expect_header else FlvHeader(True, True)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: BytesLike) -> list[FlvTag]:
        """Add bytes; return the tags they complete, in order.

        Raises :class:`MediaFormatError` at the first invalid tag; tags completed earlier in
        the same call are discarded with the stream.
        """
        if self._failed:
            raise MediaFormatError("FLV reader already failed")
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            chunk = bytes(buf)
            buf.clear()
        else:
            chunk = data if isinstance(data, bytes) else bytes(data)
        try:
            return self._parse(chunk)
        except MediaFormatError:
            self._failed = True
            buf.clear()
            raise

    def _parse(self, chunk: bytes) -> list[FlvTag]:
        pos = 0
        if self.header is None:
            pos = self._parse_file_header(chunk)
            if pos == 0:
                self._buf += chunk
                return []
        tags: list[FlvTag] = []
        n = len(chunk)
        limit = self._max
        self._need = TAG_HEADER_SIZE
        while n - pos >= TAG_HEADER_SIZE:
            kind_size, ts_field, stream_hi, stream_lo = _TAG_HEAD.unpack_from(chunk, pos)
            size = kind_size & 0xFFFFFF
            total = size + _TAG_OVERHEAD
            if total > limit:
                raise FlvTagTooLarge(f"FLV tag of {total} bytes exceeds limit {limit}")
            if n - pos < total:
                self._need = total
                break
            if stream_hi or stream_lo:
                raise MediaFormatError("FLV tag stream id must be 0")
            if _U32.unpack_from(chunk, pos + total - PREVIOUS_TAG_SIZE)[0] != size + 11:
                raise MediaFormatError("FLV PreviousTagSize does not match the tag")
            timestamp = (ts_field >> 8) | ((ts_field & 0xFF) << 24)
            data = chunk if total == n else chunk[pos : pos + total]
            tags.append(_make_tag(data, kind_size >> 24, timestamp, size))
            pos += total
        if pos < n:
            self._buf += memoryview(chunk)[pos:]
        return tags

    def _parse_file_header(self, chunk: bytes) -> int:
        """Position after the header and PreviousTagSize0, or 0 when more bytes are needed."""
        if len(chunk) < FILE_HEADER_SIZE:
            self._need = FILE_HEADER_SIZE
            return 0
        if chunk[:4] != b"FLV\x01":
            raise MediaFormatError("not an FLV version 1 stream")
        offset: int = _U32.unpack_from(chunk, 5)[0]
        if not FILE_HEADER_SIZE <= offset <= MAX_HEADER_OFFSET:
            raise MediaFormatError(f"FLV header data offset {offset} out of range")
        end = offset + PREVIOUS_TAG_SIZE
        if len(chunk) < end:
            self._need = end
            return 0
        if _U32.unpack_from(chunk, offset)[0] != 0:
            raise MediaFormatError("FLV PreviousTagSize0 must be 0")
        self.header = FlvHeader(has_audio=bool(chunk[4] & 0x04), has_video=bool(chunk[4] & 0x01))
        return end


def _make_tag(data: bytes, kind: int, timestamp: int, size: int) -> FlvTag:
    body = TAG_HEADER_SIZE
    if kind == TAG_VIDEO:
        return _video_tag(data, timestamp, size)
    if kind == TAG_AUDIO:
        if size < 1:
            raise MediaFormatError("empty FLV audio tag")
        sound_format = data[body] >> 4
        if sound_format != SOUND_AAC:
            return FlvTag(data, kind, timestamp, sound_format, 0, -1, 0, body + 1)
        if size < 2 or data[body + 1] > 1:
            raise MediaFormatError("bad AAC packet type")
        return FlvTag(data, kind, timestamp, sound_format, 0, data[body + 1], 0, body + 2)
    if kind == TAG_SCRIPT:
        return FlvTag(data, kind, timestamp, -1, 0, -1, 0, body)
    if kind & 0x20:
        raise MediaFormatError("encrypted (filtered) FLV tags are not supported")
    raise MediaFormatError(f"unknown FLV tag type {kind}")


def _video_tag(data: bytes, timestamp: int, size: int) -> FlvTag:
    body = TAG_HEADER_SIZE
    if size < 1:
        raise MediaFormatError("empty FLV video tag")
    flags = data[body]
    frame_type, codec = flags >> 4, flags & 0x0F
    if not 1 <= frame_type <= FRAME_INFO:
        raise MediaFormatError(f"FLV video frame type {frame_type} (enhanced RTMP unsupported)")
    if codec != VIDEO_CODEC_AVC or frame_type == FRAME_INFO:
        return FlvTag(data, TAG_VIDEO, timestamp, codec, frame_type, -1, 0, body + 1)
    if size < 5:
        raise MediaFormatError("FLV AVC video tag shorter than its 5-byte header")
    word = _U32.unpack_from(data, body + 1)[0]
    packet_type = word >> 24
    if packet_type > 2:
        raise MediaFormatError(f"bad AVC packet type {packet_type}")
    cts = word & 0xFFFFFF
    cts -= (cts & 0x800000) << 1
    return FlvTag(data, TAG_VIDEO, timestamp, codec, frame_type, packet_type, cts, body + 5)

"""Talk audio from an app to the device (``voice?channel=N``; the ``iv_avt_start_recv_stream``
/ ``recv_stream`` / ``stop_recv_stream`` callbacks of spec §7.4).

The app uploads bytes in whatever pieces its transport carries (a data channel delivers
≤16 KB messages), framed as its ``format`` says: ``flv`` (AAC in FLV audio tags, what
Tencent's SDKs and the mini-program pusher send), ``adts`` (AAC frames with ADTS headers) or
``pcm`` (s16le, mono, 16 kHz). :class:`TalkSink` reassembles frames across pieces and hands
each one to the device's ``deliver(codec, frame)``: ``"aac"`` frames as ADTS (self-describing:
a speaker driver or FFmpeg can play them without a side channel), or — when the device
asks for ``decode`` — ``"pcm"`` s16le mono at the stream's rate, decoded with FFmpeg's AAC
decoder (PyAV), for a device whose speaker takes PCM only.

Bad input raises :class:`~ivcloud.protocol.errors.MediaFormatError` from ``write``; the sink
is then failed (the frame boundaries are lost) and the upload should be ended.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import av
import numpy as np

from ivcloud.protocol.av.aac import add_adts, parse_adts_header, parse_asc, strip_adts
from ivcloud.protocol.av.flv import SOUND_AAC, TAG_AUDIO
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.protocol.xp2p import TalkFormat

__all__ = ["AacDecoder", "TalkSink"]

Deliver = Callable[[str, bytes], Awaitable[None] | None]
MAX_PENDING = 64 * 1024  # an ADTS frame is < 8 KB; more pending means garbage


class AacDecoder:
    """Raw AAC frames → s16le mono PCM at the stream's sample rate."""

    def __init__(self, asc: bytes) -> None:
        config = parse_asc(asc)
        self.sample_rate = config.sample_rate
        self._ctx = av.CodecContext.create("aac", "r")
        self._ctx.extradata = asc
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=config.sample_rate)

    def decode(self, raw: bytes) -> bytes:
        out: list[bytes] = []
        try:
            frames = self._ctx.decode(av.Packet(raw))
        except av.error.FFmpegError as exc:
            raise MediaFormatError(f"AAC frame does not decode: {exc}") from None
        for frame in frames:
            for pcm in self._resampler.resample(frame):
                out.append(pcm.to_ndarray().astype(np.int16).tobytes())
        return b"".join(out)


class TalkSink:
    """One talk upload. ``write`` may be awaited per transport message; ``close`` ends the
    upload (the service then tells the device). ``frames``/``bytes_in`` count what arrived."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        input_format: TalkFormat = "flv",
        decode: bool = False,
        on_close: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        self._deliver = deliver
        self.input_format = input_format
        self.decode = decode
        self._on_close = on_close
        self._flv = FlvReader(max_tag_size=64 * 1024) if input_format == "flv" else None
        self._pending = bytearray()
        self._asc: bytes | None = None
        self._decoder: AacDecoder | None = None
        self._asc_decoding = b""
        self.closed = False
        self.frames = 0
        self.bytes_in = 0

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise MediaFormatError("talk upload already closed")
        self.bytes_in += len(data)
        if self.input_format == "pcm":
            self._pending += data
            whole = len(self._pending) & ~1
            if whole:
                chunk = bytes(self._pending[:whole])
                del self._pending[:whole]
                await self._emit("pcm", chunk)
            return
        for raw, asc in self._frames(data):
            await self._aac(raw, asc)

    def _frames(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if self._flv is not None:
            out: list[tuple[bytes, bytes]] = []
            for tag in self._flv.feed(data):
                if tag.tag_type != TAG_AUDIO:
                    continue  # calltype=video: the simulated device has no screen
                if tag.codec_id != SOUND_AAC:
                    raise MediaFormatError(f"talk audio codec {tag.codec_id} is not AAC")
                if tag.is_audio_sequence_header:
                    parse_asc(bytes(tag.payload))
                    self._asc = bytes(tag.payload)
                elif self._asc is None:
                    raise MediaFormatError("AAC frame before the AAC sequence header")
                else:
                    out.append((bytes(tag.payload), self._asc))
            return out
        self._pending += data
        frames = []
        while len(self._pending) >= 7:
            length = parse_adts_header(self._pending).frame_length
            if len(self._pending) < length:
                break
            frames.append(strip_adts(self._pending[:length]))
            del self._pending[:length]
        if len(self._pending) > MAX_PENDING:
            raise MediaFormatError("talk upload is not ADTS")
        return frames

    async def _aac(self, raw: bytes, asc: bytes) -> None:
        if not self.decode:
            await self._emit("aac", add_adts(raw, asc))
            return
        if self._decoder is None or asc != self._asc_decoding:
            self._decoder = AacDecoder(asc)
            self._asc_decoding = asc
        pcm = self._decoder.decode(raw)
        if pcm:
            await self._emit("pcm", pcm)

    async def _emit(self, codec: str, frame: bytes) -> None:
        self.frames += 1
        result = self._deliver(codec, frame)
        if inspect.isawaitable(result):
            await result

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            result = self._on_close()
            if inspect.isawaitable(result):
                await result

"""Talk audio from the app to the device (the XP2P SDK's ``runSendService`` / ``dataSend``):
:class:`VoiceStream` over an accepted ``voice?channel=N&calltype=audio`` upload.

What goes on the wire, and why: **AAC-LC in FLV audio tags** (the ``voice`` request's default
``format=flv``), the framing Tencent's app SDKs and the mini-program pusher send, so any
XP2P-style camera takes it, not only ivcloud's. The caller chooses what it hands over:

- ``fmt="aac"``: AAC-LC frames at ``sample_rate`` (mono), each ``write`` either one raw frame
  or ADTS frames (recognised by their sync word; their own header's config is used) —
  passed through, never re-encoded;
- ``fmt="pcm"``: s16le mono samples at ``sample_rate`` in pieces of any size, encoded here
  to AAC-LC 16 kHz mono 32 kbit/s with FFmpeg's encoder (PyAV), resampled first when
  ``sample_rate`` is not 16 kHz. 8× less than the PCM itself over the tunnel (which may be a
  TURN relay), and a device never has to take PCM.

Each FLV tag is one data-channel message (the first also carries the FLV header), so the
device's sink sees frame-sized pieces; sending waits while the tunnel's buffer is full.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

import av
import numpy as np

from ivcloud.client.p2p import P2PError, VoiceUpload
from ivcloud.client.xp2p_errors import Xp2pParamError, Xp2pVoiceError, logged, seed_line
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.av.aac import (
    AAC_LC,
    SAMPLE_RATES,
    add_adts,
    build_asc,
    is_adts,
    split_adts,
)
from ivcloud.protocol.av.flv import FlvMuxer
from ivcloud.protocol.errors import MediaFormatError

__all__ = ["PCM_ENCODE_RATE", "PcmAacEncoder", "VoiceStream", "voice_request"]

#: Rate of the AAC ivcloud encodes PCM to (what IoT Video cameras' speakers are fed).
PCM_ENCODE_RATE = 16000
_SAMPLES_PER_FRAME = 1024


def voice_request(channel: int) -> str:
    """The request opening a talk upload (``format`` left at its FLV default)."""
    return f"voice?channel={channel}&calltype=audio"


class PcmAacEncoder:
    """s16le mono PCM at ``sample_rate`` → ADTS AAC-LC frames at 16 kHz."""

    def __init__(self, sample_rate: int, bitrate: int = 32_000) -> None:
        if not 8000 <= sample_rate <= 48000:
            raise ValueError("PCM sample_rate must be 8000..48000")
        self.sample_rate = sample_rate
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = PCM_ENCODE_RATE
        ctx.layout = "mono"
        ctx.format = "fltp"
        ctx.bit_rate = bitrate
        ctx.time_base = Fraction(1, PCM_ENCODE_RATE)
        ctx.open()
        self._ctx: av.audio.codeccontext.AudioCodecContext = ctx
        self._resampler = av.AudioResampler(
            format="fltp", layout="mono", rate=PCM_ENCODE_RATE, frame_size=_SAMPLES_PER_FRAME
        )
        self._asc = build_asc(AAC_LC, PCM_ENCODE_RATE, 1)
        self._pending = b""
        self._pts = 0

    def encode(self, pcm: bytes) -> list[bytes]:
        data = self._pending + pcm
        whole = len(data) & ~1
        self._pending = data[whole:]
        if not whole:
            return []
        samples = np.frombuffer(data[:whole], dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.sample_rate)
        self._pts += samples.shape[1]
        return self._packets(self._resampler.resample(frame))

    def flush(self) -> list[bytes]:
        """What the resampler and encoder still hold (the end of the talk)."""
        out = self._packets(self._resampler.resample(None))
        return out + [add_adts(bytes(p), self._asc) for p in self._ctx.encode(None)]

    def _packets(self, frames: list[av.AudioFrame]) -> list[bytes]:
        return [add_adts(bytes(p), self._asc) for f in frames for p in self._ctx.encode(f)]


class VoiceStream:
    """One talk upload to a device (see the module docstring for ``fmt``). ``write`` after
    :meth:`close`, or once the tunnel has closed, is −1003 ``application is invalid`` (the
    seed's "voice service closed"); audio that is not ``fmt`` is −1000 and the stream
    stays usable."""

    def __init__(self, upload: VoiceUpload, *, device_id: str, fmt: str, sample_rate: int) -> None:
        if fmt not in ("aac", "pcm"):
            raise ValueError("fmt must be 'aac' or 'pcm'")
        if fmt == "aac" and sample_rate not in SAMPLE_RATES:
            raise ValueError(f"AAC sample_rate must be one of {SAMPLE_RATES}")
        self.device_id = device_id
        self.fmt = fmt
        self.sample_rate = sample_rate
        self._upload = upload
        self._encoder = PcmAacEncoder(sample_rate) if fmt == "pcm" else None
        self._asc = build_asc(AAC_LC, sample_rate, 1)
        self._muxer = FlvMuxer(has_video=False, has_audio=True)
        self._head = self._muxer.header()
        self._samples = 0  # timestamps by sample count, at the AAC rate
        self._rate = PCM_ENCODE_RATE if fmt == "pcm" else sample_rate
        self.closed = False
        self.frames_sent = 0

    async def write(self, data: bytes) -> None:
        """Send audio (see ``fmt``). Returns once it is handed to the tunnel."""
        if self.closed:
            raise logged(
                Xp2pVoiceError(codes.XP2P_ERR_UNINIT, seed_line(codes.XP2P_ERR_UNINIT, 1)),
                device_id=self.device_id,
            )
        try:
            frames = self._frames(data)
        except MediaFormatError as exc:
            raise logged(
                Xp2pParamError(codes.XP2P_ERR_INIT_PRM, f"talk audio is not {self.fmt}: {exc}"),
                device_id=self.device_id,
            ) from None
        await self._send(frames)

    def _frames(self, data: bytes) -> list[bytes]:
        if self._encoder is not None:
            return self._encoder.encode(data)
        if not data:
            return []
        if is_adts(data):
            return [add_adts(raw, asc) for raw, asc in split_adts(data)]
        return [add_adts(data, self._asc)]

    async def _send(self, adts_frames: list[bytes]) -> None:
        for adts in adts_frames:
            pts_ms = self._samples * 1000 // self._rate
            tags = self._head + self._muxer.add_audio(adts, pts_ms)
            self._head = b""
            self._samples += _SAMPLES_PER_FRAME
            try:
                await self._upload.write(tags)
            except P2PError as exc:
                self.closed = True
                raise logged(
                    Xp2pVoiceError(
                        codes.XP2P_ERR_UNINIT,
                        f"{seed_line(codes.XP2P_ERR_UNINIT, 1)} ({type(exc).__name__})",
                    ),
                    device_id=self.device_id,
                ) from None
            self.frames_sent += 1

    async def close(self) -> None:
        """Send what the PCM encoder still holds, then end the upload. Idempotent."""
        if self.closed:
            return
        try:
            if self._encoder is not None:
                with contextlib.suppress(Xp2pVoiceError):  # the tunnel is gone: logged
                    await self._send(self._encoder.flush())
        finally:
            self.closed = True
            await self._upload.aclose()

"""Simulated microphone audio: a steady tone with a beep at every wall-clock second,
encoded to AAC-LC (what IoT Video devices put in FLV) or Opus (what WebRTC carries).

The beep starts on each whole second of the capture clock, the same clock burnt into the
video, so a listener hears that the audio is live and a test can line the beeps up with
the video's clock code to measure A/V offset.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AudioCodec",
    "AudioEncoder",
    "AudioProfile",
    "EncodedAudio",
    "ToneGenerator",
    "audio_specific_config",
]

AudioCodec = Literal["aac", "opus"]

# ISO 14496-3 sampling_frequency_index order.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_OPUS_FRAME_MS = (10, 20, 40, 60)


@dataclass(frozen=True, slots=True)
class AudioProfile:
    """One audio stream. ``sample_rate``/``bitrate`` default per codec (AAC 16 kHz, Opus
    48 kHz; 32 kbit/s); Opus packs ``frame_ms`` of audio per packet (AAC is always 1024
    samples)."""

    codec: AudioCodec = "aac"
    sample_rate: int = 0
    channels: int = 1
    bitrate: int = 32_000
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.codec not in ("aac", "opus"):
            raise ValueError(f"unknown audio codec {self.codec!r}")
        if self.sample_rate == 0:
            object.__setattr__(self, "sample_rate", 16000 if self.codec == "aac" else 48000)
        rates = _AAC_RATES if self.codec == "aac" else _OPUS_RATES
        if self.sample_rate not in rates:
            raise ValueError(f"{self.codec} does not support {self.sample_rate} Hz")
        if self.channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        if not 6_000 <= self.bitrate <= 320_000:
            raise ValueError(f"bitrate {self.bitrate} outside 6..320 kbit/s")
        if self.codec == "opus" and self.frame_ms not in _OPUS_FRAME_MS:
            raise ValueError(f"opus frame_ms must be one of {_OPUS_FRAME_MS}")

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one encoded frame."""
        if self.codec == "aac":
            return 1024
        return self.sample_rate * self.frame_ms // 1000


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One raw codec frame (AAC without ADTS; an Opus packet). ``pts_ms`` counts from the
    stream's start; ``capture_ms`` is the wall clock of its first sample; ``samples`` its
    duration at ``sample_rate`` (exact, for muxers that count in samples)."""

    codec: AudioCodec
    pts_ms: int
    capture_ms: int
    data: bytes
    samples: int
    sample_rate: int


def audio_specific_config(sample_rate: int, channels: int) -> bytes:
    """The 2-byte AAC-LC AudioSpecificConfig (object type 2) that FLV's AAC sequence
    header and MP4's ``esds`` carry. FFmpeg's own extradata appends an explicit "no SBR"
    extension some parsers reject; the short form is what cameras send."""
    index = _AAC_RATES.index(sample_rate)
    value = (2 << 11) | (index << 7) | (channels << 3)
    return value.to_bytes(2, "big")


class ToneGenerator:
    """440 Hz at −20 dBFS, and 1 kHz at −6 dBFS for the first 100 ms of each wall-clock
    second. Phase is continuous across frames (no clicks at frame edges)."""

    tone_hz = 440.0
    beep_hz = 1000.0
    beep_ms = 100

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self._n = 0  # samples generated so far

    def skip(self, samples: int) -> None:
        self._n += samples

    def next(self, samples: int, start_ms: float) -> NDArray[np.float32]:
        """``samples`` samples whose first is captured at wall time ``start_ms``; shape
        (channels, samples), float32 in −1..1."""
        rate = self.sample_rate
        i = np.arange(self._n, self._n + samples, dtype=np.float64)
        self._n += samples
        tone = 0.1 * np.sin(2 * math.pi * self.tone_hz / rate * i)
        wall_ms = start_ms + np.arange(samples, dtype=np.float64) * (1000.0 / rate)
        beep_on = np.mod(wall_ms, 1000.0) < self.beep_ms
        beep = np.where(beep_on, 0.5 * np.sin(2 * math.pi * self.beep_hz / rate * i), 0.0)
        mono = (tone + beep).astype(np.float32)
        return np.repeat(mono[None, :], self.channels, axis=0)


class AudioEncoder:
    """Tone generator + PyAV encoder (FFmpeg's ``aac``, ``libopus``). Each :meth:`encode`
    feeds one frame of audio and returns the packets the codec released — normally one, but
    codecs keep a frame of look-ahead, so the first call may return none.

    Priming output wholly before the stream's start (AAC's first packet) is dropped and
    negative timestamps clamp to 0: live FLV/RTP timestamps cannot go negative, and a
    decoder starting mid-stream copes without it."""

    def __init__(self, profile: AudioProfile | None = None) -> None:
        self.profile = p = profile or AudioProfile()
        self._lock = threading.Lock()
        self._tone = ToneGenerator(p.sample_rate, p.channels)
        self._sent = 0  # samples fed
        self._start_ms: float | None = None
        layout = "mono" if p.channels == 1 else "stereo"
        self._layout = layout
        if p.codec == "aac":
            ctx = av.CodecContext.create("aac", "w")
            ctx.format = "fltp"
            self.config = audio_specific_config(p.sample_rate, p.channels)
        else:
            ctx = av.CodecContext.create("libopus", "w")
            ctx.format = "flt"
            ctx.options = {"application": "lowdelay", "frame_duration": str(p.frame_ms)}
        ctx.sample_rate = p.sample_rate
        ctx.layout = layout
        ctx.bit_rate = p.bitrate
        ctx.time_base = Fraction(1, p.sample_rate)
        ctx.open()
        if ctx.frame_size != p.frame_samples:
            raise RuntimeError(f"{p.codec} frame size {ctx.frame_size} != {p.frame_samples}")
        if p.codec == "opus":
            self.config = bytes(ctx.extradata or b"")  # the OpusHead, for MP4/WebM muxers
        self._ctx: av.audio.codeccontext.AudioCodecContext | None = ctx

    @property
    def frame_ms(self) -> float:
        return self.profile.frame_samples * 1000.0 / self.profile.sample_rate

    def encode(self, start_ms: float) -> list[EncodedAudio]:
        """Capture and encode the next frame; ``start_ms`` is the wall time of its first
        sample (it only positions the beep; timestamps follow the sample count)."""
        p = self.profile
        with self._lock:
            ctx = self._ctx
            if ctx is None:
                raise RuntimeError("encoder closed")
            if self._start_ms is None:
                self._start_ms = start_ms
            samples = self._tone.next(p.frame_samples, start_ms)
            frame = av.AudioFrame.from_ndarray(
                samples if ctx.format.is_planar else samples.T.reshape(1, -1),
                format=ctx.format.name,
                layout=self._layout,
            )
            frame.sample_rate = p.sample_rate
            frame.pts = self._sent
            frame.time_base = ctx.time_base
            self._sent += p.frame_samples
            out: list[EncodedAudio] = []
            for packet in ctx.encode(frame):
                pts = packet.pts or 0
                duration = packet.duration or p.frame_samples
                if pts + duration <= 0:
                    continue  # priming only
                offset_ms = max(0, pts) * 1000 / p.sample_rate
                pts_ms, capture_ms = round(offset_ms), round(self._start_ms + offset_ms)
                out.append(
                    EncodedAudio(
                        p.codec, pts_ms, capture_ms, bytes(packet), duration, p.sample_rate
                    )
                )
            return out

    def skip(self, frames: int) -> None:
        """Leave out ``frames`` frames (the capture fell behind): timestamps jump over the
        gap, as after a real microphone buffer overrun."""
        with self._lock:
            self._sent += frames * self.profile.frame_samples
            self._tone.skip(frames * self.profile.frame_samples)

    def close(self) -> None:
        with self._lock:
            self._ctx = None

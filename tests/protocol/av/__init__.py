"""Real media for the container tests: H.264 and AAC encoded by PyAV (libx264, ffmpeg aac).

PyAV is used only here, in tests, to prove that what the sans-IO layer writes is what real
demuxers and decoders accept, and that it reads what ffmpeg writes.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

FRAME_MS = 40


@dataclass(frozen=True)
class EncodedVideo:
    annexb: bytes  # one access unit, Annex B (libx264 repeats SPS/PPS in keyframes)
    pts_ms: int
    dts_ms: int
    keyframe: bool


@dataclass(frozen=True)
class EncodedAudio:
    asc: bytes
    sample_rate: int
    channels: int
    frames: tuple[bytes, ...]  # raw AAC frames, 1024 samples apart, priming frame dropped


def _picture(width: int, height: int, index: int) -> np.ndarray:
    """A moving gradient: cheap to make, and it changes enough for real P-frames."""
    yy, xx = np.mgrid[0:height, 0:width]
    luma = ((xx + yy + index * 4) % 256).astype(np.uint8)
    return np.stack([luma, luma // 2, 255 - luma], axis=2)


@functools.cache
def encode_h264(
    width: int = 320,
    height: int = 240,
    frames: int = 36,
    *,
    profile: str = "baseline",
    pix_fmt: str = "yuv420p",
    gop: int = 12,
    bframes: int = 0,
    x264_params: str = "",
    preset: str = "ultrafast",
) -> tuple[EncodedVideo, ...]:
    """Encode a moving picture. ``profile`` is a ceiling: libx264 signals the lowest profile
    the chosen tools need (ultrafast + 4:2:0 gives Constrained Baseline whatever the cap)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = pix_fmt
    codec.time_base = Fraction(1, 1000)
    codec.framerate = Fraction(1000, FRAME_MS)
    codec.gop_size = gop
    codec.max_b_frames = bframes
    options = {"profile": profile, "preset": preset}
    if bframes == 0:
        options["tune"] = "zerolatency"
    if x264_params:
        options["x264-params"] = x264_params
    codec.options = options
    packets = []
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(_picture(width, height, index), format="rgb24")
        frame = frame.reformat(format=pix_fmt)
        frame.pts = index * FRAME_MS
        packets += codec.encode(frame)
    packets += codec.encode(None)
    out = []
    for p in packets:
        assert p.pts is not None and p.dts is not None
        out.append(EncodedVideo(bytes(p), p.pts, p.dts, bool(p.is_keyframe)))
    return tuple(out)


@functools.cache
def encode_aac(frames: int = 50, sample_rate: int = 44100, channels: int = 2) -> EncodedAudio:
    codec = av.CodecContext.create("aac", "w")
    codec.sample_rate = sample_rate
    codec.layout = "stereo" if channels == 2 else "mono"
    codec.format = "fltp"
    codec.time_base = Fraction(1, sample_rate)
    codec.open()
    t = np.arange(1024 * frames) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    packets = []
    for index in range(frames):
        chunk = np.tile(tone[index * 1024 : (index + 1) * 1024], (channels, 1))
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=codec.layout)
        frame.sample_rate = sample_rate
        frame.pts = index * 1024
        packets += codec.encode(frame)
    packets += codec.encode(None)
    assert codec.extradata is not None
    raw = tuple(bytes(p) for p in packets if p.pts is not None and p.pts >= 0)
    return EncodedAudio(bytes(codec.extradata), sample_rate, channels, raw)


def audio_ms(index: int, sample_rate: int) -> int:
    return index * 1024 * 1000 // sample_rate


def open_container(data: bytes, fmt: str) -> av.container.InputContainer:
    return av.open(io.BytesIO(data), mode="r", format=fmt)


def interleaved(
    video: tuple[EncodedVideo, ...], audio: EncodedAudio | None, shift_ms: int = 0
) -> list[tuple[int, EncodedVideo | bytes]]:
    """(decode time in ms, video frame or raw AAC frame) in decode order, as a device would
    send them; ``shift_ms`` moves everything later (B-frame streams start with dts < 0)."""
    events: list[tuple[int, int, EncodedVideo | bytes]] = [
        (frame.dts_ms + shift_ms, 0, frame) for frame in video
    ]
    if audio is not None:
        events += [
            (audio_ms(i, audio.sample_rate) + shift_ms, 1, raw)
            for i, raw in enumerate(audio.frames)
        ]
    events.sort(key=lambda e: (e[0], e[1]))
    return [(t, item) for t, _, item in events]

"""Simulated camera video: a moving test pattern with the capture time burnt in, encoded to
H.264 the way IoT Video devices send it.

The encoder is configured for what live viewing needs and the Tencent device SDK expects:
constrained baseline (every decoder, WebRTC included, can play it), no B-frames and
``tune=zerolatency`` so one picture in gives its access unit out at once (no encoder delay
to add to glass-to-glass latency), a fixed GOP with no scene-cut keyframes (so the hub's
GOP cache and a joining viewer's wait are predictable), and SPS/PPS repeated in-band in the
same Annex B buffer as every IDR ("SPS/PPS must be in the same buffer as the IDR"), so any
keyframe is a valid starting point on its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np
from av.video.frame import PictureType
from numpy.typing import NDArray

from ivcloud.media.clockcode import burn_clock, clock_layout

__all__ = [
    "QUALITIES",
    "EncodedVideo",
    "H264Encoder",
    "Quality",
    "TestPattern",
    "VideoEncoder",
    "VideoProfile",
]

Quality = Literal["standard", "high", "super"]
Preset = Literal["ultrafast", "superfast", "veryfast"]
_MS = Fraction(1, 1000)


@dataclass(frozen=True, slots=True)
class VideoProfile:
    """Resolution, rate and GOP of one stream. ``gop_seconds`` is 1–2 s: long enough to keep
    the bitrate down, short enough that a viewer joining mid-GOP is not kept waiting."""

    width: int = 640
    height: int = 360
    fps: int = 15
    gop_seconds: float = 1.0
    bitrate: int = 600_000
    preset: Preset = "ultrafast"

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even (4:2:0 chroma)")
        if not (160 <= self.width <= 4096 and 120 <= self.height <= 2304):
            raise ValueError(f"resolution {self.width}x{self.height} outside 160x120..4096x2304")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps {self.fps} outside 1..60")
        if not 1.0 <= self.gop_seconds <= 2.0:
            raise ValueError(f"gop_seconds {self.gop_seconds} outside 1..2")
        if not 50_000 <= self.bitrate <= 50_000_000:
            raise ValueError(f"bitrate {self.bitrate} outside 50 kbit/s..50 Mbit/s")
        if self.preset not in ("ultrafast", "superfast", "veryfast"):
            raise ValueError(f"unknown preset {self.preset!r}")

    @property
    def gop(self) -> int:
        """Frames from one IDR to the next."""
        return max(1, round(self.fps * self.gop_seconds))

    @classmethod
    def named(cls, quality: Quality, **overrides: Any) -> VideoProfile:
        """One of the XP2P ``quality=`` names, with any field overridden."""
        try:
            base = QUALITIES[quality]
        except KeyError:
            raise ValueError(f"unknown quality {quality!r}") from None
        return replace(base, **overrides)


QUALITIES: dict[str, VideoProfile] = {
    "standard": VideoProfile(640, 360, bitrate=600_000),
    "high": VideoProfile(1280, 720, bitrate=1_500_000),
    "super": VideoProfile(1920, 1080, bitrate=3_000_000),
}


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    """One H.264 access unit in Annex B (start codes). ``pts_ms`` counts from the stream's
    start; ``capture_ms`` is the wall clock burnt into the picture."""

    pts_ms: int
    capture_ms: int
    data: bytes
    keyframe: bool


class TestPattern:
    """A cheap picture that clearly moves: a scrolling grey ramp, a bright bar sweeping
    across and a coloured band sliding down, positioned by capture time (not frame count),
    so dropped frames show as jumps like on a real camera. About one plane copy per frame."""

    __test__ = False  # not a pytest class, whatever the name says

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        period = 256
        ramp = np.abs((np.arange(width + period) % period) - period // 2)  # triangle 0..128
        self._ramp = (48 + ramp).astype(np.uint8)  # luma 48..176
        self._period = period
        cw, ch = width // 2, height // 2
        self._u = np.broadcast_to(np.linspace(96, 160, cw).astype(np.uint8), (ch, cw))
        self._v = np.broadcast_to(np.linspace(160, 96, ch).astype(np.uint8)[:, None], (ch, cw))

    def draw(
        self, y: NDArray[np.uint8], u: NDArray[np.uint8], v: NDArray[np.uint8], capture_ms: int
    ) -> None:
        """Paint into the planes of a yuv420p frame (views of its buffers)."""
        w, h = self.width, self.height
        t = capture_ms / 1000.0
        shift = int(t * w / 4) % self._period  # a quarter of the width per second
        y[:, :] = self._ramp[shift : shift + w]
        u[:, :] = self._u
        v[:, :] = self._v
        bar_w = max(8, w // 20)
        bar_x = int((t % 2.0) / 2.0 * (w + bar_w)) - bar_w  # across in 2 s
        y[:, max(0, bar_x) : max(0, bar_x + bar_w)] = 220
        band_h = max(8, h // 12)
        band_y = int((t % 3.0) / 3.0 * (h + band_h)) - band_h  # down in 3 s
        ys, ye = max(0, band_y) // 2, max(0, band_y + band_h) // 2
        u[ys:ye, :] = 200
        v[ys:ye, :] = 80

    def frame(self, capture_ms: int) -> av.VideoFrame:
        """A new yuv420p frame showing ``capture_ms``: pattern plus clock code."""
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        y, u, v = (_plane_view(frame, i) for i in range(3))
        self.draw(y, u, v, capture_ms)
        burn_clock(y, capture_ms, u=u, v=v)
        return frame


def _plane_view(frame: av.VideoFrame, index: int) -> NDArray[np.uint8]:
    """A writable (height, width) numpy view of one plane, skipping the row padding."""
    plane = frame.planes[index]
    flat = np.frombuffer(memoryview(plane), dtype=np.uint8)[: plane.height * plane.line_size]
    return flat.reshape(plane.height, plane.line_size)[:, : plane.width]


class H264Encoder:
    """libx264 through PyAV, one access unit per input picture. Thread-safe (a lock
    serialises calls), so the pacer can encode in a worker thread while the event loop asks
    for a keyframe."""

    def __init__(self, profile: VideoProfile) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self._force = False
        self._last_pts = -1
        self._ctx: av.video.codeccontext.VideoCodecContext | None = self._open(profile)

    @staticmethod
    def _open(p: VideoProfile) -> av.video.codeccontext.VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = p.width, p.height, "yuv420p"
        ctx.time_base = _MS
        ctx.framerate = Fraction(p.fps, 1)
        ctx.gop_size = p.gop
        ctx.max_b_frames = 0
        ctx.bit_rate = p.bitrate
        ctx.thread_count = 1  # one slice per picture; simulators share a small box
        ctx.profile = "Constrained Baseline"
        kbit = p.bitrate // 1000
        params = (
            f"keyint={p.gop}:min-keyint={p.gop}:scenecut=0:bframes=0:repeat-headers=1"
            f":annexb=1:aud=0:vbv-maxrate={kbit}:vbv-bufsize={kbit}"
        )
        ctx.options = {"preset": p.preset, "tune": "zerolatency", "x264-params": params}
        ctx.open()
        return ctx

    def force_keyframe(self) -> None:
        """Make the next picture an IDR (a viewer joined, or the hub lost sync); the fixed
        GOP restarts from it."""
        self._force = True

    def encode(self, frame: av.VideoFrame, *, pts_ms: int, capture_ms: int) -> EncodedVideo:
        """Encode one picture. Raises ``RuntimeError`` if the encoder ever buffers (which
        would mean added latency) or after :meth:`close`."""
        with self._lock:
            if self._ctx is None:
                raise RuntimeError("encoder closed")
            pts = max(pts_ms, self._last_pts + 1)  # x264 needs strictly increasing pts
            self._last_pts = pts
            frame.pts, frame.time_base = pts, _MS
            if self._force:
                self._force = False
                frame.pict_type = PictureType.I
            packets = self._ctx.encode(frame)
            if len(packets) != 1:
                raise RuntimeError(f"expected one access unit per picture, got {len(packets)}")
            packet = packets[0]
            return EncodedVideo(pts_ms, capture_ms, bytes(packet), packet.is_keyframe)

    def close(self) -> None:
        """Release the encoder; later :meth:`encode` calls fail."""
        with self._lock:
            self._ctx = None


class VideoEncoder:
    """Pattern + clock code + H.264: what a simulated camera "captures" at a given time."""

    def __init__(self, profile: VideoProfile | None = None) -> None:
        self.profile = profile or VideoProfile()
        if clock_layout(self.profile.width, self.profile.height) is None:
            raise ValueError("frame too small for the clock code")
        self.pattern = TestPattern(self.profile.width, self.profile.height)
        self.h264 = H264Encoder(self.profile)
        self._first_ms: int | None = None

    def encode(self, capture_ms: int, pts_ms: int | None = None) -> EncodedVideo:
        """The access unit for a picture captured at ``capture_ms`` (wall clock, ms).
        ``pts_ms`` defaults to the time since the first picture."""
        if self._first_ms is None:
            self._first_ms = capture_ms
        if pts_ms is None:
            pts_ms = capture_ms - self._first_ms
        return self.h264.encode(
            self.pattern.frame(capture_ms), pts_ms=pts_ms, capture_ms=capture_ms
        )

    def force_keyframe(self) -> None:
        self.h264.force_keyframe()

    def close(self) -> None:
        self.h264.close()

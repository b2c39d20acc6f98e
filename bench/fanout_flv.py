"""What every fan-out viewer of ``fanout_viewers.py`` shares, whatever carries its bytes.

:class:`ViewerBase` holds the per-viewer counters and the readiness futures; :class:`FlvWalker`
adds the FLV walk the HTTP-FLV and WS-FLV viewers both feed (their transports differ, the
check must not): every tag's PreviousTagSize checked, so a viewer knows it got whole tags of
a whole stream. Kept separate from the transports so that the same counters mean the same
thing for every ``--proto``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

_TAG = struct.Struct(">IIHB")  # type+size, timestamp (24+8), stream id
_U32 = struct.Struct(">I")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


class ViewerBase(asyncio.Protocol):
    """Counters of one viewer (the transport's framing is a subclass's). ``measuring`` is
    flipped by the runner around the window; ``keyframe`` resolves True at the first
    keyframe (False if the connection ends first)."""

    def __init__(self, epoch_ms: int, frame_ms: float) -> None:
        self.epoch_ms = epoch_ms
        self.gap_ms = 3 * frame_ms
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.error = ""
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.keyframe: asyncio.Future[bool] = loop.create_future()
        self.measuring = False
        self.bytes_total = 0
        self.bytes_window = 0  # media bytes (FLV tags, fMP4 segments) inside the window
        self.messages_window = 0  # WebSocket messages inside the window (HTTP: 0)
        self.video_window = 0
        self.keyframes = 0
        self.resyncs = 0  # codec headers / init re-sent mid-stream: the hub skipped us
        self.gaps = 0
        self.last_video_ts: float | None = None
        self.delays: list[float] = []

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.error:
            self.error = f"connection lost: {exc}"
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.keyframe.done():
            self.keyframe.set_result(False)

    def fail(self, message: str) -> None:
        if not self.error:
            self.error = message
        if self.transport is not None:
            self.transport.close()

    def stop(self) -> None:
        """End the viewing (the runner's last step)."""
        if self.transport is not None:
            self.transport.close()

    def video_frame(self, ts_ms: float, key: bool, now_ms: float) -> None:
        """One video frame with decode time ``ts_ms`` (the publisher's ``due − epoch``)."""
        if key:
            self.keyframes += 1
            if not self.keyframe.done():
                self.keyframe.set_result(True)
        if self.measuring:
            self.video_window += 1
            self.delays.append(now_ms - (self.epoch_ms + ts_ms))
            if self.last_video_ts is not None and ts_ms - self.last_video_ts > self.gap_ms:
                self.gaps += 1
        self.last_video_ts = ts_ms

    def summary(self, window: float) -> dict[str, Any]:
        """Per-viewer figures of the window (subclasses add their own)."""
        return {
            "kbit_s": round(self.bytes_window * 8 / window / 1000, 1),
            "video_fps": round(self.video_window / window, 2),
            "gaps": self.gaps,
            "resyncs": self.resyncs,
            "delay_p50_ms": pct(self.delays, 0.5),
            "delay_p99_ms": pct(self.delays, 0.99),
            "error": self.error,
        }


class FlvWalker(ViewerBase):
    """FLV bytes in (any cut), tags counted; bad framing raises ``ValueError``."""

    def __init__(self, epoch_ms: int, frame_ms: float) -> None:
        super().__init__(epoch_ms, frame_ms)
        self.flv = bytearray()
        self.flv_header = False
        self.tags_window = 0
        self.seq_headers = 0

    def feed_flv(self, data: bytes | bytearray) -> None:
        buf = self.flv
        buf += data
        pos = 0
        n = len(buf)
        if not self.flv_header:
            if n < 13:
                return
            if bytes(buf[:3]) != b"FLV":
                raise ValueError("not FLV")
            pos = _U32.unpack_from(buf, 5)[0] + 4
            self.flv_header = True
        now_ms = time.time() * 1000
        while n - pos >= 11:
            kind_size, ts_field, _, _ = _TAG.unpack_from(buf, pos)
            size = kind_size & 0xFFFFFF
            total = size + 15
            if n - pos < total:
                break
            if _U32.unpack_from(buf, pos + total - 4)[0] != size + 11:
                raise ValueError("PreviousTagSize mismatch: not a whole tag")
            self._tag(
                kind_size >> 24,
                (ts_field >> 8) | ((ts_field & 0xFF) << 24),
                buf,
                pos,
                total,
                now_ms,
            )
            pos += total
        del buf[:pos]

    def _tag(self, kind: int, ts: int, buf: bytearray, pos: int, total: int, now_ms: float) -> None:
        if self.measuring:
            self.bytes_window += total
            self.tags_window += 1
        if kind != 9:
            return
        flags, packet_type = buf[pos + 11], buf[pos + 12]
        if packet_type == 0:  # AVC sequence header
            self.seq_headers += 1
            if self.keyframes:  # re-sent mid-stream: the server skipped us to a keyframe
                self.resyncs += 1
            return
        self.video_frame(ts, flags >> 4 == 1, now_ms)

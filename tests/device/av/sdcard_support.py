"""Helpers for the SD-card and XP2P service tests: a fake clock, real recordings made from
the simulated camera (H.264 + AAC through PyAV) and decoding FLV output back to the
capture times burnt into its pictures."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av

from ivcloud.device.av import AudioProfile, LiveSource, VideoEncoder, VideoProfile
from ivcloud.device.av.recorder import SdCardRecorder
from ivcloud.device.av.sdcard import SdCard
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.av.flv_reader import FlvReader, FlvTag

NOW_S = 1_767_225_600  # 2026-01-01T00:00:00Z
SMALL = VideoProfile(320, 240, fps=10, gop_seconds=1.0, bitrate=150_000)


class FakeClock:
    """Wall clock that moves only when someone sleeps on it."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds
        await asyncio.sleep(0)


def live_source(clock: FakeClock, *, audio: bool = True) -> LiveSource:
    return LiveSource(SMALL, [AudioProfile("aac")] if audio else [], clock=clock, sleep=clock.sleep)


async def record_live(
    card: SdCard, seconds: float, *, start_s: float = NOW_S, segment_s: float = 2.0
) -> SdCardRecorder:
    """Record ``seconds`` of the simulated camera (fake clock: no real waiting)."""
    clock = FakeClock(start_s)
    async with live_source(clock) as src:
        rec = SdCardRecorder(
            card,
            audio_config=src.audio_config("aac"),
            segment_s=segment_s,
            request_keyframe=src.force_keyframe,
        )
        async for frame in src:
            if clock.now >= start_s + seconds:
                break
            rec.write(frame)
        rec.close()
    return rec


def recorded_template(root: Path) -> Path:
    """7 s of camera in 2 s segments, recorded once (outside any event loop) and copied by
    :func:`card_copy` for each test, so every test gets a card of its own cheaply."""
    asyncio.run(record_live(SdCard(root), 7.0, segment_s=2.0))
    return root


def card_copy(template: Path, dest: Path) -> SdCard:
    shutil.copytree(template, dest)
    return SdCard(dest)


def record_burst(card: SdCard, start_ms: int, frames: int, *, step_ms: int = 100) -> None:
    """A short recording at an explicit time (video only, first frame a keyframe)."""
    encoder = VideoEncoder(SMALL)
    rec = SdCardRecorder(card, segment_s=3600)
    try:
        for i in range(frames):
            rec.write(encoder.encode(start_ms + i * step_ms))
    finally:
        rec.close()
        encoder.close()


async def read_all(stream: AsyncIterator[bytes], limit: int | None = None) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
        if limit is not None and len(out) >= limit:
            break
    return bytes(out)


def flv_tags(data: bytes) -> list[FlvTag]:
    return FlvReader().feed(data)


@dataclass
class Decoded:
    clocks: list[int]  # capture time read from each decoded picture
    audio_frames: int


def decode_flv(data: bytes) -> Decoded:
    """Decode an FLV byte string with FFmpeg; every picture must carry a readable clock."""
    clocks: list[int] = []
    audio = 0
    with av.open(io.BytesIO(data), format="flv") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    t = read_clock(frame)
                    assert t is not None, "picture without a readable clock"
                    clocks.append(t)
                else:
                    audio += 1
    return Decoded(clocks, audio)

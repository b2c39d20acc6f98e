"""The hub fan-out benchmark's media: a 2 Mbit/s FLV recording made once with the project's
own camera pipeline, and its real-time replay into a WebSocket.

Why a recording: encoding 1280x720@25 costs the publisher most of a core, which would be
taken from the servers being measured on this 2-core box. Encoding once (a fake clock, so it
runs as fast as x264 can) and replaying the tags at their original pace costs almost
nothing, and both servers get the very same bytes.

Replay timestamps are wall-clock based: a tag recorded at ``t`` ms and sent at wall time
``w`` carries ``w - epoch_ms`` (its due time, not its actual send time), so a viewer that
knows ``epoch_ms`` can compute each tag's delivery delay (publisher schedule → viewer
arrival) whatever the server did in between — the same for both servers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivcloud.device.av import AudioProfile, EncodedVideo, LiveSource, VideoProfile
from ivcloud.protocol.av import FlvMuxer, FlvReader, rewrite_timestamp
from ivcloud.protocol.av.flv_reader import FlvTag

START_S = 1_767_225_600.0


class FakeClock:
    """Wall clock that only moves when the source sleeps: real encoders, no waiting."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def _record(seconds: float, profile: VideoProfile) -> bytes:
    clock = FakeClock(START_S)
    out = bytearray()
    async with LiveSource(
        profile, (AudioProfile("aac"),), clock=clock, sleep=clock.sleep
    ) as source:
        muxer = FlvMuxer(has_video=True, has_audio=True, audio_config=source.audio_config("aac"))
        out += muxer.header()
        async for frame in source:
            if clock.now >= START_S + seconds:
                break
            if isinstance(frame, EncodedVideo):
                out += muxer.add_video(frame.data, frame.pts_ms)
            else:
                out += muxer.add_audio(frame.data, frame.pts_ms)
    return bytes(out)


def recording(
    directory: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    bitrate: int = 2_000_000,
    seconds: float = 30.0,
    preset: str = "ultrafast",
) -> Path:
    """The recording for these parameters, made on first use and cached in ``directory``."""
    name = f"fanout-{width}x{height}-{fps}fps-{bitrate // 1000}k-{int(seconds)}s-{preset}.flv"
    path = directory / name
    if not path.exists():
        profile = VideoProfile(width, height, fps=fps, bitrate=bitrate, preset=preset)  # type: ignore[arg-type]
        tmp = path.with_suffix(".part")
        tmp.write_bytes(asyncio.run(_record(seconds, profile)))
        tmp.rename(path)
    return path


@dataclass
class Tape:
    """A recording split for replay: the file header, the sequence headers, and the media
    tags (first one a keyframe) with their offsets from the first media tag."""

    header: bytes
    sequence_headers: list[bytes]
    tags: list[FlvTag]
    offsets_ms: list[int]
    duration_ms: int
    media_bytes: int

    @classmethod
    def load(cls, path: Path) -> Tape:
        data = path.read_bytes()
        reader = FlvReader()
        tags = reader.feed(data)
        seq = [t for t in tags if t.is_video_sequence_header or t.is_audio_sequence_header]
        media = [t for t in tags if t not in seq and t.tag_type in (8, 9)]
        first = next(i for i, t in enumerate(media) if t.is_video_keyframe)
        media = media[first:]
        t0 = media[0].timestamp
        offsets = [t.timestamp - t0 for t in media]
        # The loop restarts one video frame interval after the last tag.
        video_ts = [t.timestamp for t in media if t.tag_type == 9]
        step = (video_ts[-1] - video_ts[0]) / max(1, len(video_ts) - 1)
        header_len = data.index(media[0].data) if not seq else data.index(seq[0].data)
        return cls(
            header=data[:header_len],
            sequence_headers=[t.data for t in seq],
            tags=media,
            offsets_ms=offsets,
            duration_ms=round(offsets[-1] + step),
            media_bytes=sum(len(t.data) for t in media),
        )

    def describe(self) -> dict[str, Any]:
        video = [t for t in self.tags if t.tag_type == 9]
        return {
            "duration_s": self.duration_ms / 1000,
            "media_bytes": self.media_bytes,
            "bitrate_kbit_s": round(self.media_bytes * 8 / self.duration_ms, 1),
            "video_frames": len(video),
            "keyframes": sum(1 for t in video if t.is_video_keyframe),
            "audio_frames": len(self.tags) - len(video),
        }


class Replayer:
    """Sends a :class:`Tape` in real time through ``send`` (an awaitable taking bytes), looping
    forever; one message per tag, the file header and sequence headers with the first."""

    def __init__(self, tape: Tape, epoch_ms: int) -> None:
        self.tape = tape
        self.epoch_ms = epoch_ms
        self.sent_bytes = 0
        self.sent_tags = 0
        self.late_max_ms = 0.0

    async def run(self, send: Any) -> None:
        tape = self.tape
        start_ms = time.time() * 1000 + 50
        loop = 0
        first = tape.header + b"".join(
            rewrite_timestamp(s, int(start_ms - self.epoch_ms)) for s in tape.sequence_headers
        )
        while True:
            base = start_ms + loop * tape.duration_ms
            for tag, offset in zip(tape.tags, tape.offsets_ms, strict=True):
                due = base + offset
                delay = (due - time.time() * 1000) / 1000
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.late_max_ms = max(self.late_max_ms, -delay * 1000)
                data = rewrite_timestamp(tag.data, int(due - self.epoch_ms))
                if first:
                    data, first = first + data, b""
                await send(data)
                self.sent_bytes += len(data)
                self.sent_tags += 1
            loop += 1

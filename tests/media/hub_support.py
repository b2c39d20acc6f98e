"""Helpers for the stream hub tests: real H.264/AAC recorded fast (fake clock, real
encoders), decoding what viewers received with PyAV, and a live-view setup on a running
server (camera, app, family member) driven through the real App API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import CameraSimulator
from ivcloud.device.av import AudioProfile, EncodedVideo, LiveSource, MediaFrame, VideoProfile
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.av import FlvMuxer
from tests.api.test_push import give_user
from tests.appclient import AppApiClient, AppCreds, create_app, make_user, ok_data
from tests.conftest import make_settings
from tests.helpers import Provisioned, provision
from tests.rawdevice import RawDevice

LIGHT_VIDEO = {"width": 320, "height": 240, "fps": 10}
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


@dataclass
class Recording:
    """FLV as a pusher sends it: ``chunks[0]`` starts with the file header; one chunk per
    muxed frame. ``keyframe_clocks`` are the capture times (ms) of the IDR pictures."""

    chunks: list[bytes]
    keyframe_clocks: list[int]
    frames: list[MediaFrame]

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


async def record(
    seconds: float,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 10,
    audio: bool = True,
    bitrate: int = 300_000,
    start_s: float = START_S,
) -> Recording:
    clock = FakeClock(start_s)
    profile = VideoProfile(width, height, fps=fps, bitrate=bitrate)
    profiles = (AudioProfile("aac"),) if audio else ()
    chunks: list[bytes] = []
    frames: list[MediaFrame] = []
    async with LiveSource(profile, profiles, clock=clock, sleep=clock.sleep) as source:
        aac = source.audio_config("aac") if audio else None
        muxer = FlvMuxer(has_video=True, has_audio=audio, audio_config=aac)
        head = muxer.header()
        async for frame in source:
            if clock.now >= start_s + seconds:
                break
            frames.append(frame)
            if isinstance(frame, EncodedVideo):
                data = muxer.add_video(frame.data, frame.pts_ms)
            else:
                data = muxer.add_audio(frame.data, frame.pts_ms)
            if data:
                chunks.append(head + data)
                head = b""
    keys = [f.capture_ms for f in frames if isinstance(f, EncodedVideo) and f.keyframe]
    return Recording(chunks, keys, frames)


def decode_clocks(data: bytes, fmt: str) -> list[int | None]:
    """The clock code of every picture PyAV decodes from ``data`` (FLV or fMP4)."""
    with av.open(io.BytesIO(data), format=fmt) as container:
        return [read_clock(frame) for frame in container.decode(video=0)]


def audio_frames(data: bytes, fmt: str) -> int:
    with av.open(io.BytesIO(data), format=fmt) as container:
        if not container.streams.audio:
            return 0
        return sum(1 for _ in container.decode(audio=0))


def check_clocks(clocks: list[int | None], *, since_ms: int, until_ms: int) -> None:
    """Sane capture times: readable, increasing, within the test's wall-clock window."""
    assert clocks, "no picture decoded"
    readable = [c for c in clocks if c is not None]
    assert len(readable) >= len(clocks) - 1, clocks
    assert readable == sorted(readable), readable
    assert since_ms - 3000 <= readable[0] and readable[-1] <= until_ms + 1000, (
        readable[0] - since_ms,
        readable[-1] - until_ms,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- a live-view setup on a running server ------------------------------------------------


@dataclass
class Live:
    server: Ivcloud
    device: Provisioned
    creds: AppCreds
    user_id: str
    token: str
    api: AppApiClient

    @property
    def device_id(self) -> str:
        return f"{self.device.product_id}/{self.device.device_name}"

    async def urls(self, **params: Any) -> dict[str, Any]:
        doc = await self.api.tokenapi(
            self.token, "IvcloudDescribeStreamUrls", DeviceId=self.device_id, **params
        )
        return ok_data(doc)


@contextlib.asynccontextmanager
async def live_setup(server: Ivcloud, name: str = "cam01") -> AsyncIterator[Live]:
    """A camera product and device, an app linked to it, and a user owning the camera."""
    assert server.endpoints is not None
    base = server.endpoints.http_url
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with (
        httpx.AsyncClient(base_url=base + "/api/console/v1", headers=headers) as admin,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        device = await provision(admin, "camera", "camera", name)
        creds = await create_app(admin, device.product_id)
        user_id, token = await make_user(server, creds, "owner")
        await give_user(server, user_id, device)
        yield Live(server, device, creds, user_id, token, AppApiClient(http, creds))


@contextlib.asynccontextmanager
async def camera(
    server: Ivcloud, device: Provisioned, **video: Any
) -> AsyncIterator[CameraSimulator]:
    """A simulated camera, online, pushing light 320x240@10 streams when asked."""
    assert server.endpoints is not None
    sim = CameraSimulator(
        host=server.endpoints.mqtt_host,
        port=server.endpoints.mqtt_port,
        product_id=device.product_id,
        device_name=device.device_name,
        secret=device.secret,
        reconnect_first=0.1,
        video_overrides={**LIGHT_VIDEO, **video},
    )
    try:
        assert await sim.start(wait_online=10)
        yield sim
    finally:
        await sim.stop()


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@contextlib.asynccontextmanager
async def running(data_dir: Path, **overrides: Any) -> AsyncIterator[Ivcloud]:
    """A real server like the ``server`` fixture's, with hub settings overridden (short
    linger and publisher wait keep the tests quick)."""
    instance = Ivcloud(make_settings(data_dir, **overrides))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


class VideoRawDevice(RawDevice):
    """A raw MQTT device that also listens on ``$video/down`` (and answers by hand)."""

    async def __aenter__(self) -> VideoRawDevice:
        await super().__aenter__()
        await self._client.subscribe(self.topic(VIDEO_DOWN), qos=1)
        return self

    async def video_request(self, timeout: float = 5.0) -> dict[str, Any]:
        return await self.next(VIDEO_DOWN, timeout)

    async def video_reply(self, request: dict[str, Any], code: int = 0, status: str = "ok") -> None:
        reply = {
            "method": request["method"] + "_reply",
            "clientToken": request["clientToken"],
            "code": code,
            "status": status,
        }
        await self.publish(VIDEO_UP, reply)


VIDEO_DOWN = "$video/down/{p}/{d}"
VIDEO_UP = "$video/up/{p}/{d}"


def raw_video_device(server: Ivcloud, p: Provisioned) -> VideoRawDevice:
    assert server.endpoints is not None
    ep = server.endpoints
    return VideoRawDevice(ep.mqtt_host, ep.mqtt_port, p.product_id, p.device_name, p.secret)

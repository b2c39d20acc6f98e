"""Shared by the WebRTC peer tests: a camera (real LiveSource, real x264/libopus/AAC), a small
real XP2P request handler serving it, and a device/app peer pair connected over loopback UDP
with signalling done by handing the SDP strings over directly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioice
import av
import pytest

from ivcloud.client.p2p import AppPeer
from ivcloud.device.av import AudioProfile, EncodedVideo, LiveSource, MediaFrame, VideoProfile
from ivcloud.device.av.broadcast import FrameBroadcaster, Subscription
from ivcloud.device.av.rtc_channel import ChannelLimits
from ivcloud.device.av.webrtc import DevicePeer
from ivcloud.protocol.av.flv import FlvMuxer
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.p2p_channel import Reply, RequestRefused
from tests.helpers import poll

# Small and quick to encode on a 2-core box; GOP of 2 s so a forced keyframe is visible.
VIDEO = VideoProfile(320, 240, fps=10, gop_seconds=2.0, bitrate=300_000)


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice leaves 127.0.0.1 out of its host candidates; pin them to it, so the peers in
    this process reach each other over real UDP on loopback whatever the box's network."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


class TapSource:
    """A LiveSource whose every frame is also recorded, so tests can compare what the camera
    encoded with what a viewer received. Counts the keyframes the device was asked for."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.frames: list[MediaFrame] = []
        self.forced_at: list[int] = []  # video frames encoded when each IDR was asked for

    def __aiter__(self) -> TapSource:
        return self

    async def __anext__(self) -> MediaFrame:
        frame = await self.source.__anext__()
        self.frames.append(frame)
        return frame

    def force_keyframe(self) -> None:
        self.forced_at.append(len(self.video))
        self.source.force_keyframe()

    @property
    def video(self) -> list[EncodedVideo]:
        return [f for f in self.frames if isinstance(f, EncodedVideo)]


@dataclass
class Camera:
    """One camera: a live source (H.264 + AAC for FLV + Opus for WebRTC) and its broadcaster."""

    tap: TapSource
    feed: FrameBroadcaster
    voice: list[bytes] = field(default_factory=list)
    voice_closed: asyncio.Event = field(default_factory=asyncio.Event)
    streams_closed: int = 0

    @property
    def source(self) -> LiveSource:
        return self.tap.source


@contextlib.asynccontextmanager
async def camera(video: VideoProfile = VIDEO, *, max_frames: int = 120) -> AsyncIterator[Camera]:
    source = LiveSource(video, (AudioProfile("aac"), AudioProfile("opus")))
    tap = TapSource(source)
    feed = FrameBroadcaster(tap, max_frames=max_frames)
    try:
        yield Camera(tap, feed)
    finally:
        await feed.aclose()
        await source.aclose()


class CollectingSink:
    """The device's talk-audio sink: keeps every frame."""

    def __init__(self, cam: Camera) -> None:
        self._cam = cam

    async def write(self, frame: bytes) -> None:
        self._cam.voice.append(frame)

    def close(self) -> None:
        self._cam.voice_closed.set()


def pattern_bytes(n: int) -> bytes:
    """Deterministic, incompressible-looking test bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


class CameraHandler:
    """A small but real XP2P handler for one viewer: live FLV from the camera's broadcaster,
    ``get_device_st``, talk audio, and two test requests (``blob?size=`` streams bytes as fast
    as it can; ``hang`` never answers)."""

    def __init__(self, cam: Camera) -> None:
        self.cam = cam
        self.requests: list[str] = []
        self.subscriptions: list[Subscription] = []

    async def __call__(self, text: str) -> Reply:
        self.requests.append(text)
        parts = urlsplit(text if "?" in text or "=" not in text else "?" + text)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "ipc.flv" and query.get("action") == "live":
            if query.get("quality", "standard") not in ("standard", "high", "super"):
                raise ProtocolError("bad quality")
            return self._live_flv()
        if path == "" and query.get("action") == "inner_define":
            if query.get("cmd") == "get_device_st":
                return f'[{{"status":"0","appConnectNum":"{self.cam.feed.subscribers}"}}]'
            raise RequestRefused(406, "command unsupported")
        if path == "voice":
            return CollectingSink(self.cam)
        if path == "blob":
            return self._blob(int(query["size"]))
        if path == "hang":
            await asyncio.Event().wait()
        raise ProtocolError(f"unknown request {path!r}")

    async def _live_flv(self) -> AsyncIterator[bytes]:
        muxer = FlvMuxer(audio_config=self.cam.source.audio_config("aac"))
        frames = self.cam.feed.subscribe(video=True, audio=("aac",))
        self.subscriptions.append(frames)
        try:
            yield muxer.header()
            async for frame in frames:
                if isinstance(frame, EncodedVideo):
                    tags = muxer.add_video(frame.data, frame.pts_ms)
                else:
                    tags = muxer.add_audio(frame.data, frame.pts_ms)
                if tags:
                    yield tags
        finally:
            frames.close()
            self.cam.streams_closed += 1

    async def _blob(self, size: int) -> AsyncIterator[bytes]:
        data = pattern_bytes(size)
        for i in range(0, size, 64 * 1024):
            yield data[i : i + 64 * 1024]


@dataclass
class Session:
    device: DevicePeer
    app: AppPeer
    handler: CameraHandler | None
    answer: str  # the device's answer SDP


async def connect(
    cam: Camera | None,
    *,
    app_kwargs: dict[str, Any] | None = None,
    device_kwargs: dict[str, Any] | None = None,
    limits: ChannelLimits | None = None,
) -> Session:
    """Offer → answer by hand, then wait until the data channel is open."""
    app = AppPeer(**(app_kwargs or {}))
    handler = CameraHandler(cam) if cam is not None else None
    device = DevicePeer(
        media=cam.feed if cam is not None else None,
        handler=handler,
        limits=limits,
        **(device_kwargs or {}),
    )
    answer = await device.accept(await app.offer())
    await app.answer(answer)
    await app.wait_connected(timeout_s=20)
    await device.wait_connected(timeout_s=20)
    return Session(device, app, handler, answer)


@contextlib.asynccontextmanager
async def session(cam: Camera | None, **kwargs: Any) -> AsyncIterator[Session]:
    s = await connect(cam, **kwargs)
    try:
        yield s
    finally:
        await s.app.close()
        await s.device.close()


async def eventually(check: Callable[[], object], deadline_s: float = 10.0) -> None:
    """Poll a condition on live state (never sleep-and-assert)."""

    async def fetch() -> object:
        return check()

    await poll(fetch, bool, deadline_s=deadline_s, interval_s=0.02)


async def flv_frames(data: bytes) -> list[av.VideoFrame]:
    """Decode FLV bytes with FFmpeg (PyAV), off the event loop."""

    def decode() -> list[av.VideoFrame]:
        import io

        with av.open(io.BytesIO(data), format="flv") as container:
            return list(container.decode(video=0))

    return await asyncio.to_thread(decode)

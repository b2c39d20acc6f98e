"""Shared by the XP2P client tests: a real ivcloud with a simulated camera pushing to the hub
(the hub path, entirely real), and — for tests that must control *when* the tunnel comes up
or what the device serves — the P2P half of the cloud (``IvcloudDescribeP2PParams`` /
``IvcloudP2PConnect`` / ``IvcloudP2PClose`` / ``IvcloudXp2pCommand``) done in-process
against a real aiortc device peer over loopback UDP, serving a real camera (x264 + AAC).
That stand-in replaces only the cloud's signalling hop; tests/e2e/test_app_sdk_live.py
runs the same client through the real one. The ``hub_server`` and ``live`` fixtures serve
both: a test module takes them by assigning them to module names."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import numpy as np
import pytest

from ivcloud.app import Ivcloud
from ivcloud.client.app_sdk import AppClient
from ivcloud.client.xp2p import Xp2pClient
from ivcloud.client.xp2p_cloud import P2PParams, Xp2pCloud
from ivcloud.client.xp2p_errors import Xp2pError
from ivcloud.device.av.webrtc import DevicePeer
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.p2p_channel import Reply, RequestRefused
from tests import p2p_support
from tests.media.hub_support import Live, check_clocks, live_setup, now_ms, record, running
from tests.p2p_support import Camera, CameraHandler, eventually, pattern_bytes

INFO = "XP2P1:q0V3b2Qp1kqjv8d2c0xq3A:clptuw"
LIVE = "ipc.flv?action=live&channel=0&quality=standard"
DEVICE_ST = "action=inner_define&channel=0&cmd=get_device_st&type=live"
BIG_FILE = 4 * 1024 * 1024


class StoreHandler(CameraHandler):
    """The test camera's handler plus an SD card's worth of requests: ``playback`` streams a
    real recorded FLV, ``download`` deterministic bytes from ``offset``."""

    def __init__(self, cam: Camera, recording: bytes) -> None:
        super().__init__(cam)
        self.recording = recording
        self.refuse_live: int | None = None  # an XP2P status to refuse live streams with

    async def __call__(self, text: str) -> Reply:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(text).query).items()}
        if self.refuse_live is not None and query.get("action") == "live":
            raise RequestRefused(self.refuse_live, "too many viewers")
        if text.startswith("ipc.flv") and query.get("action") == "playback":
            self.requests.append(text)
            return self._chunks(self.recording)
        if text.startswith("ipc.flv") and query.get("action") == "download":
            self.requests.append(text)
            size = BIG_FILE if query.get("file_name") == "big.bin" else 100_000
            return self._chunks(pattern_bytes(size)[int(query["offset"]) :])
        return await super().__call__(text)

    async def _chunks(self, data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]


@dataclass
class LoopbackCloud(Xp2pCloud):
    """``Xp2pCloud`` whose P2P half is in-process (see the module docstring); the hub
    half (``IvcloudDescribeStreamUrls``) is the real server's. ``gate`` holds the device's
    answer back until set; ``relayed`` records relayed commands."""

    app: AppClient
    cam: Camera
    recording: bytes = b""
    info: str = INFO
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    devices: list[DevicePeer] = field(default_factory=list)
    handlers: list[StoreHandler] = field(default_factory=list)
    relayed: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    refuse: Xp2pError | None = None  # what IvcloudP2PConnect fails with, if set

    def __post_init__(self) -> None:
        super().__init__(self.app)
        self.gate.set()

    async def p2p_params(self, device_id: str) -> P2PParams:
        return P2PParams((), self.info, True)

    async def connect(self, device_id: str, offer: str) -> tuple[str, str]:
        await self.gate.wait()
        if self.refuse is not None:
            raise self.refuse
        handler = StoreHandler(self.cam, self.recording)
        peer = DevicePeer(media=None, handler=handler)
        self.devices.append(peer)
        self.handlers.append(handler)
        return f"s{len(self.devices)}", await peer.accept(offer)

    async def close(self, device_id: str, session_id: str) -> None:
        self.closed.append(session_id)
        await self.devices[int(session_id[1:]) - 1].close()

    async def command(self, device_id: str, text: str) -> str:
        self.relayed.append(text)
        reply = await StoreHandler(self.cam, self.recording)(text)
        assert isinstance(reply, str)
        return reply


@contextlib.asynccontextmanager
async def xp2p_client(
    server: Ivcloud, live: Live, **kwargs: Any
) -> AsyncIterator[tuple[Xp2pClient, LoopbackCloud, Camera]]:
    """An ``Xp2pClient`` for ``live``'s user whose P2P half is the loopback stand-in over a
    test camera (x264 + AAC + Opus), and that camera."""
    assert server.endpoints is not None
    async with (
        p2p_support.camera() as cam,
        AppClient(server.endpoints.http_url, access_token=live.token) as app,
    ):
        cloud = LoopbackCloud(app, cam, recording=(await recording()))
        client = Xp2pClient(app, cloud=cloud, timeout=10.0, **kwargs)
        try:
            yield client, cloud, cam
        finally:
            await client.destroy()


@pytest.fixture
async def hub_server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    """A server whose hub lets a stream go soon after its last viewer (0.2 s) and waits up to
    10 s for a camera to start publishing."""
    async with running(tmp_path / "data", stream_linger_s=0.2, stream_publisher_wait_s=10) as s:
        yield s


@pytest.fixture
async def live(hub_server: Ivcloud) -> AsyncIterator[Live]:
    """A camera on ``hub_server`` and an app user who owns it."""
    async with live_setup(hub_server) as setup:
        yield setup


async def stop_while_watching(client: Xp2pClient, device_id: str, url: str) -> None:
    """A player is reading ``url`` when the service stops: its response ends cleanly (the
    terminating chunk arrives, so httpx finishes without an error, status 200) and what it
    received decodes."""
    received = bytearray()

    async def player() -> int:
        async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as resp:
            async for chunk in resp.aiter_raw():
                received.extend(chunk)
        return resp.status_code

    watching = asyncio.create_task(player())
    await eventually(lambda: len(received) > 10_000)
    await client.stop_service(device_id)
    assert await asyncio.wait_for(watching, 10) == 200
    assert decode_flv(bytes(received))


_RECORDING: list[bytes] = []


async def recording() -> bytes:
    """6 s of real H.264 + AAC FLV (fake clock, so it takes well under a second)."""
    if not _RECORDING:
        _RECORDING.append((await record(6.0)).data)
    return _RECORDING[0]


async def http_get(url: str, min_bytes: int) -> tuple[httpx.Response, bytes]:
    """GET through the proxy, reading until ``min_bytes`` (or the end); then hang up."""
    body = bytearray()
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as resp:
        async for chunk in resp.aiter_raw():
            body += chunk
            if len(body) >= min_bytes:
                break
    return resp, bytes(body)


def open_with_pyav(url: str, frames: int) -> list[int | None]:
    """What a player does: FFmpeg opens the proxy URL over HTTP and decodes ``frames``
    pictures; their burnt-in capture times (ms). Run it in a thread. (Probing is cut to
    0.5 s of stream — ffplay's ``-analyzeduration`` — or FFmpeg waits 5 s for more.)"""
    clocks: list[int | None] = []
    options = {"analyzeduration": "500000"}
    with av.open(url, format="flv", timeout=20, options=options) as container:
        for frame in container.decode(video=0):
            clocks.append(read_clock(frame))
            if len(clocks) >= frames:
                break
    return clocks


async def watch_live(url: str, frames: int) -> None:
    """A player decodes ``frames`` live pictures from ``url``, every one captured while it
    was watching (burnt-in clocks between the request and the end)."""
    since = now_ms()
    clocks = await asyncio.to_thread(open_with_pyav, url, frames)
    check_clocks(clocks, since_ms=since, until_ms=now_ms())


def decode_flv(data: bytes) -> list[int | None]:
    with av.open(io.BytesIO(data), format="flv") as container:
        return [read_clock(frame) for frame in container.decode(video=0)]


def tone(seconds: float, rate: int, hz: float = 440.0) -> bytes:
    """s16le mono PCM of a sine tone."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * hz * t) * 12000).astype("<i2").tobytes()

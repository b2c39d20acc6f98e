"""The device side of live push against a real server: ``$video`` requests reach the SDK's
handlers and get their replies; ``stream_push_start`` opens a real WebSocket to the hub and
pushes real H.264/AAC as FLV; stop, replacement and the hub closing the socket end it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.device import IvDevice, LockVideoSimulator
from ivcloud.device.av.pusher import PushManager, StreamPusher, live_source_factory
from ivcloud.device.video_link import VideoResult
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.stream_urls import StreamKey
from ivcloud.services.devices import DeviceRecord
from tests.device.support import sdk_device, simulator
from tests.helpers import Provisioned, poll, provision
from tests.media.hub_support import LIGHT_VIDEO

T = TypeVar("T")


@pytest.fixture
async def cam(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "camera", "camera", "cam01")


async def record_of(server: Ivcloud, p: Provisioned) -> DeviceRecord:
    rec = await server.devices.find(p.product_id, p.device_name)
    assert rec is not None
    return rec


@pytest.fixture
async def pushing_device(
    server: Ivcloud, cam: Provisioned
) -> AsyncIterator[tuple[IvDevice, PushManager]]:
    manager = PushManager(live_source_factory(**LIGHT_VIDEO))
    async with sdk_device(server, cam, wait_online=10) as device:
        manager.install(device)
        try:
            yield device, manager
        finally:
            await manager.close()


async def test_unknown_malformed_and_failing_requests(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    device, _ = pushing_device
    rec = await record_of(server, cam)
    signals = server.video_signal
    reply = await signals.request(rec, "webrtc_offer", {"sdp": "v=0"})
    assert (reply.code, reply.status) == (404, "unknown method")
    reply = await signals.request(rec, vs.PUSH_START, {"url": "http://not-a-websocket/"})
    assert reply.code == 406 and "ws://" in reply.status

    async def broken(msg: vs.SignalMessage) -> VideoResult:
        raise RuntimeError("camera on fire")

    device.on_video("broken", broken)
    assert (await signals.request(rec, "broken", {})).code == 500

    async def echo(msg: vs.SignalMessage) -> VideoResult:
        return VideoResult(0, "ok", {"echo": msg.params})

    device.on_video("echo", echo)
    reply = await signals.request(rec, "echo", {"a": [1, 2]})
    assert (reply.code, reply.data) == (0, {"echo": {"a": [1, 2]}})
    device.on_video("echo", None)
    assert (await signals.request(rec, "echo", {})).code == 404


async def test_push_start_to_an_unreachable_url_answers_500(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    _, manager = pushing_device
    rec = await record_of(server, cam)
    params = vs.push_start_params("ws://127.0.0.1:9/media/v1/publish/x/y", 0, "standard")
    reply = await server.video_signal.request(rec, vs.PUSH_START, params)
    assert reply.code == 500 and "push connection failed" in reply.status
    assert manager.active == {}


async def test_push_reaches_the_hub_and_stop_closes_it(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    _, manager = pushing_device
    server.streams.linger_s = 0.05
    rec = await record_of(server, cam)
    key = StreamKey(cam.product_id, cam.device_name, 0, "standard")
    demand = await server.streams.watch(rec, key)  # what a viewer does: the device pushes
    await pushing(manager, (0, "standard"))
    assert list(manager.active) == [(0, "standard")]
    stream = server.hub.stream(key)
    assert stream is not None

    async def video_config() -> object:
        return stream.video_config

    await poll(video_config, lambda cfg: cfg is not None)
    await poll(lambda _s=stream: _async(len(_s.gop)), lambda n: n > 0)
    await poll(lambda _s=stream: _async(_s.audio_config), lambda cfg: cfg is not None)
    assert stream.header is not None
    pusher = manager.history[0]
    assert pusher.frames_sent > 0

    server.streams.unwatch(key, demand)  # last viewer gone → linger → stream_push_stop
    await poll(lambda: _async(pusher.done.is_set()), bool)
    assert manager.active == {}
    assert server.hub.stats().publishers == 0 and server.hub.stream(key) is None


async def test_a_second_start_replaces_the_push(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    _, manager = pushing_device
    rec = await record_of(server, cam)
    key = StreamKey(cam.product_id, cam.device_name, 0, "standard")
    await server.streams.watch(rec, key)
    first = await pushing(manager, (0, "standard"))
    params = vs.push_start_params(server.streams.publish_url(key), 0, "standard")
    reply = await server.video_signal.request(rec, vs.PUSH_START, params)
    assert (reply.code, reply.status) == (0, "pushing")
    assert first.done.is_set() and len(manager.history) == 2
    assert manager.active[(0, "standard")] is manager.history[1]
    await poll(lambda: _async(server.hub.stats()), lambda s: s.publishers == 1 and s.publishes == 2)


async def test_the_hub_closing_the_socket_ends_the_push(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    _, manager = pushing_device
    rec = await record_of(server, cam)
    key = StreamKey(cam.product_id, cam.device_name, 2, "high")
    await server.streams.watch(rec, key)
    pusher = await pushing(manager, (2, "high"))
    server.hub.end_stream(key, "test over")
    await poll(lambda: _async(pusher.done.is_set()), bool)
    assert (pusher.close_code, pusher.close_reason) == (4410, "test over")
    assert manager.active == {}


async def test_closing_the_manager_stops_every_push(
    server: Ivcloud, cam: Provisioned, pushing_device: tuple[IvDevice, PushManager]
) -> None:
    _, manager = pushing_device
    rec = await record_of(server, cam)
    for channel in (0, 1):
        await server.streams.watch(rec, StreamKey(cam.product_id, cam.device_name, channel))
        await pushing(manager, (channel, "standard"))
    pushers = list(manager.active.values())
    assert len(pushers) == 2
    await manager.close()
    assert manager.active == {} and all(p.done.is_set() for p in pushers)
    await poll(lambda: _async(server.hub.stats().publishers), lambda n: n == 0)


async def test_video_lock_simulator_pushes_when_asked(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    lock = await provision(admin, "lock-video", "lock", "vidlock01")
    async with simulator(server, LockVideoSimulator, lock, video_overrides=LIGHT_VIDEO) as sim:
        assert await sim.start(wait_online=10)
        rec = await record_of(server, lock)
        key = StreamKey(lock.product_id, lock.device_name)
        await server.streams.watch(rec, key)
        await pushing(sim.pushers, (0, "standard"))
        stream = server.hub.stream(key)
        assert stream is not None
        await poll(lambda: _async(len(stream.gop)), lambda n: n > 0)
    assert sim.pushers.active == {}


async def _async(value: T) -> T:
    return value


async def pushing(manager: PushManager, key: tuple[int, vs.Quality]) -> StreamPusher:
    """The device's pusher of ``key``, once registered. The hub accepts the WebSocket
    (and ``watch`` returns) a moment before the device's side of the handshake completes."""
    await poll(lambda: _async(manager.active.get(key)), lambda p: p is not None)
    return manager.active[key]

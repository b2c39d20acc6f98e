"""The ``$video`` signalling channel through the real MQTT gateway, byte for byte: a raw
device sees exactly what the cloud sends and answers by hand."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol import video_signal as vs
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, DeviceTimeout
from ivcloud.services.video_signal import SignalReply
from tests.helpers import Provisioned, provision
from tests.media.hub_support import VIDEO_UP, raw_video_device
from tests.rawdevice import device_for


@pytest.fixture
async def cams(admin: httpx.AsyncClient) -> tuple[Provisioned, Provisioned]:
    first = await provision(admin, "camera", "camera", "cam01")
    resp = await admin.post(f"/products/{first.product_id}/devices", json={"DeviceName": "cam02"})
    assert resp.status_code == 201
    second = Provisioned(first.product_id, "cam02", resp.json()["DeviceSecret"])
    return first, second


async def record_of(server: Ivcloud, p: Provisioned) -> DeviceRecord:
    rec = await server.devices.find(p.product_id, p.device_name)
    assert rec is not None
    return rec


async def test_request_and_reply(server: Ivcloud, cams: tuple[Provisioned, Provisioned]) -> None:
    cam, _ = cams
    async with raw_video_device(server, cam) as device:
        rec = await record_of(server, cam)
        call = asyncio.create_task(
            server.video_signal.request(rec, vs.PUSH_STOP, vs.push_stop_params(1, "high"))
        )
        request = await device.video_request()
        assert set(request) == {"method", "clientToken", "params"}
        assert request["method"] == "stream_push_stop"
        assert request["params"] == {"channel": 1, "quality": "high"}
        await device.publish(
            VIDEO_UP,
            {
                "method": "stream_push_stop_reply",
                "clientToken": request["clientToken"],
                "code": 0,
                "status": "stopped",
                "data": {"was_pushing": True},
            },
        )
        assert await call == SignalReply(0, "stopped", {"was_pushing": True})


async def test_malformed_unknown_and_stray_messages_from_a_device(
    server: Ivcloud, cams: tuple[Provisioned, Provisioned]
) -> None:
    cam, _ = cams
    async with raw_video_device(server, cam) as device:
        # A stray reply (nobody waits for it) and a malformed reply: no answer at all...
        await device.publish(
            VIDEO_UP, {"method": "x_reply", "clientToken": "nobody", "code": 0, "status": ""}
        )
        await device.publish(VIDEO_UP, {"method": "x_reply", "clientToken": "t0", "code": "0"})
        # ...so the next thing down is the answer to this malformed request: 406.
        await device.publish(VIDEO_UP, {"method": "ping", "clientToken": "t1", "params": [1]})
        reply = await device.video_request()
        assert reply["method"] == "ping_reply" and reply["clientToken"] == "t1"
        assert (reply["code"], reply["status"]) == (406, "invalid message")
        assert "params must be an object" in reply["msg"]
        # Not JSON at all: nothing to answer to (no token), the device stays connected.
        await device.publish(VIDEO_UP, b"\xff garbage")
        # A well-formed request for a method the cloud does not serve: 404.
        await device.publish(VIDEO_UP, {"method": "webrtc_candidate", "clientToken": "t2"})
        reply = await device.video_request()
        assert (reply["method"], reply["clientToken"], reply["code"]) == (
            "webrtc_candidate_reply",
            "t2",
            404,
        )


async def test_device_initiated_methods_reach_their_handler(
    server: Ivcloud, cams: tuple[Provisioned, Provisioned]
) -> None:
    cam, _ = cams
    seen: list[tuple[str, dict[str, object]]] = []

    async def ping(rec: DeviceRecord, msg: vs.SignalMessage) -> SignalReply:
        seen.append((rec.device_name, msg.params))
        return SignalReply(0, "pong", {"n": 1})

    server.video_signal.handle("ping", ping)
    with pytest.raises(ValueError, match="already registered"):
        server.video_signal.handle("ping", ping)
    async with raw_video_device(server, cam) as device:
        await device.publish(VIDEO_UP, {"method": "ping", "clientToken": "p1", "params": {"a": 1}})
        reply = await device.video_request()
    assert reply == {
        "method": "ping_reply",
        "clientToken": "p1",
        "code": 0,
        "status": "pong",
        "data": {"n": 1},
    }
    assert seen == [("cam01", {"a": 1})]


async def test_a_device_cannot_answer_another_devices_request(
    server: Ivcloud, cams: tuple[Provisioned, Provisioned]
) -> None:
    cam, other = cams
    server.video_signal.timeout_s = 0.5
    async with raw_video_device(server, cam) as device, raw_video_device(server, other) as intruder:
        rec = await record_of(server, cam)
        call = asyncio.create_task(server.video_signal.request(rec, vs.PUSH_STOP, {}))
        token = (await device.video_request())["clientToken"]
        # The intruder learns the token somehow and replies on its own topic (its only one).
        await intruder.publish(
            VIDEO_UP, {"method": "stream_push_stop_reply", "clientToken": token, "code": 0}
        )
        with pytest.raises(DeviceTimeout):
            await call


async def test_offline_unsubscribed_and_silent_devices(
    server: Ivcloud, cams: tuple[Provisioned, Provisioned]
) -> None:
    cam, _ = cams
    rec = await record_of(server, cam)
    with pytest.raises(DeviceOffline, match="offline"):
        await server.video_signal.request(rec, vs.PUSH_STOP, {})
    async with device_for(server, cam):  # online, but no $video subscription
        with pytest.raises(DeviceOffline, match="video signalling"):
            await server.video_signal.request(rec, vs.PUSH_STOP, {})
    async with raw_video_device(server, cam):  # listening, never answering
        with pytest.raises(DeviceTimeout):
            await server.video_signal.request(rec, vs.PUSH_STOP, {}, timeout_s=0.3)


def test_reply_json_is_compact() -> None:
    body = vs.encode_reply("m", "t", 0, "ok")
    assert json.loads(body)["data"] == {} and b" " not in body

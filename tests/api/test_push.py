"""The App API long connection over a real server: real WebSocket clients, a raw MQTT device.

"Nothing was pushed" is asserted without sleeping: the push of a report is queued before
the device hears its ``report_reply`` (the bus listener runs in the commit callback), so a
``Hello`` sent afterwards is answered after any push; the next frame tells."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ivcloud.app import Ivcloud
from tests.appclient import create_app, make_user
from tests.helpers import Provisioned, poll, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice, device_for


@dataclass
class Owner:
    user_id: str
    token: str
    device_id: str


def ws_url(server: Ivcloud, path: str = "/ws/explorer") -> str:
    assert server.endpoints is not None
    return server.endpoints.http_url.replace("http://", "ws://") + path


async def give_user(server: Ivcloud, user_id: str, p: Provisioned) -> None:
    user = await server.users.get(user_id)
    family_id = await server.families.create_family(user, "home")
    rec = await server.devices.find(p.product_id, p.device_name)
    assert rec is not None
    await server.families.bind_device(user, family_id, "0", rec)


async def owner_of(server: Ivcloud, admin: httpx.AsyncClient, p: Provisioned) -> Owner:
    creds = await create_app(admin, p.product_id)
    user_id, token = await make_user(server, creds)
    await give_user(server, user_id, p)
    return Owner(user_id, token, f"{p.product_id}/{p.device_name}")


async def wait_online(server: Ivcloud, p: Provisioned, online: bool = True) -> None:
    """Presence and its bus event change together, so once this holds the StatusChange
    push (if any) is already queued."""

    async def state() -> bool:
        rec = await server.devices.find(p.product_id, p.device_name)
        return rec is not None and rec.online

    await poll(state, lambda v: v is online)


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return doc


async def call(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(frame))
    return await recv(ws)


def active_push(token: str, *device_ids: str, req_id: object = "imDfxQEbB9") -> dict[str, Any]:
    """The SDK's exact frame (app-api.md §3.2)."""
    return {
        "action": "ActivePush",
        "reqId": req_id,
        "params": {
            "DeviceIds": list(device_ids),
            "Platform": "weapp",
            "AccessToken": token,
            "AppKey": "testAppKey",
            "RegionId": 1,
        },
    }


def heartbeat(token: str, *device_ids: str) -> dict[str, Any]:
    return {
        "action": "YunApi",
        "reqId": "eXS69XMJVQ",
        "params": {
            "Action": "AppDeviceTraceHeartBeat",
            "ActionParams": {
                "Platform": "weapp",
                "RequestId": "eXS69XMJVQ",
                "AccessToken": token,
                "DeviceIds": list(device_ids),
            },
        },
    }


async def subscribe(ws: ClientConnection, token: str, *device_ids: str) -> list[str]:
    reply = await call(ws, active_push(token, *device_ids))
    assert reply["error"] == "" and reply["reqId"] == "imDfxQEbB9", reply
    ids: list[str] = reply["data"]["deviceIds"]
    return ids


async def assert_nothing_pushed(ws: ClientConnection) -> None:
    assert await call(ws, {"action": "Hello", "reqId": 1}) == {
        "error": "",
        "error_message": "",
        "data": {"result": "ok"},
        "reqId": 1,
    }


def decoded(frame: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(frame["params"]["Payload"]))
    return doc


@pytest.fixture
async def sensor(admin: httpx.AsyncClient) -> Provisioned:
    return await provision_custom(admin, SENSOR_MODEL, "sensor01")


@pytest.fixture
async def owner(server: Ivcloud, admin: httpx.AsyncClient, sensor: Provisioned) -> Owner:
    return await owner_of(server, admin, sensor)


@pytest.fixture
async def dev(server: Ivcloud, sensor: Provisioned) -> AsyncIterator[RawDevice]:
    async with device_for(server, sensor) as device:
        await wait_online(server, sensor)
        yield device


async def test_report_is_pushed_in_the_device_change_envelope(
    server: Ivcloud, owner: Owner, dev: RawDevice
) -> None:
    async with connect(ws_url(server) + "?uin=u_1&cId=abc") as ws:
        assert await call(ws, active_push(owner.token, owner.device_id)) == {
            "error": "",
            "error_message": "",
            "data": {"deviceIds": [owner.device_id]},
            "reqId": "imDfxQEbB9",
        }
        ts = int(time.time() * 1000)
        sent = {
            "method": "report",
            "clientToken": "tok-1",
            "timestamp": ts,
            "params": {"power": 1, "brightness": 42},
        }
        assert (await dev.request("property", sent))["code"] == 0
        frame = await recv(ws)
    params = frame["params"]
    assert set(frame) == {"push", "action", "params"}
    assert (frame["push"], frame["action"]) == (True, "DeviceChange")
    assert set(params) == {"Time", "Type", "SubType", "Topic", "Payload", "Seq", "DeviceId"}
    assert params["Type"] == "Property"
    assert params["SubType"] == "Report"
    assert params["Topic"] == f"$thing/up/property/{dev.product_id}/{dev.device_name}"
    assert params["DeviceId"] == owner.device_id
    assert params["Seq"] == ts
    assert datetime.fromisoformat(params["Time"]).timestamp() == ts // 1000
    # The device's own message, verbatim.
    assert decoded(frame) == sent


async def test_both_paths_and_android_int_req_ids(server: Ivcloud, owner: Owner) -> None:
    async with connect(ws_url(server, "/iotstudio_v2_weapp_1?uin=x")) as ws:
        reply = await call(ws, active_push(owner.token, owner.device_id, req_id=1))
        assert reply["reqId"] == 1
        assert reply["data"] == {"deviceIds": [owner.device_id]}
        await assert_nothing_pushed(ws)


async def test_status_change_online_and_offline(
    server: Ivcloud, owner: Owner, sensor: Provisioned
) -> None:
    async with connect(ws_url(server)) as ws:
        assert await subscribe(ws, owner.token, owner.device_id) == [owner.device_id]
        async with device_for(server, sensor):
            online = await recv(ws)
        offline = await recv(ws)
    for frame, sub in ((online, "Online"), (offline, "Offline")):
        assert frame["action"] == "DeviceChange"
        assert frame["params"]["Type"] == "StatusChange"
        assert frame["params"]["SubType"] == sub
        assert frame["params"]["DeviceId"] == owner.device_id
        assert decoded(frame)["status"] == (1 if sub == "Online" else 0)


async def test_status_change_unbind(server: Ivcloud, owner: Owner, sensor: Provisioned) -> None:
    async with connect(ws_url(server)) as ws:
        assert await subscribe(ws, owner.token, owner.device_id) == [owner.device_id]
        rec = await server.devices.get(sensor.product_id, sensor.device_name)
        await server.families.unbind_device(rec)
        frame = await recv(ws)
    assert (frame["params"]["Type"], frame["params"]["SubType"]) == ("StatusChange", "Unbind")
    assert frame["params"]["DeviceId"] == owner.device_id
    assert decoded(frame)["method"] == "unbind"


async def test_control_and_event_are_pushed(server: Ivcloud, owner: Owner, dev: RawDevice) -> None:
    rec = await server.devices.find(dev.product_id, dev.device_name)
    assert rec is not None
    async with connect(ws_url(server)) as ws:
        await subscribe(ws, owner.token, owner.device_id)
        result = await server.control.control(rec, {"brightness": 7})
        control = await recv(ws)
        received = await dev.down("property")
        assert control["params"]["Type"] == "Property"
        assert control["params"]["SubType"] == "Push"
        assert control["params"]["Topic"] == (
            f"$thing/down/property/{dev.product_id}/{dev.device_name}"
        )
        assert decoded(control) == received
        assert received["clientToken"] == result.client_token

        event = {
            "method": "event_post",
            "clientToken": "e1",
            "version": "1.0",
            "eventId": "alarm",
            "type": "alert",
            "timestamp": 1_700_000_000_000,
            "params": {"level": 2},
        }
        assert (await dev.request("event", event))["code"] == 0
        pushed = await recv(ws)
    assert pushed["params"]["Type"] == "Event"
    assert pushed["params"]["SubType"] == "Report"
    assert pushed["params"]["Topic"] == f"$thing/up/event/{dev.product_id}/{dev.device_name}"
    assert pushed["params"]["Seq"] == 1_700_000_000_000
    assert decoded(pushed) == event


async def test_other_users_device_is_not_subscribed(
    server: Ivcloud, admin: httpx.AsyncClient, owner: Owner, dev: RawDevice
) -> None:
    theirs = await provision_custom(admin, SENSOR_MODEL, "theirs01")
    other = await owner_of(server, admin, theirs)
    async with connect(ws_url(server)) as ws:
        # Asking for the other user's device (and a device that does not exist) yields only
        # the user's own device.
        accepted = await subscribe(ws, other.token, owner.device_id, other.device_id, "X/none")
        assert accepted == [other.device_id]
        assert (await dev.request("property", {"method": "report", "params": {"power": 1}}))[
            "code"
        ] == 0
        await assert_nothing_pushed(ws)
        assert server.push.subscribers(owner.device_id) == 0


async def test_heartbeat_replies_sdk_and_ios_shapes(server: Ivcloud, owner: Owner) -> None:
    async with connect(ws_url(server)) as ws:
        await subscribe(ws, owner.token, owner.device_id)
        assert await call(ws, heartbeat(owner.token, owner.device_id)) == {
            "error": "",
            "error_message": "",
            "data": {"Response": {"RequestId": "eXS69XMJVQ"}},
            "reqId": "eXS69XMJVQ",
        }
        ios = {
            "action": "YunApi",
            "reqId": "A-UUID",
            "params": {
                "Action": "AppDeviceTraceHeartBeat",
                "AccessToken": owner.token,
                "RequestId": "ios-1",
                "ActionParams": {"DeviceIds": [owner.device_id]},
            },
        }
        assert (await call(ws, ios))["data"] == {"Response": {"RequestId": "ios-1"}}
        assert server.push.subscribers(owner.device_id) == 1


async def test_invalid_token_gets_the_error_reply(server: Ivcloud, owner: Owner) -> None:
    async with connect(ws_url(server)) as ws:
        for token in ("nope", ""):
            assert await call(ws, active_push(token, owner.device_id)) == {
                "error": "",
                "error_message": "",
                "data": {
                    "Response": {
                        "Error": {
                            "Code": "InvalidParameterValue.InvalidAccessToken",
                            "Message": "AccessToken is missing, invalid or expired",
                        },
                        "RequestId": "rest-client",
                    },
                    "deviceIds": [],
                },
                "reqId": "imDfxQEbB9",
            }
        reply = await call(ws, {"action": "Bogus", "reqId": "b"})
        assert reply["data"]["Response"]["Error"]["Code"] == "InvalidAction"
        assert (await call(ws, {"reqId": "z"}))["error"] == "-1"


async def test_revoked_token_stops_pushes_at_the_next_heartbeat(
    server: Ivcloud, owner: Owner, dev: RawDevice
) -> None:
    async with connect(ws_url(server)) as ws:
        await subscribe(ws, owner.token, owner.device_id)
        await server.users.revoke(owner.token)
        reply = await call(ws, heartbeat(owner.token, owner.device_id))
        assert reply["data"]["Response"]["Error"]["Code"] == (
            "InvalidParameterValue.InvalidAccessToken"
        )
        assert (await dev.request("property", {"method": "report", "params": {"power": 0}}))[
            "code"
        ] == 0
        await assert_nothing_pushed(ws)


async def test_revoking_a_token_ends_its_subscription_at_once(
    server: Ivcloud, owner: Owner, dev: RawDevice
) -> None:
    """No heartbeat needed: the subscription made with a revoked token stops; another
    session of the same user (its own token) keeps receiving until it is revoked too."""
    user = await server.users.get(owner.user_id)
    other_token, _ = await server.users.issue_token(user)
    async with connect(ws_url(server)) as ws, connect(ws_url(server)) as ws2:
        await subscribe(ws, owner.token, owner.device_id)
        await subscribe(ws2, other_token, owner.device_id)
        await server.users.revoke(owner.token)
        report = {"method": "report", "params": {"power": 1}}
        assert (await dev.request("property", report))["code"] == 0
        pushed = await recv(ws2)
        assert decoded(pushed)["params"] == {"power": 1}
        await assert_nothing_pushed(ws)
        await server.users.revoke_all(owner.user_id)  # e.g. the password was changed
        assert (await dev.request("property", report))["code"] == 0
        await assert_nothing_pushed(ws2)


async def test_yunapi_tunnels_tokenapi_actions(server: Ivcloud, owner: Owner) -> None:
    """``YunApi`` with another action runs it as a tokenapi call; the answer's ``data``
    comes back as ``data.Response`` (the SDK's ``sendWebsocketMessage``)."""
    async with connect(ws_url(server)) as ws:
        frame = {
            "action": "YunApi",
            "reqId": "t1",
            "params": {
                "Action": "AppGetDeviceStatuses",
                "ActionParams": {
                    "AccessToken": owner.token,
                    "RequestId": "r-7",
                    "DeviceIds": [owner.device_id],
                },
            },
        }
        reply = await call(ws, frame)
        assert reply["reqId"] == "t1" and reply["error"] == ""
        response = reply["data"]["Response"]
        assert response["RequestId"] == "r-7"
        assert response["DeviceStatuses"][0]["DeviceId"] == owner.device_id
        # Authorization is the App API's own: a device the user cannot reach is refused.
        frame["params"]["ActionParams"]["DeviceIds"] = ["AAAAAAAAAA/other"]
        refused = (await call(ws, frame))["data"]["Response"]
        assert refused["Error"]["Code"] == "InvalidParameterValue.NoPermission"
        # iOS puts the token in params; a bad one is the usual token error.
        frame["params"] = {"Action": "AppGetUser", "AccessToken": "stale", "ActionParams": {}}
        stale = (await call(ws, frame))["data"]["Response"]
        assert stale["Error"]["Code"] == "InvalidParameterValue.InvalidAccessToken"
        # appapi-only actions are not reachable through the tunnel.
        frame["params"] = {"Action": "AppGetToken", "AccessToken": owner.token}
        signed_only = (await call(ws, frame))["data"]["Response"]
        assert signed_only["Error"]["Code"] == "InvalidAction"


def tiny_buffer_socket(server: Ivcloud) -> socket.socket:
    """A connected client socket with a small receive buffer, so a client that does not
    read pushes back on the server within a few hundred KB."""
    assert server.endpoints is not None
    port = int(server.endpoints.http_url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


BIG_MODEL: dict[str, Any] = {
    **SENSOR_MODEL,
    "properties": [
        {
            "id": "blob",
            "name": "blob",
            "mode": "rw",
            "define": {"type": "string", "min": "0", "max": "2048"},
        }
    ],
}


async def test_slow_consumer_is_dropped_and_others_keep_receiving(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    p = await provision_custom(admin, BIG_MODEL, "big01")
    owner = await owner_of(server, admin, p)
    server.push.queue_size = 8
    server.push.close_timeout_s = 10.0
    async with (
        device_for(server, p) as dev,
        connect(ws_url(server)) as fast,
        connect(
            ws_url(server), sock=tiny_buffer_socket(server), max_queue=1, compression=None
        ) as slow,
    ):
        await wait_online(server, p)
        await subscribe(fast, owner.token, owner.device_id)
        await subscribe(slow, owner.token, owner.device_id)
        received: list[int] = []

        async def read_fast() -> None:
            while True:
                frame = await recv(fast, 30)
                received.append(decoded(frame)["params"]["blob"].count("x"))

        reader = asyncio.create_task(read_fast())
        sent = 0
        try:
            while server.push.dropped == 0 and sent < 3000:
                sent += 1
                blob = "x" * (sent % 7) + "y" * (2000 - sent % 7)
                body = {"method": "report", "params": {"blob": blob}}
                assert (await dev.request("property", body))["code"] == 0
            assert server.push.dropped == 1, f"no drop after {sent} reports"
            assert server.push.subscribers(owner.device_id) == 1  # the fast one
            # The fast client keeps receiving everything, including after the drop.
            body = {"method": "report", "params": {"blob": "z"}}
            assert (await dev.request("property", body))["code"] == 0
            await poll(lambda: _ready(received), lambda n: n == sent + 1)
            assert received[:sent] == [i % 7 for i in range(1, sent + 1)]
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        # The slow client, once it reads again, gets what was buffered and then the close.
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await recv(slow, 15)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013


async def _ready(received: list[int]) -> int:
    return len(received)

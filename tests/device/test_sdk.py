"""The device SDK against the real server over real sockets: connect, report, control,
offline control via property_sync, actions, events, binding, info, time, reconnect."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.device import (
    ERR_TIMEOUT,
    OFFLINE_GIVE_UP,
    OFFLINE_RECONNECTING,
    OK,
    DeviceInfo,
    IvDevice,
)
from ivcloud.protocol.thingmodel import load_standard_model, parse_thing_model
from tests.device.support import broker, device_doc, poll, prop, sdk_device, wait_prop
from tests.helpers import Provisioned, provision, provision_custom

DOORBELL_MODEL: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "", "CategoryId": "0"},
    "properties": [
        {
            "id": "volume",
            "name": "volume",
            "mode": "rw",
            "define": {"type": "int", "min": "0", "max": "10", "start": "5", "step": "1"},
        }
    ],
    "events": [
        {
            "id": "ring",
            "name": "ring",
            "type": "info",
            "params": [
                {
                    "id": "count",
                    "name": "count",
                    "define": {"type": "int", "min": "0", "max": "100", "start": "0", "step": "1"},
                }
            ],
        }
    ],
    "actions": [],
}


@pytest.fixture
async def lock(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "lock-video", "lock", "lock01")


async def test_connects_reports_and_gets_cloud_time(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    online: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    async with sdk_device(server, lock, on_online=online.set_result) as dev:
        cloud_ms = await asyncio.wait_for(online, 10)
        assert abs(cloud_ms - time.time() * 1000) < 5000
        assert (await device_doc(admin, lock))["Online"] == 1
        assert await dev.property_report({"battery_percentage": 80, "lock_motor_state": 1}) == OK
        doc = await wait_prop(admin, lock, "battery_percentage", 80)
        assert prop(doc, "lock_motor_state") == 1
        now = await dev.get_time()
        assert now is not None and abs(now - time.time() * 1000) < 5000


async def test_bad_report_is_rejected_with_406(server: Ivcloud, lock: Provisioned) -> None:
    async with sdk_device(server, lock, wait_online=10) as dev:
        assert await dev.property_report({"battery_percentage": 101}) == 406
        assert await dev.property_report({"no_such_property": 1}) == 406
        assert await dev.property_report({"battery_percentage": 50}) == OK


async def test_hmacsha1_and_websocket_transport(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    assert server.endpoints is not None and server.endpoints.mqtt_ws_url is not None
    async with sdk_device(server, lock, algorithm="hmacsha1", wait_online=10) as dev:
        assert await dev.property_report({"battery_percentage": 70}) == OK
    async with sdk_device(server, lock, ws_url=server.endpoints.mqtt_ws_url, wait_online=10) as dev:
        assert dev.online
        assert await dev.property_report({"battery_percentage": 71}) == OK
    ws_port = server.gateway.ws_port
    assert ws_port is not None
    async with sdk_device(
        server, lock, port=ws_port, transport="websockets", wait_online=10
    ) as dev:
        assert await dev.property_report({"battery_percentage": 72}) == OK
    await wait_prop(admin, lock, "battery_percentage", 72)


async def test_wrong_secret_never_comes_online(server: Ivcloud, lock: Provisioned) -> None:
    wrong = Provisioned(lock.product_id, lock.device_name, "AAAAAAAAAAAAAAAAAAAAAA==")
    async with sdk_device(server, wrong, wait_online=1.0) as dev:
        assert not dev.online
        assert await dev.property_report({"battery_percentage": 1}, timeout_s=0.2) == ERR_TIMEOUT


def test_device_info_repr_hides_the_secret() -> None:
    info = DeviceInfo("ABCDEFGHIJ", "dev", "c2VjcmV0LXNlY3JldA==")
    assert "c2VjcmV0" not in repr(info)
    assert info.client_id == "ABCDEFGHIJdev"


async def test_control_reaches_callback_and_is_acknowledged(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_control(params: dict[str, Any]) -> int:
        await got.put(params)
        return OK

    async with sdk_device(server, lock, wait_online=10) as dev:
        dev.dm_init(load_standard_model("lock-video"), on_control=on_control)
        resp = await admin.post(
            f"/products/{lock.product_id}/devices/{lock.device_name}/control",
            json={"Params": {"volume": 2, "child_lock_state": 1}, "WaitSeconds": 2},
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["Delivered"] is True
        assert body["Code"] == 0
        assert await asyncio.wait_for(got.get(), 5) == {"volume": 2, "child_lock_state": 1}
        # Acknowledged controls are not pending any more.
        data = await dev.property_sync()
        assert data is not None and "control" not in data


async def test_failing_control_callback_code_reaches_the_console(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    async with sdk_device(server, lock, wait_online=10) as dev:
        dev.dm_init(load_standard_model("lock-video"), on_control=lambda params: -1)
        resp = await admin.post(
            f"/products/{lock.product_id}/devices/{lock.device_name}/control",
            json={"Params": {"volume": 3}, "WaitSeconds": 2},
        )
        assert resp.json()["Code"] == -1


async def test_offline_control_is_delivered_by_property_sync_then_cleared(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    resp = await admin.post(
        f"/products/{lock.product_id}/devices/{lock.device_name}/control",
        json={"Params": {"volume": 1}},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["Delivered"] is False

    applied: list[dict[str, Any]] = []
    async with sdk_device(server, lock, wait_online=10) as dev:
        dev.dm_init(
            load_standard_model("lock-video"),
            on_control=lambda p: record(applied, p),
            sync_on_connect=False,
        )
        assert await dev.property_report({"battery_percentage": 60}) == OK
        data = await dev.property_sync()
        assert data is not None
        assert applied == [{"volume": 1}]
        assert data["control"] == {"volume": 1}
        assert data["reported"]["battery_percentage"] == 60
        # clear_control was sent: a second sync has nothing to apply.
        again = await dev.property_sync()
        assert again is not None and "control" not in again
        assert applied == [{"volume": 1}]


async def test_offline_control_is_applied_automatically_on_connect(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    await admin.post(
        f"/products/{lock.product_id}/devices/{lock.device_name}/control",
        json={"Params": {"child_lock_state": 1}},
    )
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    host, port = broker(server)
    dev = IvDevice()
    dev.dm_init(load_standard_model("lock-video"), on_control=lambda p: record(got, p))
    await dev.sys_init(
        DeviceInfo(lock.product_id, lock.device_name, lock.secret), host=host, port=port
    )
    try:
        assert await asyncio.wait_for(got.get(), 10) == {"child_lock_state": 1}
    finally:
        await dev.stop()


async def test_dm_init_after_online_still_picks_up_offline_control(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    await admin.post(
        f"/products/{lock.product_id}/devices/{lock.device_name}/control",
        json={"Params": {"volume": 3}},
    )
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with sdk_device(server, lock, wait_online=10) as dev:
        dev.dm_init(load_standard_model("lock-video"), on_control=lambda p: record(got, p))
        assert await asyncio.wait_for(got.get(), 10) == {"volume": 3}


async def test_action_is_answered(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def on_action(action_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        calls.append((action_id, params))
        return OK, {"result": 1}

    async with sdk_device(server, lock, wait_online=10) as dev:
        dev.dm_init(load_standard_model("lock-video"), on_action=on_action)
        resp = await admin.post(
            f"/products/{lock.product_id}/devices/{lock.device_name}/actions/unlock_remote",
            json={"Params": {}, "TimeoutSeconds": 5},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["Code"] == 0
        assert resp.json()["Response"] == {"result": 1}
        assert calls == [("unlock_remote", {})]


async def test_events_are_stored_and_bad_events_get_406(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    bell = await provision_custom(admin, DOORBELL_MODEL, "bell01")
    async with sdk_device(server, bell, wait_online=10) as dev:
        dev.dm_init(parse_thing_model(DOORBELL_MODEL))
        assert await dev.event_report("ring", "info", {"count": 3}) == OK
        assert await dev.event_report("ring", "info", {"count": 1000}) == 406
        assert await dev.event_report("no_such_event", "alert", {}) == 406
    resp = await admin.get(f"/products/{bell.product_id}/devices/{bell.device_name}/events")
    assert resp.status_code == 200, resp.text
    events = resp.json()["Events"]
    assert [(e["EventId"], e["Type"], e["Params"]) for e in events] == [
        ("ring", "info", {"count": 3})
    ]


async def test_bind_token_is_sent_and_stored(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    async with sdk_device(server, lock, wait_online=10) as dev:
        assert await dev.send_bind_info("v3_00d02b0248546d5a5fbf95a5812e4") == OK
    resp = await admin.get(f"/products/{lock.product_id}/devices/{lock.device_name}/bind-tokens")
    assert resp.json()["Tokens"] == ["v3_00d02b0248546d5a5fbf95a5812e4"]


async def test_bind_info_sent_before_online_waits_for_the_connection(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    async with sdk_device(server, lock) as dev:
        assert await dev.send_bind_info("tok-early") == OK


async def test_report_info_is_shown_in_the_console(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    async with sdk_device(server, lock, wait_online=10) as dev:
        code = await dev.report_info(
            fw_ver="1.2.3", module_hardinfo="esp32", mac="00:11:22:33:44:55"
        )
        assert code == OK
    info = (await device_doc(admin, lock))["DeviceInfo"]
    assert info["fw_ver"] == "1.2.3"
    assert info["mac"] == "00:11:22:33:44:55"


async def test_reconnects_after_the_broker_restarts(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    statuses: list[int] = []
    onlines: asyncio.Queue[int] = asyncio.Queue()
    async with sdk_device(
        server, lock, on_online=onlines.put_nowait, on_offline=statuses.append
    ) as dev:
        await asyncio.wait_for(onlines.get(), 10)
        gw = server.gateway
        port, ws_port = gw.port, gw.ws_port
        await gw.stop()
        await poll(lambda: _now(statuses), lambda s: OFFLINE_RECONNECTING in s)
        await gw.start("127.0.0.1", port, ws_port=ws_port)
        await asyncio.wait_for(onlines.get(), 15)
        assert await dev.property_report({"battery_percentage": 33}) == OK
    assert statuses[-1] == OFFLINE_GIVE_UP
    await wait_prop(admin, lock, "battery_percentage", 33)


async def _now(value: list[int]) -> list[int]:
    return value


def record(
    into: list[dict[str, Any]] | asyncio.Queue[dict[str, Any]], params: dict[str, Any]
) -> int:
    """A control callback body: remember the params, accept them."""
    if isinstance(into, list):
        into.append(params)
    else:
        into.put_nowait(params)
    return OK


async def test_reset_secret_disconnects_and_old_credentials_stop_working(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    statuses: list[int] = []
    async with sdk_device(server, lock, on_offline=statuses.append, wait_online=10) as dev:
        resp = await admin.post(
            f"/products/{lock.product_id}/devices/{lock.device_name}/reset-secret"
        )
        # Server-side expectation: the console drops the device's connection so the new
        # secret takes effect at once (console.py calls gateway.disconnect()).
        assert resp.status_code == 200, f"POST .../reset-secret failed: {resp.text}"
        new_secret = resp.json()["DeviceSecret"]
        assert new_secret != lock.secret
        await poll(lambda: _now(statuses), lambda s: OFFLINE_RECONNECTING in s)
        # The SDK keeps retrying with the old secret and is refused.
        assert not await dev.wait_online(0.5)
    renewed = Provisioned(lock.product_id, lock.device_name, new_secret)
    async with sdk_device(server, renewed, wait_online=10) as dev:
        assert await dev.property_report({"battery_percentage": 5}) == OK

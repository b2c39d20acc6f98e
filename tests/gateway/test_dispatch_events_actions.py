"""Events and actions of ``$thing`` through the real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.helpers import Provisioned, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice, device_for


@pytest.fixture
async def sensor(admin: httpx.AsyncClient) -> Provisioned:
    return await provision_custom(admin, SENSOR_MODEL, "sensor01")


@pytest.fixture
async def dev(server: Ivcloud, sensor: Provisioned) -> AsyncIterator[RawDevice]:
    async with device_for(server, sensor) as device:
        yield device


async def events(admin: httpx.AsyncClient, p: Provisioned) -> list[dict[str, object]]:
    resp = await admin.get(f"/products/{p.product_id}/devices/{p.device_name}/events")
    assert resp.status_code == 200
    result: list[dict[str, object]] = resp.json()["Events"]
    return result


async def test_event_post_top_level(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned
) -> None:
    reply = await dev.request(
        "event",
        {
            "method": "event_post",
            "clientToken": "e1",
            "version": "1.0",
            "eventId": "alarm",
            "type": "alert",
            "timestamp": 1_700_000_000,
            "params": {"level": 2},
        },
    )
    assert reply == {
        "method": "event_reply",
        "clientToken": "e1",
        "code": 0,
        "status": "success",
        "version": "1.0",
        "data": {},
    }
    [ev] = await events(admin, sensor)
    assert ev["EventId"] == "alarm"
    assert ev["Type"] == "alert"
    assert ev["Params"] == {"level": 2}
    assert ev["Timestamp"] == 1_700_000_000_000


async def test_event_post_with_one_element_events_array(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned
) -> None:
    # Python SDK 1.0.0 shape.
    reply = await dev.request(
        "event",
        {
            "method": "event_post",
            "clientToken": "e2",
            "events": [
                {
                    "eventId": "status_report",
                    "type": "info",
                    "timestamp": 1_700_000_000_500,
                    "params": {"message": "hi"},
                }
            ],
        },
    )
    assert reply["code"] == 0
    [ev] = await events(admin, sensor)
    assert ev["Timestamp"] == 1_700_000_000_500


async def test_events_post_many(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned
) -> None:
    reply = await dev.request(
        "event",
        {
            "method": "events_post",
            "clientToken": "e3",
            "events": [
                {
                    "eventId": "alarm",
                    "type": "alert",
                    "timestamp": 1_700_000_001,
                    "params": {"level": 1},
                },
                {
                    "eventId": "status_report",
                    "type": "info",
                    "timestamp": 1_700_000_002,
                    "params": {"message": "ok"},
                },
            ],
        },
    )
    assert reply["code"] == 0
    assert [e["EventId"] for e in await events(admin, sensor)] == ["status_report", "alarm"]


@pytest.mark.parametrize(
    "doc",
    [
        {
            "method": "event_post",
            "clientToken": "x",
            "eventId": "nope",
            "type": "info",
            "params": {},
        },
        {
            "method": "event_post",
            "clientToken": "x",
            "eventId": "alarm",
            "type": "alert",
            "params": {"level": 9},
        },
        {
            "method": "event_post",
            "clientToken": "x",
            "eventId": "alarm",
            "type": "alert",
            "params": {"other": 1},
        },
        {
            "method": "event_post",
            "clientToken": "x",
            "eventId": "alarm",
            "type": "panic",
            "params": {"level": 1},
        },
        {"method": "event_post", "clientToken": "x", "type": "info", "params": {}},
        {"method": "events_post", "clientToken": "x", "events": []},
        {
            "method": "events_post",
            "clientToken": "x",
            "events": [
                {"eventId": "alarm", "type": "alert", "params": {"level": 1}},
                {"eventId": "alarm", "type": "alert", "params": {"level": 99}},
            ],
        },
    ],
)
async def test_invalid_event_gets_406_and_nothing_stored(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned, doc: dict[str, object]
) -> None:
    reply = await dev.request("event", doc)
    assert reply["method"] == "event_reply"
    assert reply["clientToken"] == "x"
    assert reply["code"] == 406
    assert reply["status"] == "Param count not match"
    assert await events(admin, sensor) == []


async def test_action_round_trip(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned
) -> None:
    url = f"/products/{sensor.product_id}/devices/{sensor.device_name}/actions/blink"
    call = asyncio.create_task(admin.post(url, json={"Params": {"times": 3}}))
    action = await dev.down("action")
    assert action["method"] == "action"
    assert action["actionId"] == "blink"
    assert action["params"] == {"times": 3}
    assert isinstance(action["timestamp"], int)
    await dev.reply_action(action, {"done": 1}, "done")
    resp = await call
    assert resp.status_code == 200
    assert resp.json() == {
        "ClientToken": action["clientToken"],
        "Code": 0,
        "Status": "done",
        "Response": {"done": 1},
    }


async def test_action_timeout(
    dev: RawDevice, admin: httpx.AsyncClient, sensor: Provisioned
) -> None:
    url = f"/products/{sensor.product_id}/devices/{sensor.device_name}/actions/blink"
    resp = await admin.post(url, json={"Params": {"times": 1}, "TimeoutSeconds": 0.3})
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "DeviceTimeout"


async def test_action_to_offline_device(admin: httpx.AsyncClient, sensor: Provisioned) -> None:
    url = f"/products/{sensor.product_id}/devices/{sensor.device_name}/actions/blink"
    resp = await admin.post(url, json={"Params": {"times": 1}})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "DeviceOffline"


@pytest.mark.parametrize(
    ("action", "params"),
    [("blink", {"times": 11}), ("blink", {"speed": 1}), ("nope", {})],
)
async def test_action_input_validated(
    dev: RawDevice,
    admin: httpx.AsyncClient,
    sensor: Provisioned,
    action: str,
    params: dict[str, object],
) -> None:
    url = f"/products/{sensor.product_id}/devices/{sensor.device_name}/actions/{action}"
    resp = await admin.post(url, json={"Params": params})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "InvalidParameterValue"


async def test_device_cannot_answer_another_devices_action(
    server: Ivcloud, admin: httpx.AsyncClient, sensor: Provisioned, dev: RawDevice
) -> None:
    resp = await admin.post(
        f"/products/{sensor.product_id}/devices", json={"DeviceName": "intruder"}
    )
    intruder = Provisioned(sensor.product_id, "intruder", resp.json()["DeviceSecret"])
    async with device_for(server, intruder) as other:
        url = f"/products/{sensor.product_id}/devices/{sensor.device_name}/actions/blink"
        call = asyncio.create_task(
            admin.post(url, json={"Params": {"times": 2}, "TimeoutSeconds": 2})
        )
        action = await dev.down("action")
        # The intruder learns the token somehow and answers on its own topic: ignored.
        await other.reply_action(action, {"done": 0}, "forged")
        # A round trip on the intruder's connection proves the forgery was processed first.
        await other.request("property", {"method": "get_status", "clientToken": "sync"})
        await dev.reply_action(action, {"done": 1}, "real")
        resp = await call
    assert resp.json()["Status"] == "real"

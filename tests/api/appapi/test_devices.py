"""Device management, control and data queries over real HTTP (spec §2.3, §2.4, §2.5)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.api.appapi.family_support import FAMILY_DEVICE_FIELDS
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice, device_for


@dataclass
class Home:
    """One app, one user with one family, and one sensor device bound into it."""

    server: Ivcloud
    client: AppApiClient
    creds: AppCreds
    sensor: Provisioned
    user_id: str
    token: str
    family_id: str

    async def call(self, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(self.token, action, **params)

    @property
    def dev(self) -> dict[str, str]:
        return {"ProductId": self.sensor.product_id, "DeviceName": self.sensor.device_name}

    @property
    def device_id(self) -> str:
        return f"{self.sensor.product_id}/{self.sensor.device_name}"


async def bind(
    server: Ivcloud,
    user_id: str,
    family_id: str,
    p: Provisioned,
    room_id: str = "",
    alias: str = "",
) -> None:
    user = await server.users.get(user_id)
    rec = await server.devices.get(p.product_id, p.device_name)
    await server.families.bind_device(user, family_id, room_id, rec, alias)


async def make_home(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> Home:
    sensor = await provision_custom(admin, SENSOR_MODEL, "dev1")
    creds = await create_app(admin, sensor.product_id)
    client = AppApiClient(appclient, creds)
    user_id, token = await make_user(server, creds, "owner")
    data = ok_data(await client.tokenapi(token, "AppCreateFamily", Name="Home"))
    family_id = data["Data"]["FamilyId"]
    await bind(server, user_id, family_id, sensor, alias="Sensor")
    return Home(server, client, creds, sensor, user_id, token, family_id)


@pytest.fixture
async def home(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> Home:
    return await make_home(server, admin, appclient)


@pytest.fixture
async def dev(server: Ivcloud, home: Home) -> Any:
    async with device_for(server, home.sensor) as raw:
        yield raw


async def test_get_products_returns_data_template_as_json_string(home: Home) -> None:
    data = ok_data(await home.call("AppGetProducts", ProductIds=[home.sensor.product_id]))
    [product] = data["Products"]
    assert product["ProductId"] == home.sensor.product_id
    assert isinstance(product["DataTemplate"], str)
    template = json.loads(product["DataTemplate"])
    assert [p["id"] for p in template["properties"]][:2] == ["power", "temperature"]
    assert set(product) == {
        "ProductId",
        "Name",
        "Description",
        "DataTemplate",
        "AppTemplate",
        "NetType",
        "Services",
        "ProductType",
        "UpdateTime",
    }
    assert error_code(await home.call("AppGetProducts", ProductIds="x")) == "InvalidParameter"
    assert error_code(await home.call("AppGetProducts")) == "ErrorRequiredParamNotFound"


async def test_family_device_list_fields_rooms_and_paging(
    home: Home, admin: httpx.AsyncClient, server: Ivcloud
) -> None:
    room = ok_data(await home.call("AppCreateRoom", FamilyId=home.family_id, Name="Kitchen"))
    room_id = room["Data"]["RoomId"]
    resp = await admin.post(
        f"/products/{home.sensor.product_id}/devices", json={"DeviceName": "dev2"}
    )
    assert resp.status_code == 201
    second = Provisioned(home.sensor.product_id, "dev2", resp.json()["DeviceSecret"])
    await bind(server, home.user_id, home.family_id, second, room_id=room_id)

    data = ok_data(await home.call("AppGetFamilyDeviceList", FamilyId=home.family_id, RoomId=""))
    assert data["Total"] == 2
    first = data["DeviceList"][0]
    assert set(first) == FAMILY_DEVICE_FIELDS
    assert first["DeviceId"] == home.device_id
    assert first["AliasName"] == "Sensor"
    assert first["UserID"] == home.user_id
    assert first["FamilyId"] == home.family_id
    assert first["RoomId"] == "0"

    default_room = ok_data(
        await home.call("AppGetFamilyDeviceList", FamilyId=home.family_id, RoomId="0")
    )
    assert [d["DeviceName"] for d in default_room["DeviceList"]] == ["dev1"]
    kitchen = ok_data(
        await home.call("AppGetFamilyDeviceList", FamilyId=home.family_id, RoomId=room_id)
    )
    assert [d["DeviceName"] for d in kitchen["DeviceList"]] == ["dev2"]
    page = ok_data(await home.call("AppGetFamilyDeviceList", FamilyId="default", Offset=1, Limit=1))
    assert page["Total"] == 2
    assert [d["DeviceName"] for d in page["DeviceList"]] == ["dev2"]
    # Deleting the room moves its devices to the default room.
    ok_data(await home.call("AppDeleteRoom", FamilyId=home.family_id, RoomId=room_id))
    default_room = ok_data(
        await home.call("AppGetFamilyDeviceList", FamilyId=home.family_id, RoomId="0")
    )
    assert default_room["Total"] == 2


async def test_device_statuses_online_is_1(home: Home, dev: RawDevice) -> None:
    data = ok_data(await home.call("AppGetDeviceStatuses", DeviceIds=[home.device_id]))
    assert data["DeviceStatuses"] == [
        {
            "DeviceId": home.device_id,
            "ProductId": home.sensor.product_id,
            "DeviceName": "dev1",
            "Online": 1,
        }
    ]


async def test_device_statuses_offline_is_0(home: Home) -> None:
    data = ok_data(await home.call("AppGetDeviceStatuses", DeviceIds=[home.device_id]))
    assert data["DeviceStatuses"][0]["Online"] == 0


async def test_rename_describe_and_move_device(home: Home) -> None:
    ok_data(await home.call("AppUpdateDeviceInFamily", **home.dev, AliasName="Lamp"))
    room = ok_data(await home.call("AppCreateRoom", FamilyId=home.family_id, Name="Hall"))
    room_id = room["Data"]["RoomId"]
    ok_data(
        await home.call(
            "AppModifyFamilyDeviceRoom",
            FamilyId=home.family_id,
            RoomId=room_id,
            DeviceId=home.device_id,
        )
    )
    data = ok_data(await home.call("AppGetDeviceInFamily", FamilyId=home.family_id, **home.dev))
    assert data["Data"]["AliasName"] == "Lamp"
    assert data["Data"]["RoomId"] == room_id
    assert data["Data"]["Online"] == 0
    # Unknown room of the own family → NoPermission; empty alias → InvalidParameterValue.
    assert error_code(
        await home.call(
            "AppModifyFamilyDeviceRoom", FamilyId=home.family_id, RoomId="r_nope", **home.dev
        )
    ) == ("InvalidParameterValue.NoPermission")
    assert (
        error_code(await home.call("AppUpdateDeviceInFamily", **home.dev, AliasName="   "))
        == "InvalidParameterValue"
    )


async def test_delete_device_in_family_unbinds(home: Home) -> None:
    ok_data(
        await home.call("AppDeleteDeviceInFamily", FamilyId=home.family_id, DeviceId=home.device_id)
    )
    data = ok_data(await home.call("AppGetFamilyDeviceList", FamilyId=home.family_id))
    assert data["Total"] == 0
    rec = await home.server.devices.get(home.sensor.product_id, "dev1")
    assert await home.server.families.device_family(rec) is None
    # Now unreachable for its former owner.
    assert error_code(await home.call("AppGetDeviceData", **home.dev)) == (
        "InvalidParameterValue.NoPermission"
    )


async def test_control_device_data(home: Home, dev: RawDevice) -> None:
    ok_data(
        await home.call(
            "AppControlDeviceData", DeviceId=home.device_id, Data='{"power":1,"brightness":30}'
        )
    )
    msg = await dev.down("property")
    assert msg["method"] == "control"
    assert msg["params"] == {"power": 1, "brightness": 30}
    assert (
        error_code(await home.call("AppControlDeviceData", **home.dev, Data='{"temperature":1}'))
        == "InvalidParameterValue"
    )
    assert error_code(await home.call("AppControlDeviceData", **home.dev, Data="{nope")) == (
        "InvalidParameterValue.InvalidJSON"
    )


async def test_call_action_sync(home: Home, dev: RawDevice) -> None:
    call = asyncio.create_task(
        home.call(
            "AppCallDeviceActionSync", **home.dev, ActionId="blink", InputParams='{"times":2}'
        )
    )
    action = await dev.down("action")
    assert action["params"] == {"times": 2}
    await dev.reply_action(action, {"done": 1})
    data = ok_data(await call)
    assert data["ClientToken"] == action["clientToken"]
    assert data["Status"] == "succ"
    assert json.loads(data["OutputParams"]) == {"done": 1}


async def test_call_action_sync_offline_and_invalid(home: Home) -> None:
    assert error_code(
        await home.call(
            "AppCallDeviceActionSync", **home.dev, ActionId="blink", InputParams='{"times":2}'
        )
    ) == ("FailedOperation.DeviceOffline")
    assert (
        error_code(
            await home.call(
                "AppCallDeviceActionSync", **home.dev, ActionId="blink", InputParams='{"times":99}'
            )
        )
        == "InvalidParameterValue"
    )


async def test_call_action_async_returns_at_once(home: Home, dev: RawDevice) -> None:
    data = ok_data(
        await home.call(
            "AppCallDeviceActionAsync", **home.dev, ActionId="blink", InputParams='{"times":1}'
        )
    )
    assert data["Status"] == "sent"
    assert data["ClientToken"]
    # The answer came before the device replied: the action is still on its way.
    action = await dev.down("action")
    assert action["actionId"] == "blink"
    assert action["clientToken"] == data["ClientToken"]  # the app can match the reply push
    await dev.reply_action(action, {"done": 1})
    assert (
        error_code(await home.call("AppCallDeviceActionAsync", **home.dev, ActionId="nope"))
        == "InvalidParameterValue"
    )


async def test_call_action_async_offline(home: Home) -> None:
    assert error_code(
        await home.call(
            "AppCallDeviceActionAsync", **home.dev, ActionId="blink", InputParams='{"times":1}'
        )
    ) == ("FailedOperation.DeviceOffline")


async def report(dev: RawDevice, ts: int, **params: Any) -> None:
    reply = await dev.request(
        "property", {"method": "report", "clientToken": f"t{ts}", "timestamp": ts, "params": params}
    )
    assert reply["code"] == 0, reply


async def test_device_data_is_a_json_string(home: Home, dev: RawDevice) -> None:
    await report(dev, 1_700_000_000_000, temperature=21.5, label="hi")
    data = ok_data(await home.call("AppGetDeviceData", DeviceId=home.device_id))
    assert isinstance(data["Data"], str)
    assert json.loads(data["Data"]) == {
        "label": {"Value": "hi", "LastUpdate": 1_700_000_000_000},
        "temperature": {"Value": 21.5, "LastUpdate": 1_700_000_000_000},
    }


async def test_device_data_history_pages_with_context(home: Home, dev: RawDevice) -> None:
    base = 1_700_000_000_000
    # Two reports share a millisecond: the cursor must not lose either.
    for i, ts in enumerate([base, base + 1000, base + 1000, base + 2000, base + 3000]):
        await report(dev, ts, brightness=i)
    params = {**home.dev, "FieldName": "brightness", "MinTime": base, "MaxTime": base + 3000}
    seen: list[tuple[str, str]] = []
    context = ""
    for _ in range(5):
        data = ok_data(
            await home.call("AppGetDeviceDataHistory", **params, Limit=2, Context=context)
        )
        assert data["FieldName"] == "brightness"
        seen += [(r["Time"], r["Value"]) for r in data["Results"]]
        context = data["Context"]
        if data["Listover"]:
            break
    assert seen == [
        (str(base + 3000), "4"),
        (str(base + 2000), "3"),
        (str(base + 1000), "2"),
        (str(base + 1000), "1"),
        (str(base), "0"),
    ]
    window = ok_data(
        await home.call(
            "AppGetDeviceDataHistory",
            **home.dev,
            FieldName="brightness",
            MinTime=base + 1,
            MaxTime=base + 1500,
            Limit=10,
        )
    )
    assert [r["Value"] for r in window["Results"]] == ["2", "1"]
    assert window["Listover"] is True
    assert error_code(
        await home.call(
            "AppGetDeviceDataHistory", **home.dev, FieldName="brightness", Context="bogus"
        )
    ) == ("InvalidParameterValue")


async def test_list_event_history(home: Home, dev: RawDevice) -> None:
    now_s = 1_700_000_000
    events = [
        {
            "eventId": "alarm",
            "type": "alert",
            "timestamp": (now_s + i) * 1000,
            "params": {"level": i % 3},
        }
        for i in range(3)
    ]
    events.append(
        {
            "eventId": "status_report",
            "type": "info",
            "timestamp": (now_s + 3) * 1000,
            "params": {"message": "ok"},
        }
    )
    reply = await dev.request(
        "event", {"method": "events_post", "clientToken": "e", "events": events}
    )
    assert reply["code"] == 0
    span = {"StartTime": now_s, "EndTime": now_s + 10}
    data = ok_data(await home.call("AppListEventHistory", **home.dev, **span, Size=10))
    assert data["Listover"] is True
    assert data["Total"] == 4
    first = data["EventHistory"][0]
    assert first == {
        "TimeStamp": now_s + 3,
        "ProductId": home.sensor.product_id,
        "DeviceName": "dev1",
        "EventId": "status_report",
        "Type": "info",
        "Data": '{"message": "ok"}',
    }
    alerts: list[int] = []
    context = ""
    while True:
        page = ok_data(
            await home.call(
                "AppListEventHistory", **home.dev, **span, Type="alert", Size=2, Context=context
            )
        )
        alerts += [e["TimeStamp"] for e in page["EventHistory"]]
        context = page["Context"]
        if page["Listover"]:
            break
    assert alerts == [now_s + 2, now_s + 1, now_s]
    by_id = ok_data(
        await home.call("AppListEventHistory", **home.dev, **span, EventId="status_report")
    )
    assert [e["EventId"] for e in by_id["EventHistory"]] == ["status_report"]
    assert error_code(await home.call("AppListEventHistory", **home.dev, Type="bad")) == (
        "InvalidParameterValue"
    )

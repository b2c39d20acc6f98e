"""The property channel of ``$thing`` through the real gateway, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.gateway_kit import device_doc
from tests.helpers import Provisioned, provision
from tests.rawdevice import RawDevice, device_for


@pytest.fixture
async def lock(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "lock-video", "lock", "lock01")


@pytest.fixture
async def dev(server: Ivcloud, lock: Provisioned) -> AsyncIterator[RawDevice]:
    async with device_for(server, lock) as device:
        yield device


async def properties(admin: httpx.AsyncClient, lock: Provisioned) -> dict[str, object]:
    props: dict[str, object] = (await device_doc(admin, lock))["Properties"]
    return props


async def test_valid_report_is_acknowledged_and_stored(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    reply = await dev.request(
        "property",
        {
            "method": "report",
            "clientToken": "tok-1",
            "params": {"battery_percentage": 80, "lock_motor_state": 1},
        },
    )
    assert reply == {
        "method": "report_reply",
        "clientToken": "tok-1",
        "code": 0,
        "status": "success",
    }
    props = await properties(admin, lock)
    assert props["battery_percentage"]["Value"] == 80  # type: ignore[index]
    assert props["lock_motor_state"]["Value"] == 1  # type: ignore[index]
    hist = await admin.get(
        f"/products/{lock.product_id}/devices/{lock.device_name}/properties/"
        "battery_percentage/history"
    )
    assert [v["Value"] for v in hist.json()["Values"]] == [80]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"no_such_prop": 1}, "no_such_prop"),
        ({"battery_percentage": 101}, "101"),
        ({"battery_percentage": "80"}, "battery_percentage"),
        ({"battery_percentage": 80.5}, "battery_percentage"),
        ({"volume": 7}, "volume"),
        ({"lock_motor_state": 2}, "lock_motor_state"),
        ({"_sys_xp2p_info": "x" * 65}, "_sys_xp2p_info"),
        ({"faces": [{"id": "1", "face_name": "x" * 21}]}, "face_name"),
        ({"user_list": {"owner": "a", "stranger": 1}}, "stranger"),
        ({}, "params"),
    ],
)
async def test_invalid_report_gets_406_and_stores_nothing(
    dev: RawDevice,
    admin: httpx.AsyncClient,
    lock: Provisioned,
    params: dict[str, object],
    fragment: str,
) -> None:
    ok = await dev.request(
        "property", {"method": "report", "clientToken": "t0", "params": {"battery_percentage": 50}}
    )
    assert ok["code"] == 0
    # A bad value next to a good one: the whole report is refused, nothing is stored.
    bad = {"sensitivity": 1, **params} if params else {}
    reply = await dev.request("property", {"method": "report", "clientToken": "t1", "params": bad})
    assert reply["method"] == "report_reply"
    assert reply["clientToken"] == "t1"
    assert reply["code"] == 406
    assert reply["status"] == "checkReportData fail"
    assert fragment in reply["msg"]
    props = await properties(admin, lock)
    assert set(props) == {"battery_percentage"}
    assert props["battery_percentage"]["Value"] == 50  # type: ignore[index]


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1,2]", b'{"clientToken":"x"}', b"\xff\xfe", b'{"method":"report"}'],
)
async def test_malformed_payload_gets_406(dev: RawDevice, payload: bytes) -> None:
    reply = await dev.request("property", payload)
    assert reply["code"] == 406
    assert reply["method"] == "report_reply"


async def test_unknown_method_gets_404(dev: RawDevice) -> None:
    reply = await dev.request("property", {"method": "frobnicate", "clientToken": "u1"})
    assert reply == {
        "method": "frobnicate_reply",
        "clientToken": "u1",
        "code": 404,
        "status": "unknown method",
    }


async def test_report_accepts_bool_literals_and_ms_timestamps(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    reply = await dev.request(
        "property",
        {
            "method": "report",
            "clientToken": "b",
            "timestamp": 1_700_000_000_123,
            "params": {"child_lock_state": True},
        },
    )
    assert reply["code"] == 0
    prop = (await properties(admin, lock))["child_lock_state"]
    assert prop == {"Value": 1, "LastUpdate": 1_700_000_000_123}


async def test_get_status_returns_reported_and_pending_control(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    # Control while the device is offline: queued.
    resp = await admin.post(
        f"/products/{lock.product_id}/devices/{lock.device_name}/control",
        json={"Params": {"volume": 2}},
    )
    assert resp.status_code == 200
    assert resp.json()["Delivered"] is False
    ep = server.endpoints
    assert ep is not None
    async with device_for(server, lock) as dev:
        empty = await dev.request("property", {"method": "get_status", "clientToken": "g0"})
        assert empty["data"] == {"control": {"volume": 2}}
        await dev.request(
            "property",
            {"method": "report", "clientToken": "r", "params": {"battery_percentage": 9}},
        )
        status = await dev.request("property", {"method": "get_status", "clientToken": "g1"})
        assert status["method"] == "get_status_reply"
        assert status["clientToken"] == "g1"
        assert status["code"] == 0
        assert status["type"] == "report"
        assert status["data"] == {"reported": {"battery_percentage": 9}, "control": {"volume": 2}}
        cleared = await dev.request("property", {"method": "clear_control", "clientToken": "c1"})
        assert cleared == {
            "method": "clear_control_reply",
            "clientToken": "c1",
            "code": 0,
            "status": "success",
        }
        status = await dev.request("property", {"method": "get_status", "clientToken": "g2"})
        assert status["data"] == {"reported": {"battery_percentage": 9}}


async def test_online_control_and_reply_without_method(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    import asyncio

    url = f"/products/{lock.product_id}/devices/{lock.device_name}/control"
    call = asyncio.create_task(admin.post(url, json={"Params": {"volume": 3}, "WaitSeconds": 5}))
    control = await dev.down("property")
    assert control["method"] == "control"
    assert control["params"] == {"volume": 3}
    assert control["clientToken"].startswith("clientToken-")
    # Python SDK 1.0.0 replies without "method": matched by clientToken.
    await dev.up("property", {"clientToken": control["clientToken"], "code": 0, "status": "ok"})
    resp = await call
    assert resp.status_code == 200
    assert resp.json() == {
        "ClientToken": control["clientToken"],
        "Delivered": True,
        "Code": 0,
        "Status": "ok",
    }
    # Acknowledged: no longer pending.
    status = await dev.request("property", {"method": "get_status", "clientToken": "g"})
    assert "control" not in status["data"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"lock_motor_state": 0}, "lock_motor_state"),
        ({"volume": 9}, "volume"),
        ({"nope": 1}, "nope"),
    ],
)
async def test_control_rejects_read_only_and_invalid(
    admin: httpx.AsyncClient, lock: Provisioned, params: dict[str, object], fragment: str
) -> None:
    resp = await admin.post(
        f"/products/{lock.product_id}/devices/{lock.device_name}/control",
        json={"Params": params},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "InvalidParameterValue"
    assert fragment in resp.json()["error"]["message"]


async def test_report_info_is_stored(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    reply = await dev.request(
        "property",
        {
            "method": "report_info",
            "clientToken": "i1",
            "params": {
                "module_hardinfo": "esp32",
                "module_softinfo": "1.2",
                "fw_ver": "1.0.3",
                "mac": "00:11:22:33:44:55",
                "device_label": {"manufacturer": "acme"},
            },
        },
    )
    assert reply == {
        "method": "report_info_reply",
        "clientToken": "i1",
        "code": 0,
        "status": "success",
    }
    body = await device_doc(admin, lock)
    assert body["FirmwareVersion"] == "1.0.3"
    assert body["DeviceInfo"]["device_label"] == {"manufacturer": "acme"}


async def test_sys_time(dev: RawDevice) -> None:
    import time

    before = int(time.time() * 1000)
    await dev.publish("$sys/operation/{p}/{d}", {"type": "get", "resource": ["time"]})
    reply = await dev.next("$sys/operation/result/{p}/{d}")
    after = int(time.time() * 1000)
    assert reply["type"] == "get"
    assert before <= reply["ntptime1"] <= reply["ntptime2"] <= after
    assert before // 1000 <= reply["time"] <= after // 1000


async def test_bind_token_is_stored_and_acknowledged(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    reply = await dev.request(
        "service",
        {
            "method": "app_bind_token",
            "clientToken": "lock01-1",
            "params": {"token": "v3_00d02b0248546d5a5fbf95a5812e4"},
        },
    )
    assert reply == {
        "method": "app_bind_token_reply",
        "clientToken": "lock01-1",
        "code": 0,
        "status": "success",
    }
    resp = await admin.get(f"/products/{lock.product_id}/devices/{lock.device_name}/bind-tokens")
    assert resp.json() == {"Tokens": ["v3_00d02b0248546d5a5fbf95a5812e4"]}


@pytest.mark.parametrize(
    "params", [{}, {"token": ""}, {"token": 5}, {"token": "x" * 129}, {"token": "bad token"}]
)
async def test_bad_bind_token_gets_406(
    dev: RawDevice, admin: httpx.AsyncClient, lock: Provisioned, params: dict[str, object]
) -> None:
    reply = await dev.request(
        "service", {"method": "app_bind_token", "clientToken": "b", "params": params}
    )
    assert reply["code"] == 406
    resp = await admin.get(f"/products/{lock.product_id}/devices/{lock.device_name}/bind-tokens")
    assert resp.json() == {"Tokens": []}

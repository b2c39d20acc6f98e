"""Firmware upgrade from the app (spec §2.9): check, publish and status against a raw MQTT
device answering the OTA protocol, plus who may do what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ivcloud.app import Ivcloud
from ivcloud.store.schema import OtaJob
from tests.api.appapi.family_support import household
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, poll, provision
from tests.rawdevice import RawDevice, device_for

NO_PERMISSION = "InvalidParameterValue.NoPermission"
UPDATE = "$ota/update/{p}/{d}"


@dataclass
class World:
    server: Ivcloud
    admin: httpx.AsyncClient
    client: AppApiClient
    dev: Provisioned
    tokens: dict[str, str]  # alice admin, dave member, bob sharee, carol stranger

    async def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(
            self.tokens[who],
            action,
            ProductId=self.dev.product_id,
            DeviceName=self.dev.device_name,
            **params,
        )

    async def upload(self, version: str) -> None:
        resp = await self.admin.post(
            f"/products/{self.dev.product_id}/firmware",
            data={"version": version},
            files={
                "file": ("fw.bin", b"\x7fELF" + version.encode() * 100, "application/octet-stream")
            },
        )
        assert resp.status_code == 201, resp.text

    async def status_is(self, who: str, status: int) -> dict[str, Any]:
        doc = await poll(
            lambda: self.call(who, "AppDescribeFirmwareUpdateStatus"),
            lambda d: d["code"] == 0 and d["data"]["Status"] == status,
        )
        return ok_data(doc)

    async def jobs(self) -> int:
        async with self.server.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(OtaJob)) or 0)


@pytest.fixture
async def w(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    dev = await provision(admin, "camera", "camera", "cam1")
    h = await household(server, admin, appclient, dev)
    client, tokens, family = h.client, h.tokens, h.family
    share = ok_data(
        await client.tokenapi(
            tokens["alice"],
            "AppCreateShareDeviceToken",
            FamilyId=family,
            ProductId=dev.product_id,
            DeviceName=dev.device_name,
        )
    )
    ok_data(
        await client.tokenapi(
            tokens["bob"],
            "AppBindUserShareDevice",
            ShareDeviceToken=share["ShareDeviceToken"],
            ProductId=dev.product_id,
            DeviceName=dev.device_name,
        )
    )
    return World(server, admin, client, dev, tokens)


async def report_version(device: RawDevice, version: str) -> None:
    await device.publish(
        "$ota/report/{p}/{d}", {"type": "report_version", "report": {"version": version}}, qos=1
    )
    assert (await device.next(UPDATE))["type"] == "report_version_rsp"


async def progress(
    device: RawDevice, version: str, state: str, percent: str = "0", code: str = "0", msg: str = ""
) -> None:
    await device.publish(
        "$ota/report/{p}/{d}",
        {
            "type": "report_progress",
            "report": {
                "progress": {
                    "state": state,
                    "percent": percent,
                    "result_code": code,
                    "result_msg": msg,
                },
                "version": version,
            },
        },
        qos=1,
    )


async def test_upgrade_journey(w: World) -> None:
    for version in ("1.10.0", "1.1.0", "0.9.0"):
        await w.upload(version)
    async with device_for(w.server, w.dev) as device:
        await report_version(device, "1.0.0")
        check = ok_data(await w.call("alice", "AppCheckFirmwareUpdate"))
        assert (check["CurrentVersion"], check["DstVersion"]) == ("1.0.0", "1.10.0")
        idle = ok_data(await w.call("alice", "AppDescribeFirmwareUpdateStatus"))
        assert (idle["Status"], idle["DstVersion"], idle["OriVersion"]) == (6, "1.0.0", "1.0.0")

        ok_data(await w.call("alice", "AppPublishFirmwareUpdateMessage"))
        update = await device.next(UPDATE)
        assert (update["type"], update["version"]) == ("update_firmware", "1.10.0")
        pending = ok_data(await w.call("alice", "AppDescribeFirmwareUpdateStatus"))
        assert (pending["Status"], pending["Percent"]) == (1, 0)
        assert (pending["DstVersion"], pending["OriVersion"]) == ("1.10.0", "1.0.0")
        # a second tap while the upgrade is open starts nothing new
        ok_data(await w.call("dave", "AppPublishFirmwareUpdateMessage"))
        assert await w.jobs() == 1

        await progress(device, "1.10.0", "downloading", "50")
        assert (await w.status_is("bob", 3))["Percent"] == 50
        await progress(device, "1.10.0", "burning", "100")
        await w.status_is("alice", 4)
        await progress(device, "1.10.0", "done", "100")
        done = await w.status_is("alice", 6)
        assert (done["Percent"], done["DstVersion"]) == (100, "1.10.0")
        await report_version(device, "1.10.0")
        check = ok_data(await w.call("alice", "AppCheckFirmwareUpdate"))
        assert (check["CurrentVersion"], check["DstVersion"]) == ("1.10.0", "1.10.0")
        assert error_code(await w.call("alice", "AppPublishFirmwareUpdateMessage")) == (
            "FailedOperation"
        )

        # a failed upgrade
        await w.upload("2.0")
        ok_data(await w.call("dave", "AppPublishFirmwareUpdateMessage"))
        assert (await device.next(UPDATE))["version"] == "2.0"
        await progress(device, "2.0", "fail", "0", "-4", "md5 not match")
        failed = await w.status_is("alice", 5)
        assert (failed["DstVersion"], failed["ErrMsg"]) == ("2.0", "md5 not match")

        # an upgrade published while the device is online, then it drops off
        ok_data(await w.call("alice", "AppPublishFirmwareUpdateMessage"))
        assert (await device.next(UPDATE))["version"] == "2.0"
    offline = await w.status_is("alice", 0)
    assert offline["DstVersion"] == "2.0"


async def test_offline_device_without_task(w: World) -> None:
    status = ok_data(await w.call("alice", "AppDescribeFirmwareUpdateStatus"))
    assert (status["Status"], status["DstVersion"], status["OriVersion"]) == (0, "", "")
    check = ok_data(await w.call("alice", "AppCheckFirmwareUpdate"))
    assert (check["CurrentVersion"], check["DstVersion"]) == ("", "")
    await w.upload("1.0")
    check = ok_data(await w.call("alice", "AppCheckFirmwareUpdate"))
    assert check["DstVersion"] == "1.0"
    # published while offline: the job waits, the status says offline
    ok_data(await w.call("alice", "AppPublishFirmwareUpdateMessage"))
    assert ok_data(await w.call("alice", "AppDescribeFirmwareUpdateStatus"))["Status"] == 0
    async with device_for(w.server, w.dev) as device:
        await device.publish(
            "$ota/report/{p}/{d}", {"type": "report_version", "report": {"version": "0.1"}}, qos=1
        )
        assert (await device.next(UPDATE))["type"] == "report_version_rsp"
        assert (await device.next(UPDATE))["version"] == "1.0"  # resume rule
        await w.status_is("alice", 1)


async def test_who_may_do_what(w: World) -> None:
    await w.upload("9.9")
    # the sharee views but may not start an upgrade
    ok_data(await w.call("bob", "AppCheckFirmwareUpdate"))
    ok_data(await w.call("bob", "AppDescribeFirmwareUpdateStatus"))
    assert error_code(await w.call("bob", "AppPublishFirmwareUpdateMessage")) == NO_PERMISSION
    # a stranger does nothing
    for action in (
        "AppCheckFirmwareUpdate",
        "AppPublishFirmwareUpdateMessage",
        "AppDescribeFirmwareUpdateStatus",
    ):
        assert error_code(await w.call("carol", action)) == NO_PERMISSION, action
        doc = await w.client.tokenapi(
            w.tokens["alice"], action, ProductId=w.dev.product_id, DeviceName="missing"
        )
        assert error_code(doc) == NO_PERMISSION, action
        doc = await w.client.tokenapi(w.tokens["alice"], action)
        assert error_code(doc) == "InvalidParameter", action
    assert await w.jobs() == 0
    # a family member may
    ok_data(await w.call("dave", "AppPublishFirmwareUpdateMessage"))
    assert await w.jobs() == 1


async def test_other_app_cannot_reach_the_device(
    w: World, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    creds = await create_app(admin)  # product not linked
    _, eve = await make_user(w.server, creds, "eve")
    client = AppApiClient(appclient, creds)
    doc = await client.tokenapi(
        eve, "AppCheckFirmwareUpdate", ProductId=w.dev.product_id, DeviceName=w.dev.device_name
    )
    assert error_code(doc) == NO_PERMISSION

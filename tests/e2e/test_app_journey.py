"""Issue 3's end-to-end journey, driven by the Python App SDK against a real server and a
real simulated camera: register → family and room → bind the camera via a bind token in
its QR code → subscribe → control → the camera applies and re-reports → pushes arrive →
share to a second user → they see and control it but cannot delete it → unshare → access
gone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.client.app_sdk import AppClient
from ivcloud.device import run_simulator
from ivcloud.protocol.appapi import NO_PERMISSION, AppApiError
from ivcloud.services.codes import LogCodeSender, Target
from tests.appclient import create_app
from tests.conftest import make_settings
from tests.helpers import poll, provision


@pytest.fixture
async def server(tmp_path: Path, db_url: str) -> AsyncIterator[Ivcloud]:
    """The journey runs on SQLite and on PostgreSQL."""
    instance = Ivcloud(make_settings(tmp_path / "data", database_url=db_url))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


async def next_matching(
    queue: asyncio.Queue[dict[str, Any]], prop: str, value: object
) -> dict[str, Any]:
    """The next push whose deviceData carries ``prop == value`` (others are skipped)."""
    async with asyncio.timeout(10):
        while True:
            event = await queue.get()
            if event["deviceData"].get(prop, {}).get("Value") == value:
                return event


async def test_register_bind_subscribe_control_share_unshare(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    cam = await provision(admin, "camera", "camera", "cam01")
    device_id = f"{cam.product_id}/{cam.device_name}"
    creds = await create_app(admin, cam.product_id)
    assert server.endpoints is not None
    ep = server.endpoints
    phone = "13800000001"
    stop = asyncio.Event()
    sim: asyncio.Task[None] | None = None
    async with AppClient(ep.http_url, app_key=creds.app_key, app_secret=creds.app_secret) as alice:
        # 1. Register by phone with a verification code, log in with the password.
        await alice.request_signed(
            "AppSendVerificationCode",
            {"Type": "register", "CountryCode": "86", "PhoneNumber": phone},
        )
        sender = server.accounts.codes.sender
        assert isinstance(sender, LogCodeSender)  # the development sender of the defaults
        code = sender.last(Target.phone("86", phone))
        assert code is not None
        await alice.request_signed(
            "AppCreateCellphoneUser",
            {
                "CountryCode": "86",
                "PhoneNumber": phone,
                "VerificationCode": code,
                "Password": "alice-pass-1",
            },
        )
        await alice.login_phone("86", phone, password="alice-pass-1")
        # 2. Family and room.
        family_id = (await alice.request_api("AppCreateFamily", {"Name": "Home"}))["Data"][
            "FamilyId"
        ]
        room_id = (
            await alice.request_api("AppCreateRoom", {"FamilyId": family_id, "Name": "Living room"})
        )["Data"]["RoomId"]
        # 3. Bind the camera: the QR carries the bind token, the camera reports it.
        qr = await alice.request_api(
            "IvcloudGetProvisionQR", {"Ssid": "home-wifi", "Password": "wifi-pass"}
        )
        sim = asyncio.create_task(
            run_simulator(
                "camera",
                host=ep.mqtt_host,
                port=ep.mqtt_port,
                product_id=cam.product_id,
                device_name=cam.device_name,
                secret=cam.secret,
                qr=qr["QRString"],
                stop=stop,
            )
        )

        async def token_state() -> dict[str, Any]:
            return await alice.request_api("AppGetDeviceBindTokenState", {"Token": qr["Token"]})

        state = await poll(token_state, lambda d: d["State"] == 2)
        assert (state["ProductId"], state["DeviceName"]) == (cam.product_id, cam.device_name)
        await alice.request_api(
            "AppTokenBindDeviceFamily",
            {
                "Token": qr["Token"],
                "ProductId": cam.product_id,
                "DeviceName": cam.device_name,
                "FamilyId": family_id,
                "RoomId": room_id,
            },
        )
        listed = await alice.request_api("AppGetFamilyDeviceList", {"FamilyId": family_id})
        assert [d["DeviceId"] for d in listed["DeviceList"]] == [device_id]
        # 4. Subscribe, control, and see the camera apply it.
        reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        controls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        alice.on("ws_report", reports.put_nowait)
        alice.on("ws_control", controls.put_nowait)
        assert await alice.subscribe_devices([device_id]) == [device_id]
        await alice.request_api(
            "AppControlDeviceData",
            {"DeviceId": device_id, "Data": json.dumps({"record_enable": 1})},
        )
        await next_matching(controls, "record_enable", 1)
        pushed = await next_matching(reports, "record_enable", 1)
        assert pushed["deviceId"] == device_id
        data = json.loads(
            (await alice.request_api("AppGetDeviceData", {"DeviceId": device_id}))["Data"]
        )
        assert data["record_enable"]["Value"] == 1
        assert data["_sys_xp2p_info"]["Value"].startswith("XP2P")
        # 5. Share with Bob.
        share = await alice.request_api(
            "AppCreateShareDeviceToken", {"FamilyId": family_id, "DeviceId": device_id}
        )
        async with AppClient(
            ep.http_url, app_key=creds.app_key, app_secret=creds.app_secret
        ) as bob:
            await bob.login_wechat("wx-open-id-bob", "Bob")
            await bob.request_api(
                "AppBindUserShareDevice",
                {"ShareDeviceToken": share["ShareDeviceToken"], "DeviceId": device_id},
            )
            shared = await bob.request_api("AppListUserShareDevices", {"Offset": 0, "Limit": 10})
            assert [d["DeviceId"] for d in shared["ShareDevices"]] == [device_id]
            await bob.request_api(
                "AppControlDeviceData",
                {"DeviceId": device_id, "Data": json.dumps({"record_enable": 0})},
            )
            await next_matching(reports, "record_enable", 0)
            with pytest.raises(AppApiError) as denied:
                await bob.request_api(
                    "AppDeleteDeviceInFamily", {"FamilyId": family_id, "DeviceId": device_id}
                )
            assert denied.value.code == NO_PERMISSION
            # 6. Unshare: Bob's access is gone.
            bob_id = (await bob.request_api("AppGetUser"))["Data"]["UserID"]
            await alice.request_api(
                "AppRemoveShareDeviceUser", {"DeviceId": device_id, "RemoveUserID": bob_id}
            )
            with pytest.raises(AppApiError) as gone:
                await bob.request_api("AppGetDeviceData", {"DeviceId": device_id})
            assert gone.value.code == NO_PERMISSION
    stop.set()
    if sim is not None:
        await asyncio.wait_for(sim, 10)

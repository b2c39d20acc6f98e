"""Wi-Fi bind-token provisioning (spec §2.2, §5) end to end: App API over real HTTP, the
device as a raw MQTT client, every error code and every authorization rule."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from ivcloud.app import Ivcloud
from ivcloud.device import run_simulator
from ivcloud.protocol.qr import parse_provision_qr
from ivcloud.store.schema_app import AppBindToken
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, poll, provision
from tests.rawdevice import RawDevice, device_for

SERVICE = "$thing/down/service/{p}/{d}"


@dataclass
class World:
    server: Ivcloud
    admin: httpx.AsyncClient
    client: AppApiClient
    creds: AppCreds
    dev: Provisioned
    alice: str  # AccessToken
    bob: str
    family: str  # alice's family

    async def call(self, token: str, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(token, action, **params)

    async def new_token(self, who: str | None = None) -> str:
        data = ok_data(await self.call(who or self.alice, "AppCreateDeviceBindToken"))
        token: str = data["Token"]
        return token

    async def bind(self, token: str, who: str | None = None, **over: Any) -> dict[str, Any]:
        params = {
            "Token": token,
            "ProductId": self.dev.product_id,
            "DeviceName": self.dev.device_name,
            "FamilyId": self.family,
            "RoomId": "0",
        }
        params.update(over)
        return await self.call(who or self.alice, "AppTokenBindDeviceFamily", **params)


@pytest.fixture
async def w(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    dev = await provision(admin, "lock-video", "lock", "dev1")
    creds = await create_app(admin, dev.product_id)
    client = AppApiClient(appclient, creds)
    _, alice = await make_user(server, creds, "alice")
    _, bob = await make_user(server, creds, "bob")
    fam = ok_data(await client.tokenapi(alice, "AppCreateFamily", Name="home"))
    return World(server, admin, client, creds, dev, alice, bob, fam["Data"]["FamilyId"])


async def report(device: RawDevice, token: str) -> dict[str, Any]:
    return await device.request(
        "service", {"method": "app_bind_token", "clientToken": "t-1", "params": {"token": token}}
    )


async def expire(server: Ivcloud, token: str) -> None:
    async with server.sessions.begin() as s:
        await s.execute(
            update(AppBindToken).where(AppBindToken.token == token).values(expires_ms=1)
        )


async def test_bind_journey_with_a_raw_device(w: World) -> None:
    data = ok_data(await w.call(w.alice, "AppCreateDeviceBindToken"))
    token = data["Token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert data["ExpireAt"] > 0
    state = ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=token))
    assert (state["State"], state["ProductId"], state["DeviceName"]) == (1, "", "")

    async with device_for(w.server, w.dev) as device:
        reply = await report(device, token)
        assert reply == {
            "method": "app_bind_token_reply",
            "clientToken": "t-1",
            "code": 0,
            "status": "success",
        }
        state = ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=token))
        expected = {"State": 2, "ProductId": w.dev.product_id, "DeviceName": w.dev.device_name}
        assert {k: state[k] for k in expected} == expected
        assert state["Data"] == expected

        bound = ok_data(await w.bind(token))
        assert bound["Data"]["DeviceId"] == f"{w.dev.product_id}/{w.dev.device_name}"
        assert bound["Data"]["FamilyId"] == w.family
        notice = await device.next(SERVICE)
        assert notice["method"] == "bind_device"
        assert notice["clientToken"]
        assert notice["params"]["ProductId"] == w.dev.product_id
        assert notice["params"]["DeviceName"] == w.dev.device_name
        assert notice["params"]["FamilyId"] == w.family

        # the device repeats its report (lost reply): still accepted, token stays used
        assert (await report(device, token))["code"] == 0

    listed = ok_data(await w.call(w.alice, "AppGetFamilyDeviceList", FamilyId=w.family))
    assert [d["DeviceName"] for d in listed["DeviceList"]] == [w.dev.device_name]
    state = ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=token))
    assert state["State"] == 3
    # one token, one binding
    assert error_code(await w.bind(token)) == "InvalidParameterValue.TokenIsExpire"


async def test_state_and_bind_error_codes(w: World) -> None:
    missing = "0" * 32
    assert error_code(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=missing)) == (
        "InvalidParameterValue.TokenNotExist"
    )
    assert error_code(await w.bind(missing)) == "InvalidParameterValue.TokenNotExist"
    assert error_code(await w.call(w.alice, "AppGetDeviceBindTokenState")) == (
        "ErrorRequiredParamNotFound"
    )

    token = await w.new_token()
    # bob may neither read nor use alice's token
    assert error_code(await w.call(w.bob, "AppGetDeviceBindTokenState", Token=token)) == (
        "InvalidParameterValue.NoPermission"
    )
    bob_family = ok_data(await w.call(w.bob, "AppCreateFamily", Name="b"))
    assert error_code(await w.bind(token, w.bob, FamilyId=bob_family["Data"]["FamilyId"])) == (
        "InvalidParameterValue.NoPermission"
    )
    # no device reported it yet
    assert error_code(await w.bind(token)) == "InvalidParameterValue.NoPermission"

    async with device_for(w.server, w.dev) as device:
        assert (await report(device, token))["code"] == 0
    # a device other than the one that reported it
    assert error_code(await w.bind(token, DeviceName="other")) == (
        "InvalidParameterValue.NoPermission"
    )
    # into a family alice is not in
    assert error_code(await w.bind(token, FamilyId=bob_family["Data"]["FamilyId"])) == (
        "InvalidParameterValue.NoPermission"
    )
    # none of the failures consumed the token
    assert ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=token))["State"] == 2

    await expire(w.server, token)
    assert error_code(await w.bind(token)) == "InvalidParameterValue.TokenIsExpire"

    created = await w.new_token()
    await expire(w.server, created)
    assert error_code(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=created)) == (
        "InvalidParameterValue.TokenIsExpire"
    )


async def test_product_must_be_linked_to_the_app(w: World, admin: httpx.AsyncClient) -> None:
    other = await provision(admin, "lock-video", "lock", "stranger")
    token = await w.new_token()
    async with device_for(w.server, other) as device:
        assert (await report(device, token))["code"] == 0
    doc = await w.bind(token, ProductId=other.product_id, DeviceName=other.device_name)
    assert error_code(doc) == "UnauthorizedOperation.APPNoPermissionToStudioProduct"


async def test_device_already_in_a_family_is_a_conflict_and_keeps_the_token(w: World) -> None:
    first = await w.new_token()
    second = await w.new_token()
    async with device_for(w.server, w.dev) as device:
        assert (await report(device, first))["code"] == 0
        ok_data(await w.bind(first))
        await device.next(SERVICE)
        assert (await report(device, second))["code"] == 0
    assert error_code(await w.bind(second)) == "ResourceInUse"
    assert ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=second))["State"] == 2


async def test_device_side_claims(w: World, admin: httpx.AsyncClient) -> None:
    token = await w.new_token()
    other = await provision(admin, "lock-video", "lock", "dev2")
    async with device_for(w.server, w.dev) as device:
        assert (await report(device, token))["code"] == 0
    # another device reporting the same (claimed) token is refused
    async with device_for(w.server, other) as intruder:
        reply = await report(intruder, token)
        assert reply["code"] == 403
        assert reply["method"] == "app_bind_token_reply"
        # an expired app token is refused too
        stale = await w.new_token()
        await expire(w.server, stale)
        assert (await report(intruder, stale))["code"] == 403
        # a token this server never issued (console QR, demo) is still accepted
        assert (await report(intruder, "v3_console_token"))["code"] == 0
    state = ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=token))
    assert state["DeviceName"] == w.dev.device_name
    resp = await admin.get(f"/products/{other.product_id}/devices/dev2/bind-tokens")
    assert resp.json()["Tokens"] == ["v3_console_token"]


@pytest.mark.parametrize("how", ["AppDeleteDeviceInFamily", "AppDeleteFamily"])
async def test_unbind_notice_goes_down(w: World, how: str) -> None:
    token = await w.new_token()
    async with device_for(w.server, w.dev) as device:
        assert (await report(device, token))["code"] == 0
        ok_data(await w.bind(token))
        assert (await device.next(SERVICE))["method"] == "bind_device"
        if how == "AppDeleteDeviceInFamily":
            ok_data(
                await w.call(
                    w.alice,
                    how,
                    FamilyId=w.family,
                    ProductId=w.dev.product_id,
                    DeviceName=w.dev.device_name,
                )
            )
        else:
            ok_data(await w.call(w.alice, how, FamilyId=w.family))
        notice = await device.next(SERVICE)
    assert notice["method"] == "unbind_device"
    assert notice["params"]["DeviceName"] == w.dev.device_name
    rec = await w.server.devices.get(w.dev.product_id, w.dev.device_name)
    assert await w.server.families.device_family(rec) is None


async def test_provision_qr_extension(w: World) -> None:
    data = ok_data(
        await w.call(w.alice, "IvcloudGetProvisionQR", Ssid="Tencent-wifi", Password="l")
    )
    qr = parse_provision_qr(data["QRString"])
    assert (qr.ssid, qr.password, qr.token) == ("Tencent-wifi", "l", data["Token"])
    assert (
        ok_data(await w.call(w.alice, "AppGetDeviceBindTokenState", Token=data["Token"]))["State"]
        == 1
    )
    again = ok_data(
        await w.call(w.alice, "IvcloudGetProvisionQR", Ssid="open", Token=data["Token"])
    )
    assert again["QRString"] == f"04open00{len(data['Token']):02d}{data['Token']}"
    assert (
        error_code(await w.call(w.bob, "IvcloudGetProvisionQR", Ssid="x", Token=data["Token"]))
        == "InvalidParameterValue.NoPermission"
    )
    assert error_code(await w.call(w.alice, "IvcloudGetProvisionQR", Password="p")) == (
        "ErrorRequiredParamNotFound"
    )
    assert error_code(await w.call(w.alice, "IvcloudGetProvisionQR", Ssid="x" * 100)) == (
        "InvalidParameterValue"
    )


async def test_camera_simulator_scans_the_qr_and_gets_bound(
    w: World, admin: httpx.AsyncClient
) -> None:
    cam = await provision(admin, "camera", "camera", "cam1")
    linked = await admin.put(f"/apps/{w.creds.app_id}/products/{cam.product_id}")
    assert linked.status_code == 200
    data = ok_data(await w.call(w.alice, "IvcloudGetProvisionQR", Ssid="home", Password="pw"))
    assert w.server.endpoints is not None
    stop = asyncio.Event()
    sim = asyncio.create_task(
        run_simulator(
            "camera",
            host=w.server.endpoints.mqtt_host,
            port=w.server.endpoints.mqtt_port,
            product_id=cam.product_id,
            device_name="cam1",
            secret=cam.secret,
            qr=data["QRString"],
            stop=stop,
        )
    )
    try:
        await poll(
            lambda: w.call(w.alice, "AppGetDeviceBindTokenState", Token=data["Token"]),
            lambda doc: doc["code"] == 0 and doc["data"]["State"] == 2,
        )
    finally:
        stop.set()
        await sim
    ok_data(await w.bind(data["Token"], ProductId=cam.product_id, DeviceName="cam1"))


async def test_tokenapi_only(w: World) -> None:
    doc = await w.client.appapi("AppCreateDeviceBindToken")
    assert error_code(doc) == "InvalidAction"

"""Device sharing (spec §2.7) over real HTTP: the share journey, what a sharee may and may
not do, every token error, and each action attempted by users without the right."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from ivcloud.app import Ivcloud
from ivcloud.store.schema_app import ShareToken
from tests.api.appapi.family_support import household
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, provision
from tests.rawdevice import device_for

NO_PERMISSION = "InvalidParameterValue.NoPermission"
INVALID_TOKEN = "InvalidParameterValue.InvalidShareDeviceToken"
NO_USER = "InvalidParameterValue.ErrorUserNotExists"


@dataclass
class World:
    server: Ivcloud
    client: AppApiClient
    dev: Provisioned
    ids: dict[str, str]  # name -> UserID
    tokens: dict[str, str]  # name -> AccessToken; alice admin, dave member, bob/carol outside
    family: str

    @property
    def device_id(self) -> str:
        return f"{self.dev.product_id}/{self.dev.device_name}"

    async def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(self.tokens[who], action, **params)

    async def share_token(self, who: str = "alice") -> str:
        data = ok_data(
            await self.call(
                who, "AppCreateShareDeviceToken", FamilyId=self.family, DeviceId=self.device_id
            )
        )
        token: str = data["ShareDeviceToken"]
        return token

    async def accept(self, who: str, token: str, **over: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"ShareDeviceToken": token, "DeviceId": self.device_id}
        params.update(over)
        return await self.call(who, "AppBindUserShareDevice", **params)

    async def control(self, who: str) -> dict[str, Any]:
        return await self.call(
            who, "AppControlDeviceData", DeviceId=self.device_id, Data=json.dumps({"volume": 2})
        )


@pytest.fixture
async def w(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    dev = await provision(admin, "lock-video", "lock", "dev1")
    h = await household(server, admin, appclient, dev, alias="front door")
    return World(server, h.client, dev, h.ids, h.tokens, h.family)


async def test_share_journey(w: World) -> None:
    token = await w.share_token()
    info = ok_data(await w.call("bob", "AppDescribeShareDeviceToken", ShareDeviceToken=token))[
        "ShareDeviceTokenInfo"
    ]
    assert info["FromUserId"] == w.ids["alice"]
    assert info["FromUserNick"] == "alice"
    assert (info["UserId"], info["UserNick"], info["BindTime"]) == ("", "", 0)
    assert (info["ProductId"], info["DeviceName"]) == (w.dev.product_id, w.dev.device_name)
    assert info["AliasName"] == "front door"
    assert info["ExpireTime"] - info["CreateTime"] == 24 * 3600

    assert error_code(await w.control("bob")) == NO_PERMISSION
    ok_data(
        await w.accept(
            "bob", token, DeviceId=None, ProductId=w.dev.product_id, DeviceName=w.dev.device_name
        )
    )
    info = ok_data(await w.call("alice", "AppDescribeShareDeviceToken", ShareDeviceToken=token))[
        "ShareDeviceTokenInfo"
    ]
    assert (info["UserId"], info["UserNick"]) == (w.ids["bob"], "bob")
    assert info["BindTime"] > 0

    shared = ok_data(await w.call("bob", "AppListUserShareDevices", Offset=0, Limit=10))
    assert shared["Total"] == 1
    item = shared["ShareDevices"][0]
    assert item["DeviceId"] == w.device_id
    assert (item["UserID"], item["FamilyId"], item["AliasName"]) == (
        w.ids["alice"],
        w.family,
        "front door",
    )

    # the sharee views and controls ...
    async with device_for(w.server, w.dev) as device:
        ok_data(await w.control("bob"))
        assert (await device.down("property"))["params"] == {"volume": 2}
    statuses = ok_data(await w.call("bob", "AppGetDeviceStatuses", DeviceIds=[w.device_id]))
    assert statuses["DeviceStatuses"][0]["DeviceId"] == w.device_id
    # ... but does not manage, delete or share
    for action, extra in [
        ("AppDeleteDeviceInFamily", {"FamilyId": w.family}),
        ("AppUpdateDeviceInFamily", {"AliasName": "mine now"}),
        ("AppCreateShareDeviceToken", {"FamilyId": w.family}),
        ("AppSendShareDeviceInvite", {"ToUserID": w.ids["carol"]}),
        ("AppListShareDeviceUsers", {}),
        ("AppRemoveShareDeviceUser", {"RemoveUserID": w.ids["bob"]}),
    ]:
        doc = await w.call("bob", action, DeviceId=w.device_id, **extra)
        assert error_code(doc) == NO_PERMISSION, action

    users = ok_data(await w.call("alice", "AppListShareDeviceUsers", DeviceId=w.device_id))
    assert users["Total"] == 1
    assert users["Users"][0]["UserID"] == w.ids["bob"]
    assert users["Users"][0]["NickName"] == "bob"
    assert users["Users"][0]["BindTime"] > 0

    # the sharee leaves: access gone
    ok_data(await w.call("bob", "AppRemoveUserShareDevice", DeviceId=w.device_id))
    assert error_code(await w.control("bob")) == NO_PERMISSION
    assert ok_data(await w.call("bob", "AppListUserShareDevices"))["Total"] == 0
    assert (
        error_code(await w.call("bob", "AppRemoveUserShareDevice", DeviceId=w.device_id))
        == NO_PERMISSION
    )

    # shared again, then the admin revokes it
    ok_data(await w.accept("bob", await w.share_token()))
    ok_data(await w.control("bob"))
    ok_data(
        await w.call(
            "alice", "AppRemoveShareDeviceUser", DeviceId=w.device_id, RemoveUserID=w.ids["bob"]
        )
    )
    assert error_code(await w.control("bob")) == NO_PERMISSION
    assert (
        ok_data(await w.call("alice", "AppListShareDeviceUsers", DeviceId=w.device_id))["Total"]
        == 0
    )
    assert (
        error_code(
            await w.call(
                "alice", "AppRemoveShareDeviceUser", DeviceId=w.device_id, RemoveUserID=w.ids["bob"]
            )
        )
        == "InvalidParameterValue"
    )


async def test_token_errors(
    w: World, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    assert error_code(await w.accept("bob", "f" * 32)) == INVALID_TOKEN
    assert (
        error_code(await w.call("bob", "AppDescribeShareDeviceToken", ShareDeviceToken="f" * 32))
        == INVALID_TOKEN
    )

    used = await w.share_token()
    ok_data(await w.accept("bob", used))
    assert error_code(await w.accept("carol", used)) == INVALID_TOKEN
    assert (
        error_code(await w.call("carol", "AppDescribeShareDeviceToken", ShareDeviceToken=used))
        == INVALID_TOKEN
    )

    expired = await w.share_token()
    async with w.server.sessions.begin() as s:
        await s.execute(update(ShareToken).where(ShareToken.token == expired).values(expires_ms=1))
    assert error_code(await w.accept("carol", expired)) == INVALID_TOKEN
    assert (
        error_code(await w.call("carol", "AppDescribeShareDeviceToken", ShareDeviceToken=expired))
        == INVALID_TOKEN
    )

    # the token names another device
    other = await provision(admin, "lock-video", "lock", "dev9")
    token = await w.share_token()
    assert error_code(await w.accept("carol", token, DeviceId=f"{other.product_id}/dev9")) == (
        INVALID_TOKEN
    )
    # a family member gains nothing from a share
    assert error_code(await w.accept("dave", token)) == "ResourceInUse"
    # a family token is not a device share token
    family_token = ok_data(await w.call("alice", "AppInviteMember", FamilyId=w.family))[
        "ShareToken"
    ]
    assert error_code(await w.accept("carol", family_token)) == INVALID_TOKEN

    # a user of another app cannot see or use the token
    creds = await create_app(admin, w.dev.product_id)
    _, eve = await make_user(w.server, creds, "eve")
    foreign = AppApiClient(appclient, creds)
    assert (
        error_code(
            await foreign.tokenapi(
                eve, "AppBindUserShareDevice", ShareDeviceToken=token, DeviceId=w.device_id
            )
        )
        == INVALID_TOKEN
    )
    assert (
        error_code(
            await foreign.tokenapi(eve, "AppDescribeShareDeviceToken", ShareDeviceToken=token)
        )
        == INVALID_TOKEN
    )

    # removing the device from the family voids outstanding tokens and shares
    rec = await w.server.devices.get(w.dev.product_id, w.dev.device_name)
    await w.server.families.unbind_device(rec)
    assert error_code(await w.accept("carol", token)) == INVALID_TOKEN
    assert error_code(await w.control("bob")) == NO_PERMISSION

    assert (
        error_code(await w.call("bob", "AppBindUserShareDevice", DeviceId=w.device_id))
        == "ErrorRequiredParamNotFound"
    )


async def test_in_app_invite_is_addressed(w: World, admin: httpx.AsyncClient) -> None:
    data = ok_data(
        await w.call(
            "alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID=w.ids["bob"]
        )
    )
    token = data["ShareDeviceToken"]
    assert (
        error_code(await w.call("carol", "AppDescribeShareDeviceToken", ShareDeviceToken=token))
        == INVALID_TOKEN
    )
    assert error_code(await w.accept("carol", token)) == INVALID_TOKEN
    ok_data(await w.call("bob", "AppDescribeShareDeviceToken", ShareDeviceToken=token))
    ok_data(await w.accept("bob", token))
    ok_data(await w.control("bob"))

    assert (
        error_code(
            await w.call(
                "alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID="u_nobody"
            )
        )
        == NO_USER
    )
    creds = await create_app(admin, w.dev.product_id)
    eve_id, _ = await make_user(w.server, creds, "eve")
    assert (
        error_code(
            await w.call("alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID=eve_id)
        )
        == NO_USER
    )
    assert (
        error_code(
            await w.call(
                "alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID=w.ids["alice"]
            )
        )
        == "InvalidParameterValue"
    )


@pytest.mark.parametrize("who", ["carol", "dave"])
async def test_only_the_family_admin_shares(w: World, who: str) -> None:
    """carol is a stranger, dave a family member: neither may share or manage sharees."""
    ok_data(await w.accept("bob", await w.share_token()))
    for action, extra in [
        ("AppCreateShareDeviceToken", {"FamilyId": w.family}),
        ("AppCreateShareDeviceToken", {}),
        ("AppSendShareDeviceInvite", {"ToUserID": w.ids["bob"]}),
        ("AppListShareDeviceUsers", {}),
        ("AppRemoveShareDeviceUser", {"RemoveUserID": w.ids["bob"]}),
        ("AppRemoveUserShareDevice", {}),
    ]:
        doc = await w.call(who, action, DeviceId=w.device_id, **extra)
        assert error_code(doc) == NO_PERMISSION, action
    assert ok_data(await w.call(who, "AppListUserShareDevices"))["Total"] == 0
    # bob's share survived every attempt
    ok_data(await w.control("bob"))


async def test_admin_must_name_the_device_family(w: World) -> None:
    other = ok_data(await w.call("carol", "AppCreateFamily", Name="c"))["Data"]["FamilyId"]
    doc = await w.call("alice", "AppCreateShareDeviceToken", FamilyId=other, DeviceId=w.device_id)
    assert error_code(doc) == NO_PERMISSION
    doc = await w.call("alice", "AppCreateShareDeviceToken", DeviceId="nope/none")
    assert error_code(doc) == NO_PERMISSION
    doc = await w.call("alice", "AppListUserShareDevices", Limit=1000)
    assert error_code(doc) == "InvalidParameterValue"

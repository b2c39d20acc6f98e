"""Authorization of every family/device/data Action: other users' ids are refused with
``InvalidParameterValue.NoPermission``; members view and control but do not manage; shares
view and control only; users of another app reach nothing; unlinked products can't be
bound."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.services.errors import Conflict, Forbidden
from ivcloud.services.families import ProductNotLinked
from ivcloud.store.schema_app import DeviceShare, FamilyMember
from tests.api.appapi.test_devices import Home, make_home
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.helpers import provision_custom
from tests.models import SENSOR_MODEL

NO_PERMISSION = "InvalidParameterValue.NoPermission"


class World:
    def __init__(
        self, home: Home, room_id: str, eve_token: str, eve_family: str, eve_id: str
    ) -> None:
        self.home, self.room_id = home, room_id
        self.eve_token, self.eve_family, self.eve_id = eve_token, eve_family, eve_id


@pytest.fixture
async def world(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    home = await make_home(server, admin, appclient)
    room = ok_data(await home.call("AppCreateRoom", FamilyId=home.family_id, Name="Hall"))
    eve_id, eve_token = await make_user(server, home.creds, "eve")
    eve_family = ok_data(await home.client.tokenapi(eve_token, "AppCreateFamily", Name="Eve's"))
    return World(home, room["Data"]["RoomId"], eve_token, eve_family["Data"]["FamilyId"], eve_id)


def family_actions(w: World) -> dict[str, dict[str, Any]]:
    fam = {"FamilyId": w.home.family_id}
    dev = {**w.home.dev}
    return {
        "AppDeleteFamily": fam,
        "AppModifyFamily": {**fam, "Name": "x"},
        "AppDescribeFamily": fam,
        "AppCreateRoom": {**fam, "Name": "x"},
        "AppModifyRoom": {**fam, "RoomId": w.room_id, "Name": "x"},
        "AppDeleteRoom": {**fam, "RoomId": w.room_id},
        "AppGetRoomList": fam,
        "AppInviteMember": fam,
        "AppDeleteFamilyMember": {**fam, "MemberID": w.home.user_id},
        "AppExitFamily": fam,
        "AppGetFamilyMemberList": fam,
        "AppSendShareFamilyInvite": {**fam, "ToUserID": w.eve_id},
        "AppGetFamilyDeviceList": fam,
        "AppGetDeviceStatuses": {"DeviceIds": [w.home.device_id]},
        "AppUpdateDeviceInFamily": {**dev, "AliasName": "x"},
        "AppGetDeviceInFamily": {**fam, **dev},
        "AppModifyFamilyDeviceRoom": {**fam, **dev, "RoomId": w.room_id},
        "AppDeleteDeviceInFamily": {**fam, "DeviceId": w.home.device_id},
        "AppControlDeviceData": {"DeviceId": w.home.device_id, "Data": '{"power":1}'},
        "AppCallDeviceActionSync": {**dev, "ActionId": "blink", "InputParams": '{"times":1}'},
        "AppCallDeviceActionAsync": {**dev, "ActionId": "blink", "InputParams": '{"times":1}'},
        "AppGetDeviceData": dev,
        "AppGetDeviceDataHistory": {**dev, "FieldName": "power"},
        "AppListEventHistory": dev,
    }


ALL = [
    "AppDeleteFamily",
    "AppModifyFamily",
    "AppDescribeFamily",
    "AppCreateRoom",
    "AppModifyRoom",
    "AppDeleteRoom",
    "AppGetRoomList",
    "AppInviteMember",
    "AppDeleteFamilyMember",
    "AppExitFamily",
    "AppGetFamilyMemberList",
    "AppSendShareFamilyInvite",
    "AppGetFamilyDeviceList",
    "AppGetDeviceStatuses",
    "AppUpdateDeviceInFamily",
    "AppGetDeviceInFamily",
    "AppModifyFamilyDeviceRoom",
    "AppDeleteDeviceInFamily",
    "AppControlDeviceData",
    "AppCallDeviceActionSync",
    "AppCallDeviceActionAsync",
    "AppGetDeviceData",
    "AppGetDeviceDataHistory",
    "AppListEventHistory",
]
DEVICE_IN_FAMILY = [
    "AppGetDeviceInFamily",
    "AppModifyFamilyDeviceRoom",
    "AppDeleteDeviceInFamily",
    "AppGetFamilyDeviceList",
]


@pytest.mark.parametrize("action", ALL)
async def test_other_user_gets_no_permission(world: World, action: str) -> None:
    params = family_actions(world)[action]
    doc = await world.home.client.tokenapi(world.eve_token, action, **params)
    assert error_code(doc) == NO_PERMISSION
    # Nothing changed for the owner.
    data = ok_data(await world.home.call("AppGetFamilyDeviceList", FamilyId=world.home.family_id))
    assert data["Total"] == 1


@pytest.mark.parametrize("action", DEVICE_IN_FAMILY)
async def test_own_family_with_other_users_device_or_room(world: World, action: str) -> None:
    params = {**family_actions(world)[action], "FamilyId": world.eve_family}
    if action == "AppGetFamilyDeviceList":
        params["RoomId"] = world.room_id  # alice's room, eve's family
    doc = await world.home.client.tokenapi(world.eve_token, action, **params)
    assert error_code(doc) == NO_PERMISSION


async def test_other_users_room_in_own_family(world: World) -> None:
    for action in ("AppModifyRoom", "AppDeleteRoom"):
        doc = await world.home.client.tokenapi(
            world.eve_token, action, FamilyId=world.eve_family, RoomId=world.room_id, Name="x"
        )
        assert error_code(doc) == NO_PERMISSION


async def test_unknown_ids_look_like_other_users_ids(world: World) -> None:
    pid = world.home.sensor.product_id
    for action, params in [
        ("AppGetDeviceData", {"ProductId": pid, "DeviceName": "ghost"}),
        ("AppGetDeviceStatuses", {"DeviceIds": [f"{pid}/ghost"]}),
        ("AppDescribeFamily", {"FamilyId": "f_ghost"}),
        ("AppGetProducts", {"ProductIds": ["NOPRODUCT1"]}),
    ]:
        assert error_code(await world.home.call(action, **params)) == NO_PERMISSION


async def test_other_user_does_not_see_the_family(world: World) -> None:
    data = ok_data(await world.home.client.tokenapi(world.eve_token, "AppGetFamilyList"))
    assert [f["FamilyId"] for f in data["FamilyList"]] == [world.eve_family]
    # "default" means eve's own family, never alice's.
    data = ok_data(
        await world.home.client.tokenapi(
            world.eve_token, "AppGetFamilyDeviceList", FamilyId="default"
        )
    )
    assert data["Total"] == 0


async def test_member_views_and_controls_but_does_not_manage(world: World) -> None:
    home = world.home
    token = ok_data(await home.call("AppInviteMember", FamilyId=home.family_id))["ShareToken"]
    ok_data(await home.client.tokenapi(world.eve_token, "AppJoinFamily", ShareToken=token))

    async def eve(action: str, **params: Any) -> dict[str, Any]:
        return await home.client.tokenapi(world.eve_token, action, **params)

    fam = {"FamilyId": home.family_id}
    ok_data(await eve("AppGetFamilyDeviceList", **fam))
    ok_data(await eve("AppDescribeFamily", **fam))
    ok_data(await eve("AppGetRoomList", **fam))
    ok_data(await eve("AppGetDeviceData", **home.dev))
    ok_data(await eve("AppGetDeviceStatuses", DeviceIds=[home.device_id]))
    ok_data(await eve("AppControlDeviceData", **home.dev, Data='{"power":1}'))
    ok_data(await eve("AppUpdateDeviceInFamily", **home.dev, AliasName="mine"))
    ok_data(await eve("AppGetDeviceInFamily", **fam, **home.dev))
    for action, params in [
        ("AppDeleteDeviceInFamily", {**fam, **home.dev}),
        ("AppDeleteFamily", fam),
        ("AppModifyFamily", {**fam, "Name": "x"}),
        ("AppCreateRoom", {**fam, "Name": "x"}),
        ("AppDeleteRoom", {**fam, "RoomId": world.room_id}),
        ("AppInviteMember", fam),
        ("AppDeleteFamilyMember", {**fam, "MemberID": home.user_id}),
    ]:
        assert error_code(await eve(action, **params)) == NO_PERMISSION, action
    assert ok_data(await home.call("AppGetFamilyDeviceList", **fam))["Total"] == 1


async def test_shared_user_views_and_controls_only(server: Ivcloud, world: World) -> None:
    home = world.home
    rec = await server.devices.get(home.sensor.product_id, "dev1")
    async with server.sessions.begin() as s:
        s.add(
            DeviceShare(
                device_id=rec.id, user_id=world.eve_id, from_user_id=home.user_id, created_ms=1
            )
        )

    async def eve(action: str, **params: Any) -> dict[str, Any]:
        return await home.client.tokenapi(world.eve_token, action, **params)

    ok_data(await eve("AppGetDeviceData", **home.dev))
    ok_data(await eve("AppControlDeviceData", **home.dev, Data='{"power":0}'))
    ok_data(await eve("AppGetDeviceStatuses", DeviceIds=[home.device_id]))
    for action, params in [
        ("AppUpdateDeviceInFamily", {**home.dev, "AliasName": "x"}),
        ("AppGetDeviceInFamily", {"FamilyId": home.family_id, **home.dev}),
        ("AppDeleteDeviceInFamily", {"FamilyId": home.family_id, **home.dev}),
        ("AppGetFamilyDeviceList", {"FamilyId": home.family_id}),
    ]:
        assert error_code(await eve(action, **params)) == NO_PERMISSION, action


async def test_user_of_another_app_reaches_nothing_even_if_added(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient, world: World
) -> None:
    home = world.home
    other = await create_app(admin, home.sensor.product_id)  # links the same product
    mallory_id, mallory = await make_user(server, other, "mallory")
    rec = await server.devices.get(home.sensor.product_id, "dev1")
    async with server.sessions.begin() as s:
        s.add(FamilyMember(family_id=home.family_id, user_id=mallory_id, role=1, joined_ms=1))
        s.add(
            DeviceShare(
                device_id=rec.id, user_id=mallory_id, from_user_id=home.user_id, created_ms=1
            )
        )
    client = AppApiClient(appclient, other)
    for action in ALL:
        doc = await client.tokenapi(mallory, action, **family_actions(world)[action])
        assert error_code(doc) == NO_PERMISSION, action
    user = await server.users.get(mallory_id)
    assert await server.access.visible_devices(user) == []
    with pytest.raises(Forbidden):
        await server.families.bind_device(user, home.family_id, "", rec)


async def test_unlinked_product_cannot_be_bound(
    server: Ivcloud, admin: httpx.AsyncClient, world: World
) -> None:
    home = world.home
    stray = await provision_custom(admin, SENSOR_MODEL, "stray")
    rec = await server.devices.get(stray.product_id, stray.device_name)
    user = await server.users.get(home.user_id)
    with pytest.raises(ProductNotLinked) as caught:
        await server.families.bind_device(user, home.family_id, "", rec)
    assert caught.value.code == "UnauthorizedOperation.APPNoPermissionToStudioProduct"
    assert await server.families.device_family(rec) is None
    doc = await home.call("AppGetProducts", ProductIds=[stray.product_id])
    assert error_code(doc) == NO_PERMISSION


async def test_bind_rules(server: Ivcloud, world: World) -> None:
    home = world.home
    rec = await server.devices.get(home.sensor.product_id, "dev1")
    owner = await server.users.get(home.user_id)
    eve = await server.users.get(world.eve_id)
    with pytest.raises(Conflict):  # already in alice's family
        await server.families.bind_device(owner, home.family_id, "", rec)
    with pytest.raises(Conflict):  # …and in nobody else's
        await server.families.bind_device(eve, world.eve_family, "", rec)
    with pytest.raises(Forbidden):  # not eve's family
        await server.families.bind_device(eve, home.family_id, "", rec)
    await server.families.unbind_device(rec)
    with pytest.raises(Forbidden):  # alice's room is not a room of eve's family
        await server.families.bind_device(eve, world.eve_family, world.room_id, rec)
    await server.families.bind_device(eve, world.eve_family, "", rec)
    assert await server.families.device_family(rec) == world.eve_family

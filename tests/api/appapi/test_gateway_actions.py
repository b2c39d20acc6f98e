"""``AppBindSubDeviceInFamily`` / ``AppGetGatewayBindDeviceList`` over real HTTP with a real
gateway on real MQTT: the whole journey, then every way another user's ids are refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol import appapi_errors as codes
from ivcloud.store.schema_app import DeviceShare
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data
from tests.gateway_kit import (
    RawGateway,
    bind_doc,
    gateway_for,
    provision_gateway,
    provision_subs,
    results,
)
from tests.helpers import Provisioned

NO_PERMISSION = "InvalidParameterValue.NoPermission"


@dataclass
class User:
    user_id: str
    token: str
    family_id: str


@dataclass
class World:
    client: AppApiClient
    creds: AppCreds
    gw: Provisioned
    subs: list[Provisioned]
    alice: User
    eve: User

    async def call(self, who: User, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(who.token, action, **params)

    def gw_params(self, gw: Provisioned | None = None) -> dict[str, str]:
        gw = gw or self.gw
        return {"GatewayProductId": gw.product_id, "GatewayDeviceName": gw.device_name}


async def new_user(server: Ivcloud, creds: AppCreds, nick: str) -> User:
    user_id, token = await make_user(server, creds, nick)
    family_id = await server.families.create_family(await server.users.get(user_id), "home")
    return User(user_id, token, family_id)


async def place(server: Ivcloud, who: User, dev: Provisioned) -> None:
    """The gateway's own binding into a family (bind token / signature flows are tested
    elsewhere); through the service, as a user of the app would end up."""
    rec = await server.devices.find(dev.product_id, dev.device_name)
    assert rec is not None
    await server.families.bind_device(await server.users.get(who.user_id), who.family_id, "0", rec)


@pytest.fixture
async def world(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    gw = await provision_gateway(admin)
    subs = await provision_subs(admin, "sub1", "sub2")
    creds = await create_app(admin, gw.product_id, subs[0].product_id)
    alice = await new_user(server, creds, "alice")
    eve = await new_user(server, creds, "eve")
    await place(server, alice, gw)
    return World(AppApiClient(appclient, creds), creds, gw, subs, alice, eve)


def sub_params(sub: Provisioned) -> dict[str, str]:
    return {"ProductId": sub.product_id, "DeviceName": sub.device_name}


async def test_journey_bind_sub_device_then_control_it_through_the_gateway(
    server: Ivcloud, world: World
) -> None:
    w, sub = world, world.subs[0]
    async with gateway_for(server, w.gw) as g:
        # The gateway binds the sub-device with the sub-device's signature.
        assert results(await g.op(bind_doc(sub))) == [0]
        listed = ok_data(await w.call(w.alice, "AppGetGatewayBindDeviceList", **w.gw_params()))
        assert listed["Total"] == 1
        assert listed["DeviceList"] == [
            {
                "DeviceId": f"{sub.product_id}/{sub.device_name}",
                "ProductId": sub.product_id,
                "DeviceName": sub.device_name,
                "AliasName": "",
                "IconUrl": "",
                "BindStatus": 0,
            }
        ]

        # The app puts it into the gateway's family; the gateway hears "change" status 1.
        data = ok_data(
            await w.call(w.alice, "AppBindSubDeviceInFamily", **w.gw_params(), **sub_params(sub))
        )
        info = data["Data"]["AppDeviceInfo"]
        assert data["AppDeviceInfo"] == info
        assert (info["DeviceId"], info["FamilyId"], info["RoomId"], info["UserID"]) == (
            f"{sub.product_id}/{sub.device_name}",
            w.alice.family_id,
            "0",
            w.alice.user_id,
        )
        change = await g.next(RawGateway.RESULT)
        assert change == {
            "type": "change",
            "payload": {
                "status": 1,
                "devices": [{"product_id": sub.product_id, "device_name": sub.device_name}],
            },
        }

        # The gateway brings it online; the app sees it online and controls it.
        await g.online_sub(sub)
        statuses = ok_data(
            await w.call(
                w.alice, "AppGetDeviceStatuses", DeviceIds=[f"{sub.product_id}/{sub.device_name}"]
            )
        )
        assert statuses["DeviceStatuses"][0]["Online"] == 1
        ok_data(
            await w.call(
                w.alice, "AppControlDeviceData", **sub_params(sub), Data='{"brightness":33}'
            )
        )
        control = await g.sub_down(sub, "property")
        assert (control["method"], control["params"]) == ("control", {"brightness": 33})

        listed = ok_data(await w.call(w.alice, "AppGetGatewayBindDeviceList", **w.gw_params()))
        [item] = listed["DeviceList"]
        assert item["BindStatus"] == 1
        assert (item["FamilyId"], item["RoomId"], item["UserID"]) == (
            w.alice.family_id,
            "0",
            w.alice.user_id,
        )
        family = ok_data(
            await w.call(w.alice, "AppGetFamilyDeviceList", FamilyId=w.alice.family_id)
        )
        assert {d["DeviceName"] for d in family["DeviceList"]} == {"gw1", "sub1"}
        # A retry of the bind is harmless.
        ok_data(
            await w.call(w.alice, "AppBindSubDeviceInFamily", **w.gw_params(), **sub_params(sub))
        )
        assert (await g.next(RawGateway.RESULT))["payload"]["status"] == 1

        # Deleting the sub-device from the family ends its gateway binding too.
        ok_data(
            await w.call(
                w.alice,
                "AppDeleteDeviceInFamily",
                FamilyId=w.alice.family_id,
                **sub_params(sub),
            )
        )
        change = await g.next(RawGateway.RESULT)
        assert change["payload"]["status"] == 0
        listed = ok_data(await w.call(w.alice, "AppGetGatewayBindDeviceList", **w.gw_params()))
        assert (listed["Total"], listed["DeviceList"]) == (0, [])
        rec = await server.devices.find(sub.product_id, sub.device_name)
        assert rec is not None and not rec.online
        assert not server.gateway.is_connected(sub.product_id + sub.device_name)


async def test_other_users_ids_are_refused(
    server: Ivcloud, admin: httpx.AsyncClient, world: World
) -> None:
    w, sub = world, world.subs[0]
    eve_gw = await provision_gateway(admin, "evegw")
    linked = await admin.put(f"/apps/{w.creds.app_id}/products/{eve_gw.product_id}")
    assert linked.status_code == 200
    await place(server, w.eve, eve_gw)
    async with gateway_for(server, w.gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        # Eve, with Alice's gateway: nothing, whatever the action.
        for action, params in [
            ("AppGetGatewayBindDeviceList", w.gw_params()),
            ("AppBindSubDeviceInFamily", {**w.gw_params(), **sub_params(sub)}),
        ]:
            assert error_code(await w.call(w.eve, action, **params)) == NO_PERMISSION, action
        # Eve, with her own gateway and Alice's sub-device: not bound to hers.
        mixed = {**w.gw_params(eve_gw), **sub_params(sub)}
        assert error_code(await w.call(w.eve, "AppBindSubDeviceInFamily", **mixed)) == NO_PERMISSION
        # Unknown ids look the same as foreign ones.
        ghost = {"GatewayProductId": w.gw.product_id, "GatewayDeviceName": "ghost"}
        assert (
            error_code(await w.call(w.alice, "AppGetGatewayBindDeviceList", **ghost))
            == NO_PERMISSION
        )
        unknown_sub = {**w.gw_params(), "ProductId": sub.product_id, "DeviceName": "ghost"}
        assert (
            error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **unknown_sub))
            == NO_PERMISSION
        )
        # Alice cannot pull a device her gateway never bound (sub2: no proof of possession).
        other = {**w.gw_params(), **sub_params(w.subs[1])}
        assert (
            error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **other)) == NO_PERMISSION
        )
        # Nothing changed for Eve, and the sub-device is in nobody's family.
        eve_list = ok_data(
            await w.call(w.eve, "AppGetGatewayBindDeviceList", **w.gw_params(eve_gw))
        )
        assert eve_list["Total"] == 0
        rec = await server.devices.find(sub.product_id, sub.device_name)
        assert rec is not None and await server.families.device_family(rec) is None


async def test_a_shared_user_sees_ids_only_and_cannot_bind(server: Ivcloud, world: World) -> None:
    w, sub = world, world.subs[0]
    gw_rec = await server.devices.find(w.gw.product_id, w.gw.device_name)
    assert gw_rec is not None
    async with server.graph.writing(server.sessions) as s:
        s.add(
            DeviceShare(
                device_id=gw_rec.id,
                user_id=w.eve.user_id,
                from_user_id=w.alice.user_id,
                created_ms=1,
            )
        )
    async with gateway_for(server, w.gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        ok_data(
            await w.call(w.alice, "AppBindSubDeviceInFamily", **w.gw_params(), **sub_params(sub))
        )
        assert (await g.next(RawGateway.RESULT))["type"] == "change"
    listed = ok_data(await w.call(w.eve, "AppGetGatewayBindDeviceList", **w.gw_params()))
    assert listed["DeviceList"] == [
        {
            "DeviceId": f"{sub.product_id}/{sub.device_name}",
            "ProductId": sub.product_id,
            "DeviceName": sub.device_name,
            "AliasName": "",
            "IconUrl": "",
            "BindStatus": 1,
        }
    ]
    assert (
        error_code(
            await w.call(w.eve, "AppBindSubDeviceInFamily", **w.gw_params(), **sub_params(sub))
        )
        == NO_PERMISSION
    )


async def test_conflicts_unlinked_products_filters_and_bad_input(
    server: Ivcloud, admin: httpx.AsyncClient, world: World
) -> None:
    w, sub1, sub2 = world, world.subs[0], world.subs[1]
    unlinked = (await provision_subs(admin, "lonely"))[0]  # a product the app does not have
    async with gateway_for(server, w.gw) as g:
        for i, s in enumerate((sub1, sub2, unlinked)):
            assert results(await g.op(bind_doc(s, nonce=i))) == [0]
    # sub2 sits in Eve's family already.
    await place(server, w.eve, sub2)
    busy = {**w.gw_params(), **sub_params(sub2)}
    assert error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **busy)) == "ResourceInUse"
    lonely = {**w.gw_params(), **sub_params(unlinked)}
    assert (
        error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **lonely))
        == codes.APP_NO_PERMISSION_TO_STUDIO_PRODUCT
    )
    # Listing: only linked products, optional ProductId filter, paging.
    listed = ok_data(await w.call(w.alice, "AppGetGatewayBindDeviceList", **w.gw_params()))
    assert (listed["Total"], [d["DeviceName"] for d in listed["DeviceList"]]) == (
        2,
        ["sub1", "sub2"],
    )
    assert listed["DeviceList"][1]["BindStatus"] == 0  # in Eve's family: not this one
    assert "FamilyId" not in listed["DeviceList"][1]
    page = ok_data(
        await w.call(w.alice, "AppGetGatewayBindDeviceList", **w.gw_params(), Offset=1, Limit=1)
    )
    assert (page["Total"], [d["DeviceName"] for d in page["DeviceList"]]) == (2, ["sub2"])
    none = ok_data(
        await w.call(
            w.alice, "AppGetGatewayBindDeviceList", **w.gw_params(), ProductId=unlinked.product_id
        )
    )
    assert none["Total"] == 0
    # Bad input: clear errors, nothing changed.
    for params, code in [
        ({}, codes.REQUIRED_PARAM_NOT_FOUND),
        ({"GatewayProductId": "a/b", "GatewayDeviceName": "x"}, codes.INVALID_PARAMETER),
        ({**w.gw_params(), "Limit": 1000}, codes.INVALID_PARAMETER_VALUE),
    ]:
        got = error_code(await w.call(w.alice, "AppGetGatewayBindDeviceList", **params))
        assert got == code, (params, got)
    self_bind = {**w.gw_params(), **sub_params(w.gw)}
    assert (
        error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **self_bind))
        == codes.INVALID_PARAMETER_VALUE
    )
    no_sub = w.gw_params()
    assert (
        error_code(await w.call(w.alice, "AppBindSubDeviceInFamily", **no_sub))
        == codes.INVALID_PARAMETER
    )
    rec = await server.devices.find(sub1.product_id, sub1.device_name)
    assert rec is not None and await server.families.device_family(rec) is None

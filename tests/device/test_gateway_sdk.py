"""The device SDK's gateway helper (``ivcloud.device.gateway``) against the real server:
bind, online, a sub-device reporting and obeying controls/actions through the gateway's
connection, offline controls, a cloud ``change``, and automatic re-online after a reconnect."""

from __future__ import annotations

from typing import Any

import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import OK
from ivcloud.device.gateway import GatewayClient
from ivcloud.protocol import gateway_ops as ops
from ivcloud.protocol.thingmodel import parse_thing_model
from tests.device.support import device_doc, prop, sdk_device, wait_prop
from tests.gateway_kit import SENSOR_MODEL, provision_gateway, provision_subs
from tests.helpers import Provisioned, poll

REPORT = {"power_switch": 1, "brightness": 40, "temperature": 20.5}


async def online_is(admin: httpx.AsyncClient, dev: Provisioned, online: int) -> None:
    await poll(lambda: device_doc(admin, dev), lambda d: d["Online"] == online)


async def test_gateway_sdk_end_to_end(server: Ivcloud, admin: httpx.AsyncClient) -> None:
    gw_dev = await provision_gateway(admin)
    sub_dev, other = await provision_subs(admin, "sub1", "sub2")
    controls: list[dict[str, Any]] = []
    actions: list[tuple[str, dict[str, Any]]] = []
    changes: list[tuple[bool, list[tuple[str, str]]]] = []

    async def on_control(params: dict[str, Any]) -> int:
        controls.append(params)
        return OK

    def on_action(action_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        actions.append((action_id, params))
        return OK, {"result": 1}

    async with sdk_device(server, gw_dev, wait_online=5) as device:
        gw = GatewayClient(device, on_change=lambda bound, devs: changes.append((bound, devs)))
        try:
            assert await gw.bind(sub_dev.product_id, "sub1", sub_dev.secret) == OK
            assert await gw.bind(sub_dev.product_id, "sub1", sub_dev.secret) == ops.ALREADY_BOUND
            assert await gw.bind(other.product_id, "sub2", sub_dev.secret) == 803  # wrong secret
            assert await gw.describe() == [(sub_dev.product_id, "sub1")]
            assert await gw.online(other.product_id, "sub2") == ops.NOT_BOUND

            sensor = gw.sub_device(sub_dev.product_id, "sub1")
            sensor.dm_init(
                parse_thing_model(SENSOR_MODEL), on_control=on_control, on_action=on_action
            )
            assert await gw.online(sub_dev.product_id, "sub1") == OK
            assert sensor.online
            await online_is(admin, sub_dev, 1)

            assert await sensor.property_report(REPORT) == OK
            assert await sensor.property_report({"nope": 1}) == 406
            doc = await device_doc(admin, sub_dev)
            assert {k: v["Value"] for k, v in doc["Properties"].items()} == REPORT
            assert await sensor.event_report("alarm", "alert", {"level": 2}) == OK

            resp = await admin.post(
                f"/products/{sub_dev.product_id}/devices/sub1/control",
                json={"Params": {"brightness": 60}, "WaitSeconds": 5},
            )
            assert (resp.json()["Delivered"], resp.json()["Code"]) == (True, 0)
            assert controls == [{"brightness": 60}]
            resp = await admin.post(
                f"/products/{sub_dev.product_id}/devices/sub1/actions/blink",
                json={"Params": {"times": 3}, "TimeoutSeconds": 5},
            )
            assert resp.json()["Response"] == {"result": 1}
            assert actions == [("blink", {"times": 3})]

            # Offline: a control waits in the cloud and is applied by property_sync.
            assert await gw.offline(sub_dev.product_id, "sub1") == OK
            assert not sensor.online
            await online_is(admin, sub_dev, 0)
            resp = await admin.post(
                f"/products/{sub_dev.product_id}/devices/sub1/control",
                json={"Params": {"power_switch": 0}},
            )
            assert resp.json()["Delivered"] is False
            assert await gw.online(sub_dev.product_id, "sub1") == OK
            data = await sensor.property_sync()
            assert data is not None and data["control"] == {"power_switch": 0}
            assert controls[-1] == {"power_switch": 0}
            after = await sensor.property_sync()
            assert after is not None and "control" not in after

            # The gateway's connection drops: the SDK reconnects and brings sub1 back online.
            assert await server.gateway.disconnect(gw_dev.product_id + gw_dev.device_name)
            await online_is(admin, sub_dev, 0)
            await online_is(admin, sub_dev, 1)
            await poll(
                lambda: sensor.property_report({"brightness": 41}),
                lambda code: code == OK,
            )
            await wait_prop(admin, sub_dev, "brightness", 41)

            # The app side removes sub1 from its family: the gateway hears change status 0.
            creds_resp = await admin.post("/apps", json={"Name": "a"})
            app = creds_resp.json()
            for pid in (gw_dev.product_id, sub_dev.product_id):
                await admin.put(f"/apps/{app['AppId']}/products/{pid}")
            user = await server.users.create(app["AppId"], nick_name="u")
            family = await server.families.create_family(user, "home")
            sub_rec = await server.devices.find(sub_dev.product_id, "sub1")
            assert sub_rec is not None
            await server.families.bind_device(user, family, "0", sub_rec)
            await server.families.unbind_device(sub_rec)
            await poll(lambda: _snapshot(changes), lambda c: len(c) == 1)
            assert changes == [(False, [(sub_dev.product_id, "sub1")])]
            assert not sensor.online
            assert await gw.online(sub_dev.product_id, "sub1") == ops.NOT_BOUND
            assert prop(await device_doc(admin, sub_dev), "brightness") == 41
            assert await gw.unbind(sub_dev.product_id, "sub1") == ops.NOT_BOUND
            assert await gw.describe() == []
        finally:
            await gw.close()


async def _snapshot(items: list[Any]) -> list[Any]:
    return list(items)

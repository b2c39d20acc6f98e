"""``GatewayService`` on a real instance (real database, real MQTT gateway): the topology
rules that are not visible from one MQTT exchange — races, limits, a disconnected gateway,
deletions, and the family rules heard on the bus."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol import gateway_ops as ops
from ivcloud.services import gateways
from ivcloud.services.devices import DeviceRecord
from tests.appclient import create_app, make_user
from tests.gateway_kit import (
    bind_doc,
    gateway_for,
    op_doc,
    provision_gateway,
    provision_subs,
    results,
)
from tests.helpers import Provisioned, poll


async def rec(server: Ivcloud, p: Provisioned) -> DeviceRecord:
    found = await server.devices.find(p.product_id, p.device_name)
    assert found is not None
    return found


def entry(p: Provisioned, **kw: object) -> ops.DeviceEntry:
    [item] = ops.parse_operation(json.dumps(bind_doc(p, **kw)).encode()).devices  # type: ignore[arg-type]
    return item


async def test_concurrent_binds_of_one_sub_device_have_one_winner(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw1, gw2 = await provision_gateway(admin, "gw1"), await provision_gateway(admin, "gw2")
    [sub] = await provision_subs(admin, "sub1")
    svc = server.gateway_subdevices
    codes = await asyncio.gather(
        svc.bind(await rec(server, gw1), entry(sub, nonce=1)),
        svc.bind(await rec(server, gw2), entry(sub, nonce=2)),
    )
    assert sorted(codes) == [ops.OK, ops.BOUND_ELSEWHERE]
    winner = gw1 if codes[0] == ops.OK else gw2
    assert await svc.gateway_id_of(await rec(server, sub)) == (await rec(server, winner)).id


async def test_sub_device_limit_per_gateway(
    server: Ivcloud, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateways, "MAX_SUBDEVICES", 2)
    gw = await provision_gateway(admin)
    subs = await provision_subs(admin, "a", "b", "c")
    g = await rec(server, gw)
    codes = [await server.gateway_subdevices.bind(g, entry(s)) for s in subs]
    assert codes == [ops.OK, ops.OK, ops.FORBIDDEN]


async def test_online_needs_the_gateways_connection(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw = await provision_gateway(admin)
    [sub] = await provision_subs(admin, "sub1")
    g = await rec(server, gw)
    assert await server.gateway_subdevices.bind(g, entry(sub)) == ops.OK
    ref = ops.DeviceEntry(sub.product_id, sub.device_name)
    # The gateway is not connected: nothing to route through.
    assert await server.gateway_subdevices.online(g, ref) == ops.SYSTEM_ERROR
    assert not (await rec(server, sub)).online
    async with gateway_for(server, gw):
        assert await server.gateway_subdevices.online(g, ref) == ops.OK
        assert (await rec(server, sub)).online


async def test_deleting_an_online_sub_device_removes_its_route(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw = await provision_gateway(admin)
    [sub] = await provision_subs(admin, "sub1")
    cid = sub.product_id + sub.device_name
    async with gateway_for(server, gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        await g.online_sub(sub)
        assert server.subdevice_routes.gateway_of(cid) == gw.product_id + gw.device_name
        resp = await admin.delete(f"/products/{sub.product_id}/devices/{sub.device_name}")
        assert resp.status_code == 204
        assert server.subdevice_routes.gateway_of(cid) is None
        assert not server.gateway.is_connected(cid)
        described = await g.op({"type": "describe_sub_devices"})
        assert described["payload"]["devices"] == []  # the row cascaded


async def _family_with(
    server: Ivcloud, admin: httpx.AsyncClient, *devs: Provisioned
) -> tuple[str, str]:
    creds = await create_app(admin, *{d.product_id for d in devs})
    user_id, _ = await make_user(server, creds)
    user = await server.users.get(user_id)
    family_id = await server.families.create_family(user, "home")
    for d in devs:
        await server.families.bind_device(user, family_id, "0", await rec(server, d))
    return user_id, family_id


async def test_sub_device_leaving_its_family_leaves_its_gateway(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw = await provision_gateway(admin)
    [sub] = await provision_subs(admin, "sub1")
    await _family_with(server, admin, gw, sub)
    async with gateway_for(server, gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        await g.online_sub(sub)
        await server.families.unbind_device(await rec(server, sub))
        change = await g.next(g.RESULT)
        assert change == {
            "type": "change",
            "payload": {
                "status": 0,
                "devices": [{"product_id": sub.product_id, "device_name": sub.device_name}],
            },
        }
        assert await server.gateway_subdevices.gateway_id_of(await rec(server, sub)) is None
        assert not server.gateway.is_connected(sub.product_id + sub.device_name)
        assert not (await rec(server, sub)).online
        # The gateway acknowledges as the C SDK does; nothing is answered to that.
        await g.publish("$gateway/operation/{p}/{d}", {"type": "change", "result": 0})
        assert results(await g.op(op_doc("online", sub))) == [-1]


async def test_gateway_leaving_a_family_takes_its_sub_devices_of_that_family(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw = await provision_gateway(admin)
    in_family, elsewhere, nowhere = await provision_subs(admin, "s1", "s2", "s3")
    await _family_with(server, admin, gw, in_family)
    await _family_with(server, admin, elsewhere)  # another user's family
    g = await rec(server, gw)
    svc = server.gateway_subdevices
    for i, s in enumerate((in_family, elsewhere, nowhere)):
        assert await svc.bind(g, entry(s, nonce=i)) == ops.OK
    await server.families.unbind_device(g)

    async def state() -> tuple[str | None, int | None]:
        return (
            await server.families.device_family(await rec(server, in_family)),
            await svc.gateway_id_of(await rec(server, in_family)),
        )

    await poll(state, lambda v: v == (None, None))
    assert await server.families.device_family(await rec(server, elsewhere)) is not None
    assert [d for _, d in await svc.sub_devices(g)] == ["s2", "s3"]


async def test_bind_timestamp_window_is_configurable(
    server: Ivcloud, admin: httpx.AsyncClient
) -> None:
    gw = await provision_gateway(admin)
    [sub] = await provision_subs(admin, "sub1")
    strict = gateways.GatewayService(
        server.sessions,
        server.devices,
        server.access,
        server.families,
        server.subdevice_routes,
        server.downlink,
        server.clock,
        bind_window_s=5,
    )
    g = await rec(server, gw)
    assert await strict.bind(g, entry(sub, ts=int(time.time()) - 60)) == ops.SIGNATURE_EXPIRED
    assert await strict.bind(g, entry(sub)) == ops.OK

"""Gateway sub-devices through the real MQTT gateway (spec §6.2): bind/online/report/control
over the gateway's connection, every result code, and the ACL attacked from every side —
unbound, not online, bound elsewhere, after offline/unbind/disconnect, wildcards, nesting."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol.mqtt import Puback, Publish, Suback, Subscribe
from tests.gateway.test_auth_acl import RawSocket, credentials, raw_socket
from tests.gateway_kit import (
    bind_doc,
    device_doc,
    gateway_for,
    op_doc,
    provision_gateway,
    provision_subs,
    results,
    sub_topic,
)
from tests.helpers import Provisioned, poll
from tests.rawdevice import device_for

REPORT = {"power_switch": 1, "brightness": 42, "temperature": 21.5}


async def online_state(admin: httpx.AsyncClient, dev: Provisioned, online: int) -> None:
    await poll(lambda: device_doc(admin, dev), lambda d: d["Online"] == online)


@pytest.fixture
async def gw(admin: httpx.AsyncClient) -> Provisioned:
    return await provision_gateway(admin)


@pytest.fixture
async def subs(admin: httpx.AsyncClient) -> list[Provisioned]:
    return await provision_subs(admin, "sub1", "sub2", "sub3")


async def test_bind_online_report_control_through_the_gateway(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub = subs[0]
    async with gateway_for(server, gw) as g:
        bound = await g.op(bind_doc(sub))
        assert bound == {
            "type": "bind",
            "payload": {
                "devices": [
                    {"product_id": sub.product_id, "device_name": sub.device_name, "result": 0}
                ]
            },
        }
        described = await g.op({"type": "describe_sub_devices"})
        assert described == {
            "type": "describe_sub_devices",
            "payload": {
                "devices": [{"product_id": sub.product_id, "device_name": sub.device_name}]
            },
        }
        assert (await device_doc(admin, sub))["Online"] == 0
        await g.online_sub(sub)
        assert (await device_doc(admin, sub))["Online"] == 1
        assert server.gateway.is_connected(sub.product_id + sub.device_name)

        # A report for the sub-device: validated against *its* model, stored as its own,
        # answered on its down topic over the gateway's connection.
        await g.sub_up(sub, "property", {"method": "report", "clientToken": "r1", "params": REPORT})
        reply = await g.sub_down(sub, "property")
        assert reply == {
            "method": "report_reply",
            "clientToken": "r1",
            "code": 0,
            "status": "success",
        }
        props = (await device_doc(admin, sub))["Properties"]
        assert {k: v["Value"] for k, v in props.items()} == REPORT
        assert (await device_doc(admin, gw))["Properties"] == {}
        # The camera's own properties are not the sensor's.
        await g.sub_up(
            sub,
            "property",
            {"method": "report", "clientToken": "r2", "params": {"_sys_battery": 5}},
        )
        bad = await g.sub_down(sub, "property")
        assert (bad["code"], bad["status"]) == (406, "checkReportData fail")

        # Cloud → sub-device: a console control reaches the gateway's connection.
        control = asyncio.create_task(
            admin.post(
                f"/products/{sub.product_id}/devices/{sub.device_name}/control",
                json={"Params": {"brightness": 77}, "WaitSeconds": 5},
            )
        )
        down = await g.sub_down(sub, "property")
        assert (down["method"], down["params"]) == ("control", {"brightness": 77})
        await g.sub_up(
            sub,
            "property",
            {"method": "control_reply", "clientToken": down["clientToken"], "code": 0},
        )
        result = (await control).json()
        assert (result["Delivered"], result["Code"]) == (True, 0)

        # An action round trip and an event, both as the sub-device.
        action = asyncio.create_task(
            admin.post(
                f"/products/{sub.product_id}/devices/{sub.device_name}/actions/blink",
                json={"Params": {"times": 2}, "TimeoutSeconds": 5},
            )
        )
        act = await g.sub_down(sub, "action")
        assert (act["actionId"], act["params"]) == ("blink", {"times": 2})
        await g.sub_up(
            sub,
            "action",
            {
                "method": "action_reply",
                "clientToken": act["clientToken"],
                "code": 0,
                "status": "ok",
                "response": {"result": 1},
            },
        )
        assert (await action).json()["Response"] == {"result": 1}
        await g.sub_up(
            sub,
            "event",
            {
                "method": "event_post",
                "clientToken": "e1",
                "eventId": "alarm",
                "type": "alert",
                "timestamp": int(time.time() * 1000),
                "params": {"level": 3},
            },
        )
        assert (await g.sub_down(sub, "event"))["code"] == 0

        # offline takes it all away at once.
        assert results(await g.op(op_doc("offline", sub))) == [0]
        assert (await device_doc(admin, sub))["Online"] == 0
        assert not server.gateway.is_connected(sub.product_id + sub.device_name)
        assert not await server.gateway.publish(
            sub.product_id + sub.device_name,
            sub_topic("$thing/down/property/{p}/{d}", sub),
            b"{}",
        )
    await online_state(admin, gw, 0)


async def test_bind_result_codes(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub1, sub2, sub3 = subs
    other_gw = await provision_gateway(admin, "gw2")
    now = int(time.time())
    async with gateway_for(server, gw) as g, gateway_for(server, other_gw) as g2:
        assert results(await g.op(bind_doc(sub1, secret=sub2.secret))) == [803]
        assert results(await g.op(bind_doc(sub1, ts=now - 3600))) == [805]
        assert results(await g.op(bind_doc(sub1, method="hmacmd5"))) == [804]
        assert results(await g.op(bind_doc(sub1, authtype="certificate"))) == [804]
        ghost = Provisioned(sub1.product_id, "ghost", sub1.secret)
        assert results(await g.op(bind_doc(ghost))) == [802]
        assert results(await g.op(bind_doc(gw))) == [802]  # not its own sub-device
        # Two devices in one message: one result each, in order.
        two = bind_doc(sub1, method="hmacsha256")
        two["payload"]["devices"] += bind_doc(sub2, nonce=7)["payload"]["devices"]
        assert results(await g.op(two)) == [0, 0]
        assert results(await g.op(bind_doc(sub1, nonce=8))) == [809]
        assert results(await g2.op(bind_doc(sub1, nonce=9))) == [806]
        # The signature that bound sub2 cannot be used again (a leaked one must not move it).
        replay = bind_doc(sub2, nonce=7, ts=two["payload"]["devices"][1]["timestamp"])
        assert results(await g.op(op_doc("unbind", sub2))) == [0]
        assert results(await g2.op(replay)) == [805]
        # Unbind: only what is bound to this gateway.
        assert results(await g2.op(op_doc("unbind", sub1))) == [-1]
        assert results(await g.op(op_doc("unbind", sub3))) == [-1]
        assert results(await g.op(op_doc("online", sub3))) == [-1]
        # Unreadable messages get an 801 answer with the type they claimed.
        assert await g.op(b"not json") == {"type": "", "result": 801, "payload": {"devices": []}}
        assert (await g.op({"type": "online", "payload": {}}))["result"] == 801
        bad_entry = {"type": "online", "payload": {"devices": [{"product_id": 1}]}}
        assert await g.op(bad_entry) == {
            "type": "online",
            "payload": {"devices": [{"product_id": "", "device_name": "", "result": 801}]},
        }
        assert (await g.op({"type": "reboot"}))["result"] == 801
        described = await g.op({"type": "describe_sub_devices"})
        assert [d["device_name"] for d in described["payload"]["devices"]] == ["sub1"]


async def _until_publish(sock: RawSocket, topic: str, start: int) -> tuple[dict[str, Any], int]:
    """The first PUBLISH on ``topic`` received after index ``start``."""

    def found(got: list[Any]) -> bool:
        return any(isinstance(p, Publish) and p.topic == topic for p in got[start:])

    got = await sock.until(found)
    for i in range(start, len(got)):
        packet = got[i]
        if isinstance(packet, Publish) and packet.topic == topic:
            return json.loads(packet.payload), i + 1
    raise AssertionError("unreachable")


class RawGatewaySocket:
    """A gateway on a bare socket: exact PUBACK/SUBACK behaviour is observable."""

    def __init__(self, sock: RawSocket, gw: Provisioned) -> None:
        self.sock = sock
        self.gw = gw
        self.result_topic = f"$gateway/operation/result/{gw.product_id}/{gw.device_name}"
        self.read = 0
        self.pid = 100

    async def start(self) -> None:
        await self.sock.send(
            credentials(self.gw), Subscribe(packet_id=1, topics=((self.result_topic, 0),))
        )
        await self.sock.until(lambda got: any(isinstance(p, Suback) for p in got))

    async def op(self, doc: dict[str, Any]) -> dict[str, Any]:
        topic = f"$gateway/operation/{self.gw.product_id}/{self.gw.device_name}"
        await self.sock.send(Publish(topic=topic, payload=json.dumps(doc).encode()))
        reply, self.read = await _until_publish(self.sock, self.result_topic, self.read)
        return reply

    async def subscribe(self, *filters: str) -> tuple[int, ...]:
        self.pid += 1
        pid = self.pid
        await self.sock.send(Subscribe(packet_id=pid, topics=tuple((f, 0) for f in filters)))
        got = await self.sock.until(
            lambda got: any(isinstance(p, Suback) and p.packet_id == pid for p in got)
        )
        suback = next(p for p in got if isinstance(p, Suback) and p.packet_id == pid)
        return suback.return_codes

    async def acked(self, *publishes: tuple[str, dict[str, Any]]) -> list[int]:
        """Publish each at QoS 1, then one PUBLISH the gateway surely acknowledges (its own
        ``$sys`` time request); the packet ids acknowledged up to that one, in order."""
        ids = []
        for topic, doc in publishes:
            self.pid += 1
            ids.append(self.pid)
            await self.sock.send(
                Publish(topic=topic, payload=json.dumps(doc).encode(), qos=1, packet_id=self.pid)
            )
        self.pid += 1
        marker = self.pid
        own = f"$sys/operation/{self.gw.product_id}/{self.gw.device_name}"
        await self.sock.send(
            Publish(topic=own, payload=b'{"type":"get","resource":[]}', qos=1, packet_id=marker)
        )
        got = await self.sock.until(
            lambda got: any(isinstance(p, Puback) and p.packet_id == marker for p in got)
        )
        return [p.packet_id for p in got if isinstance(p, Puback) and p.packet_id in ids]


def report_for(sub: Provisioned) -> tuple[str, dict[str, Any]]:
    return (
        sub_topic("$thing/up/property/{p}/{d}", sub),
        {"method": "report", "clientToken": "x", "params": {"brightness": 9}},
    )


async def test_gateway_cannot_speak_for_a_sub_device_it_has_not_brought_online(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub1, sub2, _ = subs
    other_gw = await provision_gateway(admin, "gw2")
    down = sub_topic("$thing/down/property/{p}/{d}", sub1)
    async with raw_socket(server) as s:
        g = RawGatewaySocket(s, gw)
        await g.start()
        # Not bound: no PUBACK, nothing stored, no subscription.
        assert await g.acked(report_for(sub1)) == []
        assert await g.subscribe(down) == (0x80,)
        # Bound but not online: still nothing.
        assert results(await g.op(bind_doc(sub1))) == [0]
        assert await g.acked(report_for(sub1)) == []
        assert await g.subscribe(down) == (0x80,)
        # sub2 is bound to and online through another gateway: refused here too.
        async with gateway_for(server, other_gw) as g2:
            assert results(await g2.op(bind_doc(sub2))) == [0]
            await g2.online_sub(sub2)
            assert results(await g.op(op_doc("online", sub2))) == [-1]
            assert await g.acked(report_for(sub2)) == []
            assert await g.subscribe(sub_topic("$thing/down/property/{p}/{d}", sub2)) == (0x80,)
        # Online: allowed, but only exact own-namespace filters of that sub-device.
        assert results(await g.op(op_doc("online", sub1))) == [0]
        assert await g.subscribe(
            down,
            sub_topic("$thing/down/+/{p}/{d}", sub1),
            sub_topic("{p}/{d}/#", sub1),
            sub_topic("$thing/down/property/{p}/{d}x", sub1),
            sub_topic("$gateway/operation/result/{p}/{d}", sub1),
        ) == (0, 0x80, 0, 0x80, 0x80)
        nested = (
            sub_topic("$gateway/operation/{p}/{d}", sub1),
            {"type": "describe_sub_devices"},
        )
        assert await g.acked(report_for(sub1), nested) == [g.pid - 2]
        # offline: rights gone again, the subscription went with them.
        assert results(await g.op(op_doc("offline", sub1))) == [0]
        assert await g.acked(report_for(sub1)) == []
        assert not await server.gateway.publish(sub1.product_id + sub1.device_name, down, b"{}")
    # PUBACK comes when the report is queued; it is stored by the next group commit.
    doc = await poll(lambda: device_doc(admin, sub1), lambda d: bool(d["Properties"]))
    props = doc["Properties"]
    assert {k: v["Value"] for k, v in props.items()} == {"brightness": 9}  # the one allowed
    assert (await device_doc(admin, sub2))["Properties"] == {}


async def test_unbind_and_disconnect_take_the_rights_away(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub1, sub2, _ = subs
    async with gateway_for(server, gw) as g:
        assert results(await g.op(bind_doc(sub1))) == [0]
        assert results(await g.op(bind_doc(sub2, nonce=1))) == [0]
        await g.online_sub(sub1)
        await g.online_sub(sub2)
        assert results(await g.op(op_doc("unbind", sub1))) == [0]
        assert (await device_doc(admin, sub1))["Online"] == 0
        assert not server.gateway.is_connected(sub1.product_id + sub1.device_name)
        assert results(await g.op(op_doc("online", sub1))) == [-1]
        assert server.gateway.is_connected(sub2.product_id + sub2.device_name)
    # The gateway's connection ended: its sub-devices went offline with it.
    await online_state(admin, sub2, 0)
    await online_state(admin, gw, 0)
    assert not server.gateway.is_connected(sub2.product_id + sub2.device_name)
    async with raw_socket(server) as s:
        g = RawGatewaySocket(s, gw)
        await g.start()
        # A new connection has no routes until it brings sub2 online again.
        assert await g.acked(report_for(sub2)) == []
        assert results(await g.op(op_doc("online", sub2))) == [0]
        assert await g.acked(report_for(sub2)) == [g.pid - 1]
        await online_state(admin, sub2, 1)


async def test_second_gateway_connection_must_bring_sub_devices_online_again(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub = subs[0]
    async with raw_socket(server) as s1:
        g1 = RawGatewaySocket(s1, gw)
        await g1.start()
        assert results(await g1.op(bind_doc(sub))) == [0]
        assert results(await g1.op(op_doc("online", sub))) == [0]
        await online_state(admin, sub, 1)
        async with raw_socket(server) as s2:
            g2 = RawGatewaySocket(s2, gw)  # same ClientId: replaces the first connection
            await g2.start()
            await online_state(admin, sub, 0)
            assert await g2.acked(report_for(sub)) == []
            assert results(await g2.op(op_doc("online", sub))) == [0]
            await online_state(admin, sub, 1)
            assert await g2.acked(report_for(sub)) == [g2.pid - 1]
            assert (await device_doc(admin, gw))["Online"] == 1


async def test_sub_devices_own_connection_still_works(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    sub = subs[0]
    async with gateway_for(server, gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        await g.online_sub(sub)
        async with device_for(server, sub) as direct:
            reply = await direct.request(
                "property", {"method": "report", "clientToken": "d1", "params": {"brightness": 5}}
            )
            assert reply["code"] == 0
            # The direct connection is preferred for the sub-device's downlink.
            control = asyncio.create_task(
                admin.post(
                    f"/products/{sub.product_id}/devices/{sub.device_name}/control",
                    json={"Params": {"brightness": 6}, "WaitSeconds": 5},
                )
            )
            down = await direct.down("property")
            assert down["params"] == {"brightness": 6}
            await direct.up(
                "property",
                {"method": "control_reply", "clientToken": down["clientToken"], "code": 0},
            )
            assert (await control).json()["Code"] == 0
        # Its own connection closed, but it is still online through the gateway.
        assert (await device_doc(admin, sub))["Online"] == 1
        assert server.gateway.is_connected(sub.product_id + sub.device_name)


async def test_a_sub_device_cannot_use_its_gateways_topics(
    server: Ivcloud, admin: httpx.AsyncClient, gw: Provisioned, subs: list[Provisioned]
) -> None:
    """Routing is one way: a sub-device's own connection gains nothing from the binding."""
    sub = subs[0]
    async with gateway_for(server, gw) as g:
        assert results(await g.op(bind_doc(sub))) == [0]
        await g.online_sub(sub)
    async with raw_socket(server) as s:
        direct = RawGatewaySocket(s, sub)
        await direct.start()
        gw_report = (
            f"$thing/up/property/{gw.product_id}/{gw.device_name}",
            {"method": "report", "clientToken": "x", "params": {}},
        )
        assert await direct.acked(gw_report) == []
        assert await direct.subscribe(
            f"$gateway/operation/result/{gw.product_id}/{gw.device_name}"
        ) == (0x80,)

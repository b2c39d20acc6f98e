"""Shared by the gateway sub-device tests: a small sub-device thing model, provisioning of a
gateway and its sub-devices through the console API, the SDK-shaped ``$gateway/operation``
messages, and a raw MQTT gateway that asserts the exact wire."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiomqtt
import httpx

from ivcloud.app import Ivcloud
from ivcloud.protocol import gateway_ops as ops
from tests.helpers import Provisioned, provision, provision_custom
from tests.rawdevice import RawDevice


def _int(lo: int, hi: int) -> dict[str, str]:
    return {"type": "int", "min": str(lo), "max": str(hi), "start": str(lo), "step": "1"}


SENSOR_MODEL: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "", "CategoryId": "1"},
    "properties": [
        {"id": "power_switch", "name": "Power", "mode": "rw", "define": {"type": "bool"}},
        {"id": "brightness", "name": "Brightness", "mode": "rw", "define": _int(0, 100)},
        {
            "id": "temperature",
            "name": "Temperature",
            "mode": "r",
            "define": {"type": "float", "min": "-40", "max": "120", "start": "0", "step": "0.1"},
        },
    ],
    "events": [
        {
            "id": "alarm",
            "name": "Alarm",
            "type": "alert",
            "params": [{"id": "level", "name": "Level", "define": _int(0, 9)}],
        }
    ],
    "actions": [
        {
            "id": "blink",
            "name": "Blink",
            "input": [{"id": "times", "name": "Times", "define": _int(1, 10)}],
            "output": [{"id": "result", "name": "Result", "define": _int(0, 1)}],
        }
    ],
}


async def provision_gateway(admin: httpx.AsyncClient, name: str = "gw1") -> Provisioned:
    return await provision(admin, "camera", "camera", name)


async def provision_subs(admin: httpx.AsyncClient, *names: str) -> list[Provisioned]:
    """Sub-devices of one sensor product (its own thing model)."""
    first = await provision_custom(admin, SENSOR_MODEL, names[0])
    out = [first]
    for name in names[1:]:
        resp = await admin.post(f"/products/{first.product_id}/devices", json={"DeviceName": name})
        assert resp.status_code == 201, resp.text
        out.append(Provisioned(first.product_id, name, resp.json()["DeviceSecret"]))
    return out


def bind_doc(
    sub: Provisioned,
    *,
    secret: str | None = None,
    ts: int | None = None,
    method: str = "hmacsha1",
    nonce: int = 4242,
    authtype: str = "psk",
) -> dict[str, Any]:
    """A ``bind`` request as the official SDK builds it."""
    ts = int(time.time()) if ts is None else ts
    signed_with = method if method in ("hmacsha1", "hmacsha256") else "hmacsha1"
    sig = ops.sign_bind(
        secret or sub.secret, sub.product_id, sub.device_name, nonce, ts, signed_with
    )
    return {
        "type": "bind",
        "payload": {
            "devices": [
                {
                    "product_id": sub.product_id,
                    "device_name": sub.device_name,
                    "signature": sig,
                    "random": nonce,
                    "timestamp": ts,
                    "signmethod": method,
                    "authtype": authtype,
                }
            ]
        },
    }


def op_doc(op_type: str, *subs: Provisioned) -> dict[str, Any]:
    devices = [{"product_id": s.product_id, "device_name": s.device_name} for s in subs]
    return {"type": op_type, "payload": {"devices": devices}}


def results(reply: dict[str, Any]) -> list[int]:
    return [d["result"] for d in reply["payload"]["devices"]]


def sub_topic(template: str, sub: Provisioned) -> str:
    return template.format(p=sub.product_id, d=sub.device_name)


class RawGateway(RawDevice):
    """A raw device that also listens on its ``$gateway/operation/result`` topic."""

    RESULT = "$gateway/operation/result/{p}/{d}"

    async def __aenter__(self) -> RawGateway:
        await super().__aenter__()
        assert await self.subscribe(self.topic(self.RESULT)) == 0
        return self

    async def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        """The SUBACK code (0/1 granted, 0x80 refused)."""
        granted = await self._client.subscribe(topic_filter, qos=qos)
        first = granted[0]
        return first if isinstance(first, int) else first.value

    async def op(self, doc: dict[str, Any] | bytes, timeout: float = 5.0) -> dict[str, Any]:
        await self.publish("$gateway/operation/{p}/{d}", doc)
        return await self.next(self.RESULT, timeout)

    async def sub_up(
        self, sub: Provisioned, channel: str, doc: dict[str, Any], qos: int = 0
    ) -> None:
        body = json.dumps(doc).encode()
        await self._client.publish(
            sub_topic("$thing/up/" + channel + "/{p}/{d}", sub), body, qos=qos
        )

    async def sub_down(
        self, sub: Provisioned, channel: str, timeout: float = 5.0
    ) -> dict[str, Any]:
        topic = sub_topic("$thing/down/" + channel + "/{p}/{d}", sub)
        return await asyncio.wait_for(self._queue(topic).get(), timeout)

    async def online_sub(self, sub: Provisioned, *channels: str) -> None:
        """``online`` then subscribe the sub-device's down topics (as the SDK does)."""
        assert results(await self.op(op_doc("online", sub))) == [0]
        for channel in channels or ("property", "event", "action", "service"):
            code = await self.subscribe(sub_topic("$thing/down/" + channel + "/{p}/{d}", sub))
            assert code == 0

    @property
    def mqtt(self) -> aiomqtt.Client:
        return self._client


def gateway_for(server: Ivcloud, gw: Provisioned) -> RawGateway:
    assert server.endpoints is not None
    ep = server.endpoints
    return RawGateway(ep.mqtt_host, ep.mqtt_port, gw.product_id, gw.device_name, gw.secret)


async def device_doc(admin: httpx.AsyncClient, dev: Provisioned) -> dict[str, Any]:
    resp = await admin.get(f"/products/{dev.product_id}/devices/{dev.device_name}")
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc

"""A raw MQTT device for gateway tests: sends exact ``$thing`` payloads and reads the exact
replies, so tests can assert codes and fields byte for byte (the SDK hides those)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiomqtt

from ivcloud.app import Ivcloud
from ivcloud.protocol.credentials import make_username, sign_password
from tests.helpers import Provisioned

DOWN_TOPICS = (
    "$thing/down/property/{p}/{d}",
    "$thing/down/event/{p}/{d}",
    "$thing/down/action/{p}/{d}",
    "$thing/down/service/{p}/{d}",
    "$ota/update/{p}/{d}",
    "$sys/operation/result/{p}/{d}",
)


class RawDevice:
    def __init__(
        self,
        host: str,
        port: int,
        product_id: str,
        device_name: str,
        secret: str,
        *,
        algorithm: str = "hmacsha256",
    ) -> None:
        self.product_id = product_id
        self.device_name = device_name
        username = make_username(product_id, device_name, now=int(time.time()), connid="abcde")
        self._client = aiomqtt.Client(
            host,
            port,
            identifier=product_id + device_name,
            username=username,
            password=sign_password(secret, username, algorithm),  # type: ignore[arg-type]
            keepalive=60,
        )
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    def topic(self, template: str) -> str:
        return template.format(p=self.product_id, d=self.device_name)

    async def __aenter__(self) -> RawDevice:
        await self._client.__aenter__()
        for template in DOWN_TOPICS:
            await self._client.subscribe(self.topic(template), qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    def _queue(self, topic: str) -> asyncio.Queue[dict[str, Any]]:
        return self._queues.setdefault(topic, asyncio.Queue())

    async def _read(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            self._queue(str(message.topic)).put_nowait(json.loads(payload))

    async def publish(self, topic: str, payload: bytes | dict[str, Any], qos: int = 0) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self._client.publish(self.topic(topic), body, qos=qos)

    async def up(self, channel: str, doc: dict[str, Any] | bytes, qos: int = 0) -> None:
        await self.publish("$thing/up/" + channel + "/{p}/{d}", doc, qos)

    async def down(self, channel: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self.next("$thing/down/" + channel + "/{p}/{d}", timeout)

    async def next(self, template: str, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self._queue(self.topic(template)).get(), timeout)

    async def request(
        self, channel: str, doc: dict[str, Any] | bytes, timeout: float = 5.0
    ) -> dict[str, Any]:
        await self.up(channel, doc)
        return await self.down(channel, timeout)

    async def reply_action(
        self, action: dict[str, Any], response: dict[str, Any], status: str = "ok"
    ) -> None:
        """Answer an ``action`` message (the one it received, or — as an impostor — one
        another device received) with code 0, ``status`` and the ``response`` output."""
        reply = {"method": "action_reply", "clientToken": action["clientToken"], "code": 0}
        await self.up("action", {**reply, "status": status, "response": response})


def device_for(server: Ivcloud, p: Provisioned, secret: str | None = None) -> RawDevice:
    """A RawDevice for a provisioned device of a running server."""
    assert server.endpoints is not None
    ep = server.endpoints
    return RawDevice(ep.mqtt_host, ep.mqtt_port, p.product_id, p.device_name, secret or p.secret)

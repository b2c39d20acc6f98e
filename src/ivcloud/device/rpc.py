"""Request/reply over MQTT: every ``$thing`` request carries a ``clientToken`` that the cloud
echoes in its ``*_reply``; this matches the two up and gives each call one deadline.

MQTT has no request/response of its own, and a device can have several calls in flight (a
report from a control callback while ``property_sync`` waits), so replies are routed by token
rather than by arrival order."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from typing import Any

from ivcloud.device.link import MqttLink
from ivcloud.device.types import ERR_FAIL, ERR_TIMEOUT, OK, reraise_lost_cancel


class Requests:
    """Pending calls of one device. ``link`` is attached by ``IvDevice.sys_init``."""

    def __init__(
        self,
        token_prefix: str = "iv",  # noqa: S107 - a clientToken prefix, not a secret
        default_timeout: float = 5.0,
    ) -> None:
        self.link: MqttLink | None = None
        self.timeout = default_timeout
        self.prefix = token_prefix
        # A random start keeps tokens from two runs of the same device apart in server logs.
        self._counter = itertools.count(secrets.randbelow(1 << 20))
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def new_token(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"

    async def publish(
        self, topic: str, doc: dict[str, Any], qos: int = 0, wait_s: float | None = None
    ) -> bool:
        """Send, first waiting up to ``wait_s`` (default: the command timeout) for the link:
        a call made while reconnecting should succeed once the link is back, not fail."""
        link = self.link
        wait = self.timeout if wait_s is None else wait_s
        if link is None or not await link.wait_connected(wait):
            return False
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return await link.publish(topic, payload, qos)

    async def request(
        self, topic: str, doc: dict[str, Any], key: str, timeout_s: float | None = None
    ) -> dict[str, Any] | None:
        """Publish ``doc`` and wait for the reply resolved under ``key``; ``None`` when the
        link was down for the whole deadline, the reply did not come, or the link dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout_s is None else timeout_s)
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters[key] = fut
        try:
            if not await self.publish(topic, doc, wait_s=max(0.0, deadline - loop.time())):
                return None
            reply = await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - loop.time()))
            reraise_lost_cancel()
            return reply
        except (TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not fut.cancelled():
                raise  # our caller was cancelled, not the reply future
            return None
        finally:
            self._waiters.pop(key, None)

    async def thing(
        self, topic: str, doc: dict[str, Any], timeout_s: float | None = None
    ) -> dict[str, Any] | None:
        """A ``$thing`` request: a fresh clientToken is both the message's and the key."""
        token = self.new_token()
        return await self.request(topic, {**doc, "clientToken": token}, token, timeout_s)

    def resolve(self, key: str, doc: dict[str, Any]) -> bool:
        fut = self._waiters.get(key)
        if fut is None or fut.done():
            return False
        fut.set_result(doc)
        return True

    def cancel_all(self) -> None:
        """The link dropped: replies to what was sent cannot arrive any more (clean session),
        so fail the callers now instead of at their deadlines."""
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()


def reply_code(reply: dict[str, Any] | None) -> int:
    """The ``code`` of a reply (string codes tolerated), or ``ERR_TIMEOUT`` for no reply."""
    if reply is None:
        return ERR_TIMEOUT
    code = reply.get("code", OK)
    if isinstance(code, str) and code.lstrip("-").isdigit():
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else ERR_FAIL

"""Cloud side of the ``$video`` signalling channel: requests to a device and their replies,
and requests from a device to the cloud.

A request waits for the device's reply with the same clientToken (a future keyed by device
and token, as :meth:`ControlService.action` does), so a device can only answer what was
asked of it. Device-initiated requests go to one handler per method; methods nobody
registered answer 404, so later methods (WebRTC candidates, …) only register a handler.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ivcloud.protocol import video_signal as vs
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, DeviceTimeout
from ivcloud.services.ports import Downlink

log = structlog.get_logger("ivcloud.video_signal")


@dataclass(frozen=True, slots=True)
class SignalReply:
    code: int
    status: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code == vs.OK


#: Handles a device's request; returns the reply (code, status, data).
RequestHandler = Callable[[DeviceRecord, vs.SignalMessage], Awaitable[SignalReply]]


class VideoSignalService:
    def __init__(self, downlink: Downlink, *, timeout_s: float = 5.0) -> None:
        self._downlink = downlink
        self.timeout_s = timeout_s
        self._waiting: dict[tuple[int, str], asyncio.Future[SignalReply]] = {}
        self._handlers: dict[str, RequestHandler] = {}

    def handle(self, method: str, handler: RequestHandler) -> None:
        """Register the handler of a device → cloud request method."""
        if method in self._handlers:
            raise ValueError(f"a handler for {method} is already registered")
        self._handlers[method] = handler

    async def request(
        self,
        rec: DeviceRecord,
        method: str,
        params: dict[str, Any],
        *,
        timeout_s: float | None = None,
    ) -> SignalReply:
        """Send ``method`` down ``$video/down`` and wait for the reply.

        ``DeviceOffline`` when the device is not connected (or not subscribed to
        ``$video/down``: an SDK without video support), ``DeviceTimeout`` without a reply."""
        if not self._downlink.is_connected(rec.client_id):
            raise DeviceOffline(f"device {rec.product_id}/{rec.device_name} is offline")
        token = f"video-{uuid.uuid4().hex}"
        key = (rec.id, token)
        fut: asyncio.Future[SignalReply] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            sent = await self._downlink.publish(
                rec.client_id,
                vs.video_topic("down", rec.product_id, rec.device_name),
                vs.encode_request(method, token, params),
            )
            if not sent:
                raise DeviceOffline(
                    f"device {rec.product_id}/{rec.device_name} is offline or does not "
                    "listen for video signalling"
                )
            return await asyncio.wait_for(fut, self.timeout_s if timeout_s is None else timeout_s)
        except TimeoutError:
            raise DeviceTimeout(f"no {method}_reply from the device in time") from None
        finally:
            self._waiting.pop(key, None)

    def on_reply(self, rec: DeviceRecord, msg: vs.SignalMessage) -> bool:
        """Resolve a waiting request; False for a reply nobody waits for (late, foreign)."""
        fut = self._waiting.get((rec.id, msg.client_token))
        if fut is None or fut.done():
            log.info("video_reply_unmatched", client_id=rec.client_id, method=msg.method)
            return False
        assert msg.code is not None
        fut.set_result(SignalReply(msg.code, msg.status, msg.data))
        return True

    async def on_request(self, rec: DeviceRecord, msg: vs.SignalMessage) -> SignalReply:
        handler = self._handlers.get(msg.method)
        if handler is None:
            return SignalReply(vs.NOT_FOUND, "unknown method")
        return await handler(rec, msg)

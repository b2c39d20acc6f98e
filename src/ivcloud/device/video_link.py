"""Device side of ivcloud's ``$video`` signalling channel (docs/device-protocol.md,
"ivcloud extension: video signalling").

Requests from the cloud arrive on ``$video/down/{P}/{D}``; each runs its method's handler
as a task (the MQTT reader must never wait on application code) and the handler's result
goes back on ``$video/up/{P}/{D}`` as ``<method>_reply`` with the request's clientToken.
One dispatcher keyed by method: live push now (:mod:`ivcloud.device.av.pusher`), WebRTC
and XP2P commands later, each just a handler registered with
:meth:`ivcloud.device.IvDevice.on_video`.

Outcomes: the handler's :class:`VideoResult`; 404 for a method without handler; 406 for a
malformed request or params (a handler raising :class:`SignalError` gets the same); 500 if
a handler fails unexpectedly. Malformed replies and replies nobody waits for are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ivcloud.protocol import video_signal as vs

log = structlog.get_logger("ivcloud.device.video")


@dataclass(frozen=True, slots=True)
class VideoResult:
    """What a handler answers: ``code`` 0 for success, ``status`` text, ``data`` object."""

    code: int = vs.OK
    status: str = "ok"
    data: dict[str, Any] = field(default_factory=dict)


VideoHandler = Callable[[vs.SignalMessage], Awaitable[VideoResult]]
#: Publishes a JSON document on a topic (the SDK's request helper): True when sent.
Publish = Callable[[str, dict[str, Any]], Awaitable[bool]]


class VideoLink:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        #: ``$video/up/{P}/{D}``, set by ``IvDevice.sys_init``.
        self.up_topic = ""
        self._handlers: dict[str, VideoHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on(self, method: str, handler: VideoHandler | None) -> None:
        """Register (or with ``None`` remove) the handler of a cloud → device method."""
        if handler is None:
            self._handlers.pop(method, None)
        else:
            self._handlers[method] = handler

    def submit(self, payload: bytes) -> None:
        """A ``$video/down`` message (called from the MQTT reader: never blocks)."""
        try:
            msg = vs.parse_message(payload)
        except vs.SignalError as exc:
            log.info("video_bad_message", error=str(exc))
            if exc.answerable:
                doc = vs.reply_doc(
                    exc.method or "unknown",
                    exc.client_token,
                    vs.INVALID,
                    "invalid message",
                    msg=str(exc),
                )
                self._spawn(self._send(doc))
            return
        if msg.is_reply:  # the device sends no requests yet: nothing waits for a reply
            log.info("video_unexpected_reply", method=msg.method)
            return
        self._spawn(self._run(msg))

    async def _run(self, msg: vs.SignalMessage) -> None:
        handler = self._handlers.get(msg.method)
        if handler is None:
            result = VideoResult(vs.NOT_FOUND, "unknown method")
        else:
            try:
                result = await handler(msg)
            except vs.SignalError as exc:
                result = VideoResult(vs.INVALID, f"invalid params: {exc}")
            except Exception:
                log.exception("video_handler_failed", method=msg.method)
                result = VideoResult(vs.FAILED, "handler failed")
        await self._send(
            vs.reply_doc(msg.method, msg.client_token, result.code, result.status, result.data)
        )

    async def _send(self, doc: dict[str, Any]) -> None:
        if not await self._publish(self.up_topic, doc):
            log.info("video_reply_not_sent", method=doc.get("method"))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel handlers still running (the device is shutting down)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

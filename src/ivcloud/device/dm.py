"""Cloud → device data-model traffic: ``control`` and ``action`` messages, the callbacks that
handle them, and the ``control_reply``/``action_reply`` answers.

Callbacks run in one worker task, in arrival order (as the C SDK calls them from one thread),
and never in the MQTT reader: a callback that reports a property awaits a ``report_reply``
that only the reader can deliver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ivcloud.device.types import ERR_FAIL, OK, ActionCallback, ControlCallback, maybe_await
from ivcloud.protocol.errors import ValidationFailed
from ivcloud.protocol.thingmodel import ThingModel

log = structlog.get_logger("ivcloud.device")

Publish = Callable[[str, dict[str, Any]], Awaitable[bool]]


class DataModel:
    """The ``iv_dm`` side of a device: thing model plus control/action callbacks."""

    def __init__(self, publish: Publish) -> None:
        self.model: ThingModel | None = None
        self.on_control: ControlCallback | None = None
        self.on_action: ActionCallback | None = None
        self.sync_on_connect = True
        self._publish = publish
        #: ``$thing/up/property/{P}/{D}`` and ``$thing/up/action/{P}/{D}``, set by sys_init.
        self.property_topic = ""
        self.action_topic = ""
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="iv-dm")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def submit(self, doc: dict[str, Any]) -> None:
        """Queue a ``control`` or ``action`` message (called by the reader; never blocks)."""
        self._inbox.put_nowait(doc)

    async def apply_control(self, params: dict[str, Any]) -> int:
        """Validate against the model (only ``rw`` properties may be controlled) and call
        ``on_control``; its code, or -1 when there is none, it fails or the params are bad."""
        if self.on_control is None:
            return ERR_FAIL
        if self.model is not None:
            try:
                params = self.model.validate_control(params)
            except ValidationFailed as exc:
                log.info("device_control_invalid", error=str(exc))
                return ERR_FAIL
        try:
            return int(await maybe_await(self.on_control(params)))
        except Exception:
            log.exception("device_control_callback_failed")
            return ERR_FAIL

    async def _work(self) -> None:
        while True:
            doc = await self._inbox.get()
            try:
                if doc.get("method") == "control":
                    await self._control(doc)
                else:
                    await self._action(doc)
            except Exception:
                log.exception("device_callback_failed", method=doc.get("method"))

    async def _control(self, doc: dict[str, Any]) -> None:
        params = doc.get("params")
        code = await self.apply_control(params if isinstance(params, dict) else {})
        reply = {
            "method": "control_reply",
            "clientToken": doc.get("clientToken", ""),
            "code": code,
            "status": "success" if code == OK else "fail",
        }
        await self._publish(self.property_topic, reply)

    async def _action(self, doc: dict[str, Any]) -> None:
        action_id = str(doc.get("actionId", ""))
        params = doc.get("params")
        params = params if isinstance(params, dict) else {}
        code: int = ERR_FAIL
        response: dict[str, Any] = {}
        try:
            if self.model is not None:
                params = self.model.validate_action_input(action_id, params)
            if self.on_action is not None:
                code, response = await maybe_await(self.on_action(action_id, params))
        except ValidationFailed as exc:
            log.info("device_action_invalid", action=action_id, error=str(exc))
        except Exception:
            log.exception("device_action_callback_failed", action=action_id)
        reply = {
            "method": "action_reply",
            "clientToken": doc.get("clientToken", ""),
            "code": code,
            "status": "success" if code == OK else "fail",
            "response": response,
        }
        await self._publish(self.action_topic, reply)

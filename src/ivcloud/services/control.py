"""Cloud → device: property control and actions.

Every control is stored as pending until the device acknowledges it (``control_reply`` with
code 0) or clears it (``clear_control``).  A device that was offline gets the merged pending
params in ``get_status_reply.data.control`` — the offline-queue semantics of the spec.
Actions are synchronous: the caller waits for the ``action_reply`` with the same clientToken."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import ControlReplied, ControlRequested
from ivcloud.protocol import thing
from ivcloud.protocol.errors import ValidationFailed
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, DeviceTimeout, InvalidInput, Unavailable
from ivcloud.services.ports import Bus, Clock, Downlink
from ivcloud.services.products import ProductService
from ivcloud.services.writer import BatchWriter, WriteItem
from ivcloud.store.schema import PendingControl

log = structlog.get_logger("ivcloud.control")


@dataclass(frozen=True, slots=True)
class ControlResult:
    client_token: str
    delivered: bool
    code: int | None = None
    status: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "ClientToken": self.client_token,
            "Delivered": self.delivered,
            "Code": self.code,
            "Status": self.status,
        }


@dataclass(frozen=True, slots=True)
class ActionResult:
    client_token: str
    code: int
    status: str
    response: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {
            "ClientToken": self.client_token,
            "Code": self.code,
            "Status": self.status,
            "Response": self.response,
        }


def new_client_token() -> str:
    return f"clientToken-{uuid.uuid4()}"


class ControlService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        products: ProductService,
        downlink: Downlink,
        bus: Bus,
        clock: Clock,
        writer: BatchWriter,
        action_timeout_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self._products = products
        self._downlink = downlink
        self._bus = bus
        self._clock = clock
        self._action_timeout = action_timeout_s
        self._waiting: dict[tuple[int, str], asyncio.Future[tuple[int, str, dict[str, Any]]]] = {}

    async def control(
        self, rec: DeviceRecord, params: object, *, wait_s: float = 0.0
    ) -> ControlResult:
        """Validate against the model (only ``rw`` properties), store as pending, send if
        online; with ``wait_s`` > 0 also wait that long for the device's control_reply."""
        model = await self._products.require_model(rec.product_id)
        try:
            clean = model.validate_control(params)
        except ValidationFailed as exc:
            raise InvalidInput(str(exc)) from None
        token = new_client_token()
        now = self._clock.now_ms()
        row = {"device_id": rec.id, "client_token": token, "params": clean, "created_ms": now}
        if not await self._writer.commit(WriteItem(rec.id, now, controls_added=[row])):
            raise Unavailable("the control could not be stored; try again")
        self._bus.publish(ControlRequested(rec.product_id, rec.device_name, token, clean))
        fut = self._expect(rec, token) if wait_s > 0 else None
        delivered = await self._downlink.publish(
            rec.client_id,
            thing.thing_topic("down", "property", rec.product_id, rec.device_name),
            thing.control_message(token, clean),
        )
        if fut is None or not delivered:
            self._waiting.pop((rec.id, token), None)
            return ControlResult(token, delivered)
        try:
            code, status, _ = await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            return ControlResult(token, True)
        finally:
            self._waiting.pop((rec.id, token), None)
        return ControlResult(token, True, code, status)

    async def on_control_reply(self, rec: DeviceRecord, token: str, code: int, status: str) -> None:
        if code == 0:
            now = self._clock.now_ms()
            await self._writer.commit(WriteItem(rec.id, now, controls_done=[(rec.id, token)]))
        self._resolve(rec, token, code, status, {})
        self._bus.publish(ControlReplied(rec.product_id, rec.device_name, token, code))

    async def pending(self, rec: DeviceRecord) -> dict[str, Any]:
        """Merged params of un-acknowledged controls, oldest first so newer values win."""
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(PendingControl.params)
                    .where(PendingControl.device_id == rec.id)
                    .order_by(PendingControl.id)
                )
            ).all()
        merged: dict[str, Any] = {}
        for params in rows:
            merged.update(params)
        return merged

    async def clear(self, rec: DeviceRecord) -> int:
        async with self._sessions.begin() as s:
            result = await s.execute(
                delete(PendingControl).where(PendingControl.device_id == rec.id)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def action(
        self,
        rec: DeviceRecord,
        action_id: str,
        params: object,
        *,
        timeout_s: float | None = None,
        client_token: str | None = None,
    ) -> ActionResult:
        """``client_token`` lets a caller that answers before the device does (an async
        action) hand out the token the device will echo."""
        model = await self._products.require_model(rec.product_id)
        try:
            clean = model.validate_action_input(action_id, params)
        except ValidationFailed as exc:
            raise InvalidInput(str(exc)) from None
        if not self._downlink.is_connected(rec.client_id):
            raise DeviceOffline(f"device {rec.product_id}/{rec.device_name} is offline")
        token = client_token or new_client_token()
        fut = self._expect(rec, token)
        try:
            sent = await self._downlink.publish(
                rec.client_id,
                thing.thing_topic("down", "action", rec.product_id, rec.device_name),
                thing.action_message(token, action_id, self._clock.now_ms() // 1000, clean),
            )
            if not sent:
                raise DeviceOffline(
                    f"device {rec.product_id}/{rec.device_name} is offline or not subscribed"
                )
            code, status, response = await asyncio.wait_for(
                fut, timeout_s if timeout_s is not None else self._action_timeout
            )
        except TimeoutError:
            raise DeviceTimeout(f"no action_reply for {action_id} in time") from None
        finally:
            self._waiting.pop((rec.id, token), None)
        if code == 0:
            try:
                response = model.validate_action_output(action_id, response)
            except ValidationFailed as exc:
                log.warning("action_output_invalid", action=action_id, error=str(exc))
        return ActionResult(token, code, status, response)

    def on_action_reply(
        self, rec: DeviceRecord, token: str, code: int, status: str, response: dict[str, Any]
    ) -> bool:
        """Resolve a waiting action; a device can only answer its own actions."""
        return self._resolve(rec, token, code, status, response)

    def _expect(
        self, rec: DeviceRecord, token: str
    ) -> asyncio.Future[tuple[int, str, dict[str, Any]]]:
        fut: asyncio.Future[tuple[int, str, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[(rec.id, token)] = fut
        return fut

    def _resolve(
        self, rec: DeviceRecord, token: str, code: int, status: str, response: dict[str, Any]
    ) -> bool:
        fut = self._waiting.get((rec.id, token))
        if fut is None or fut.done():
            return False
        fut.set_result((code, status, response))
        return True

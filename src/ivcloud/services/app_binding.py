"""App side of Wi-Fi provisioning with a bind token (spec app-api §2.2, §5).

1. ``AppCreateDeviceBindToken`` → :meth:`AppBindingService.create_token`: 32 hex characters,
   owned by the calling user, valid for :data:`TOKEN_TTL_MS` (10 minutes — the real TTL is
   unconfirmed; 10 minutes covers the app's 20 × 2 s polling plus the user typing the Wi-Fi
   password, and keeps a leaked token short-lived).
2. The device reports it over MQTT; :class:`ivcloud.services.binding.BindingService` moves it
   to state 2 with the device's ProductId/DeviceName.
3. ``AppGetDeviceBindTokenState`` → :meth:`state` (the app polls).
4. ``AppTokenBindDeviceFamily`` → :meth:`bind`: only the owner, only the device that claimed
   the token, only before expiry, only once; then ``bind_device`` goes down to the device.

The token is consumed (state 3) *before* the family binding with a conditional UPDATE and
restored if the binding fails, so two concurrent calls cannot both bind with one token."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BusEvent, DeviceBindingChanged
from ivcloud.protocol import thing
from ivcloud.services.access import AccessService
from ivcloud.services.binding import STATE_CREATED, STATE_REPORTED, STATE_USED
from ivcloud.services.control import new_client_token
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Forbidden
from ivcloud.services.families import FamilyService
from ivcloud.services.family_types import ProductNotLinked, TokenExpired, TokenNotExist
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.users import UserInfo
from ivcloud.store.schema_app import AppBindToken

TOKEN_TTL_MS = 10 * 60 * 1000
#: Expired tokens are deleted this long after expiry (the app may still poll a little).
PURGE_AFTER_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class BindTokenState:
    state: int
    product_id: str
    device_name: str
    expires_ms: int

    def to_api(self) -> dict[str, Any]:
        return {"State": self.state, "ProductId": self.product_id, "DeviceName": self.device_name}


class AppBindingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        devices: DeviceService,
        access: AccessService,
        families: FamilyService,
        downlink: Downlink,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._devices = devices
        self._tasks: set[asyncio.Task[None]] = set()
        self._access = access
        self._families = families
        self._downlink = downlink
        self._clock = clock

    async def create_token(self, user: UserInfo) -> tuple[str, int]:
        """A new token and its expiry (ms). Also purges the user's long-expired tokens so
        the table does not grow with abandoned provisioning attempts."""
        now = self._clock.now_ms()
        token = secrets.token_hex(16)
        async with self._sessions.begin() as s:
            await s.execute(
                delete(AppBindToken).where(
                    AppBindToken.user_id == user.user_id,
                    AppBindToken.expires_ms < now - PURGE_AFTER_MS,
                )
            )
            s.add(
                AppBindToken(
                    token=token,
                    user_id=user.user_id,
                    state=STATE_CREATED,
                    created_ms=now,
                    expires_ms=now + TOKEN_TTL_MS,
                )
            )
        return token, now + TOKEN_TTL_MS

    async def _own(self, s: AsyncSession, user: UserInfo, token: str) -> AppBindToken:
        row = await s.get(AppBindToken, token)
        if row is None:
            raise TokenNotExist("the bind token does not exist")
        if row.user_id != user.user_id:
            raise Forbidden("the bind token belongs to another user")
        return row

    async def state(self, user: UserInfo, token: str) -> BindTokenState:
        """The token's state for its owner. An expired token that no device reported is
        ``TokenIsExpire`` (the app stops polling); once reported or used the state stays
        readable, so a late poll still learns which device it was."""
        async with self._sessions() as s:
            row = await self._own(s, user, token)
        if row.state == STATE_CREATED and row.expires_ms <= self._clock.now_ms():
            raise TokenExpired("the bind token has expired")
        return BindTokenState(
            row.state, row.product_id or "", row.device_name or "", row.expires_ms
        )

    async def bind(
        self,
        user: UserInfo,
        token: str,
        product_id: str,
        device_name: str,
        family_id: str,
        room_id: str,
    ) -> DeviceRecord:
        """``AppTokenBindDeviceFamily``: consume the token, bind, notify the device."""
        now = self._clock.now_ms()
        async with self._sessions() as s:
            row = await self._own(s, user, token)
        if row.expires_ms <= now:
            raise TokenExpired("the bind token has expired")
        if row.state == STATE_USED:
            raise TokenExpired("the bind token has already been used")
        if (
            row.state != STATE_REPORTED
            or row.product_id != product_id
            or row.device_name != device_name
        ):
            raise Forbidden("this device has not reported the bind token")
        if not await self._access.product_linked(user, product_id):
            raise ProductNotLinked("the device's product is not linked to this app")
        rec = await self._devices.find(product_id, device_name)
        if rec is None:  # deleted in the console since it reported the token
            raise Forbidden("no permission for this device")
        await self._access.require_family(user, family_id, admin=False)
        if not await self._consume(token, STATE_REPORTED, STATE_USED, now):
            raise TokenExpired("the bind token has already been used")
        try:
            await self._families.bind_device(user, family_id, room_id, rec)
        except Exception:
            await self._consume(token, STATE_USED, STATE_REPORTED, now)
            raise
        await self.notify_bound(rec, family_id)
        return rec

    async def notify_bound(self, rec: DeviceRecord, family_id: str) -> bool:
        """The legacy ``bind_device`` notice after a bind (token or device signature)."""
        return await self._notify(
            rec,
            "bind_device",
            {
                "ProductId": rec.product_id,
                "DeviceName": rec.device_name,
                "FamilyId": family_id,
                "Timestamp": self._clock.now_ms() // 1000,
            },
        )

    async def _consume(self, token: str, from_state: int, to_state: int, now: int) -> bool:
        async with self._sessions.begin() as s:
            result = await s.execute(
                update(AppBindToken)
                .where(AppBindToken.token == token, AppBindToken.state == from_state)
                .values(state=to_state)
            )
        assert isinstance(result, CursorResult)
        return bool(result.rowcount)

    def on_binding_changed(self, event: BusEvent) -> None:
        """Bus listener: every removal from a family (app action, family deleted) sends
        ``unbind_device`` down, whichever path caused it."""
        if not isinstance(event, DeviceBindingChanged) or event.bound:
            return
        task = asyncio.get_running_loop().create_task(
            self._notify_unbound_by_name(event.product_id, event.device_name)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_unbound_by_name(self, product_id: str, device_name: str) -> None:
        rec = await self._devices.find(product_id, device_name)
        if rec is not None:
            await self.notify_unbound(rec)

    async def notify_unbound(self, rec: DeviceRecord) -> bool:
        """Tell the device it was removed from its family (``unbind_device``; esp-qcloud
        treats it as "reset binding"). Call after ``FamilyService.unbind_device``. Returns
        whether the device was online to receive it (it is not queued)."""
        return await self._notify(
            rec,
            "unbind_device",
            {
                "ProductId": rec.product_id,
                "DeviceName": rec.device_name,
                "Timestamp": self._clock.now_ms() // 1000,
            },
        )

    async def _notify(self, rec: DeviceRecord, method: str, params: dict[str, Any]) -> bool:
        """A ``$thing/down/service`` notice. Best effort: a device that is offline misses
        the legacy notice, which the spec says devices may ignore anyway."""
        body = thing.encode({"method": method, "clientToken": new_client_token(), "params": params})
        topic = thing.thing_topic("down", "service", rec.product_id, rec.device_name)
        return await self._downlink.publish(rec.client_id, topic, body, qos=1)

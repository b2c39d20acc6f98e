"""Bind tokens reported by devices (``app_bind_token``).

The app side (a later issue) issues tokens and consumes them with
``AppTokenBindDeviceFamily``; for now a device's token is validated, stored and
acknowledged, and announced on the bus."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BindTokenReceived
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import InvalidInput
from ivcloud.services.ports import Bus, Clock
from ivcloud.store.schema import BindToken

TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,128}$")


class BindingService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus, clock: Clock) -> None:
        self._sessions = sessions
        self._bus = bus
        self._clock = clock

    async def device_reported_token(self, rec: DeviceRecord, token: object) -> None:
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise InvalidInput("token must be 1-128 printable ASCII characters")
        async with self._sessions.begin() as s:
            s.add(BindToken(device_id=rec.id, token=token, received_ms=self._clock.now_ms()))
        self._bus.publish(BindTokenReceived(rec.product_id, rec.device_name, token))

    async def tokens(self, rec: DeviceRecord) -> list[str]:
        async with self._sessions() as s:
            rows = await s.scalars(
                select(BindToken.token)
                .where(BindToken.device_id == rec.id)
                .order_by(BindToken.id.desc())
            )
            return list(rows.all())

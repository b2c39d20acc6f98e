"""Bind tokens reported by devices (``app_bind_token``, device-protocol §3.4 / §8.2).

Two kinds of token reach the cloud:

* **App bind tokens** issued by ``AppCreateDeviceBindToken`` (:mod:`ivcloud.services.app_binding`,
  table ``app_bind_tokens``). The first device to report a live token claims it: state 1 → 2
  with that device's ProductId/DeviceName, which the app then reads with
  ``AppGetDeviceBindTokenState``. The same device repeating the report (the C SDK sends it up
  to 3× when a reply is lost) is accepted again. A token that is expired, or already claimed
  or used by *another* device, is refused with :class:`BindTokenRefused` — a device on the
  LAN that sniffed the token must not be able to take the place of the one being set up.
* **Unknown tokens** (not issued by this server: the console QR generator, the demo, devices
  provisioned by other tooling) are accepted exactly as before this change, so existing
  provisioning keeps working; they bind nothing on the app side.

Every accepted report is also stored per device (console ``…/bind-tokens``) and announced as
``BindTokenReceived`` on the bus."""

from __future__ import annotations

import re

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BindTokenReceived
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import InvalidInput, ServiceError
from ivcloud.services.ports import Bus, Clock
from ivcloud.store.schema import BindToken
from ivcloud.store.schema_app import AppBindToken

TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,128}$")

#: ``app_bind_tokens.state`` values (spec app-api §2.2: 1 created, 2 reported by a device).
STATE_CREATED, STATE_REPORTED, STATE_USED = 1, 2, 3


class BindTokenRefused(ServiceError):
    """A known app bind token that this device may not claim (expired, or another device's).
    The gateway answers ``app_bind_token_reply`` with a non-zero code."""

    code = "InvalidParameterValue.TokenIsExpire"


class BindingService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus, clock: Clock) -> None:
        self._sessions = sessions
        self._bus = bus
        self._clock = clock

    async def device_reported_token(self, rec: DeviceRecord, token: object) -> None:
        """Validate, claim (app bind tokens) and store a token a device reported.

        Raises :class:`InvalidInput` for a malformed token, :class:`BindTokenRefused` for an
        app bind token this device may not claim; returns normally when the device should
        get reply code 0."""
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise InvalidInput("token must be 1-128 printable ASCII characters")
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            await self._claim(s, rec, token, now)
            s.add(BindToken(device_id=rec.id, token=token, received_ms=now))
        self._bus.publish(BindTokenReceived(rec.product_id, rec.device_name, token))

    async def _claim(self, s: AsyncSession, rec: DeviceRecord, token: str, now: int) -> None:
        """One conditional UPDATE, so two devices racing for the same token cannot both win:
        a live created token is taken; a token this device already holds is left as is."""
        mine = and_(
            AppBindToken.product_id == rec.product_id,
            AppBindToken.device_name == rec.device_name,
        )
        result = await s.execute(
            update(AppBindToken)
            .where(
                AppBindToken.token == token,
                or_(
                    and_(AppBindToken.state == STATE_CREATED, AppBindToken.expires_ms > now),
                    and_(AppBindToken.state != STATE_CREATED, mine),
                ),
            )
            .values(
                # a token already used (3) stays used; otherwise it becomes reported (2)
                state=case((AppBindToken.state == STATE_USED, STATE_USED), else_=STATE_REPORTED),
                product_id=rec.product_id,
                device_name=rec.device_name,
            )
        )
        assert isinstance(result, CursorResult)
        if result.rowcount:
            return
        known = await s.scalar(select(AppBindToken.token).where(AppBindToken.token == token))
        if known is not None:
            raise BindTokenRefused("bind token expired or claimed by another device")

    async def tokens(self, rec: DeviceRecord) -> list[str]:
        async with self._sessions() as s:
            rows = await s.scalars(
                select(BindToken.token)
                .where(BindToken.device_id == rec.id)
                .order_by(BindToken.id.desc())
            )
            return list(rows.all())

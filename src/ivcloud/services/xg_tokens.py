"""XG (Tencent Mobile Push / TPNS) device tokens of a user's phones
(``AppBindXgToken`` / ``AppUnBindXgToken``).

ivcloud sends no XG pushes itself: the tokens are kept for a push notifier of the maker's
(:meth:`XgTokenService.tokens` is its read side).  A user may be logged in on several
phones, so several tokens are kept; binding the same token again is a no-op apart from
refreshing it, and past :data:`MAX_PER_USER` the least recently bound token is dropped (an
app reinstalled many times leaves dead tokens behind; the newest phone must still work)."""

from __future__ import annotations

from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.ports import Clock
from ivcloud.store.schema_user_extras import XgToken

MAX_PER_USER: Final[int] = 10


class XgTokenService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def bind(self, user_id: str, token: str, platform: str = "") -> None:
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            row = await s.get(XgToken, (user_id, token))
            if row is None:
                s.add(XgToken(user_id=user_id, token=token, platform=platform, created_ms=now))
            else:
                row.created_ms = now
                row.platform = platform or row.platform
            await s.flush()
            stale = (
                await s.scalars(
                    select(XgToken.token)
                    .where(XgToken.user_id == user_id)
                    .order_by(XgToken.created_ms.desc(), XgToken.token)
                    .offset(MAX_PER_USER)
                )
            ).all()
            if stale:
                await s.execute(
                    delete(XgToken).where(XgToken.user_id == user_id, XgToken.token.in_(stale))
                )

    async def unbind(self, user_id: str, token: str) -> bool:
        """Remove one of the user's tokens; unbinding a token not bound (or another
        user's) changes nothing.  Returns whether a token was removed."""
        async with self._sessions.begin() as s:
            row = await s.get(XgToken, (user_id, token))
            if row is None:
                return False
            await s.delete(row)
        return True

    async def tokens(self, user_id: str) -> list[tuple[str, str]]:
        """``(token, platform)`` of the user's phones, newest first."""
        async with self._sessions() as s:
            rows = await s.execute(
                select(XgToken.token, XgToken.platform)
                .where(XgToken.user_id == user_id)
                .order_by(XgToken.created_ms.desc(), XgToken.token)
            )
            return [(t, p) for t, p in rows.all()]

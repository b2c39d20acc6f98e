"""User feedback (``AppUserFeedBack``), kept for the maker and listed through the console.

Bounded: each field has a maximum size and a user may send at most :data:`DAILY_LIMIT`
messages a day (a client stuck in a retry loop, or a script holding a token, cannot fill
the database).  Feedback outlives the account it came from: cancelling an account clears
``UserID`` (database ``SET NULL``) but keeps the message, which is the maker's support
record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.errors import InvalidInput, ServiceError
from ivcloud.services.ports import Clock
from ivcloud.store.schema_user_extras import UserFeedback

TYPE_MAX: Final[int] = 32
DESC_MAX: Final[int] = 2000
CONTACT_MAX: Final[int] = 128
DAILY_LIMIT: Final[int] = 20
_DAY_MS: Final[int] = 24 * 3600 * 1000


class FeedbackLimit(ServiceError):
    code = "LimitExceeded"


@dataclass(frozen=True, slots=True)
class Feedback:
    id: int
    app_id: str
    user_id: str | None
    type: str
    desc: str
    contact: str
    log_urls: tuple[str, ...]
    created_ms: int

    def to_api(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "AppId": self.app_id,
            "UserID": self.user_id or "",
            "Type": self.type,
            "Desc": self.desc,
            "Contact": self.contact,
            "LogUrl": list(self.log_urls),
            "CreateTime": self.created_ms // 1000,
        }


def _feedback(row: UserFeedback) -> Feedback:
    urls = tuple(u for u in row.log_url.split(",") if u)
    return Feedback(
        row.id, row.app_id, row.user_id, row.type, row.content, row.contact, urls, row.created_ms
    )


class FeedbackService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def submit(
        self,
        app_id: str,
        user_id: str,
        *,
        type: str,
        desc: str,
        contact: str,
        log_urls: list[str],
    ) -> int:
        """Store one message; returns its id."""
        desc = desc.strip()
        if not 1 <= len(desc) <= DESC_MAX:
            raise InvalidInput(f"Desc must be 1-{DESC_MAX} characters")
        if len(type) > TYPE_MAX or len(contact) > CONTACT_MAX:
            raise InvalidInput("Type or Contact is too long")
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            recent = await s.scalar(
                select(func.count())
                .select_from(UserFeedback)
                .where(UserFeedback.user_id == user_id, UserFeedback.created_ms > now - _DAY_MS)
            )
            if int(recent or 0) >= DAILY_LIMIT:
                raise FeedbackLimit(f"at most {DAILY_LIMIT} feedback messages a day")
            row = UserFeedback(
                app_id=app_id,
                user_id=user_id,
                type=type,
                content=desc,
                contact=contact,
                log_url=",".join(log_urls),
                created_ms=now,
            )
            s.add(row)
            await s.flush()
            return row.id

    async def list(self, app_id: str | None, offset: int, limit: int) -> tuple[int, list[Feedback]]:
        """Newest first; ``app_id`` None = every app."""
        where = [] if app_id is None else [UserFeedback.app_id == app_id]
        async with self._sessions() as s:
            total = await s.scalar(select(func.count()).select_from(UserFeedback).where(*where))
            rows = (
                await s.scalars(
                    select(UserFeedback)
                    .where(*where)
                    .order_by(UserFeedback.created_ms.desc(), UserFeedback.id.desc())
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        return int(total or 0), [_feedback(r) for r in rows]

"""The message centre (``AppGetMessages`` / ``AppDeleteMessage``; docs/app-api.md
"Message centre"): each user's inbox of device alerts, invitations and maker notices.

Where messages come from — each source is an existing use-case, not a re-implementation:

* **invitations** — :meth:`add_invitation` is the ``on_invite`` hook of
  :class:`~ivcloud.services.sharing.SharingService` (``AppSendShareDeviceInvite``) and
  :class:`~ivcloud.services.families.FamilyService` (``AppSendShareFamilyInvite``).  It
  writes in the caller's transaction, so an invitation exists exactly when its message does.
* **device events** — :class:`~ivcloud.services.message_feed.DeviceEventFeed` (``alert`` /
  ``fault`` events from the bus).
* **maker notices** — :meth:`notify_app` (console ``POST /apps/{app}/messages``).

A user reads and deletes only their own messages: every query is scoped by ``user_id``,
and a ``MsgID`` of someone else is answered exactly like one that does not exist.
Retention: messages older than ``retention_days`` are neither listed nor kept, and each
user keeps at most ``max_per_user`` (the oldest go first) — enforced by :meth:`cleanup`,
which runs every ``interval_s``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog
from sqlalchemy import and_, delete, func, insert, literal, or_, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.protocol import app_messages as wire
from ivcloud.protocol.appapi_errors import MSG_ID_INVALID
from ivcloud.services.apps import AppService
from ivcloud.services.errors import InvalidInput
from ivcloud.services.ports import Clock
from ivcloud.services.sweeps import PeriodicSweep
from ivcloud.services.users import UserInfo
from ivcloud.store.schema import Device
from ivcloud.store.schema_app import Family, FamilyDevice, User
from ivcloud.store.schema_messages import Message

log = structlog.get_logger("ivcloud.messages")

DAY_MS: Final[int] = 24 * 3600 * 1000
TITLE_MAX: Final[int] = 128
CONTENT_MAX: Final[int] = 1024


class MsgIdInvalid(InvalidInput):
    """An unknown, malformed or another user's ``MsgID`` (one code: ids cannot be probed)."""

    code = MSG_ID_INVALID


@dataclass(frozen=True, slots=True)
class Invitation:
    """An in-app invitation just issued (its ``ShareToken`` row is in the same session)."""

    kind: Literal["family", "device"]
    sender: UserInfo
    to_user_id: str
    family_id: str
    token: str
    device_id: int | None = None


#: ``SharingService.on_invite`` / ``FamilyService.on_invite``: add the message in ``s``.
InviteHook = Callable[[AsyncSession, Invitation], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MessageLimits:
    retention_days: int = 30
    max_per_user: int = 500
    interval_s: float = 3600.0


def _view(m: Message) -> wire.MessageView:
    return wire.MessageView(
        msg_id=m.id,
        user_id=m.user_id,
        category=m.category,
        msg_type=m.msg_type,
        title=m.title,
        content=m.content,
        ts_ms=m.ts_ms,
        from_user_id=m.from_user_id,
        product_id=m.product_id,
        device_name=m.device_name,
        device_alias=m.device_alias,
        family_id=m.family_id,
        family_name=m.family_name,
        share_token=m.share_token,
    )


def message_row(**values: Any) -> dict[str, Any]:
    """A complete ``app_messages`` row: the optional columns default to empty, so bulk
    inserts (whose rows must all have the same keys) never miss one."""
    row: dict[str, Any] = {
        "from_user_id": "",
        "product_id": "",
        "device_name": "",
        "device_alias": "",
        "family_id": "",
        "family_name": "",
        "share_token": None,
    }
    row.update(values)
    return row


class MessageService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        apps: AppService,
        clock: Clock,
        limits: MessageLimits,
    ) -> None:
        self._sessions = sessions
        self._apps = apps
        self._clock = clock
        self.limits = limits
        self._sweep = PeriodicSweep("message-cleanup", self.cleanup, lambda: self.limits.interval_s)

    def _oldest_kept_ms(self) -> int:
        return self._clock.now_ms() - self.limits.retention_days * DAY_MS

    # --- reading and deleting (the App API) ------------------------------------------------

    async def page(
        self, user: UserInfo, query: wire.MessageQuery
    ) -> tuple[bool, list[dict[str, Any]]]:
        """``(Listover, Msgs)``: the user's messages, newest first, strictly after the
        cursor (or from ``offset`` on a first page)."""
        where = [Message.user_id == user.user_id, Message.ts_ms >= self._oldest_kept_ms()]
        if query.category is not None:
            where.append(Message.category == query.category)
        if query.cursor is not None:
            ts, msg_id = query.cursor
            where.append(or_(Message.ts_ms < ts, and_(Message.ts_ms == ts, Message.id < msg_id)))
        stmt = (
            select(Message)
            .where(*where)
            .order_by(Message.ts_ms.desc(), Message.id.desc())
            .offset(query.offset)
            .limit(query.limit + 1)
        )
        async with self._sessions() as s:
            rows = list((await s.scalars(stmt)).all())
        listover = len(rows) <= query.limit
        return listover, [wire.render(_view(m)) for m in rows[: query.limit]]

    async def delete(self, user: UserInfo, msg_id: int) -> None:
        async with self._sessions.begin() as s:
            result = await s.execute(
                delete(Message).where(Message.id == msg_id, Message.user_id == user.user_id)
            )
        assert isinstance(result, CursorResult)
        if not result.rowcount:
            raise MsgIdInvalid("invalid MsgID")

    # --- sources ---------------------------------------------------------------------------

    async def add_invitation(self, s: AsyncSession, inv: Invitation) -> None:
        """The invitee's message for an in-app invitation, in the inviter's transaction."""
        sender = await s.get(User, inv.sender.user_id)
        family = await s.get(Family, inv.family_id)
        nick = sender.nick_name if sender is not None else ""
        family_name = family.name if family is not None else ""
        common = {
            "user_id": inv.to_user_id,
            "ts_ms": self._clock.now_ms(),
            "from_user_id": inv.sender.user_id,
            "family_id": inv.family_id,
            "family_name": family_name,
            "share_token": inv.token,
        }
        if inv.kind == "family":
            row = message_row(
                category=wire.CATEGORY_FAMILY,
                msg_type=wire.TYPE_FAMILY_INVITE,
                title="Family invitation",
                content=f'"{nick}" invites you to join the family "{family_name}".',
                **common,
            )
        else:
            device = await s.get(Device, inv.device_id)
            placed = await s.get(FamilyDevice, inv.device_id)
            assert device is not None
            alias = placed.alias_name if placed is not None else ""
            row = message_row(
                category=wire.CATEGORY_NOTIFY,
                msg_type=wire.TYPE_DEVICE_SHARE_INVITE,
                title="Device share invitation",
                content=f'"{nick}" shares the device "{alias or device.device_name}" with you.',
                product_id=device.product_id,
                device_name=device.device_name,
                device_alias=alias,
                **common,
            )
        await s.execute(insert(Message), [row])
        log.info("message_invitation", kind=inv.kind, to_user=inv.to_user_id)

    async def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Insert complete rows (:func:`message_row`) in one transaction."""
        if rows:
            async with self._sessions.begin() as s:
                await s.execute(insert(Message), rows)

    async def notify_app(self, app_id: str, title: str, content: str) -> int:
        """A maker notice (Category 3) to every user of the app, in one ``INSERT … SELECT``;
        returns how many users it reached.  Unknown app → ``NotFound``."""
        await self._apps.get(app_id)
        title, content = title.strip(), content.strip()
        if not 1 <= len(title) <= TITLE_MAX or not 1 <= len(content) <= CONTENT_MAX:
            raise InvalidInput(f"Title 1-{TITLE_MAX}, Content 1-{CONTENT_MAX} characters")
        fixed = message_row(
            category=wire.CATEGORY_NOTIFY,
            msg_type=wire.TYPE_NOTICE,
            title=title,
            content=content,
            ts_ms=self._clock.now_ms(),
        )
        columns = ["user_id", *fixed]
        source = select(
            User.user_id, *(literal(v, Message.__table__.c[k].type) for k, v in fixed.items())
        ).where(User.app_id == app_id)
        async with self._sessions.begin() as s:
            result = await s.execute(insert(Message).from_select(columns, source))
        assert isinstance(result, CursorResult)
        reached = max(result.rowcount, 0)
        log.info("message_notice", app_id=app_id, users=reached)
        return reached

    # --- retention ---------------------------------------------------------------------------

    async def cleanup(self) -> int:
        """Remove messages past the retention period and each user's surplus over
        ``max_per_user`` (oldest first); returns how many were removed."""
        async with self._sessions.begin() as s:
            aged = await s.execute(delete(Message).where(Message.ts_ms < self._oldest_kept_ms()))
            rank = (
                func.row_number()
                .over(
                    partition_by=Message.user_id,
                    order_by=(Message.ts_ms.desc(), Message.id.desc()),
                )
                .label("rank")
            )
            ranked = select(Message.id, rank).subquery()
            surplus = select(ranked.c.id).where(ranked.c.rank > self.limits.max_per_user)
            capped = await s.execute(delete(Message).where(Message.id.in_(surplus)))
        assert isinstance(aged, CursorResult) and isinstance(capped, CursorResult)
        removed = aged.rowcount + capped.rowcount
        if removed:
            log.info("message_cleanup", aged=aged.rowcount, capped=capped.rowcount)
        return removed

    def start(self) -> None:
        """Run :meth:`cleanup` now and then every ``interval_s``."""
        self._sweep.start()

    async def stop(self) -> None:
        await self._sweep.stop()

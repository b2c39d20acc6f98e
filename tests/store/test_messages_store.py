"""The message centre's table on SQLite and PostgreSQL: migration 0006 creates it with its
listing index, and retention (age + per-user cap, a window function) works on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivcloud.bus.memory import InMemoryBus
from ivcloud.protocol import app_messages as wire
from ivcloud.services.apps import AppService
from ivcloud.services.messages import DAY_MS, MessageLimits, MessageService, message_row
from ivcloud.services.ports import SystemClock
from ivcloud.services.products import ProductService
from ivcloud.services.users import UserService
from ivcloud.store.db import create_engine, migrate, session_factory
from ivcloud.store.schema_messages import Message


@dataclass
class Inbox:
    engine: AsyncEngine
    messages: MessageService
    users: list[str]
    app_id: str


@pytest.fixture
async def inbox(db_url: str) -> AsyncIterator[Inbox]:
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    clock = SystemClock()
    apps = AppService(
        sessions, ProductService(sessions, clock, InMemoryBus()), clock, InMemoryBus()
    )
    app = await apps.create("inbox")
    users = UserService(sessions, clock)
    ids = [(await users.create(app.app_id, nick_name=f"u{i}")).user_id for i in range(3)]
    limits = MessageLimits(retention_days=30, max_per_user=10)
    try:
        yield Inbox(engine, MessageService(sessions, apps, clock, limits), ids, app.app_id)
    finally:
        await engine.dispose()


async def test_migration_creates_the_table_and_listing_index(inbox: Inbox) -> None:
    await migrate(inbox.engine)  # idempotent

    def describe(conn: object) -> tuple[set[str], dict[str, list[str]]]:
        insp = inspect(conn)
        columns = {c["name"] for c in insp.get_columns("app_messages")}
        indexes = {
            str(i["name"]): [str(c) for c in i["column_names"]]
            for i in insp.get_indexes("app_messages")
        }
        return columns, indexes

    async with inbox.engine.connect() as conn:
        columns, indexes = await conn.run_sync(describe)
    assert set(Message.__table__.columns.keys()) == columns
    assert indexes["ix_app_messages_listing"] == ["user_id", "category", "ts_ms", "id"]
    assert indexes["ix_app_messages_ts_ms"] == ["ts_ms"]


async def test_cleanup_drops_old_messages_and_caps_each_user(inbox: Inbox) -> None:
    now = SystemClock().now_ms()
    heavy, light, idle = inbox.users
    rows = [
        message_row(
            user_id=heavy,
            category=wire.CATEGORY_NOTIFY,
            msg_type=wire.TYPE_NOTICE,
            title="t",
            content=f"n{i}",
            ts_ms=now - i * 1000,
        )
        for i in range(25)
    ]
    rows += [
        message_row(
            user_id=light,
            category=wire.CATEGORY_DEVICE,
            msg_type=wire.TYPE_DEVICE_ALERT,
            title="t",
            content=age,
            ts_ms=now - days * DAY_MS,
        )
        for age, days in (("fresh", 0), ("29 days", 29), ("31 days", 31))
    ]
    await inbox.messages.add_rows(rows)

    assert await inbox.messages.cleanup() == 15 + 1
    async with inbox.engine.connect() as conn:
        kept = (
            await conn.execute(
                select(Message.user_id, Message.content).order_by(Message.ts_ms.desc())
            )
        ).all()
    assert [c for u, c in kept if u == heavy] == [f"n{i}" for i in range(10)]  # newest 10
    assert [c for u, c in kept if u == light] == ["fresh", "29 days"]
    assert not [c for u, c in kept if u == idle]
    assert await inbox.messages.cleanup() == 0  # nothing left to do


async def test_notice_insert_select_reaches_every_user(inbox: Inbox) -> None:
    assert await inbox.messages.notify_app(inbox.app_id, " Hello ", "World") == 3
    cols = (Message.user_id, Message.category, Message.title, Message.share_token)
    async with inbox.engine.connect() as conn:
        rows = (await conn.execute(select(*cols).order_by(Message.user_id))).all()
    assert [tuple(r) for r in rows] == [
        (u, wire.CATEGORY_NOTIFY, "Hello", None) for u in sorted(inbox.users)
    ]

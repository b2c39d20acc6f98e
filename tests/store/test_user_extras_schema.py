"""Migration 0005 on SQLite and PostgreSQL: the user-extras tables exist and follow their
owners — settings and XG tokens go with the user, feedback stays with ``user_id`` cleared,
global config goes with the app."""

from __future__ import annotations

from sqlalchemy import delete, inspect, select

from ivcloud.store.db import create_engine, migrate, session_factory
from ivcloud.store.schema_app import App, User
from ivcloud.store.schema_user_extras import AppGlobalConfig, UserFeedback, UserSetting, XgToken


async def test_migration_0005_tables_and_cascades(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent

        def tables(conn: object) -> set[str]:
            return set(inspect(conn).get_table_names())  # type: ignore[arg-type]

        async with engine.connect() as conn:
            names = await conn.run_sync(tables)
            version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).one()
        assert {"user_settings", "user_xg_tokens", "user_feedback", "app_global_configs"} <= names
        assert version[0] >= "0005"
        sessions = session_factory(engine)
        async with sessions.begin() as s:
            s.add(App(app_id="a1", name="n", app_key="k", app_secret="s", created_ms=1))
            await s.flush()
            s.add(User(user_id="u1", app_id="a1", created_ms=1, updated_ms=1))
            await s.flush()
            s.add(
                UserSetting(
                    user_id="u1",
                    enable_wechat_push=0,
                    enable_device_message_push=1,
                    enable_family_message_push=1,
                    enable_notify_message_push=1,
                    temperature_unit="C",
                    region="Asia/Shanghai",
                    updated_ms=1,
                )
            )
            s.add(XgToken(user_id="u1", token="t", platform="ios", created_ms=1))
            s.add(
                UserFeedback(
                    app_id="a1",
                    user_id="u1",
                    type="advise",
                    content="hi",
                    contact="",
                    log_url="",
                    created_ms=1,
                )
            )
            s.add(AppGlobalConfig(app_id="a1", key="K", value="V" * 70_000, updated_ms=1))
        async with sessions.begin() as s:
            await s.execute(delete(User).where(User.user_id == "u1"))
        async with sessions() as s:
            assert (await s.scalars(select(UserSetting))).all() == []
            assert (await s.scalars(select(XgToken))).all() == []
            assert (await s.scalars(select(UserFeedback.user_id))).all() == [None]
            value = await s.scalar(select(AppGlobalConfig.value))
        assert value == "V" * 70_000  # Text: long region lists fit
        async with sessions.begin() as s:
            await s.execute(delete(App).where(App.app_id == "a1"))
        async with sessions() as s:
            assert (await s.scalars(select(AppGlobalConfig))).all() == []
            assert (await s.scalars(select(UserFeedback))).all() == []
    finally:
        await engine.dispose()

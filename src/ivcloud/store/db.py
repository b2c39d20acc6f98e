"""Engine creation and schema migrations.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across process crashes, the
write path's group commit does the rest); PostgreSQL is used as is.

SQLite's automatic checkpoint runs inside whichever commit pushes the WAL past 1,000 pages
— with ``synchronous=NORMAL`` that is the only place it fsyncs, so every few seconds under
load one group commit (and every report and control waiting on it) stalled for the
checkpoint's fsyncs.  Auto-checkpointing is therefore off on every connection and
:class:`WalCheckpointer` runs passive checkpoints from its own connection (a passive
checkpoint never blocks writers), once a second.  Migrations are Alembic
scripts shipped inside the package and run at start-up, so a fresh data directory or an
empty PostgreSQL database just works.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The WAL file is truncated back to this size when it is reset after a full checkpoint.
WAL_SIZE_LIMIT = 64 * 1024 * 1024

log = structlog.get_logger("ivcloud.store")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA wal_autocheckpoint=0")  # WalCheckpointer's job
    cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cur.close()


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite://`` or
    ``postgresql+asyncpg://``)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


class WalCheckpointer:
    """Passive WAL checkpoints off the commit path (SQLite only; see the module docstring).

    Leaves nothing to do on PostgreSQL: :meth:`start` is a no-op there."""

    def __init__(self, engine: AsyncEngine, interval_s: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self._engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._run(), name="ivcloud-wal-checkpoint")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self.checkpoint()  # leave a short WAL behind

    async def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint: ``(busy, wal_frames, checkpointed_frames)``."""
        async with self._engine.connect() as conn:
            row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
        self.checkpoints += 1
        busy, frames, done = (int(v) for v in row)
        return busy, frames, done

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.checkpoint()
            except Exception:  # a failed checkpoint is retried; it must not stop the loop
                log.warning("wal_checkpoint_failed", exc_info=True)

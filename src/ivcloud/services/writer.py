"""The single writer of the report hot path.

Reports and events are queued (bounded: a full queue makes the gateway's ``await`` block,
which stops it reading from that socket — TCP backpressure) and committed by one task in
group commits of up to ``batch_max`` items or ``batch_delay_ms``.  Each item's ``ack`` runs
only after its batch has committed, so an acknowledged report is never lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivcloud.store.schema import (
    Device,
    EventLog,
    PendingControl,
    PropertyHistory,
    PropertyLatest,
)

_PRESENCE = (
    update(Device.__table__)  # type: ignore[arg-type]
    .where(Device.__table__.c.id == bindparam("b_id"))
    .values(
        online=bindparam("b_online"),
        last_seen_ms=bindparam("b_seen"),
        last_ip=func.coalesce(bindparam("b_ip"), Device.__table__.c.last_ip),
    )
)

_CONTROL_DONE = delete(PendingControl.__table__).where(  # type: ignore[arg-type]
    PendingControl.__table__.c.device_id == bindparam("b_device"),
    PendingControl.__table__.c.client_token == bindparam("b_token"),
)

log = structlog.get_logger("ivcloud.writer")

Ack = Callable[[bool], Awaitable[None]]


@dataclass(slots=True)
class WriteItem:
    """Rows belonging to one device message, committed together."""

    device_id: int
    ts_ms: int
    params: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    ack: Ack | None = None
    committed: Callable[[], None] | None = None
    #: ``(online, last_seen_ms, ip)``: presence changes ride the same group commit, so a
    #: burst of (re)connects costs one transaction per batch, not one each.
    presence: tuple[bool, int, str | None] | None = None
    #: ``pending_controls`` rows to insert / ``(device_id, client_token)`` to delete:
    #: controls ride the group commit too instead of a transaction per App API call.
    controls_added: list[dict[str, Any]] = field(default_factory=list)
    controls_done: list[tuple[int, str]] = field(default_factory=list)
    #: A person is waiting (an App API control): commit what is queued now instead of
    #: lingering ``batch_delay_ms`` for more items to share the commit.
    urgent: bool = False


class BatchWriter:
    def __init__(
        self, engine: AsyncEngine, *, batch_max: int, batch_delay_ms: float, queue_max: int
    ) -> None:
        self._engine = engine
        # A connection of its own, outside the pool, so reads can never starve commits.
        self._conn: AsyncConnection | None = None
        self._batch_max = batch_max
        self._delay = batch_delay_ms / 1000
        self._queue: asyncio.Queue[WriteItem] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        dialect = engine.dialect.name
        self._upsert_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.committed_items = 0
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ivcloud-writer")

    async def stop(self) -> None:
        """Commit everything queued, then stop."""
        self._closing = True
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def submit(self, item: WriteItem) -> None:
        """Queue an item; blocks while the queue is full (backpressure)."""
        await self._queue.put(item)

    async def commit(self, item: WriteItem) -> bool:
        """Queue an item as urgent and wait until its batch has committed (True) or
        failed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def ack(ok: bool) -> None:
            if not done.done():
                done.set_result(ok)

        item.ack = ack
        item.urgent = True
        await self._queue.put(item)
        return await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            urgent = first.urgent
            deadline = loop.time() + self._delay
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get_nowait()
                    batch.append(item)
                    urgent = urgent or item.urgent
                    continue
                except asyncio.QueueEmpty:
                    pass
                if urgent:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            ok = await self._commit(batch)
            if not ok and len(batch) > 1:
                # One bad item (e.g. its device was deleted meanwhile) must not fail the
                # others: retry them one by one.
                results = [await self._commit([item]) for item in batch]
            else:
                results = [ok] * len(batch)
            for item, ok in zip(batch, results, strict=True):
                if ok and item.committed is not None:
                    item.committed()
                if item.ack is not None:
                    try:
                        await item.ack(ok)
                    except Exception:  # a vanished connection must not stop the writer
                        log.exception("ack_failed")
                self._queue.task_done()

    async def _commit(self, batch: list[WriteItem]) -> bool:
        latest: dict[tuple[int, str], dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        presence: dict[int, dict[str, Any]] = {}
        added: list[dict[str, Any]] = []
        done: list[dict[str, Any]] = []
        for item in batch:
            added.extend(item.controls_added)
            done.extend({"b_device": d, "b_token": t} for d, t in item.controls_done)
            if item.presence is not None:
                online, seen, ip = item.presence
                if ip is None and item.device_id in presence:
                    ip = presence[item.device_id]["b_ip"]
                presence[item.device_id] = {
                    "b_id": item.device_id,
                    "b_online": online,
                    "b_seen": seen,
                    "b_ip": ip,
                }
            for prop, value in item.params.items():
                row = {
                    "device_id": item.device_id,
                    "prop_id": prop,
                    "value": value,
                    "ts_ms": item.ts_ms,
                }
                history.append(row)
                latest[(item.device_id, prop)] = row
            events.extend(item.events)
        try:
            if self._conn is None:
                self._conn = await self._engine.connect()
            conn = self._conn
            async with conn.begin():
                if history:
                    await conn.execute(insert(PropertyHistory), history)
                    stmt = self._upsert_insert(PropertyLatest)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["device_id", "prop_id"],
                        set_={"value": stmt.excluded.value, "ts_ms": stmt.excluded.ts_ms},
                    )
                    await conn.execute(stmt, list(latest.values()))
                if events:
                    await conn.execute(insert(EventLog), events)
                if presence:
                    await conn.execute(_PRESENCE, list(presence.values()))
                if added:
                    await conn.execute(insert(PendingControl), added)
                if done:
                    await conn.execute(_CONTROL_DONE, done)
        except Exception:
            log.warning("batch_commit_failed", items=len(batch), exc_info=True)
            if self._conn is not None and self._conn.invalidated:
                await self._conn.close()
                self._conn = None
            return False
        self.committed_items += len(batch)
        self.batches += 1
        return True

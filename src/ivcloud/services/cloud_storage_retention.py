"""Cloud-storage retention: clips, events and thumbnails older than the retention period
are removed, and init segments no segment uses any more.

Objects are deleted first and rows second, so a crash in between leaves rows whose objects
are gone (served as 404 and swept on the next run), never bytes nothing points to.
Work goes in batches so a first run over a large backlog never holds one long transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

import structlog
from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.cloud_storage import DAY_MS, CsLimits
from ivcloud.services.ports import Clock
from ivcloud.services.sweeps import PeriodicSweep
from ivcloud.store.objects import ObjectStore
from ivcloud.store.schema_cloud import CsEvent, CsInit, CsSegment

log = structlog.get_logger("ivcloud.cloud_storage")

_BATCH: Final[int] = 500


@dataclass(slots=True)
class CleanupCounts:
    segments: int = 0
    events: int = 0
    inits: int = 0


class CloudStorageRetention:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        objects: ObjectStore,
        clock: Clock,
        limits: CsLimits,
        *,
        forget_init: Callable[[int, str], None],
        interval_s: float = 3600.0,
    ) -> None:
        self._sessions = sessions
        self._objects = objects
        self._clock = clock
        self._limits = limits
        self._forget_init = forget_init
        self._interval = interval_s
        self._periodic = PeriodicSweep(
            "cloud-storage-cleanup", self.cleanup, lambda: self._interval
        )

    async def _delete(self, key: str) -> None:
        await asyncio.to_thread(self._objects.delete, key)

    async def cleanup(self) -> CleanupCounts:
        """Remove everything older than the retention period: objects, then rows."""
        cutoff = self._clock.now_ms() - self._limits.retention_days * DAY_MS
        counts = CleanupCounts()
        segments = select(CsSegment.id, CsSegment.object_key).where(CsSegment.end_ms < cutoff)
        counts.segments = await self._sweep(CsSegment, segments)
        ended = func.coalesce(CsEvent.end_ms, CsEvent.start_ms) < cutoff
        events = select(CsEvent.id, CsEvent.thumbnail_key).where(CsEvent.start_ms < cutoff, ended)
        counts.events = await self._sweep(CsEvent, events)
        counts.inits = await self._sweep_inits(cutoff)
        if counts.segments or counts.events or counts.inits:
            log.info("cloud_storage_cleanup", **asdict(counts))
        return counts

    async def _sweep(self, table: type[CsSegment] | type[CsEvent], query: Any) -> int:
        total = 0
        while True:
            async with self._sessions() as s:
                rows = (await s.execute(query.limit(_BATCH))).all()
            if not rows:
                return total
            for _, key in rows:
                if key:
                    await self._delete(key)
            async with self._sessions.begin() as s:
                await s.execute(delete(table).where(table.id.in_([r[0] for r in rows])))
            total += len(rows)

    async def _sweep_inits(self, cutoff: int) -> int:
        """Init segments not announced within the period and used by no segment."""
        used = exists().where(
            and_(CsSegment.device_id == CsInit.device_id, CsSegment.init_sha256 == CsInit.sha256)
        )
        query = (
            select(CsInit.device_id, CsInit.sha256, CsInit.object_key)
            .where(CsInit.created_ms < cutoff, ~used)
            .limit(_BATCH)
        )
        total = 0
        while True:
            async with self._sessions() as s:
                rows = (await s.execute(query)).all()
            if not rows:
                return total
            for device_id, sha, key in rows:
                self._forget_init(device_id, sha)
                await self._delete(key)
            async with self._sessions.begin() as s:
                for device_id, sha, _ in rows:
                    await s.execute(
                        delete(CsInit).where(CsInit.device_id == device_id, CsInit.sha256 == sha)
                    )
            total += len(rows)

    def start(self) -> None:
        """Run :meth:`cleanup` now and then every ``interval_s``."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

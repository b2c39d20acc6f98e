"""Reported properties, their history and the event log.

Reads of the latest values come from an in-memory cache filled at commit time (so a value is
visible only once it is durable) and loaded from ``property_latest`` on a miss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import DeviceEventPosted, DeviceReported
from ivcloud.protocol.thing import PostedEvent
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.ports import Bus, Clock
from ivcloud.services.writer import Ack, BatchWriter, WriteItem
from ivcloud.store.schema import EventLog, PropertyHistory, PropertyLatest


@dataclass(frozen=True, slots=True)
class LatestValue:
    value: Any
    ts_ms: int


class Telemetry:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: BatchWriter,
        bus: Bus,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self._bus = bus
        self._clock = clock
        self._latest: dict[int, dict[str, LatestValue]] = {}
        self._loaded: set[int] = set()

    async def record_report(
        self,
        rec: DeviceRecord,
        params: dict[str, Any],
        ts_ms: int | None,
        ack: Ack | None,
        *,
        client_token: str = "",
        payload: bytes = b"",
    ) -> None:
        """Queue validated params; ``ack(ok)`` runs once they are committed.  No database
        read on this path: committed values go to an in-memory overlay that ``latest``
        merges with the stored values the first time a device is read."""
        ts = ts_ms if ts_ms is not None else self._clock.now_ms()
        overlay = self._latest.setdefault(rec.id, {})

        def committed() -> None:
            for key, value in params.items():
                overlay[key] = LatestValue(value, ts)
            self._bus.publish(
                DeviceReported(rec.product_id, rec.device_name, params, ts, client_token, payload)
            )

        await self._writer.submit(
            WriteItem(rec.id, ts, params=params, ack=ack, committed=committed)
        )

    async def record_events(
        self,
        rec: DeviceRecord,
        events: list[PostedEvent],
        ack: Ack | None,
        *,
        client_token: str = "",
    ) -> None:
        now = self._clock.now_ms()
        stamped = [(ev, ev.timestamp_ms if ev.timestamp_ms is not None else now) for ev in events]
        rows: list[dict[str, Any]] = [
            {
                "device_id": rec.id,
                "event_id": ev.event_id,
                "event_type": ev.event_type,
                "params": ev.params,
                "ts_ms": ts,
                "received_ms": now,
            }
            for ev, ts in stamped
        ]

        def committed() -> None:
            for ev, ts in stamped:
                self._bus.publish(
                    DeviceEventPosted(
                        rec.product_id,
                        rec.device_name,
                        ev.event_id,
                        ev.event_type,
                        ev.params,
                        ts,
                        client_token,
                    )
                )

        await self._writer.submit(WriteItem(rec.id, now, events=rows, ack=ack, committed=committed))

    async def _latest_for(self, device_id: int) -> dict[str, LatestValue]:
        overlay = self._latest.setdefault(device_id, {})
        if device_id in self._loaded:
            return overlay
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(
                        PropertyLatest.prop_id, PropertyLatest.value, PropertyLatest.ts_ms
                    ).where(PropertyLatest.device_id == device_id)
                )
            ).all()
        for prop_id, value, ts in rows:
            overlay.setdefault(prop_id, LatestValue(value, ts))
        self._loaded.add(device_id)
        return overlay

    async def latest(self, rec: DeviceRecord) -> dict[str, LatestValue]:
        return dict(await self._latest_for(rec.id))

    def forget(self, rec: DeviceRecord) -> None:
        self._latest.pop(rec.id, None)
        self._loaded.discard(rec.id)

    async def history(
        self,
        rec: DeviceRecord,
        prop_id: str,
        *,
        since_ms: int = 0,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[LatestValue]:
        """Newest first."""
        q = select(PropertyHistory.value, PropertyHistory.ts_ms).where(
            PropertyHistory.device_id == rec.id,
            PropertyHistory.prop_id == prop_id,
            PropertyHistory.ts_ms >= since_ms,
        )
        if until_ms is not None:
            q = q.where(PropertyHistory.ts_ms <= until_ms)
        q = q.order_by(PropertyHistory.ts_ms.desc(), PropertyHistory.id.desc()).limit(limit)
        async with self._sessions() as s:
            rows = (await s.execute(q)).all()
        return [LatestValue(v, ts) for v, ts in rows]

    async def events(
        self,
        rec: DeviceRecord,
        *,
        event_id: str | None = None,
        since_ms: int = 0,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        q = select(EventLog).where(EventLog.device_id == rec.id, EventLog.ts_ms >= since_ms)
        if event_id is not None:
            q = q.where(EventLog.event_id == event_id)
        if until_ms is not None:
            q = q.where(EventLog.ts_ms <= until_ms)
        q = q.order_by(EventLog.ts_ms.desc(), EventLog.id.desc()).limit(limit)
        async with self._sessions() as s:
            rows = (await s.scalars(q)).all()
        return [
            {
                "EventId": r.event_id,
                "Type": r.event_type,
                "Params": r.params,
                "Timestamp": r.ts_ms,
                "ReceivedTime": r.received_ms,
            }
            for r in rows
        ]

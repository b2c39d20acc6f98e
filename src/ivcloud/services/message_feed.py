"""Device ``alert`` / ``fault`` events → Category 1 messages for everyone who may see the
device (the members of its family and the users it is shared to).

The device pipeline must not wait for this: :meth:`DeviceEventFeed.on_bus_event` is a bus
listener that only appends to a bounded queue (when full, the oldest pending event is
dropped and counted, as the bus does for slow subscribers).  One task drains the queue,
resolves recipients through the cached :class:`~ivcloud.services.app_graph.AppGraph` and
writes a whole drained batch in one transaction.  It does not go through the report
:class:`~ivcloud.services.writer.BatchWriter` on purpose: that queue's backpressure stops
devices from being read, and a message fan-out (one event, many users) must never cost a
device its turn.

``info`` events and online/offline changes make no message: the real service's device
messages are warnings (DOC 1081/40794 shows ``MsgType`` 100 "Device Warning") and nothing
found shows presence messages.  The event's time is the device's own (it may be old after a
reconnect), but the message is stamped with the server time at which it was made, so the
newest-first order and the paging cursor follow arrival."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, Final

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BusEvent, DeviceEventPosted
from ivcloud.protocol import app_messages as wire
from ivcloud.services.app_graph import AppGraph
from ivcloud.services.apps import AppService
from ivcloud.services.devices import DeviceService
from ivcloud.services.messages import MessageService, message_row
from ivcloud.services.ports import Clock
from ivcloud.store.schema_app import Family

log = structlog.get_logger("ivcloud.messages")

MESSAGE_TYPES: Final[dict[str, int]] = {
    "alert": wire.TYPE_DEVICE_ALERT,
    "fault": wire.TYPE_DEVICE_FAULT,
}
_TITLES: Final[dict[str, str]] = {"alert": "Device alert", "fault": "Device fault"}
_BATCH: Final[int] = 200


class DeviceEventFeed:
    def __init__(
        self,
        messages: MessageService,
        sessions: async_sessionmaker[AsyncSession],
        devices: DeviceService,
        apps: AppService,
        graph: AppGraph,
        clock: Clock,
        *,
        queue_max: int = 10_000,
    ) -> None:
        self._messages = messages
        self._sessions = sessions
        self._devices = devices
        self._apps = apps
        self._graph = graph
        self._clock = clock
        self._pending: collections.deque[DeviceEventPosted] = collections.deque()
        self._queue_max = queue_max
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def on_bus_event(self, event: BusEvent) -> None:
        """Bus listener (``device.event``): queue alerts and faults, never block."""
        if not isinstance(event, DeviceEventPosted) or event.event_type not in MESSAGE_TYPES:
            return
        if len(self._pending) >= self._queue_max:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(event)
        self._idle.clear()
        self._wake.set()

    async def settled(self) -> None:
        """Wait until every queued event has been written (or failed)."""
        await self._idle.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ivcloud-message-feed")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            await self.settled()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(_BATCH, len(self._pending)))]
                try:
                    rows: list[dict[str, Any]] = []
                    for event in batch:
                        rows.extend(await self._rows(event))
                    await self._messages.add_rows(rows)
                    self.written += len(rows)
                except Exception:
                    log.exception("message_feed_failed", events=len(batch))
            self._idle.set()

    async def _rows(self, event: DeviceEventPosted) -> list[dict[str, Any]]:
        """One message per user who may see the device now."""
        rec = await self._devices.find(event.product_id, event.device_name)
        if rec is None:
            return []
        family_id = await self._graph.device_family(rec.id)
        family = None if family_id is None else await self._graph.family(family_id)
        if family is None or not await self._apps.links(family.app_id, rec.product_id):
            return []  # a device in no family, or of a product the app no longer links
        users = set(family.roles) | set(await self._graph.sharers(rec.id))
        alias = next((p.alias for p in family.placements if p.device_id == rec.id), "")
        async with self._sessions() as s:
            family_name = await s.scalar(
                select(Family.name).where(Family.family_id == family.family_id)
            )
        shown = alias or rec.device_name
        base = message_row(
            category=wire.CATEGORY_DEVICE,
            msg_type=MESSAGE_TYPES[event.event_type],
            title=_TITLES[event.event_type],
            content=f'"{shown}" reported the {event.event_type} event "{event.event_id}".',
            ts_ms=self._clock.now_ms(),
            product_id=rec.product_id,
            device_name=rec.device_name,
            device_alias=alias,
            family_id=family.family_id,
            family_name=family_name or "",
        )
        return [{**base, "user_id": user_id} for user_id in sorted(users)]

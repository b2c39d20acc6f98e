"""The app-side authorization graph, read through memory.

Every App API call asks "may this user reach this device / this family?", and the most
frequent one lists a family's devices.  Answering from the database took several SQLAlchemy
round trips per request (≈ 0.5 ms of CPU each, measured in docs/benchmarks.md "App API"),
while the graph — families, their members and roles, rooms, device placements, device
shares — changes only when someone binds, shares, joins or deletes.  So it is loaded lazily
per family / per device into immutable snapshots, and every write bumps a generation number
that drops all of them.

Correctness rests on two rules: writers call :meth:`AppGraph.changed` after their commit
(:meth:`AppGraph.writing` does it for them), and a load keeps its result only if no write
finished while it ran — a load that raced with a write answers that one caller (as a plain
read would have) but is never cached, so the cache can't hold a pre-write view.

Scope: one process.  Several instances need the generation bump on the shared bus
(DESIGN §4 scale-out); in embedded mode every writer is in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import BusEvent
from ivcloud.protocol.jsontext import dumps_safe
from ivcloud.services.family_types import Placement
from ivcloud.store.schema import Device
from ivcloud.store.schema_app import DeviceShare, Family, FamilyDevice, FamilyMember, Room

T = TypeVar("T")

#: A cache over this many entries (e.g. someone probing random ids) is dropped, not grown.
MAX_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class FamilySnapshot:
    """One family as of one generation.  ``placements`` are in binding order."""

    family_id: str
    app_id: str
    roles: dict[str, int]
    rooms: frozenset[str]
    placements: tuple[Placement, ...]
    #: ``placements`` rendered as JSON once per snapshot: a list page joins these instead
    #: of serialising 100 dicts per request.
    rendered: tuple[str, ...] = field(default=(), compare=False)

    def in_room(self, room_id: str | None) -> list[int]:
        """Indexes into ``placements`` of the devices in a room (None = every room)."""
        if room_id is None:
            return list(range(len(self.placements)))
        return [i for i, p in enumerate(self.placements) if p.room_id == room_id]

    def page_json(self, room_id: str | None, offset: int, limit: int) -> tuple[int, str]:
        """``(Total, DeviceList as JSON text)`` of one page."""
        if room_id is None:
            total = len(self.rendered)
            return total, "[" + ",".join(self.rendered[offset : offset + limit]) + "]"
        picked = self.in_room(room_id)
        page = picked[offset : offset + limit]
        return len(picked), "[" + ",".join(self.rendered[i] for i in page) + "]"


class AppGraph:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._generation = 0
        self._families: dict[str, FamilySnapshot | None] = {}
        self._device_family: dict[int, str | None] = {}
        self._sharers: dict[int, frozenset[str]] = {}
        self._inflight: dict[tuple[int, Any, int], asyncio.Future[Any]] = {}
        self.loads = 0

    # --- invalidation ------------------------------------------------------------------

    def changed(self) -> None:
        """Something in the graph was written (and committed): forget everything."""
        self._generation += 1
        self._families.clear()
        self._device_family.clear()
        self._sharers.clear()

    def on_event(self, _event: BusEvent) -> None:
        """Bus listener for writes made elsewhere (a device, product or app removed: the
        database cascades them into placements, members and shares)."""
        self.changed()

    @contextlib.asynccontextmanager
    async def writing(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncIterator[AsyncSession]:
        """``sessions.begin()`` for a write to the graph: invalidates once it is over."""
        try:
            async with sessions.begin() as s:
                yield s
        finally:
            self.changed()

    # --- reads ---------------------------------------------------------------------------

    async def family(self, family_id: str) -> FamilySnapshot | None:
        if family_id in self._families:
            return self._families[family_id]
        return await self._load(self._families, family_id, self._load_family)

    async def device_family(self, device_id: int) -> str | None:
        """The family a device is bound into (a device is in at most one)."""
        if device_id in self._device_family:
            return self._device_family[device_id]
        return await self._load(self._device_family, device_id, self._load_device_family)

    async def sharers(self, device_id: int) -> frozenset[str]:
        """Users the device is shared to."""
        cached = self._sharers.get(device_id)
        if cached is not None:
            return cached
        return await self._load(self._sharers, device_id, self._load_sharers)

    async def _load(
        self, cache: dict[Any, T], key: Any, loader: Callable[[Any], Awaitable[T]]
    ) -> T:
        """Load once for everyone: requests that miss the same key while a load is running
        wait for that load instead of each running their own (after a write, hundreds of
        users of one family miss at once)."""
        flight = (id(cache), key, self._generation)
        running = self._inflight.get(flight)
        if running is not None:
            try:
                return cast(T, await asyncio.shield(running))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The loading request went away (its client disconnected): load here.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        generation = self._generation
        try:
            value = await loader(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: only waiters (if any) re-raise it
            raise
        finally:
            if self._inflight.get(flight) is future:
                del self._inflight[flight]
        future.set_result(value)
        self.loads += 1
        if generation == self._generation:
            if len(cache) >= MAX_ENTRIES:
                cache.clear()
            cache[key] = value
        return value

    async def _load_family(self, family_id: str) -> FamilySnapshot | None:
        async with self._sessions() as s:
            app_id = await s.scalar(select(Family.app_id).where(Family.family_id == family_id))
            if app_id is None:
                return None
            roles = (
                await s.execute(
                    select(FamilyMember.user_id, FamilyMember.role).where(
                        FamilyMember.family_id == family_id
                    )
                )
            ).all()
            rooms = (
                await s.scalars(select(Room.room_id).where(Room.family_id == family_id))
            ).all()
            rows = (
                await s.execute(
                    select(
                        FamilyDevice.device_id,
                        Device.product_id,
                        Device.device_name,
                        FamilyDevice.room_id,
                        FamilyDevice.alias_name,
                        FamilyDevice.bound_by,
                        FamilyDevice.created_ms,
                        FamilyDevice.updated_ms,
                    )
                    .join(Device, Device.id == FamilyDevice.device_id)
                    .where(FamilyDevice.family_id == family_id)
                    .order_by(FamilyDevice.created_ms, FamilyDevice.device_id)
                )
            ).all()
        placements = tuple(
            Placement(int(d), p, n, family_id, r, a, b, int(c), int(u))
            for d, p, n, r, a, b, c, u in rows
        )
        return FamilySnapshot(
            family_id,
            app_id,
            {u: int(r) for u, r in roles},
            frozenset(rooms),
            placements,
            tuple(dumps_safe(p.to_api()).decode() for p in placements),
        )

    async def _load_device_family(self, device_id: int) -> str | None:
        async with self._sessions() as s:
            return await s.scalar(
                select(FamilyDevice.family_id).where(FamilyDevice.device_id == device_id)
            )

    async def _load_sharers(self, device_id: int) -> frozenset[str]:
        async with self._sessions() as s:
            rows = await s.scalars(
                select(DeviceShare.user_id).where(DeviceShare.device_id == device_id)
            )
            return frozenset(rows.all())

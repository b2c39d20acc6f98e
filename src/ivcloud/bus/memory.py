"""In-process bus: each subscriber gets its own bounded queue, so one slow consumer can never
stall the publisher (the report hot path) or the other consumers; overflow drops the oldest
event for that subscriber and counts it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from ivcloud.bus.events import BusEvent


class Subscription:
    """A bounded queue of events matching a topic prefix."""

    def __init__(self, bus: InMemoryBus, prefix: str, maxsize: int) -> None:
        self._bus = bus
        self.prefix = prefix
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: BusEvent) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> BusEvent:
        return await self.queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[BusEvent]:
        while True:
            yield await self.queue.get()


class InMemoryBus:
    """Publish/subscribe by topic prefix (``"device."`` receives every device event)."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._listeners: list[tuple[str, Callable[[BusEvent], None]]] = []

    def publish(self, event: BusEvent) -> None:
        topic = event.topic
        for sub in self._subs:
            if topic.startswith(sub.prefix):
                sub.offer(event)
        for prefix, fn in self._listeners:
            if topic.startswith(prefix):
                fn(event)

    def subscribe(self, prefix: str = "", maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, prefix, maxsize)
        self._subs.append(sub)
        return sub

    def listen(self, prefix: str, fn: Callable[[BusEvent], None]) -> None:
        """Register a synchronous in-process callback (must not block)."""
        self._listeners.append((prefix, fn))

    def unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

"""What services need from the outside world, as structural protocols."""

from __future__ import annotations

import time
from typing import Protocol

from ivcloud.bus.events import BusEvent


class Downlink(Protocol):
    """Reaches connected devices (implemented by the MQTT gateway)."""

    def is_connected(self, client_id: str) -> bool: ...

    async def publish(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Deliver to the device if it is connected and subscribed to ``topic``;
        return whether it was written."""
        ...


class Bus(Protocol):
    def publish(self, event: BusEvent) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class DownlinkRef:
    """A late-bound :class:`Downlink`: breaks the construction cycle gateway → dispatcher →
    services → gateway in the composition root."""

    def __init__(self) -> None:
        self.target: Downlink | None = None

    def is_connected(self, client_id: str) -> bool:
        return self.target is not None and self.target.is_connected(client_id)

    async def publish(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        if self.target is None:
            return False
        return await self.target.publish(client_id, topic, payload, qos)

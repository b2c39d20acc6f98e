"""A background sweep: run a clean-up now and then every ``interval_s`` until stopped.

Retention jobs (cloud-storage clips, message-centre messages) share this so that each
service only says what one sweep does; a failed sweep is logged and retried on the next
tick, never ending the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("ivcloud.services.sweeps")


class PeriodicSweep:
    def __init__(
        self, name: str, sweep: Callable[[], Awaitable[Any]], interval_s: Callable[[], float]
    ) -> None:
        self._name = name
        self._sweep = sweep
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"ivcloud-{self._name}")

    async def _loop(self) -> None:
        while True:
            try:
                await self._sweep()
            except Exception:
                log.exception("sweep_failed", sweep=self._name)
            await asyncio.sleep(self._interval_s())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

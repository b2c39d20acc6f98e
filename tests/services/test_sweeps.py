"""PeriodicSweep: runs at once, keeps running after a failed sweep, stops cleanly."""

from __future__ import annotations

import asyncio

from ivcloud.services.sweeps import PeriodicSweep


async def test_a_failed_sweep_is_retried_on_the_next_tick() -> None:
    calls = 0
    third = asyncio.Event()

    async def sweep() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        if calls == 3:
            third.set()

    periodic = PeriodicSweep("test", sweep, lambda: 0.0)
    periodic.start()
    periodic.start()  # idempotent: still one loop
    await asyncio.wait_for(third.wait(), 5)
    await periodic.stop()
    stopped_at = calls
    await asyncio.sleep(0)
    assert calls == stopped_at >= 3
    await periodic.stop()  # stopping twice is harmless

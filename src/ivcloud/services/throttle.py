"""Per-key limits on repeated failures and one-at-a-time sections, in process memory.

Password guessing is the attack an App API invites: without a limit, anyone holding the
app's (public, shipped-in-the-app) AppKey can try passwords as fast as argon2 verifies
them.  The limits live in memory: an instance restart forgets them, and several instances
each keep their own (DESIGN §4 scale-out would move them to Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

#: Keys tracked at most; the oldest are forgotten first (bounded memory under a key spray).
MAX_KEYS = 100_000


class FailureLimit:
    """At most ``limit`` failures per key within ``window_ms``; then the key is locked
    until its oldest failure leaves the window."""

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def locked_for_ms(self, key: str, now_ms: int) -> int:
        """0 if ``key`` may try now, else how long it must wait."""
        times = self._failures.get(key)
        if times is None:
            return 0
        while times and times[0] <= now_ms - self.window_ms:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        if len(times) < self.limit:
            return 0
        return times[0] + self.window_ms - now_ms

    def failed(self, key: str, now_ms: int) -> None:
        times = self._failures.setdefault(key, deque())
        self._failures.move_to_end(key)
        times.append(now_ms)
        while len(times) > self.limit:
            times.popleft()
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class KeyedLocks:
    """``async with locks.hold(key)``: one task at a time per key, so a check-then-insert
    (e.g. "no code sent in the last minute" → send one) cannot interleave with itself."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

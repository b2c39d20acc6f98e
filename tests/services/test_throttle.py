"""FailureLimit and KeyedLocks: the in-memory limits behind login lock-out and code sends."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from ivcloud.services.throttle import FailureLimit, KeyedLocks


def test_locks_after_limit_until_the_oldest_failure_leaves_the_window() -> None:
    limit = FailureLimit(3, 1000)
    for t in (0, 100, 200):
        assert limit.locked_for_ms("k", t) == 0
        limit.failed("k", t)
    assert limit.locked_for_ms("k", 300) == 700
    assert limit.locked_for_ms("other", 300) == 0
    assert limit.locked_for_ms("k", 1000) == 0  # the failure at 0 has left the window
    limit.failed("k", 1000)
    assert limit.locked_for_ms("k", 1001) == 99  # now 100, 200 and 1000 count


def test_success_clears_the_key() -> None:
    limit = FailureLimit(2, 1000)
    limit.failed("k", 0)
    limit.failed("k", 1)
    assert limit.locked_for_ms("k", 2) > 0
    limit.succeeded("k")
    assert limit.locked_for_ms("k", 2) == 0


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5000)), max_size=40))
def test_never_locked_below_the_limit_within_the_window(events: list[tuple[str, int]]) -> None:
    limit = FailureLimit(3, 1000)
    now = 0
    recent: dict[str, list[int]] = {}
    for key, step in events:
        now += step
        in_window = [t for t in recent.get(key, []) if t > now - 1000]
        locked = limit.locked_for_ms(key, now) > 0
        assert locked == (len(in_window) >= 3)
        limit.failed(key, now)
        recent[key] = [*in_window, now]


async def test_keyed_locks_serialise_one_key_and_clean_up() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    overlaps = 0

    async def section(key: str) -> None:
        nonlocal overlaps
        async with locks.hold(key):
            if key in inside:
                overlaps += 1
            inside.append(key)
            await asyncio.sleep(0)
            inside.remove(key)

    await asyncio.gather(*(section(k) for k in "aabbaab"))
    assert overlaps == 0
    assert locks._locks == {}

"""Cloud storage services on SQLite and PostgreSQL with an injected clock: idempotent
ingest, conflicts and bad input that store nothing, event paging, days across time zones,
the merged day timeline, and retention (objects, then rows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivcloud.bus.memory import InMemoryBus
from ivcloud.services.cloud_storage import CloudStorageService, CsLimits, PayloadTooLarge
from ivcloud.services.cloud_storage_query import (
    CloudStorageQuery,
    decode_cursor,
    encode_cursor,
    merge_ranges,
)
from ivcloud.services.cloud_storage_retention import CloudStorageRetention
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.products import ProductService
from ivcloud.services.writer import BatchWriter
from ivcloud.store.db import create_engine, migrate, session_factory
from ivcloud.store.objects import LocalObjectStore
from tests.cloud_storage_support import counts, make_clip

DAY = 86_400_000
#: 2026-11-28 12:00:00 UTC
NOON = 1_795_867_200_000


class FakeClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


@dataclass
class World:
    svc: CloudStorageService
    query: CloudStorageQuery
    retention: CloudStorageRetention
    devices: DeviceService
    dev: DeviceRecord
    other: DeviceRecord
    clock: FakeClock
    objects_dir: Path
    sessions: object

    async def counts(self) -> tuple[int, ...]:
        return await counts(self.sessions, self.objects_dir)  # type: ignore[arg-type]


@pytest.fixture
async def world(db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    clock = FakeClock(NOON)
    writer = BatchWriter(engine, batch_max=10, batch_delay_ms=1, queue_max=100)
    writer.start()
    products = ProductService(sessions, clock, InMemoryBus())
    devices = DeviceService(sessions, products, InMemoryBus(), clock, writer)
    product = await products.create("Cam", "camera")
    dev = await devices.create(product.product_id, "cam-1")
    other = await devices.create(product.product_id, "cam-2")
    objects_dir = tmp_path / "objects"
    limits = CsLimits(retention_days=7, max_segment_bytes=200_000, max_thumbnail_bytes=50_000)
    svc = CloudStorageService(sessions, LocalObjectStore(objects_dir), clock, limits)
    query = CloudStorageQuery(sessions, clock, timezone="Asia/Shanghai", retention_days=7)
    retention = CloudStorageRetention(
        sessions, LocalObjectStore(objects_dir), clock, limits, forget_init=svc.forget_init
    )
    try:
        yield World(svc, query, retention, devices, dev, other, clock, objects_dir, sessions)
    finally:
        await writer.stop()
        await engine.dispose()


async def upload_clip(
    w: World, start_ms: int, gops: int = 2, dev: DeviceRecord | None = None
) -> list[int]:
    clip = make_clip(start_ms, gops)
    target = dev or w.dev
    sha, _ = await w.svc.put_init(target, clip.init)
    return [
        (await w.svc.put_segment(target, 0, s.start_ms, s.end_ms, sha, s.data)).id
        for s in clip.segments
    ]


# -- ingest ----------------------------------------------------------------------------------


async def test_uploads_are_idempotent_and_conflicts_change_nothing(world: World) -> None:
    w = world
    clip = make_clip(NOON - 60_000, 2)
    sha, created = await w.svc.put_init(w.dev, clip.init)
    assert created and sha == clip.init_sha
    assert await w.svc.put_init(w.dev, clip.init) == (sha, False)
    first = clip.segments[0]
    stored = await w.svc.put_segment(w.dev, 0, first.start_ms, first.end_ms, sha, first.data)
    assert stored.created
    again = await w.svc.put_segment(w.dev, 0, first.start_ms, first.end_ms, sha, first.data)
    assert again.id == stored.id and not again.created
    before = await w.counts()
    second = clip.segments[1]
    with pytest.raises(Conflict, match="different segment"):
        await w.svc.put_segment(w.dev, 0, first.start_ms, second.end_ms - 1000, sha, second.data)
    assert await w.counts() == before
    key = await w.query.segment_key(w.dev, stored.id)
    assert key is not None and (w.objects_dir / key).read_bytes() == first.data


async def test_bad_segments_store_nothing(world: World) -> None:
    w = world
    clip = make_clip(NOON - 60_000, 1)
    sha, _ = await w.svc.put_init(w.dev, clip.init)
    seg = clip.segments[0]
    good: dict[str, object] = {
        "channel": 0,
        "start_ms": seg.start_ms,
        "end_ms": seg.end_ms,
        "init_sha": sha,
        "data": seg.data,
    }
    changes: dict[str, dict[str, object]] = {
        "garbage": {"data": b"\x00\x00\x00\x08free" * 3},
        "truncated": {"data": seg.data[:-10]},
        "unknown init": {"init_sha": "0" * 64},
        "bad init hash": {"init_sha": "XYZ"},
        "duration mismatch": {"end_ms": seg.start_ms + 5000},
        "too old": {"start_ms": NOON - 8 * DAY, "end_ms": NOON - 8 * DAY + 1000},
        "future": {"start_ms": NOON + 600_000, "end_ms": NOON + 601_000},
        "too long": {"end_ms": seg.start_ms + 61_000},
        "backwards": {"end_ms": seg.start_ms},
        "channel": {"channel": 65},
        "oversize": {"data": seg.data + b"\x00" * 200_000},
    }
    before = await w.counts()
    for case, change in changes.items():
        error = PayloadTooLarge if case == "oversize" else InvalidInput
        with pytest.raises(error):
            await w.svc.put_segment(w.dev, **{**good, **change})  # type: ignore[arg-type]
        assert await w.counts() == before, case


async def test_init_must_be_uploaded_by_the_same_device(world: World) -> None:
    w = world
    clip = make_clip(NOON - 60_000, 1)
    sha, _ = await w.svc.put_init(w.dev, clip.init)
    seg = clip.segments[0]
    with pytest.raises(InvalidInput, match="unknown init"):
        await w.svc.put_segment(w.other, 0, seg.start_ms, seg.end_ms, sha, seg.data)


async def test_bad_init_segments(world: World) -> None:
    w = world
    clip = make_clip(NOON - 60_000, 1)
    before = await w.counts()
    with pytest.raises(InvalidInput):
        await w.svc.put_init(w.dev, clip.segments[0].data[:1000])
    with pytest.raises(PayloadTooLarge):
        await w.svc.put_init(w.dev, clip.init + b"\x00" * 70_000)
    assert await w.counts() == before


async def test_removed_device_mid_upload_leaves_no_object(world: World) -> None:
    """The init is cached, so the segment reaches the insert, which the foreign key
    refuses: the object written just before is removed again."""
    w = world
    clip = make_clip(NOON - 60_000, 1)
    sha, _ = await w.svc.put_init(w.dev, clip.init)
    await w.devices.delete(w.dev.product_id, w.dev.device_name)
    before = await w.counts()
    seg = clip.segments[0]
    with pytest.raises(Conflict, match="device was removed"):
        await w.svc.put_segment(w.dev, 0, seg.start_ms, seg.end_ms, sha, seg.data)
    assert await w.counts() == before
    with pytest.raises(Conflict, match="device was removed"):
        await w.svc.put_init(w.dev, make_clip(NOON - 30_000, 1, audio=False).init)
    assert await w.counts() == before


# -- events and thumbnails -------------------------------------------------------------------


async def test_event_lifecycle_and_thumbnail(world: World) -> None:
    w = world
    start = NOON - 30_000
    assert (await w.svc.start_event(w.dev, 0, 1, start, data={"who": "x"})).created
    assert not (await w.svc.start_event(w.dev, 0, 1, start)).created
    await w.svc.stop_event(w.dev, 0, 1, start, start + 3000)
    await w.svc.stop_event(w.dev, 0, 1, start, start + 3000)  # repeat: no-op
    with pytest.raises(Conflict):
        await w.svc.stop_event(w.dev, 0, 1, start, start + 4000)
    with pytest.raises(NotFound):
        await w.svc.stop_event(w.dev, 0, 2, start, start + 4000)
    jpeg = make_clip(NOON - 60_000, 1).jpeg()
    assert await w.svc.put_thumbnail(w.dev, 0, 1, start, jpeg)
    assert not await w.svc.put_thumbnail(w.dev, 0, 1, start, jpeg)
    before = await w.counts()
    with pytest.raises(Conflict, match="another thumbnail"):
        await w.svc.put_thumbnail(w.dev, 0, 1, start, jpeg[:-2] + b"\x00\xff\xd9")
    for bad, error in ((b"not a jpeg", InvalidInput), (jpeg + b"\0" * 50_000, PayloadTooLarge)):
        with pytest.raises(error):
            await w.svc.put_thumbnail(w.dev, 0, 1, start, bad)
    with pytest.raises(NotFound):
        await w.svc.put_thumbnail(w.dev, 0, 9, start, jpeg)
    assert await w.counts() == before
    view = await w.query.event_at(w.dev, start // 1000 * 1000)
    assert view is not None and view.data == {"who": "x"} and view.end_ms == start + 3000
    assert view.thumbnail_key is not None
    assert await w.query.event_by_thumbnail(w.dev, view.thumbnail_key) == view
    assert await w.query.event_by_thumbnail(w.other, view.thumbnail_key) is None


async def test_bad_events_store_nothing(world: World) -> None:
    good: dict[str, object] = {"channel": 0, "event_id": 1, "start_ms": NOON - 30_000}
    bad: list[tuple[dict[str, object], type[Exception]]] = [
        ({"event_id": 0}, InvalidInput),
        ({"event_id": 17}, InvalidInput),
        ({"channel": -1}, InvalidInput),
        ({"start_ms": NOON - 8 * DAY}, InvalidInput),
        ({"end_ms": NOON - 31_000}, InvalidInput),
        ({"end_ms": NOON - 30_000 + 25 * 3600 * 1000}, InvalidInput),
        ({"data": {"x": "y" * 3000}}, PayloadTooLarge),
    ]
    before = await world.counts()
    for change, error in bad:
        with pytest.raises(error):
            await world.svc.start_event(world.dev, **{**good, **change})  # type: ignore[arg-type]
        assert await world.counts() == before, change


async def test_upload_status(world: World) -> None:
    w = world
    seg_ids = await upload_clip(w, NOON - 10_000, 2)
    assert len(seg_ids) == 2
    await w.svc.start_event(w.dev, 0, 1, NOON - 9_500, NOON - 8_500)  # covered, stopped
    await w.svc.start_event(w.dev, 0, 2, NOON - 9_000)  # covered, running
    await w.svc.start_event(w.dev, 0, 3, NOON - 5_000, NOON - 4_000)  # no clip
    await w.svc.start_event(w.dev, 0, 4, NOON - 3_000, NOON - 3_000, video=False)
    await w.svc.put_thumbnail(w.dev, 0, 4, NOON - 3_000, make_clip(NOON, 1).jpeg())
    page = await w.query.events_page(w.dev, NOON - 60_000, NOON, size=10)
    status = {e.event_id: e.upload_status for e in page.events}
    assert status == {1: "Finished", 2: "Partial", 3: "Failed", 4: "Finished"}


# -- queries ---------------------------------------------------------------------------------


async def test_event_paging_with_cursor(world: World) -> None:
    w = world
    for i in range(25):
        await w.svc.start_event(w.dev, i % 2, 1 + i % 3, NOON - 100_000 + i * 1000)
    await w.svc.start_event(w.other, 0, 1, NOON - 50_000)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await w.query.events_page(w.dev, NOON - DAY, NOON, size=10, cursor=cursor)
        pages += 1
        assert page.total == 25
        seen += [e.start_ms for e in page.events]
        if page.listover:
            assert page.cursor == ""
            break
        assert len(page.events) == 10 and page.cursor
        cursor = page.cursor
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 25
    only = await w.query.events_page(w.dev, NOON - DAY, NOON, size=50, event_id=2)
    assert {e.event_id for e in only.events} == {2} and only.total == 8
    ch1 = await w.query.events_page(w.dev, NOON - DAY, NOON, size=50, channel=1)
    assert {e.channel for e in ch1.events} == {1} and ch1.total == 12
    window = await w.query.events_page(w.dev, NOON - 90_000, NOON - 80_000, size=50)
    assert window.total == 11


async def test_bad_cursors_and_dates(world: World) -> None:
    for bad in ["!", "a" * 49, "bm90IGEgY3Vyc29y", "MTIz"]:
        with pytest.raises(InvalidInput, match="Context"):
            await world.query.events_page(world.dev, 0, NOON, size=10, cursor=bad)
    for day in ["2026-13-01", "2026-02-30", "26-11-28", "2026/11/28", ""]:
        with pytest.raises(InvalidInput, match="Date"):
            world.query.day_window(day)


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor(1_795_867_200_000, 42)) == (1_795_867_200_000, 42)


async def test_dates_follow_the_configured_time_zone(world: World) -> None:
    """Asia/Shanghai is UTC+8: 20:00 UTC on the 26th is already the 27th there."""
    w = world
    await upload_clip(w, NOON - 2 * DAY + 8 * 3600_000, 1)  # 26th 20:00 UTC → 27th
    await w.svc.start_event(w.dev, 0, 1, NOON - DAY, NOON - DAY, video=False)  # 27th 20:00
    await w.svc.start_event(w.dev, 0, 1, NOON - 1000)  # 28th 20:00 local
    await upload_clip(w, NOON - 3 * DAY, 1, dev=w.other)
    assert await w.query.dates(w.dev) == ["2026-11-27", "2026-11-28"]
    assert await w.query.dates(w.other) == ["2026-11-25"]
    lo, hi = w.query.day_window("2026-11-27")
    assert hi - lo == DAY
    assert lo == NOON - DAY - 12 * 3600_000 - 8 * 3600_000  # 27th 00:00 +08:00


async def test_day_timeline_merges_adjacent_clips(world: World) -> None:
    w = world
    await upload_clip(w, NOON - 20_000, 3)  # 3 s, contiguous
    await upload_clip(w, NOON - 10_000, 2)  # 2 s after a 7 s gap
    ranges = await w.query.time_ranges(w.dev, NOON - DAY, NOON)
    assert ranges == [(NOON - 20_000, NOON - 17_000), (NOON - 10_000, NOON - 8_000)]
    clipped = await w.query.time_ranges(w.dev, NOON - 18_500, NOON - 9_000)
    assert clipped == [(NOON - 18_500, NOON - 17_000), (NOON - 10_000, NOON - 9_000)]
    assert await w.query.time_ranges(w.dev, NOON - DAY, NOON, channel=1) == []


def test_merge_ranges() -> None:
    assert merge_ranges([(5, 6), (0, 1), (1, 2), (2_500, 3_000)], 1000) == [
        (0, 6),
        (2_500, 3_000),
    ]
    assert merge_ranges([(0, 10), (2, 3)], 0) == [(0, 10)]
    assert merge_ranges([], 5) == []


# -- retention -------------------------------------------------------------------------------


async def test_retention_removes_objects_then_rows(world: World) -> None:
    w = world
    old = await upload_clip(w, NOON - 2 * DAY, 2)
    await w.svc.start_event(w.dev, 0, 1, NOON - 2 * DAY, NOON - 2 * DAY + 2000)
    await w.svc.put_thumbnail(w.dev, 0, 1, NOON - 2 * DAY, make_clip(NOON, 1).jpeg())
    w.clock.now = NOON + 4 * DAY  # the old clip is 6 days old: kept
    await upload_clip(w, w.clock.now - 60_000, 1)  # same init: re-announced
    assert (await w.retention.cleanup()).segments == 0
    w.clock.now = NOON + 6 * DAY  # 8 days: gone
    before = await w.counts()
    result = await w.retention.cleanup()
    assert (result.segments, result.events, result.inits) == (2, 1, 0)
    after = await w.counts()
    assert after == (1, 1, 0, 0, before[4] - 3)  # 2 segments + 1 picture files removed
    assert await w.query.segment_key(w.dev, old[0]) is None
    w.clock.now = NOON + 20 * DAY
    result = await w.retention.cleanup()
    assert (result.segments, result.inits) == (1, 1)
    assert await w.counts() == (0, 0, 0, 0, 0)

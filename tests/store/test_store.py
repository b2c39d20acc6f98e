"""The store on SQLite and PostgreSQL: migrations, the batch writer's group commit and
upsert, cascades, and the services' queries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivcloud.bus.memory import InMemoryBus
from ivcloud.protocol.thing import PostedEvent
from ivcloud.services.devices import DeviceService
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.ports import SystemClock
from ivcloud.services.products import ProductService
from ivcloud.services.telemetry import Telemetry
from ivcloud.services.writer import BatchWriter, WriteItem
from ivcloud.store.db import WalCheckpointer, create_engine, migrate, session_factory
from ivcloud.store.schema import PropertyHistory, PropertyLatest


@dataclass
class Store:
    engine: AsyncEngine
    writer: BatchWriter
    products: ProductService
    devices: DeviceService
    telemetry: Telemetry
    bus: InMemoryBus


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    clock = SystemClock()
    bus = InMemoryBus()
    writer = BatchWriter(engine, batch_max=100, batch_delay_ms=2, queue_max=1000)
    writer.start()
    products = ProductService(sessions, clock, InMemoryBus())
    devices = DeviceService(sessions, products, bus, clock, writer)
    telemetry = Telemetry(sessions, writer, bus, clock)
    try:
        yield Store(engine, writer, products, devices, telemetry, bus)
    finally:
        await writer.stop()
        await engine.dispose()


async def test_migrations_create_schema_and_are_idempotent(store: Store) -> None:
    await migrate(store.engine)  # second run: nothing to do, no error

    def tables(conn: object) -> set[str]:
        return set(inspect(conn).get_table_names())  # type: ignore[arg-type]

    async with store.engine.connect() as conn:
        names = await conn.run_sync(tables)
    assert {
        "products",
        "devices",
        "property_latest",
        "property_history",
        "event_log",
        "pending_controls",
        "bind_tokens",
        "firmware",
        "ota_jobs",
        "ota_tasks",
        "gateway_subdevices",
        "cs_inits",
        "cs_segments",
        "cs_events",
        "alembic_version",
    } <= names


async def test_cloud_storage_rows_cascade_with_their_device(store: Store) -> None:
    """Migration 0003: the cloud-storage index lives and dies with its device."""
    from ivcloud.store.schema_cloud import CsEvent, CsInit, CsSegment

    product = await store.products.create("Cam", "camera")
    dev = await store.devices.create(product.product_id, "cam")
    keep = await store.devices.create(product.product_id, "keep")
    sessions = session_factory(store.engine)
    async with sessions.begin() as s:
        for d in (dev, keep):
            s.add(CsInit(device_id=d.id, sha256="a" * 64, object_key="k", size=1, created_ms=1))
            s.add(
                CsSegment(
                    device_id=d.id,
                    channel=0,
                    start_ms=1,
                    end_ms=2,
                    duration_ms=1,
                    size=1,
                    object_key="s",
                    init_sha256="a" * 64,
                    created_ms=1,
                )
            )
            s.add(
                CsEvent(
                    device_id=d.id,
                    channel=0,
                    event_id=1,
                    start_ms=1,
                    end_ms=None,
                    video=True,
                    thumbnail_key=None,
                    data={"a": [1]},
                    created_ms=1,
                )
            )
    await store.devices.delete(product.product_id, "cam")
    async with store.engine.connect() as conn:
        for table in (CsInit, CsSegment, CsEvent):
            rows = (await conn.execute(select(table.device_id))).scalars().all()
            assert rows == [keep.id], table.__tablename__
        data = (await conn.execute(select(CsEvent.data))).scalar_one()
    assert data == {"a": [1]}


async def test_product_and_device_lifecycle(store: Store) -> None:
    product = await store.products.create("Lock", "lock", "ble")
    assert len(product.product_id) == 10
    assert product.product_id.isalnum() and product.product_id.upper() == product.product_id
    await store.products.import_standard_model(product.product_id, "lock-video")
    dev = await store.devices.create(product.product_id, "door-1")
    assert len(dev.secret) == 24
    with pytest.raises(Conflict):
        await store.devices.create(product.product_id, "door-1")
    with pytest.raises(InvalidInput):
        await store.devices.create(product.product_id, "bad name!")
    with pytest.raises(NotFound):
        await store.devices.create("NOPRODUCT0", "x")
    total, listed = await store.devices.list(product.product_id)
    assert total == 1
    assert [d.device_name for d in listed] == ["door-1"]
    old = dev.secret
    assert (await store.devices.reset_secret(product.product_id, "door-1")).secret != old


async def test_batch_writer_group_commits_and_upserts_latest(store: Store) -> None:
    product = await store.products.create("Cam", "camera")
    devs = [await store.devices.create(product.product_id, f"cam{i}") for i in range(20)]
    acks: list[bool] = []

    async def ack(ok: bool) -> None:
        acks.append(ok)

    for round_ in range(5):
        for dev in devs:
            await store.writer.submit(
                WriteItem(dev.id, 1_000 + round_, params={"a": round_, "b": [round_]}, ack=ack)
            )
    await store.writer.stop()
    assert acks == [True] * 100
    assert store.writer.batches < 100  # grouped
    async with store.engine.connect() as conn:
        hist = await conn.scalar(select(func.count()).select_from(PropertyHistory))
        latest = (
            await conn.execute(
                select(PropertyLatest.value).where(
                    PropertyLatest.device_id == devs[0].id, PropertyLatest.prop_id == "b"
                )
            )
        ).scalar_one()
    assert hist == 200
    assert latest == [4]


async def test_failing_item_does_not_fail_its_batch(store: Store) -> None:
    product = await store.products.create("Cam", "camera")
    dev = await store.devices.create(product.product_id, "cam")
    results: dict[str, bool] = {}

    def acker(name: str):  # type: ignore[no-untyped-def]
        async def ack(ok: bool) -> None:
            results[name] = ok

        return ack

    await store.writer.submit(WriteItem(dev.id, 1, params={"x": 1}, ack=acker("good1")))
    await store.writer.submit(WriteItem(999_999, 1, params={"x": 1}, ack=acker("orphan")))
    await store.writer.submit(WriteItem(dev.id, 2, params={"x": 2}, ack=acker("good2")))
    await store.writer.stop()
    assert results == {"good1": True, "orphan": False, "good2": True}


async def test_telemetry_history_events_and_cascade(store: Store) -> None:
    product = await store.products.create("Sensor", "watch")
    dev = await store.devices.create(product.product_id, "s1")
    done = asyncio.Event()

    async def ack(ok: bool) -> None:
        assert ok
        done.set()

    for i in range(3):
        done.clear()
        await store.telemetry.record_report(dev, {"t": i}, 1_000 + i, ack)
        await done.wait()
    done.clear()
    await store.telemetry.record_events(
        dev, [PostedEvent("alarm", "alert", 5_000, {"level": 1})], ack
    )
    await done.wait()
    hist = await store.telemetry.history(dev, "t")
    assert [(h.value, h.ts_ms) for h in hist] == [(2, 1002), (1, 1001), (0, 1000)]
    assert [
        h.value for h in await store.telemetry.history(dev, "t", since_ms=1001, until_ms=1001)
    ] == [1]
    latest = await store.telemetry.latest(dev)
    assert latest["t"].value == 2
    events = await store.telemetry.events(dev)
    assert events[0]["EventId"] == "alarm" and events[0]["Params"] == {"level": 1}
    # Deleting the product removes devices and their data (ON DELETE CASCADE).
    await store.products.delete(product.product_id)
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(PropertyHistory)) == 0


async def test_invalid_thing_model_leaves_stored_model_untouched(store: Store) -> None:
    product = await store.products.create("Cam", "camera")
    await store.products.import_standard_model(product.product_id, "camera")
    before = await store.products.thing_model_json(product.product_id)
    with pytest.raises(InvalidInput):
        await store.products.import_thing_model(product.product_id, {"properties": "nope"})
    assert await store.products.thing_model_json(product.product_id) == before


async def test_presence_is_persisted_by_the_writer(store: Store) -> None:
    from ivcloud.store.schema import Device

    product = await store.products.create("Cam", "camera")
    dev = await store.devices.create(product.product_id, "cam")
    await store.devices.set_presence(dev, True, "10.0.0.7")
    await store.devices.set_presence(dev, False)
    await store.writer.stop()
    async with store.engine.connect() as conn:
        online, ip, seen = (
            await conn.execute(
                select(Device.online, Device.last_ip, Device.last_seen_ms).where(
                    Device.id == dev.id
                )
            )
        ).one()
    assert (online, ip) == (False, "10.0.0.7")
    assert seen == dev.last_seen_ms
    # A fresh service (a restart) loads it back into its cache.
    fresh = DeviceService(
        session_factory(store.engine), store.products, store.bus, SystemClock(), store.writer
    )
    assert await fresh.warm_cache() == 1
    cached = fresh.cached(product.product_id + "cam")
    assert cached is not None and cached.last_ip == "10.0.0.7"


async def test_wal_is_checkpointed_off_the_commit_path(tmp_path: Path) -> None:
    """No commit checkpoints (auto-checkpoint is off); the checkpointer's passive
    checkpoint copies every committed frame back into the database file."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            auto = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
        assert auto == 0
        async with engine.begin() as conn:
            for i in range(200):
                await conn.exec_driver_sql(
                    "INSERT INTO products (product_id, name, category, net_type, description,"
                    " created_ms) VALUES (?, 'n', 'c', 'wifi', '', 0)",
                    (f"P{i:09d}",),
                )
        checkpointer = WalCheckpointer(engine)
        busy, frames, done = await checkpointer.checkpoint()
        assert busy == 0 and frames > 0 and done == frames
        async with engine.connect() as conn:
            count = (await conn.exec_driver_sql("SELECT count(*) FROM products")).scalar()
        assert count == 200
    finally:
        await engine.dispose()


async def test_urgent_items_do_not_wait_for_the_batch_delay(store: Store) -> None:
    """A control a person waits on commits at once, however long the writer would linger
    to fill a batch of reports (here a minute)."""
    product = await store.products.create("Cam", "camera")
    dev = await store.devices.create(product.product_id, "cam0")
    writer = BatchWriter(store.engine, batch_max=500, batch_delay_ms=60_000, queue_max=100)
    writer.start()
    try:
        row = {"device_id": dev.id, "client_token": "t1", "params": {"a": 1}, "created_ms": 1}
        ok = await asyncio.wait_for(writer.commit(WriteItem(dev.id, 1, controls_added=[row])), 30)
        assert ok and writer.batches == 1
    finally:
        await writer.stop()

"""Shared fixtures: a real ivcloud instance on free ports, over real sockets.

``IVCLOUD_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) is the
PostgreSQL used by the store tests that run on both databases."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.config import Settings

PG_URL = os.environ.get("IVCLOUD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "http_port": 0,
        "mqtt_port": 0,
        "mqtt_ws_port": 0,
        "stun_port": 0,  # never the well-known 3478 in tests
        "report_batch_delay_ms": 1.0,
        "action_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    """A running instance on SQLite in a temporary data directory."""
    instance = Ivcloud(make_settings(tmp_path / "data"))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
async def admin(server: Ivcloud) -> AsyncIterator[httpx.AsyncClient]:
    """An admin-authenticated client of the console API."""
    assert server.endpoints is not None
    async with httpx.AsyncClient(
        base_url=server.endpoints.http_url + "/api/console/v1",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=30,
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    import uuid

    import asyncpg  # type: ignore[import-untyped]

    base = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"ivcloud_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each store test runs on both databases."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        async with fresh_pg_database() as url:
            yield url


@pytest.fixture
async def appclient(server: Ivcloud) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client of the server's root (App API paths are absolute)."""
    assert server.endpoints is not None
    async with httpx.AsyncClient(base_url=server.endpoints.http_url, timeout=30) as client:
        yield client

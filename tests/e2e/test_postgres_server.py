"""The whole server on PostgreSQL: one device journey (report, history, event, offline
control, action) against a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.conftest import make_settings
from tests.helpers import provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import device_for


@pytest.fixture
async def pg_server(tmp_path: Path, pg_url: str) -> AsyncIterator[Ivcloud]:
    instance = Ivcloud(make_settings(tmp_path / "data", database_url=pg_url))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


async def test_device_journey_on_postgresql(pg_server: Ivcloud) -> None:
    ep = pg_server.endpoints
    assert ep is not None
    async with httpx.AsyncClient(
        base_url=ep.http_url + "/api/console/v1",
        headers={"Authorization": f"Bearer {pg_server.admin_token}"},
    ) as admin:
        p = await provision_custom(admin, SENSOR_MODEL, "pg1")
        base = f"/products/{p.product_id}/devices/{p.device_name}"
        queued = await admin.post(base + "/control", json={"Params": {"brightness": 70}})
        assert queued.json()["Delivered"] is False
        async with device_for(pg_server, p) as dev:
            status = await dev.request("property", {"method": "get_status", "clientToken": "s"})
            assert status["data"] == {"control": {"brightness": 70}}
            for i in range(3):
                reply = await dev.request(
                    "property",
                    {
                        "method": "report",
                        "clientToken": f"r{i}",
                        "params": {"temperature": 20.5 + i, "label": f"v{i}"},
                    },
                )
                assert reply["code"] == 0
            reply = await dev.request(
                "event",
                {
                    "method": "event_post",
                    "clientToken": "e",
                    "eventId": "alarm",
                    "type": "alert",
                    "timestamp": 1_700_000_000,
                    "params": {"level": 3},
                },
            )
            assert reply["code"] == 0
            call = asyncio.create_task(
                admin.post(base + "/actions/blink", json={"Params": {"times": 2}})
            )
            action = await dev.down("action")
            await dev.up(
                "action",
                {
                    "method": "action_reply",
                    "clientToken": action["clientToken"],
                    "code": 0,
                    "status": "ok",
                    "response": {"done": 1},
                },
            )
            assert (await call).json()["Response"] == {"done": 1}
        body = (await admin.get(base)).json()
        assert body["Properties"]["temperature"]["Value"] == 22.5
        hist = (await admin.get(base + "/properties/label/history")).json()["Values"]
        assert [v["Value"] for v in hist] == ["v2", "v1", "v0"]
        events = (await admin.get(base + "/events")).json()["Events"]
        assert [(e["EventId"], e["Params"]) for e in events] == [("alarm", {"level": 3})]

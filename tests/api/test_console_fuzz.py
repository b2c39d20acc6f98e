"""Fuzz the console API from its own OpenAPI description (schemathesis): whatever the
input, the answer is a protocol error, never a 500.  The server runs as a real
``ivcloud serve`` process (the test body is synchronous, so it cannot share an event loop
with an in-process server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

IVCLOUD = str(Path(sys.executable).parent / "ivcloud")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "IVCLOUD_LOG_LEVEL": "error", "IVCLOUD_MQTT_WS_PORT": "0"}
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [IVCLOUD, "serve", "--data-dir", str(data_dir), "--http-port", "0", "--mqtt-port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info = data_dir / "server.json"
        deadline = time.monotonic() + 30
        while not info.exists():
            assert proc.poll() is None, "ivcloud serve exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        url = json.loads(info.read_text())["http_url"]
        token = (data_dir / "admin-token").read_text().strip()
        # Something to find: a product with a model and a device.
        import httpx

        with httpx.Client(
            base_url=url + "/api/console/v1", headers={"Authorization": f"Bearer {token}"}
        ) as admin:
            pid = admin.post("/products", json={"Name": "fuzz", "Category": "lock"}).json()[
                "ProductId"
            ]
            admin.put(f"/products/{pid}/thing-model/standard/lock-video")
            admin.post(f"/products/{pid}/devices", json={"DeviceName": "d1"})
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def console_schema(live_server: tuple[str, str]) -> schemathesis.BaseSchema:
    url, _ = live_server
    return schemathesis.openapi.from_url(url + "/openapi.json")


def test_console_api_never_answers_500(
    console_schema: schemathesis.BaseSchema, live_server: tuple[str, str]
) -> None:
    _, token = live_server
    operations = [result.ok() for result in console_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
            )

        no_server_error()

"""Fuzz the console API from its own OpenAPI description (schemathesis): whatever the
input, the answer is a protocol error, never a 500.  The server runs as a real
``ivcloud serve`` process (the test body is synchronous, so it cannot share an event loop
with an in-process server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.serve_support import serve


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with serve(tmp_path_factory.mktemp("fuzz")) as served:
        # Something to find: a product with a model and a device.
        import httpx

        with httpx.Client(
            base_url=served.url + "/api/console/v1",
            headers={"Authorization": f"Bearer {served.admin_token}"},
        ) as admin:
            pid = admin.post("/products", json={"Name": "fuzz", "Category": "lock"}).json()[
                "ProductId"
            ]
            admin.put(f"/products/{pid}/thing-model/standard/lock-video")
            admin.post(f"/products/{pid}/devices", json={"DeviceName": "d1"})
        yield served.url, served.admin_token


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

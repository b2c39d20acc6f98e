"""Console API: authentication, validation errors, resources."""

from __future__ import annotations

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.helpers import provision
from tests.models import SENSOR_MODEL


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer", "bearer x"])
async def test_admin_token_required(server: Ivcloud, header: str | None) -> None:
    assert server.endpoints is not None
    headers = {"Authorization": header} if header is not None else {}
    async with httpx.AsyncClient(base_url=server.endpoints.http_url) as http:
        for method, path in (
            ("GET", "/products"),
            ("POST", "/products"),
            ("GET", "/products/X/devices"),
            ("GET", "/ota-jobs/1"),
        ):
            resp = await http.request(method, "/api/console/v1" + path, headers=headers)
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "AuthFailure"


async def test_admin_token_file_is_private(server: Ivcloud) -> None:
    path = server.settings.admin_token_file
    assert path.read_text().strip() == server.admin_token
    assert path.stat().st_mode & 0o077 == 0


async def test_openapi_and_health(server: Ivcloud) -> None:
    assert server.endpoints is not None
    async with httpx.AsyncClient(base_url=server.endpoints.http_url) as http:
        spec = (await http.get("/openapi.json")).json()
        assert "/api/console/v1/products" in spec["paths"]
        health = (await http.get("/healthz")).json()
        assert health["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"Name": "x", "Category": "toaster"}, "InvalidParameterValue"),
        ({"Name": "x", "Category": "lock", "NetType": "5g"}, "InvalidParameterValue"),
        ({"Name": "", "Category": "lock"}, "InvalidParameter"),
        ({"Name": "x" * 65, "Category": "lock"}, "InvalidParameter"),
        ({"Category": "lock"}, "InvalidParameter"),
        ({"Name": 5, "Category": "lock"}, "InvalidParameter"),
        ({"Name": "x", "Category": "lock", "Extra": 1}, "InvalidParameter"),
    ],
)
async def test_product_validation(
    admin: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    resp = await admin.post("/products", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == code
    assert (await admin.get("/products")).json()["Total"] == 0


async def test_invalid_json_body(admin: httpx.AsyncClient) -> None:
    resp = await admin.post(
        "/products", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        (
            {
                "properties": [
                    {"id": "x", "mode": "rw", "define": {"type": "int", "min": "5", "max": "1"}}
                ]
            },
            "properties[0]",
        ),
        ({"properties": [{"id": "x", "mode": "w", "define": {"type": "bool"}}]}, "mode"),
        ([1, 2], "object"),
        ("text", "object"),
    ],
)
async def test_invalid_thing_model_is_refused_and_old_kept(
    admin: httpx.AsyncClient, doc: object, fragment: str
) -> None:
    p = await provision(admin, "camera", "camera", "c1")
    before = (await admin.get(f"/products/{p.product_id}/thing-model")).json()
    resp = await admin.put(f"/products/{p.product_id}/thing-model", json=doc)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "InvalidParameterValue"
    assert fragment in resp.json()["error"]["message"]
    assert (await admin.get(f"/products/{p.product_id}/thing-model")).json() == before


async def test_thing_model_round_trip_and_templates(admin: httpx.AsyncClient) -> None:
    templates = (await admin.get("/thing-model-templates")).json()["Templates"]
    assert templates == ["camera", "lock-image", "lock-video"]
    lock_video = (await admin.get("/thing-model-templates/lock-video")).json()
    assert {a["id"] for a in lock_video["actions"]} == {"wake_up", "unlock_remote"}
    assert len(lock_video["properties"]) == 19
    assert (await admin.get("/thing-model-templates/nope")).status_code == 404
    pid = (await admin.post("/products", json={"Name": "s", "Category": "watch"})).json()[
        "ProductId"
    ]
    resp = await admin.put(f"/products/{pid}/thing-model", json=SENSOR_MODEL)
    exported = resp.json()
    again = await admin.put(f"/products/{pid}/thing-model", json=exported)
    assert again.json() == exported
    assert (await admin.put(f"/products/{pid}/thing-model/standard/toaster")).status_code == 400


async def test_device_resources(admin: httpx.AsyncClient) -> None:
    p = await provision(admin, "lock-image", "lock", "l0")
    for i in range(1, 5):
        resp = await admin.post(f"/products/{p.product_id}/devices", json={"DeviceName": f"l{i}"})
        assert resp.status_code == 201
    dup = await admin.post(f"/products/{p.product_id}/devices", json={"DeviceName": "l1"})
    assert dup.status_code == 409
    bad = await admin.post(f"/products/{p.product_id}/devices", json={"DeviceName": "a b"})
    assert bad.status_code == 400
    page = (await admin.get(f"/products/{p.product_id}/devices?offset=1&limit=2")).json()
    assert page["Total"] == 5
    assert [d["DeviceName"] for d in page["Devices"]] == ["l1", "l2"]
    assert "DeviceSecret" not in page["Devices"][0]
    assert (await admin.get(f"/products/{p.product_id}/devices?limit=0")).status_code == 400
    assert (await admin.delete(f"/products/{p.product_id}/devices/l1")).status_code == 204
    assert (await admin.get(f"/products/{p.product_id}/devices/l1")).status_code == 404
    assert (await admin.delete(f"/products/{p.product_id}")).status_code == 204
    assert (await admin.get(f"/products/{p.product_id}/devices")).status_code == 404

"""Helpers shared by tests: provisioning products/devices through the real console API."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Provisioned:
    product_id: str
    device_name: str
    secret: str


async def provision(
    admin: httpx.AsyncClient,
    model: str = "lock-video",
    category: str = "lock",
    device_name: str = "dev1",
) -> Provisioned:
    resp = await admin.post("/products", json={"Name": f"{model} product", "Category": category})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["ProductId"]
    resp = await admin.put(f"/products/{pid}/thing-model/standard/{model}")
    assert resp.status_code == 200, resp.text
    resp = await admin.post(f"/products/{pid}/devices", json={"DeviceName": device_name})
    assert resp.status_code == 201, resp.text
    return Provisioned(pid, device_name, resp.json()["DeviceSecret"])


async def provision_custom(
    admin: httpx.AsyncClient, model: dict[str, object], device_name: str = "dev1"
) -> Provisioned:
    resp = await admin.post("/products", json={"Name": "custom product", "Category": "watch"})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["ProductId"]
    resp = await admin.put(f"/products/{pid}/thing-model", json=model)
    assert resp.status_code == 200, resp.text
    resp = await admin.post(f"/products/{pid}/devices", json={"DeviceName": device_name})
    assert resp.status_code == 201, resp.text
    return Provisioned(pid, device_name, resp.json()["DeviceSecret"])

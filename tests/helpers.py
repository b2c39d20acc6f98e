"""Helpers shared by tests: provisioning products/devices through the real console API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

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


T = TypeVar("T")


async def poll(
    fetch: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    deadline_s: float = 10.0,
    interval_s: float = 0.05,
) -> T:
    """Call ``await fetch()`` until ``until(result)``; fail with the last result on timeout."""
    end = time.monotonic() + deadline_s
    while True:
        last = await fetch()
        if until(last):
            return last
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline_s}s; last: {last!r}")
        await asyncio.sleep(interval_s)

"""Helpers for the device tests: start SDK devices and simulators against the real server,
and wait on HTTP state with a deadline (never a bare sleep)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import DeviceInfo, IvDevice, Simulator
from tests.helpers import (
    Provisioned,
    poll,
)

S = TypeVar("S", bound=Simulator)


def broker(server: Ivcloud) -> tuple[str, int]:
    assert server.endpoints is not None
    return server.endpoints.mqtt_host, server.endpoints.mqtt_port


@asynccontextmanager
async def sdk_device(
    server: Ivcloud, dev: Provisioned, **sys_kwargs: Any
) -> AsyncIterator[IvDevice]:
    """An :class:`IvDevice` that has called ``sys_init`` (callbacks via ``sys_kwargs``)."""
    host, port = broker(server)
    device = IvDevice()
    sys_kwargs.setdefault("host", host)
    sys_kwargs.setdefault("port", port)
    sys_kwargs.setdefault("reconnect_first", 0.1)
    await device.sys_init(DeviceInfo(dev.product_id, dev.device_name, dev.secret), **sys_kwargs)
    try:
        yield device
    finally:
        await device.stop()


@asynccontextmanager
async def simulator(
    server: Ivcloud, cls: type[S], dev: Provisioned, **kwargs: Any
) -> AsyncIterator[S]:
    host, port = broker(server)
    sim = cls(
        host=host,
        port=port,
        product_id=dev.product_id,
        device_name=dev.device_name,
        secret=dev.secret,
        reconnect_first=0.1,
        **kwargs,
    )
    try:
        yield sim
    finally:
        await sim.stop()


async def device_doc(admin: httpx.AsyncClient, dev: Provisioned) -> dict[str, Any]:
    resp = await admin.get(f"/products/{dev.product_id}/devices/{dev.device_name}")
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def prop(doc: dict[str, Any], prop_id: str) -> Any:
    return doc.get("Properties", {}).get(prop_id, {}).get("Value")


async def wait_prop(
    admin: httpx.AsyncClient, dev: Provisioned, prop_id: str, value: Any, deadline_s: float = 10.0
) -> dict[str, Any]:
    """Poll ``GET /devices/{dn}`` until ``Properties[prop_id].Value == value``."""
    return await poll(
        lambda: device_doc(admin, dev),
        lambda d: prop(d, prop_id) == value,
        deadline_s=deadline_s,
    )

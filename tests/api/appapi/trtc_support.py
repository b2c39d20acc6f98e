"""Shared by the TRTC call tests: a product with the TRTC system elements, a device in the
owner's family shared to a friend (plus a stranger), and the SDK device that answers as a
TRTC device does — what the cloud sent it lands in queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import DeviceInfo, IvDevice
from ivcloud.protocol.thingmodel import parse_thing_model
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.rtc_calls import RtcCall
from tests.api.test_push import give_user
from tests.appclient import AppApiClient, create_app, make_user
from tests.conftest import make_settings
from tests.helpers import Provisioned, poll, provision, provision_custom

T = TypeVar("T")


def _str(max_len: int) -> dict[str, Any]:
    return {"type": "string", "min": "0", "max": str(max_len)}


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "int", "min": str(lo), "max": str(hi), "start": "0", "step": "1", "unit": ""}


def _prop(pid: str, define: dict[str, Any]) -> dict[str, Any]:
    return {"id": pid, "name": pid, "desc": "", "mode": "rw", "required": False, "define": define}


def _param(pid: str, define: dict[str, Any]) -> dict[str, Any]:
    return {"id": pid, "name": pid, "define": define}


STATUS = {"type": "enum", "mapping": {"0": "idle", "1": "calling", "2": "in call"}}
#: The TRTC system elements as the device SDKs use them (a watch-style product).
TRTC_MODEL: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "", "CategoryId": "1"},
    "properties": [
        _prop("_sys_video_call_status", STATUS),
        _prop("_sys_audio_call_status", STATUS),
        *(
            _prop(p, _str(2048))
            for p in ("_sys_userid", "_sys_caller_id", "_sys_called_id", "_sys_user_agent")
        ),
        _prop("_sys_extra_info", _str(2048)),
    ],
    "events": [],
    "actions": [
        {
            "id": "_sys_trtc_join_room",
            "name": "join room",
            "desc": "",
            "required": False,
            "input": [
                _param("SdkAppId", _int(0, 4_300_000_000)),
                _param("UserId", _str(128)),
                _param("UserSig", _str(1280)),
                _param("StrRoomId", _str(128)),
                _param("PrivateMapKey", _str(1280)),
            ],
            "output": [_param("Code", _int(-100, 100))],
        }
    ],
}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: object) -> AsyncIterator[Ivcloud]:
    instance = Ivcloud(make_settings(tmp_path / "data", **overrides))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@dataclass
class Setup:
    """A TRTC device in the owner's family, shared to a friend; a stranger with no access."""

    server: Ivcloud
    dev: Provisioned
    api: AppApiClient
    owner_id: str
    owner_token: str
    friend_id: str
    friend_token: str
    stranger_token: str

    @property
    def device_id(self) -> str:
        return f"{self.dev.product_id}/{self.dev.device_name}"

    async def call(self, action: str, token: str, **params: Any) -> dict[str, Any]:
        return await self.api.tokenapi(token, action, **{"DeviceId": self.device_id, **params})

    async def rec(self) -> DeviceRecord:
        rec = await self.server.devices.find(self.dev.product_id, self.dev.device_name)
        assert rec is not None
        return rec

    async def current(self) -> RtcCall | None:
        return self.server.rtc_calls.call(await self.rec())


@contextlib.asynccontextmanager
async def setup(server: Ivcloud, model: dict[str, Any] | None = None) -> AsyncIterator[Setup]:
    assert server.endpoints is not None
    base = server.endpoints.http_url
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with (
        httpx.AsyncClient(base_url=base + "/api/console/v1", headers=headers) as admin,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        if model is None:
            dev = await provision_custom(admin, TRTC_MODEL, "watch01")
        else:
            dev = await provision(admin, "camera", "camera", "cam01")
        creds = await create_app(admin, dev.product_id)
        owner_id, owner_token = await make_user(server, creds, "owner")
        friend_id, friend_token = await make_user(server, creds, "friend")
        _, stranger_token = await make_user(server, creds, "stranger")
        await give_user(server, owner_id, dev)
        owner = await server.users.get(owner_id)
        rec = await server.devices.find(dev.product_id, dev.device_name)
        assert rec is not None
        family_id = await server.families.device_family(rec)
        assert family_id is not None
        token, _ = await server.sharing.create_token(
            owner, family_id, rec.product_id, rec.device_name
        )
        await server.sharing.accept(
            await server.users.get(friend_id), token, rec.product_id, rec.device_name
        )
        yield Setup(
            server,
            dev,
            AppApiClient(http, creds),
            owner_id,
            owner_token,
            friend_id,
            friend_token,
            stranger_token,
        )


@dataclass
class TrtcDevice:
    """The device's side: what the cloud sent it, and an SDK device to report with. It
    answers ``_sys_trtc_join_room`` with ``join_code``, as the C sample does."""

    sdk: IvDevice
    controls: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    actions: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    join_code: int = 0

    async def on_control(self, params: dict[str, Any]) -> int:
        self.controls.put_nowait(params)
        return 0

    async def on_action(self, action_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.actions.put_nowait((action_id, params))
        return self.join_code, {"Code": self.join_code}

    async def report(self, **params: Any) -> None:
        assert await self.sdk.property_report(params) == 0


@contextlib.asynccontextmanager
async def trtc_device(s: Setup) -> AsyncIterator[TrtcDevice]:
    assert s.server.endpoints is not None
    device = TrtcDevice(IvDevice())
    model = parse_thing_model(TRTC_MODEL).with_product_id(s.dev.product_id)
    device.sdk.dm_init(model, on_control=device.on_control, on_action=device.on_action)
    await device.sdk.sys_init(
        DeviceInfo(s.dev.product_id, s.dev.device_name, s.dev.secret),
        host=s.server.endpoints.mqtt_host,
        port=s.server.endpoints.mqtt_port,
        reconnect_first=0.1,
    )
    try:
        assert await device.sdk.wait_online(10)
        await poll(s.rec, lambda r: r.online)
        yield device
    finally:
        await device.sdk.stop()


async def next_item(queue: asyncio.Queue[T]) -> T:
    return await asyncio.wait_for(queue.get(), 10)

"""Shared by the P2P session tests: a real camera on a running server — ``IvDevice`` online over
MQTT, an ``Xp2pDevice`` with a small real ``LiveSource`` (320x240 @ 10 fps, AAC + Opus), an SD
card and callbacks, and the ``P2PAgent`` — plus an app user in the camera's family."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import DeviceInfo, IvDevice
from ivcloud.device.av import AudioProfile, LiveSource, VideoProfile
from ivcloud.device.av.p2p_agent import P2PAgent
from ivcloud.device.av.ptz import SimulatedCommands
from ivcloud.device.av.sdcard import SdCard
from ivcloud.device.av.xp2p_device import Xp2pCallbacks, Xp2pDevice
from ivcloud.protocol.thingmodel import load_standard_model
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.users import UserInfo
from tests.api.test_push import give_user
from tests.appclient import AppApiClient, AppCreds, create_app, make_user
from tests.device.av.sdcard_support import FakeClock
from tests.helpers import Provisioned, provision

# Small and quick to encode on 2 cores; a 1 s GOP so joins and segments come quickly.
SMALL = VideoProfile(320, 240, fps=10, gop_seconds=1.0, bitrate=200_000)
PLAYBACK_START_S = 1_767_225_600  # recordings made with a fake clock start here
#: A minimal offer the cloud accepts (SDP with the data channel), and an answer to relay.
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=sctp-port:5000\r\n"
)
ANSWER = OFFER.replace("o=- 1 1", "o=- 2 2")


@dataclass
class P2PCamera:
    device: IvDevice
    xp2p: Xp2pDevice
    agent: P2PAgent
    card: SdCard
    commands: SimulatedCommands
    talk: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    opened: list[tuple[int, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def p2p_camera(
    server: Ivcloud,
    dev: Provisioned,
    card_dir: Path,
    *,
    max_viewers: int = 4,
    report_info: bool = True,
    connect_timeout: float = 30.0,
    wire_offline: bool = True,
) -> AsyncIterator[P2PCamera]:
    """The camera, online (``_sys_xp2p_info`` reported by the agent). Playback is paced by
    a fake clock, so SD-card playback runs as fast as the viewer reads. ``wire_offline``
    passes ``agent.on_offline`` to ``sys_init`` (as the docs say to)."""
    assert server.endpoints is not None
    pace = FakeClock(PLAYBACK_START_S)
    commands = SimulatedCommands()
    talk: list[tuple[str, int, str, bytes]] = []
    opened: list[tuple[int, str]] = []

    def source(channel: int, quality: str) -> LiveSource:
        opened.append((channel, quality))
        return LiveSource(SMALL, (AudioProfile("aac"), AudioProfile("opus")))

    card = SdCard(card_dir)
    xp2p = Xp2pDevice(
        sources=source,
        sdcards={0: card},
        callbacks=Xp2pCallbacks(on_user_command=commands, on_talk_audio=lambda *a: talk.append(a)),
        max_viewers=max_viewers,
        clock=pace,
        sleep=pace.sleep,
    )
    commands.status = xp2p.status
    agent = P2PAgent(xp2p, report_info=report_info, connect_timeout=connect_timeout)
    device = IvDevice()
    device.dm_init(load_standard_model("camera").with_product_id(dev.product_id))
    agent.install(device)
    await device.sys_init(
        DeviceInfo(dev.product_id, dev.device_name, dev.secret),
        host=server.endpoints.mqtt_host,
        port=server.endpoints.mqtt_port,
        reconnect_first=0.1,
        on_offline=agent.on_offline if wire_offline else None,
    )
    cam = P2PCamera(device, xp2p, agent, card, commands, talk, opened)
    try:
        assert await device.wait_online(10)
        yield cam
    finally:
        await agent.aclose()
        await xp2p.aclose()
        await device.stop()


@dataclass
class Family:
    """A camera product and device, an app linked to it, its owner and a stranger."""

    server: Ivcloud
    dev: Provisioned
    creds: AppCreds
    api: AppApiClient
    owner_token: str
    owner: UserInfo
    stranger_token: str
    stranger: UserInfo
    theirs: Provisioned  # the stranger's own camera

    @property
    def device_id(self) -> str:
        return f"{self.dev.product_id}/{self.dev.device_name}"

    async def rec(self) -> DeviceRecord:
        rec = await self.server.devices.find(self.dev.product_id, self.dev.device_name)
        assert rec is not None
        return rec

    async def call(self, action: str, token: str | None = None, **params: Any) -> dict[str, Any]:
        return await self.api.tokenapi(
            token or self.owner_token, action, DeviceId=self.device_id, **params
        )


@contextlib.asynccontextmanager
async def family(server: Ivcloud, name: str = "cam01") -> AsyncIterator[Family]:
    assert server.endpoints is not None
    base = server.endpoints.http_url
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with (
        httpx.AsyncClient(base_url=base + "/api/console/v1", headers=headers) as admin,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        dev = await provision(admin, "camera", "camera", name)
        creds = await create_app(admin, dev.product_id)
        owner_id, owner_token = await make_user(server, creds, "owner")
        stranger_id, stranger_token = await make_user(server, creds, "stranger")
        await give_user(server, owner_id, dev)
        # The stranger has a camera of their own, in their own family.
        theirs = await provision(admin, "camera", "camera", name + "-theirs")
        linked = await admin.put(f"/apps/{creds.app_id}/products/{theirs.product_id}")
        assert linked.status_code == 200, linked.text
        await give_user(server, stranger_id, theirs)
        yield Family(
            server,
            dev,
            creds,
            AppApiClient(http, creds),
            owner_token,
            await server.users.get(owner_id),
            stranger_token,
            await server.users.get(stranger_id),
            theirs,
        )

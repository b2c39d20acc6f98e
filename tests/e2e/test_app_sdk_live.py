"""The Python app SDK's XP2P client end to end, everything real: an ivcloud server, a simulated
camera online over MQTT (real x264 + AAC, its P2P agent answering WebRTC offers relayed by
the cloud, its hub pusher), an app user in the camera's family reading the camera's
``_sys_xp2p_info`` with ``AppGetDeviceData`` as an app does, and players that are FFmpeg
(PyAV) opening the client's local proxy URL over HTTP.

"start_service → PyAV opens the proxy URL and decodes frames; the hub path alone works; P2P
alone works and chosen_path is "direct"; a second start_service gives the seed's error line;
send_command returns get_device_st status; voice frames reach the device's talk callback;
stop_service ends the player's HTTP response; another user's device → the App API
NoPermission surfaces as the right Xp2pError" — plus TURN ("turn" through a real coturn),
the cloud-relayed command path, and the device's P2P session closed by stop_service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ivcloud.app import Ivcloud
from ivcloud.client.app_sdk import AppClient
from ivcloud.client.p2p import AppPeer
from ivcloud.client.xp2p import Xp2pClient
from ivcloud.client.xp2p_errors import Xp2pError, Xp2pInfoError
from ivcloud.protocol import xp2p_errors as codes
from tests import p2p_support, turn_server
from tests.client import xp2p_support
from tests.client.xp2p_support import (
    DEVICE_ST,
    LIVE,
    open_with_pyav,
    stop_while_watching,
    tone,
    watch_live,
)
from tests.helpers import poll
from tests.media.hub_support import Live, camera, live_setup, running
from tests.p2p_support import eventually
from tests.turn_server import SECRET, Coturn

# fixtures, used by name
loopback_ice = p2p_support.loopback_ice
coturn = turn_server.coturn
hub_server, live = xp2p_support.hub_server, xp2p_support.live
pytestmark = pytest.mark.usefixtures("loopback_ice")


@contextlib.asynccontextmanager
async def sdk(server: Ivcloud, live: Live, **kwargs: Any) -> AsyncIterator[tuple[Xp2pClient, str]]:
    """The user's AppClient + Xp2pClient, and the camera's xp2p info as an app reads it."""
    assert server.endpoints is not None
    async with (
        AppClient(server.endpoints.http_url, access_token=live.token) as app,
        Xp2pClient(app, timeout=10.0, **kwargs) as client,
    ):

        async def info() -> str:
            data = await app.request_api("AppGetDeviceData", {"DeviceId": live.device_id})
            value = json.loads(data["Data"]).get("_sys_xp2p_info", {}).get("Value", "")
            return str(value)

        yield client, await poll(info, lambda v: v.startswith("XP2P1:"))


async def test_a_player_decodes_live_video_through_the_proxy_and_commands_answer(
    hub_server: Ivcloud, live: Live
) -> None:
    async with camera(hub_server, live.device), sdk(hub_server, live) as (client, info):
        await client.start_service(live.device_id, info)
        url = client.delegate_http_flv(live.device_id) + LIVE
        await watch_live(url, 10)
        assert client.chosen_path(live.device_id) in ("direct", "hub")  # whoever won
        reply = json.loads(await client.send_command(live.device_id, DEVICE_ST))
        assert reply[0]["status"] == "0"
        ptz = await client.send_command(live.device_id, "action=user_define&channel=0&cmd=ptz_left")
        assert ptz  # the simulated pan/tilt head answers
        # A second start for the same id: the seed's code and line.
        with capture_logs() as logs, pytest.raises(Xp2pError) as again:
            await client.start_service(live.device_id, info)
        assert again.value.code == codes.XP2P_ERR_P2P_ININED
        assert [e["event"] for e in logs if e.get("xp2p_code") == codes.XP2P_ERR_P2P_ININED] == [
            f"p2p service is running with id:{live.device_id}, please stop it first"
        ]


async def test_the_hub_alone(hub_server: Ivcloud, live: Live) -> None:
    async with camera(hub_server, live.device) as sim, sdk(hub_server, live) as (client, info):
        await client.start_service(live.device_id, info, paths=("hub",))
        url = client.delegate_http_flv(live.device_id) + LIVE
        await watch_live(url, 10)
        assert client.chosen_path(live.device_id) == "hub"
        assert hub_server.hub.stats().publishes == 1 and not sim.p2p.sessions
        # Without a tunnel, commands are relayed by the cloud (IvcloudXp2pCommand).
        reply = json.loads(await client.send_command(live.device_id, DEVICE_ST))
        assert reply[0]["status"] == "0"


async def test_p2p_alone_with_talk_and_stop_service(hub_server: Ivcloud, live: Live) -> None:
    async with camera(hub_server, live.device) as sim, sdk(hub_server, live) as (client, info):
        await client.start_service(live.device_id, info, paths=("p2p",))
        assert await client.wait_p2p(live.device_id) == "direct"
        assert client.chosen_path(live.device_id) == "direct"
        assert len(sim.p2p.sessions) == 1
        url = client.delegate_http_flv(live.device_id) + LIVE
        await watch_live(url, 10)
        assert hub_server.hub.stats().publishes == 0  # P2P only: the hub never asked
        reply = json.loads(await client.send_command(live.device_id, DEVICE_ST))
        assert reply == [{"status": "0", "appConnectNum": "1"}]
        # Talk: PCM in, AAC frames at the camera's talk callback.
        talk = await client.start_voice(live.device_id, fmt="pcm", sample_rate=16000)
        pcm = tone(1.0, 16000)
        for i in range(0, len(pcm), 2048):
            await talk.write(pcm[i : i + 2048])
        await client.stop_voice(live.device_id)
        await eventually(lambda: len(sim.talk_frames) >= 14)
        assert all(frame[:2] == b"\xff\xf1" for frame in sim.talk_frames)  # ADTS AAC
        # A player is watching when the service stops: its response ends, the device's
        # P2P session closes.
        await stop_while_watching(client, live.device_id, url)
        await eventually(lambda: not sim.p2p.sessions)


async def test_relay_only_ice_goes_through_turn(tmp_path: Path, coturn: Coturn) -> None:
    async with (
        running(tmp_path / "data", turn_urls=[coturn.url()], turn_secret=SECRET) as server,
        live_setup(server) as live,
        camera(server, live.device),
        sdk(
            server,
            live,
            peer_factory=lambda servers: AppPeer(
                servers, ice_transport_policy="relay", video=False, audio=False
            ),
        ) as (client, info),
    ):
        await client.start_service(live.device_id, info, paths=("p2p",))
        assert await client.wait_p2p(live.device_id) == "turn"
        assert client.chosen_path(live.device_id) == "turn"
        clocks = await asyncio.to_thread(
            open_with_pyav, client.delegate_http_flv(live.device_id) + LIVE, 5
        )
        assert None not in clocks and clocks == sorted(clocks)


async def test_another_users_device_is_no_permission(hub_server: Ivcloud, live: Live) -> None:
    async with (
        live_setup(hub_server, "cam02") as theirs,
        camera(hub_server, live.device),
        sdk(hub_server, live) as (client, info),
    ):
        with capture_logs() as logs, pytest.raises(Xp2pInfoError) as refused:
            await client.start_service(theirs.device_id, info)
        assert refused.value.code == codes.XP2P_ERR_GET_XP2PINFO
        assert refused.value.api_code == "InvalidParameterValue.NoPermission"
        assert logs[-1]["event"] == (
            "request xp2p_info failed, errmsg:InvalidParameterValue.NoPermission"
        )
        mine = await client.start_service(live.device_id, info)  # their own camera works
        assert mine.online and mine.xp2p_info == info


async def test_the_cli_prints_a_playable_url_and_the_chosen_path(
    hub_server: Ivcloud, live: Live, tmp_path: Path
) -> None:
    assert hub_server.endpoints is not None
    data_dir = tmp_path / "cli"
    data_dir.mkdir()
    session = {
        "server": hub_server.endpoints.http_url,
        "app_key": live.creds.app_key,
        "access_token": live.token,
    }  # what `ivcloud app-user login` saves
    (data_dir / "app-session.json").write_text(json.dumps(session))
    ivcloud = str(Path(sys.executable).parent / "ivcloud")
    async with camera(hub_server, live.device), sdk(hub_server, live):  # info reported
        relay = await asyncio.create_subprocess_exec(
            ivcloud, "app-user", "xp2p-command", live.device_id, DEVICE_ST,
            "--data-dir", str(data_dir), stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        out, errors = await asyncio.wait_for(relay.communicate(), 30)
        assert relay.returncode == 0, errors
        assert json.loads(out)[0]["status"] == "0"
        watch = await asyncio.create_subprocess_exec(
            ivcloud, "app-user", "watch", live.device_id, "--path", "hub", "--quality",
            "standard", "--seconds", "60", "--data-dir", str(data_dir), stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        assert watch.stdout is not None
        try:
            line = (await asyncio.wait_for(watch.stdout.readline(), 30)).decode()
            assert line.startswith("url: http://127.0.0.1:"), line
            url = line.removeprefix("url: ").strip()
            assert url.endswith(LIVE)
            clocks = await asyncio.to_thread(open_with_pyav, url, 5)
            assert None not in clocks and clocks == sorted(clocks)
            lines = []
            while "path: hub\n" not in lines:
                lines.append((await asyncio.wait_for(watch.stdout.readline(), 10)).decode())
        finally:
            watch.terminate()
            await watch.wait()
        # A camera that is not the user's: the XP2P error on stderr, exit status 1.
        denied = await asyncio.create_subprocess_exec(
            ivcloud, "app-user", "xp2p-command", "P/other", DEVICE_ST,
            "--data-dir", str(data_dir), stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        _, errors = await asyncio.wait_for(denied.communicate(), 30)
        assert denied.returncode == 1 and b"NoPermission" in errors

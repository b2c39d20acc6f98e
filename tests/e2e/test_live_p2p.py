"""P2P live view end to end over real sockets: a real ivcloud, a camera online over MQTT (an
``IvDevice`` with an ``Xp2pDevice`` encoding real H.264/AAC/Opus and the ``P2PAgent``), an app
user in the camera's family calling the App API over HTTP, and an aiortc ``AppPeer`` talking
WebRTC to the camera over loopback UDP with the offer and answer carried by the cloud.

Proven: describe → offer → connect → answer → connected; the video track decodes with
increasing burnt-in capture times; ``get_device_st`` answers 0; live FLV over the data
channel and playback from the SD card decode with PyAV; talk audio reaches the camera's
callback byte for byte; PTZ answers; ``IvcloudP2PClose`` closes the device's peer and the
app's; the cloud-relayed command path works without P2P; the viewer limit refuses a session
with the device's status; a device that drops off MQTT mid-session ends the app side without
a hang; the camera simulator serves P2P, the hub and its SD recorder from one encoder.
(Another user's device on every action: tests/api/appapi/test_p2p_actions.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.client.p2p import AppPeer, P2PClosed, P2PError
from ivcloud.device import CameraSimulator
from ivcloud.device.av import AudioEncoder, AudioProfile
from ivcloud.device.av.pusher import FeedSource
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.av.aac import add_adts
from tests import p2p_support
from tests.appclient import error_code, ok_data
from tests.device.av.sdcard_support import decode_flv, record_live
from tests.helpers import poll
from tests.media.hub_support import LIGHT_VIDEO, check_clocks, decode_clocks, now_ms
from tests.p2p_agent_support import PLAYBACK_START_S, Family, P2PCamera, family, p2p_camera
from tests.p2p_support import eventually

loopback_ice = p2p_support.loopback_ice  # the fixture, used by name
pytestmark = pytest.mark.usefixtures("loopback_ice")

DEVICE_ST = "action=inner_define&channel=0&cmd=get_device_st&type=live"


@pytest.fixture
async def fam(server: Ivcloud) -> AsyncIterator[Family]:
    async with family(server) as f:
        yield f


@pytest.fixture
async def cam(server: Ivcloud, fam: Family, tmp_path: Path) -> AsyncIterator[P2PCamera]:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as c:
        yield c


async def picture_clock(app: AppPeer) -> int | None:
    """The capture time burnt into the next picture of the session's video track."""
    assert app.video_track is not None
    frame = await asyncio.wait_for(app.video_track.recv(), 10)
    assert isinstance(frame, av.VideoFrame)
    return read_clock(frame)


async def open_session(fam: Family, **params: Any) -> tuple[AppPeer, str]:
    """What an app does: describe, offer, connect through the cloud, apply the answer."""
    described = ok_data(await fam.call("IvcloudDescribeP2PParams"))
    app = AppPeer(described["IceServers"])
    try:
        data = ok_data(await fam.call("IvcloudP2PConnect", Offer=await app.offer(), **params))
        await app.answer(data["Answer"])
        await app.wait_connected(timeout_s=15)
    except BaseException:
        await app.close()
        raise
    return app, data["SessionId"]


async def read_flv(stream: AsyncIterator[bytes], min_bytes: int) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
        if len(out) >= min_bytes:
            break
    return bytes(out)


async def test_p2p_live_view_commands_playback_talk_ptz_and_close(
    server: Ivcloud, fam: Family, cam: P2PCamera
) -> None:
    await record_live(cam.card, 6.0, start_s=PLAYBACK_START_S, segment_s=2.0)
    described = ok_data(await fam.call("IvcloudDescribeP2PParams"))
    assert described["Online"] == 1 and described["IceServers"][0]["urls"][0].startswith("stun:")
    await poll(
        lambda: fam.call("IvcloudDescribeP2PParams"),
        lambda doc: doc["data"].get("Xp2pInfo") == cam.agent.xp2p_info,
    )
    assert cam.agent.xp2p_info.startswith("XP2P1:") and cam.agent.xp2p_info.endswith(":clptuw")

    since = now_ms()
    app, session_id = await open_session(fam)
    try:
        # The media track: the camera's H.264 as aiortc decodes it, capture times rising.
        track_clocks = [await picture_clock(app) for _ in range(8)]
        check_clocks(track_clocks, since_ms=since, until_ms=now_ms())
        # Commands over the data channel.
        status = json.loads(await app.request(DEVICE_ST))
        assert status == [{"status": "0", "appConnectNum": "1"}]
        ptz = json.loads(await app.request("action=user_define&channel=0&cmd=ptz_left"))
        assert ptz["result"] == "0" and ptz["current_x"] == 45
        # Live FLV over the data channel.
        async with await app.open_stream("ipc.flv?action=live&channel=0&quality=standard") as s:
            live = await read_flv(s, 30_000)
        live_clocks: list[int | None] = [*decode_flv(live).clocks]
        check_clocks(live_clocks, since_ms=since, until_ms=now_ms())
        # Playback of what the SD card recorded (fake-clock recording, paced by a fake clock).
        start, end = PLAYBACK_START_S, PLAYBACK_START_S + 5
        request = f"ipc.flv?action=playback&channel=0&start_time={start}&end_time={end}"
        async with await app.open_stream(request) as s:
            played = b"".join([chunk async for chunk in s])
        played_clocks = decode_flv(played).clocks
        assert len(played_clocks) >= 40 and played_clocks == sorted(played_clocks)
        assert start * 1000 <= played_clocks[0] and played_clocks[-1] <= (end + 1) * 1000
        # Talk: AAC frames (ADTS) arrive at the camera's callback as sent.
        encoder = AudioEncoder(AudioProfile("aac"))
        frames = [f.data for t in range(8) for f in encoder.encode(since + t * 64)][:6]
        adts = [add_adts(f, encoder.config) for f in frames]
        encoder.close()
        upload = await app.start_voice("voice?channel=0&calltype=audio&format=adts")
        for frame in adts:
            await upload.write(frame)
        await upload.aclose()
        await eventually(lambda: len(cam.talk) == len(adts))
        assert [frame for *_, frame in cam.talk] == adts
        assert {visitor for visitor, *_ in cam.talk} == {f"{fam_visitor(fam)}.{session_id}"}
        # Closing through the cloud ends the device's peer, and with it the app's.
        assert len(cam.agent.sessions) == 1
        ok_data(await fam.call("IvcloudP2PClose", SessionId=session_id))
        assert cam.agent.sessions == {} and cam.xp2p.visitors == {}
        await asyncio.wait_for(app.wait_closed(), 10)
        assert server.p2p.sessions(fam.owner.user_id) == []
    finally:
        await app.close()


def fam_visitor(fam: Family) -> str:
    return fam.server.p2p.visitor(fam.owner)


async def test_relayed_commands_work_without_p2p(fam: Family, cam: P2PCamera) -> None:
    reply = ok_data(await fam.call("IvcloudXp2pCommand", Command=DEVICE_ST))["Reply"]
    assert json.loads(reply) == [{"status": "0", "appConnectNum": "1"}]
    reply = ok_data(
        await fam.call("IvcloudXp2pCommand", Command="action=user_define&channel=0&cmd=ptz_up")
    )["Reply"]
    assert json.loads(reply)["current_y"] == 25
    assert cam.xp2p.visitors == {}  # the relay's visitor came and went
    doc = await fam.call("IvcloudXp2pCommand", Command="ipc.flv?action=live&channel=0")
    assert error_code(doc) == "InvalidParameterValue"
    assert "P2P session or the stream hub" in doc["data"]["Error"]["Message"]


async def test_the_viewer_limit_refuses_with_the_devices_status(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd", max_viewers=1) as cam:
        app, _ = await open_session(fam)
        other = AppPeer()
        try:
            doc = await fam.call("IvcloudP2PConnect", Offer=await other.offer())
            assert error_code(doc) == "FailedOperation.DeviceRefused"
            assert "status 405" in doc["data"]["Error"]["Message"]
            assert json.loads(await app.request(DEVICE_ST))[0]["status"] == "0"  # still served
            assert len(cam.agent.sessions) == 1
        finally:
            await other.close()
            await app.close()
        # The app went away without IvcloudP2PClose: the device notices, tells the cloud.
        await eventually(
            lambda: not cam.agent.sessions and not server.p2p.sessions(fam.owner.user_id)
        )
        again, _ = await open_session(fam)
        await again.close()


async def test_device_disconnect_mid_session_ends_the_app_side(
    server: Ivcloud, fam: Family, cam: P2PCamera
) -> None:
    app, _ = await open_session(fam)
    try:
        stream = await app.open_stream("ipc.flv?action=live&channel=0&quality=standard")
        assert await read_flv(stream, 5_000)
        client_id = fam.dev.product_id + fam.dev.device_name
        assert await server.gateway.disconnect(client_id, "test: device lost")
        await asyncio.wait_for(app.wait_closed(), 10)
        with pytest.raises(P2PError):
            await asyncio.wait_for(read_flv(stream, 1 << 30), 10)
        with pytest.raises(P2PClosed):
            await app.request(DEVICE_ST)
        assert server.p2p.sessions(fam.owner.user_id) == []
        await eventually(lambda: not cam.agent.sessions and not cam.xp2p.visitors)
    finally:
        await app.close()
    # Back online (the SDK reconnects by itself), a new session works.
    await poll(fam.rec, lambda rec: rec.online)
    again, _ = await open_session(fam)
    assert json.loads(await again.request(DEVICE_ST))[0]["status"] == "0"
    await again.close()


async def test_simulator_serves_p2p_the_hub_and_its_recorder_from_one_encoder(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    assert server.endpoints is not None
    sim = CameraSimulator(
        host=server.endpoints.mqtt_host,
        port=server.endpoints.mqtt_port,
        product_id=fam.dev.product_id,
        device_name=fam.dev.device_name,
        secret=fam.dev.secret,
        reconnect_first=0.1,
        video_overrides=LIGHT_VIDEO,
        data_dir=tmp_path / "sim",
    )
    try:
        assert await sim.start(wait_online=10)
        feed = sim.xp2p.feed(0, "standard")
        assert sim.recording is not None and feed.subscribers == 1  # the SD recorder
        await poll(
            lambda: fam.call("IvcloudDescribeP2PParams"),
            lambda doc: doc["data"].get("Xp2pInfo") == sim.p2p.xp2p_info,
        )
        since = now_ms()
        app, _ = await open_session(fam)
        try:
            clock = await picture_clock(app)
            assert clock is not None and clock >= since - 3000
            urls = ok_data(await fam.call("IvcloudDescribeStreamUrls"))
            flv = bytearray()
            async with (
                httpx.AsyncClient(timeout=30) as http,
                http.stream("GET", urls["FlvUrl"]) as resp,
            ):
                assert resp.status_code == 200
                async for chunk in resp.aiter_bytes():
                    flv += chunk
                    if len(flv) >= 30_000:
                        break
            check_clocks(decode_clocks(bytes(flv), "flv"), since_ms=since, until_ms=now_ms())
            pusher = sim.pushers.history[0]
            assert isinstance(pusher.source, FeedSource)
            # recorder + hub upload + the session's video and audio tracks: one feed.
            assert sim.xp2p.feed(0, "standard") is feed and feed.subscribers >= 3
            ptz = json.loads(await app.request("action=user_define&channel=0&cmd=ptz_right"))
            assert ptz["current_x"] == 55
        finally:
            await app.close()
        await eventually(lambda: not sim.p2p.sessions)
        card = sim.sdcard
        assert card is not None
        await eventually(lambda: len(card.segments) >= 1)
    finally:
        await sim.stop()

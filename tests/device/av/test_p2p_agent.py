"""The device's ``P2PAgent`` against a running server: an ``IvDevice`` online over MQTT with an
``Xp2pDevice`` (real encoders) and the agent, driven through the cloud's
``P2PSessionService`` and ``$video`` requests, with aiortc app peers on loopback UDP.

Proven: ``_sys_xp2p_info`` is reported at connect and again when capabilities change; each
offer gets a peer on the shared feed of its channel and quality; offers the device cannot
answer, channels it lacks and a full house are refused with the right codes and leave
nothing behind; sessions count against ``max_viewers`` with the visitors streaming
otherwise; a peer that never connects is reported closed so the cloud forgets it; relayed
commands act on the visitor's own session (its playback) and never open streams; peers
close when the link drops (also without the ``on_offline`` hook, at the next connect) and at
``aclose``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver

from ivcloud.app import Ivcloud
from ivcloud.client.p2p import AppPeer
from ivcloud.device.av.xp2p_streams import ViewerStream
from ivcloud.protocol import p2p_signal as ps
from ivcloud.services.errors import InvalidInput
from ivcloud.services.p2p_sessions import P2PRefused
from tests import p2p_support
from tests.device.av.sdcard_support import record_live
from tests.helpers import poll
from tests.p2p_agent_support import PLAYBACK_START_S, Family, family, p2p_camera
from tests.p2p_support import eventually

loopback_ice = p2p_support.loopback_ice  # the fixture, used by name
pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def fam(server: Ivcloud) -> AsyncIterator[Family]:
    async with family(server) as f:
        yield f


async def connected(fam: Family, **connect: Any) -> tuple[AppPeer, str]:
    app = AppPeer()
    session, answer = await fam.server.p2p.connect(
        fam.owner, await fam.rec(), await app.offer(), **connect
    )
    await app.answer(answer)
    await app.wait_connected(timeout_s=15)
    return app, session


async def latest_info(fam: Family) -> Any:
    latest = (await fam.server.telemetry.latest(await fam.rec())).get("_sys_xp2p_info")
    return None if latest is None else latest.value


async def info_reports(fam: Family) -> int:
    return len(await fam.server.telemetry.history(await fam.rec(), "_sys_xp2p_info"))


async def test_xp2p_info_is_reported_at_connect_and_when_it_changes(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as cam:
        value = cam.agent.xp2p_info
        assert value.startswith(f"XP2P1:{cam.agent.peer_id}:") and value.endswith(":clptuw")
        await poll(lambda: latest_info(fam), lambda v: v == value)
        assert await cam.agent.refresh_info() is None  # unchanged: nothing sent
        cam.xp2p.sdcards.clear()  # the card was taken out
        assert await cam.agent.refresh_info() == 0
        assert await latest_info(fam) == cam.agent.xp2p_info
        assert cam.agent.xp2p_info.endswith(":cltuw")
        reports = await info_reports(fam)
        assert await server.gateway.disconnect(fam.dev.product_id + fam.dev.device_name, "test")
        await poll(lambda: info_reports(fam), lambda n: n == reports + 1)  # once per connect


async def test_each_offer_gets_a_peer_on_the_shared_feed_of_its_quality(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as cam:
        apps = []
        try:
            apps.append(await connected(fam))
            apps.append(await connected(fam))
            apps.append(await connected(fam, quality="high"))
            assert cam.opened == [(0, "standard"), (0, "high")]  # one encoder per quality
            visitor = server.p2p.visitor(fam.owner)
            assert set(cam.agent.sessions) == {session for _, session in apps}
            assert set(cam.xp2p.visitors) == {f"{visitor}.{session}" for _, session in apps}
            standard = cam.xp2p.feed(0, "standard")
            # Every session's video and audio track reads the one broadcaster.
            await eventually(lambda: standard.subscribers == 4)
            for app, _ in apps:
                assert app.video_track is not None
                await asyncio.wait_for(app.video_track.recv(), 10)
        finally:
            for app, _ in apps:
                await app.close()
        await eventually(lambda: not cam.agent.sessions and not cam.xp2p.visitors)
        await eventually(lambda: not server.p2p.sessions(fam.owner.user_id))


async def test_offers_that_cannot_be_served_leave_nothing_behind(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as cam:
        rec, p2p = await fam.rec(), server.p2p
        # A viewer that only takes VP8 (plus the data channel): the camera will not re-encode.
        pc = RTCPeerConnection()
        pc.createDataChannel("xp2p")
        transceiver = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType == "video/VP8"])
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(InvalidInput, match="codec"):
            await p2p.connect(fam.owner, rec, pc.localDescription.sdp)
        await pc.close()
        app = AppPeer()
        offer = await app.offer()
        with pytest.raises(P2PRefused) as info:  # a camera has channel 0 only
            await p2p.connect(fam.owner, rec, offer, channel=1)
        assert info.value.status == 404
        # Malformed params straight on $video: 406 naming the problem.
        reply = await server.video_signal.request(rec, ps.WEBRTC_OFFER, {"offer": offer})
        assert reply.code == 406 and "session" in reply.status
        await app.close()
        assert not cam.agent.sessions and not cam.xp2p.visitors
        assert server.p2p.sessions(fam.owner.user_id) == []


async def test_sessions_and_other_viewers_share_the_viewer_limit(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd", max_viewers=2) as cam:
        local = await cam.xp2p.connect("on-device-display")  # a viewer not over P2P
        stream = await local("ipc.flv?action=live&channel=0&quality=standard")
        assert isinstance(stream, ViewerStream)
        app, _ = await connected(fam)
        other = AppPeer()
        try:
            with pytest.raises(P2PRefused) as info:
                await server.p2p.connect(fam.owner, await fam.rec(), await other.offer())
            assert info.value.status == 405
            await stream.aclose()
            await local.close()
            again, _ = await connected(fam)  # the slot is free again
            await again.close()
        finally:
            await other.close()
            await app.close()


async def test_concurrent_offers_cannot_overbook_the_viewer_limit(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd", max_viewers=1) as cam:
        rec, apps = await fam.rec(), [AppPeer() for _ in range(3)]
        try:
            offers = [await app.offer() for app in apps]
            results = await asyncio.gather(
                *(server.p2p.connect(fam.owner, rec, offer) for offer in offers),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, P2PRefused)]
            assert len(refused) == 2 and {r.status for r in refused} == {405}, results
            assert len(cam.agent.sessions) == 1 and len(cam.xp2p.visitors) == 1
        finally:
            for app in apps:
                await app.close()


async def test_a_peer_that_never_connects_is_reported_and_forgotten(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd", connect_timeout=0.5) as cam:
        app = AppPeer()
        session, _ = await server.p2p.connect(fam.owner, await fam.rec(), await app.offer())
        assert [s.session_id for s in server.p2p.sessions(fam.owner.user_id)] == [session]
        await eventually(lambda: not server.p2p.sessions(fam.owner.user_id))  # webrtc_closed
        assert not cam.agent.sessions and not cam.xp2p.visitors
        await app.close()


async def test_relayed_commands_act_on_the_visitors_session(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as cam:
        await record_live(cam.card, 6.0, start_s=PLAYBACK_START_S, segment_s=2.0)
        rec, p2p = await fam.rec(), server.p2p
        app, _ = await connected(fam)
        try:
            start, end = PLAYBACK_START_S, PLAYBACK_START_S + 5
            playback = await app.open_stream(
                f"ipc.flv?action=playback&channel=0&start_time={start}&end_time={end}",
                window=16 * 1024,  # small: the device stays mid-file until we read
            )
            assert await playback.__anext__()
            pause = "action=inner_define&channel=0&cmd=playback_pause"
            assert json.loads(await p2p.command(fam.owner, rec, pause)) == {"status": "0"}
            progress = "action=inner_define&channel=0&cmd=playback_progress"
            assert json.loads(await p2p.command(fam.owner, rec, progress))["status"] == "0"
            # Another visitor (the stranger) has no playback to pause.
            assert json.loads(await p2p.command(fam.stranger, rec, pause)) == {"status": "404"}
            await playback.aclose()
        finally:
            await app.close()
        # Stream requests are never run by the relay; unreadable text is refused.
        for text, code in (("ipc.flv?action=live&channel=0", 406), ("hello", ps.REFUSED)):
            reply = await server.video_signal.request(
                rec, ps.XP2P_COMMAND, {"visitor": "v1", "request": text}
            )
            assert reply.code == code, reply
        assert reply.data == {"xp2p_status": 404}
        await eventually(lambda: not cam.xp2p.visitors)


async def test_peers_close_when_the_link_drops_even_without_the_offline_hook(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd", wire_offline=False) as cam:
        app, _ = await connected(fam)
        try:
            assert await server.gateway.disconnect(fam.dev.product_id + fam.dev.device_name, "x")
            # Without on_offline the agent learns it at the next connect (reconnect 0.1 s).
            await asyncio.wait_for(app.wait_closed(), 10)
            assert not cam.agent.sessions and not cam.xp2p.visitors
        finally:
            await app.close()


async def test_aclose_ends_every_session_and_refuses_new_ones(
    server: Ivcloud, fam: Family, tmp_path: Path
) -> None:
    async with p2p_camera(server, fam.dev, tmp_path / "sd") as cam:
        app, _ = await connected(fam)
        late = AppPeer()
        try:
            await cam.agent.aclose()
            await asyncio.wait_for(app.wait_closed(), 10)
            assert not cam.agent.sessions and not cam.xp2p.visitors
            reply = await server.video_signal.request(
                await fam.rec(),
                ps.WEBRTC_OFFER,
                {"session": "s1", "visitor": "v1", "offer": await late.offer()},
            )
            assert (reply.code, reply.status) == (500, "shutting down")
        finally:
            await late.close()
            await app.close()

"""``P2PSessionService`` on a running server, with a raw MQTT device answering ``$video`` by
hand so every field the cloud sends and every reply code the device may give is visible:
the app's ICE servers and the device's xp2p info, offers relayed with device-scoped TURN
credentials and an opaque visitor, answers returned, refusals / bad offers / silence /
absence mapped to their errors, sessions bounded per user and closable only by their owner,
forgotten when the device reports them ended or goes offline, and the command relay."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivcloud.app import Ivcloud
from ivcloud.services.errors import (
    DeviceOffline,
    DeviceTimeout,
    InvalidInput,
    NotFound,
)
from ivcloud.services.p2p_sessions import P2PFailed, P2PRefused, TooManySessions
from tests.helpers import poll
from tests.media.hub_support import VIDEO_DOWN, VIDEO_UP, VideoRawDevice, raw_video_device, running
from tests.p2p_agent_support import ANSWER, OFFER, Family, family

TURN_SECRET = "turn-shared-secret"
INFO = "XP2P1:q0V3b2Qp1kqjv8d2c0xq3A:clptuw"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    async with running(
        tmp_path / "data",
        turn_urls=["turn:127.0.0.1:3478?transport=udp"],
        turn_secret=TURN_SECRET,
    ) as instance:
        yield instance


@pytest.fixture
async def fam(server: Ivcloud) -> AsyncIterator[Family]:
    async with family(server) as f:
        yield f


@pytest.fixture
async def dev(server: Ivcloud, fam: Family) -> AsyncIterator[VideoRawDevice]:
    async with raw_video_device(server, fam.dev) as device:
        await poll(fam.rec, lambda rec: rec.online)
        yield device


def turn_entry(servers: list[dict[str, Any]]) -> dict[str, Any]:
    [entry] = [s for s in servers if s["urls"][0].startswith("turn:")]
    expected = base64.b64encode(
        hmac.new(TURN_SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert entry["credential"] == expected  # coturn recomputes exactly this
    return entry


async def reply(
    dev: VideoRawDevice, request: dict[str, Any], code: int, status: str, **data: Any
) -> None:
    await dev.publish(
        VIDEO_UP,
        {
            "method": request["method"] + "_reply",
            "clientToken": request["clientToken"],
            "code": code,
            "status": status,
            "data": data,
        },
    )


async def answered(
    fam: Family, dev: VideoRawDevice, **connect: Any
) -> tuple[str, str, dict[str, Any]]:
    """Connect through the service while the raw device answers; (session, answer, offer)."""
    task = asyncio.create_task(fam.server.p2p.connect(fam.owner, await fam.rec(), OFFER, **connect))
    request = await dev.video_request()
    await reply(dev, request, 0, "answered", answer=ANSWER)
    session, answer = await task
    return session, answer, request


async def test_params_give_user_turn_credentials_and_the_latest_xp2p_info(
    server: Ivcloud, fam: Family
) -> None:
    rec = await fam.rec()
    params = await server.p2p.params(fam.owner, rec)
    assert (params.xp2p_info, params.online) == ("", False)  # never reported, offline
    async with raw_video_device(server, fam.dev) as dev:
        doc = {"method": "report", "clientToken": "r1", "params": {"_sys_xp2p_info": INFO}}
        assert (await dev.request("property", doc))["code"] == 0
        params = await server.p2p.params(fam.owner, rec)
        assert params.to_api()["Xp2pInfo"] == INFO and params.to_api()["Online"] == 1
    visitor = server.p2p.visitor(fam.owner)
    assert visitor != server.p2p.visitor(fam.stranger)
    assert fam.owner.user_id not in visitor and len(visitor) <= 64
    assert params.ice_servers[0]["urls"][0].startswith("stun:127.0.0.1:")
    assert turn_entry(params.ice_servers)["username"].endswith(f":app-{visitor}")


async def test_an_offer_is_relayed_with_device_credentials_and_the_answer_returned(
    server: Ivcloud, fam: Family, dev: VideoRawDevice
) -> None:
    session, answer, request = await answered(fam, dev, channel=0, quality="high")
    rec = await fam.rec()
    params = request["params"]
    assert request["method"] == "webrtc_offer" and request["clientToken"].startswith("video-")
    assert params["session"] == session and session.startswith("p2p-")
    assert params["offer"] == OFFER and answer == ANSWER
    assert (params["channel"], params["quality"]) == (0, "high")
    assert params["visitor"] == server.p2p.visitor(fam.owner)
    assert turn_entry(params["ice_servers"])["username"].endswith(f":dev-{rec.id}")
    [open_session] = server.p2p.sessions(fam.owner.user_id)
    assert (open_session.session_id, open_session.quality) == (session, "high")


async def test_device_refusals_bad_answers_silence_and_absence(
    server: Ivcloud, fam: Family, dev: VideoRawDevice
) -> None:
    rec, p2p = await fam.rec(), server.p2p

    async def outcome(code: int, status: str, **data: Any) -> BaseException:
        task = asyncio.create_task(p2p.connect(fam.owner, rec, OFFER))
        await reply(dev, await dev.video_request(), code, status, **data)
        with pytest.raises(Exception) as info:
            await task
        return info.value

    refused = await outcome(403, "at most 1 viewers", xp2p_status=405)
    assert isinstance(refused, P2PRefused) and refused.status == 405
    assert str(refused) == "device refused: status 405 (at most 1 viewers)"
    assert refused.code == "FailedOperation.DeviceRefused"
    bad = await outcome(406, "invalid params: no common codec")
    assert isinstance(bad, InvalidInput) and "no common codec" in str(bad)
    assert isinstance(await outcome(500, "handler failed"), P2PFailed)
    assert isinstance(await outcome(404, "unknown method"), P2PFailed)
    assert isinstance(await outcome(0, "answered", answer="not sdp"), P2PFailed)
    assert isinstance(await outcome(0, "answered"), P2PFailed)
    assert p2p.sessions(fam.owner.user_id) == []  # nothing half-open remembered

    p2p.answer_timeout_s = 0.3
    with pytest.raises(DeviceTimeout):
        await p2p.connect(fam.owner, rec, OFFER)
    await dev.video_request()  # the offer did arrive; nobody answered it


async def test_bad_offers_never_reach_the_device(
    server: Ivcloud, fam: Family, dev: VideoRawDevice
) -> None:
    rec = await fam.rec()
    no_channel = OFFER.replace("m=application 9 UDP/DTLS/SCTP", "m=video 9 UDP/TLS/RTP/SAVPF")
    for offer in ("", "hello", no_channel, OFFER + "a=x\r\n" * 20_000, OFFER + "\x00"):
        with pytest.raises(InvalidInput):
            await server.p2p.connect(fam.owner, rec, offer)
    _, _, request = await answered(fam, dev)
    assert request["params"]["offer"] == OFFER  # the first thing the device saw


async def test_an_offline_device(server: Ivcloud, fam: Family) -> None:
    rec = await fam.rec()
    with pytest.raises(DeviceOffline):
        await server.p2p.connect(fam.owner, rec, OFFER)
    with pytest.raises(DeviceOffline):
        await server.p2p.command(fam.owner, rec, "action=inner_define&cmd=get_device_st")


async def test_sessions_are_bounded_per_user_and_closed_only_by_their_owner(
    server: Ivcloud, fam: Family, dev: VideoRawDevice
) -> None:
    p2p, rec = server.p2p, await fam.rec()
    p2p.max_sessions_per_user = 2
    first, _, _ = await answered(fam, dev)
    pending = asyncio.create_task(p2p.connect(fam.owner, rec, OFFER))
    offer = await dev.video_request()
    with pytest.raises(TooManySessions):  # one open + one in flight = the bound
        await p2p.connect(fam.owner, rec, OFFER)
    await reply(dev, offer, 0, "answered", answer=ANSWER)
    second, _ = await pending
    assert [s.session_id for s in p2p.sessions(fam.owner.user_id)] == [first, second]

    with pytest.raises(NotFound):  # another user (even one who could see the device)
        await p2p.close(fam.stranger, rec, first)
    with pytest.raises(NotFound):
        await p2p.close(fam.owner, rec, "p2p-000000000000000000000000")
    closing = asyncio.create_task(p2p.close(fam.owner, rec, first))
    request = await dev.video_request()
    assert (request["method"], request["params"]) == ("webrtc_close", {"session": first})
    await reply(dev, request, 0, "closed")
    await closing
    assert [s.session_id for s in p2p.sessions(fam.owner.user_id)] == [second]
    with pytest.raises(NotFound):  # gone for good
        await p2p.close(fam.owner, rec, first)
    await answered(fam, dev)  # room again


async def test_sessions_end_when_the_device_says_so_or_goes_offline(
    server: Ivcloud, fam: Family
) -> None:
    p2p = server.p2p
    async with raw_video_device(server, fam.dev) as dev:
        session, _, _ = await answered(fam, dev)
        ended = {"method": "webrtc_closed", "clientToken": "c1", "params": {"session": session}}
        await dev.publish(VIDEO_UP, {**ended, "params": {"session": "bad id!"}})
        assert (await dev.next(VIDEO_DOWN))["code"] == 406
        await dev.publish(VIDEO_UP, {**ended, "params": {"session": session, "reason": "gone"}})
        assert (await dev.next(VIDEO_DOWN))["status"] == "forgotten"
        assert p2p.sessions(fam.owner.user_id) == []
        await dev.publish(VIDEO_UP, ended)
        assert (await dev.next(VIDEO_DOWN))["status"] == "not open"
        await answered(fam, dev)
        assert len(p2p.sessions(fam.owner.user_id)) == 1
    # The device disconnected: its peers are gone, and so are its sessions.
    await poll(lambda: _sessions(server, fam), lambda sessions: sessions == 0)


async def _sessions(server: Ivcloud, fam: Family) -> int:
    return len(server.p2p.sessions(fam.owner.user_id))


async def test_command_relay(server: Ivcloud, fam: Family, dev: VideoRawDevice) -> None:
    p2p, rec = server.p2p, await fam.rec()
    for stream in (
        "ipc.flv?action=live&channel=0",
        "voice?channel=0",
        "ipc.flv?action=download&file_name=rec_1_2_0.flv&offset=0",
    ):
        with pytest.raises(InvalidInput, match="P2P session or the stream hub"):
            await p2p.command(fam.owner, rec, stream)
    with pytest.raises(InvalidInput, match="not an XP2P command"):
        await p2p.command(fam.owner, rec, "hello")
    text = "action=inner_define&channel=0&cmd=get_device_st&type=live"
    task = asyncio.create_task(p2p.command(fam.owner, rec, text))
    request = await dev.video_request()
    assert request["method"] == "xp2p_command"
    assert request["params"] == {"visitor": p2p.visitor(fam.owner), "request": text}
    await reply(dev, request, 0, "ok", reply='[{"status":"0","appConnectNum":"1"}]')
    assert await task == '[{"status":"0","appConnectNum":"1"}]'
    # A malformed *command* still goes to the device: it answers in the command's shape.
    task = asyncio.create_task(p2p.command(fam.owner, rec, "action=inner_define&cmd=nope"))
    await reply(dev, await dev.video_request(), 403, "unsupported", xp2p_status=406)
    with pytest.raises(P2PRefused) as info:
        await task
    assert info.value.status == 406

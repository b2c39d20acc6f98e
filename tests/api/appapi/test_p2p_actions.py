"""The P2P App API actions over real HTTP (``IvcloudDescribeP2PParams``, ``IvcloudP2PConnect``,
``IvcloudP2PClose``, ``IvcloudXp2pCommand``): another user's device — or one that does not
exist — is ``NoPermission`` on every one; a user the device is shared with may use them but
not close the owner's session; bad parameters and every device outcome get their documented
codes. The device is a raw MQTT client answering ``$video`` by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol.p2p_signal import MAX_SDP_CHARS
from tests.appclient import error_code, make_user, ok_data
from tests.helpers import poll
from tests.media.hub_support import VIDEO_UP, VideoRawDevice, raw_video_device
from tests.p2p_agent_support import ANSWER, OFFER, Family, family

NO_PERMISSION = "InvalidParameterValue.NoPermission"
DEVICE_ST = "action=inner_define&channel=0&cmd=get_device_st&type=live"


def p2p_calls(session_id: str = "p2p-000000000000000000000000") -> dict[str, dict[str, Any]]:
    return {
        "IvcloudDescribeP2PParams": {},
        "IvcloudP2PConnect": {"Offer": OFFER},
        "IvcloudP2PClose": {"SessionId": session_id},
        "IvcloudXp2pCommand": {"Command": DEVICE_ST},
    }


@pytest.fixture
async def fam(server: Ivcloud) -> AsyncIterator[Family]:
    async with family(server) as f:
        yield f


async def answer_next(dev: VideoRawDevice, code: int = 0, status: str = "ok", **data: Any) -> None:
    request = await dev.video_request()
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


async def test_every_p2p_action_refuses_another_users_device(server: Ivcloud, fam: Family) -> None:
    async with raw_video_device(server, fam.dev) as dev:
        answering = asyncio.create_task(answer_next(dev, answer=ANSWER))
        session = ok_data(await fam.call("IvcloudP2PConnect", Offer=OFFER))["SessionId"]
        await answering
        for action, params in p2p_calls(session).items():
            doc = await fam.call(action, fam.stranger_token, **params)
            assert error_code(doc) == NO_PERMISSION, action
            doc = await fam.api.tokenapi(
                fam.owner_token, action, DeviceId=f"{fam.dev.product_id}/nope", **params
            )
            assert error_code(doc) == NO_PERMISSION, action
        # The stranger's refusals reached nothing: the owner's session is still open.
        assert len(server.p2p.sessions(fam.owner.user_id)) == 1
        # The stranger's own camera is theirs to use.
        theirs = f"{fam.theirs.product_id}/{fam.theirs.device_name}"
        described = await fam.api.tokenapi(
            fam.stranger_token, "IvcloudDescribeP2PParams", DeviceId=theirs
        )
        assert ok_data(described)["Online"] == 0


async def test_a_shared_user_may_connect_but_not_close_the_owners_session(
    server: Ivcloud, fam: Family
) -> None:
    friend_id, friend_token = await make_user(server, fam.creds, "friend")
    friend = await server.users.get(friend_id)
    rec = await fam.rec()
    family_id = await server.families.device_family(rec)
    token, _ = await server.sharing.create_token(
        fam.owner, family_id, rec.product_id, rec.device_name
    )
    await server.sharing.accept(friend, token, rec.product_id, rec.device_name)
    async with raw_video_device(server, fam.dev) as dev:
        await poll(fam.rec, lambda r: r.online)
        answering = asyncio.create_task(answer_next(dev, answer=ANSWER))
        owners = ok_data(await fam.call("IvcloudP2PConnect", Offer=OFFER))
        await answering
        assert owners["Answer"] == ANSWER and owners["SessionId"].startswith("p2p-")
        assert ok_data(await fam.call("IvcloudDescribeP2PParams", friend_token))["Online"] == 1
        answering = asyncio.create_task(answer_next(dev, answer=ANSWER))
        friends = ok_data(await fam.call("IvcloudP2PConnect", friend_token, Offer=OFFER))
        await answering
        doc = await fam.call("IvcloudP2PClose", friend_token, SessionId=owners["SessionId"])
        assert error_code(doc) == "ResourceNotFound"
        closing = asyncio.create_task(answer_next(dev, status="closed"))
        ok_data(await fam.call("IvcloudP2PClose", friend_token, SessionId=friends["SessionId"]))
        await closing
        assert [s.session_id for s in server.p2p.sessions(fam.owner.user_id)] == [
            owners["SessionId"]
        ]


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("IvcloudP2PConnect", {}, "ErrorRequiredParamNotFound"),
        ("IvcloudP2PConnect", {"Offer": 5.5}, "InvalidParameter"),
        ("IvcloudP2PConnect", {"Offer": "x" * (MAX_SDP_CHARS + 1)}, "InvalidParameterValue"),
        ("IvcloudP2PConnect", {"Offer": "v=0\nm=video 9 RTP/AVP 96\n"}, "InvalidParameterValue"),
        ("IvcloudP2PConnect", {"Offer": OFFER, "Quality": "ultra"}, "InvalidParameterValue"),
        ("IvcloudP2PConnect", {"Offer": OFFER, "Channel": 65}, "InvalidParameterValue"),
        ("IvcloudP2PClose", {}, "ErrorRequiredParamNotFound"),
        ("IvcloudP2PClose", {"SessionId": "p2p-nope"}, "ResourceNotFound"),
        ("IvcloudXp2pCommand", {}, "ErrorRequiredParamNotFound"),
        ("IvcloudXp2pCommand", {"Command": "x" * 20_000}, "InvalidParameterValue"),
        ("IvcloudXp2pCommand", {"Command": "ipc.flv?action=live"}, "InvalidParameterValue"),
        ("IvcloudXp2pCommand", {"Command": "hello"}, "InvalidParameterValue"),
        ("IvcloudP2PConnect", {"Offer": OFFER}, "FailedOperation.DeviceOffline"),
        ("IvcloudXp2pCommand", {"Command": DEVICE_ST}, "FailedOperation.DeviceOffline"),
    ],
)
async def test_bad_parameters_and_an_offline_device(
    fam: Family, action: str, params: dict[str, Any], code: str
) -> None:
    assert error_code(await fam.call(action, **params)) == code


async def test_device_outcomes_map_to_documented_codes(server: Ivcloud, fam: Family) -> None:
    server.p2p.answer_timeout_s = server.p2p.command_timeout_s = 0.5
    async with raw_video_device(server, fam.dev) as dev:
        answering = asyncio.create_task(answer_next(dev, 403, "too many", xp2p_status=405))
        doc = await fam.call("IvcloudP2PConnect", Offer=OFFER)
        await answering
        assert error_code(doc) == "FailedOperation.DeviceRefused"
        assert doc["data"]["Error"]["Message"] == "device refused: status 405 (too many)"

        answering = asyncio.create_task(answer_next(dev, 406, "invalid params: no codec"))
        doc = await fam.call("IvcloudP2PConnect", Offer=OFFER)
        await answering
        assert error_code(doc) == "InvalidParameterValue"

        doc = await fam.call("IvcloudP2PConnect", Offer=OFFER)  # nobody answers
        assert error_code(doc) == "FailedOperation.DeviceTimeout"
        await dev.video_request()

        answering = asyncio.create_task(answer_next(dev, reply='{"status":"0"}'))
        doc = await fam.call("IvcloudXp2pCommand", Command="action=user_define&cmd=x")
        await answering
        assert ok_data(doc)["Reply"] == '{"status":"0"}'

        server.p2p.max_sessions_per_user = 1
        answering = asyncio.create_task(answer_next(dev, answer=ANSWER))
        ok_data(await fam.call("IvcloudP2PConnect", Offer=OFFER))
        await answering
        doc = await fam.call("IvcloudP2PConnect", Offer=OFFER)
        assert error_code(doc) == "LimitExceeded.P2PSessions"

"""``App::IotRTC::InviteDevice`` / ``CallDevice`` / ``LeavelRoom`` over real HTTP, with the
SDK device (real MQTT) carrying a TRTC thing model: the invite rings the device, the room
parameters' UserSigs verify with the configured key (the app's and, in ``_sys_trtc_join_room``,
the device's), leaving hangs up; one call per device; every refusal has its code."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from ivcloud.app import Ivcloud
from ivcloud.config import load_settings
from ivcloud.protocol.trtc_call import device_user_id
from ivcloud.protocol.trtc_usersig import verify_user_sig
from ivcloud.services.rtc_calls import TrtcConfig
from tests.api.appapi.trtc_support import next_item, running, setup, trtc_device
from tests.appclient import error_code, ok_data
from tests.helpers import poll

APP_ID = 1_400_000_123
KEY = "trtc-test-secret-key"
INVITE, CALL, LEAVE = (
    "App::IotRTC::InviteDevice",
    "App::IotRTC::CallDevice",
    "App::IotRTC::LeavelRoom",
)
NO_PERMISSION = "InvalidParameterValue.NoPermission"
BUSY = "FailedOperation.DeviceBusy"


@pytest.fixture
async def trtc_server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    """A server with a (maker's) TRTC application configured."""
    async with running(tmp_path, trtc_sdk_app_id=APP_ID, trtc_secret_key=KEY) as instance:
        yield instance


async def test_invite_call_and_leave(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        ok_data(await s.call(INVITE, s.owner_token, UserAgent="android/1.0.0 (test)"))
        assert await next_item(device.controls) == {
            "_sys_video_call_status": 1,
            "_sys_userid": s.owner_id,
            "_sys_caller_id": s.owner_id,
            "_sys_called_id": s.device_id,
            "_sys_user_agent": "android/1.0.0 (test)",
        }
        # The device accepts (reports 1 naming the caller); the app then asks for the room.
        await device.report(
            _sys_video_call_status=1, _sys_caller_id=s.owner_id, _sys_called_id=s.device_id
        )
        params = ok_data(await s.call(CALL, s.owner_token))["TRTCParams"]
        now = int(time.time())
        assert set(params) == {"SdkAppId", "UserId", "UserSig", "StrRoomId", "PrivateKey"}
        assert (params["SdkAppId"], params["UserId"], params["PrivateKey"]) == (
            APP_ID,
            s.owner_id,
            "",
        )
        app_sig = verify_user_sig(
            params["UserSig"], sdk_app_id=APP_ID, key=KEY, identifier=s.owner_id, now=now
        )
        assert app_sig.expire == 86400
        # The device is told the same room, with its own user id and ticket.
        action_id, join = await next_item(device.actions)
        device_uid = device_user_id(s.dev.product_id, s.dev.device_name)
        assert action_id == "_sys_trtc_join_room"
        assert (join["SdkAppId"], join["UserId"], join["StrRoomId"], join["PrivateMapKey"]) == (
            APP_ID,
            device_uid,
            params["StrRoomId"],
            "",
        )
        verify_user_sig(join["UserSig"], sdk_app_id=APP_ID, key=KEY, identifier=device_uid, now=now)
        await device.report(_sys_video_call_status=2)
        current = await s.current()
        assert current is not None and current.joined and current.user_id == s.owner_id
        # A second CallDevice of the same call: same room, fresh tickets.
        again = ok_data(await s.call(CALL, s.owner_token))["TRTCParams"]
        assert again["StrRoomId"] == params["StrRoomId"]
        await next_item(device.actions)

        ok_data(await s.call(LEAVE, s.owner_token))
        assert await next_item(device.controls) == {
            "_sys_video_call_status": 0,
            "_sys_userid": s.owner_id,
            "_sys_caller_id": s.owner_id,
            "_sys_called_id": s.device_id,
        }
        assert await s.current() is None
        await device.report(_sys_video_call_status=0)
        # Leaving again does nothing: the next thing the device gets is the next ring.
        ok_data(await s.call(LEAVE, s.owner_token))
        ok_data(await s.call(INVITE, s.owner_token, CallType=1))
        ring = await next_item(device.controls)
        assert ring["_sys_audio_call_status"] == 1 and "_sys_video_call_status" not in ring
        second = await s.current()
        assert second is not None and second.room_id != params["StrRoomId"]


async def test_a_call_the_device_starts_is_joined_by_the_user_it_calls(
    trtc_server: Ivcloud,
) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        await device.report(
            _sys_video_call_status=1, _sys_caller_id=s.device_id, _sys_called_id=s.friend_id
        )
        assert error_code(await s.call(CALL, s.stranger_token)) == NO_PERMISSION
        assert error_code(await s.call(CALL, s.owner_token)) == BUSY  # it calls the friend
        params = ok_data(await s.call(CALL, s.friend_token))["TRTCParams"]
        assert params["UserId"] == s.friend_id
        action_id, join = await next_item(device.actions)
        assert (action_id, join["StrRoomId"]) == ("_sys_trtc_join_room", params["StrRoomId"])
        assert error_code(await s.call(INVITE, s.owner_token)) == BUSY
        await device.report(_sys_video_call_status=2)
        # The device hangs up: the call is over, the owner may call.
        await device.report(_sys_video_call_status=0)
        assert await s.current() is None
        ok_data(await s.call(INVITE, s.owner_token))
        assert (await next_item(device.controls))["_sys_userid"] == s.owner_id


async def test_one_call_per_device(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        ok_data(await s.call(INVITE, s.owner_token))
        await next_item(device.controls)
        assert error_code(await s.call(INVITE, s.friend_token)) == BUSY
        assert error_code(await s.call(CALL, s.friend_token)) == BUSY
        ok_data(await s.call(LEAVE, s.friend_token))  # not the friend's call: left alone
        current = await s.current()
        assert current is not None and current.user_id == s.owner_id
        # The device refuses the owner's call: free again.
        await device.report(_sys_video_call_status=0)
        assert await s.current() is None
        ok_data(await s.call(INVITE, s.friend_token, CallType=1))
        ring = await next_item(device.controls)
        assert (ring["_sys_audio_call_status"], ring["_sys_userid"]) == (1, s.friend_id)
        # A busy device turns the friend away through _sys_extra_info: free again.
        await device.report(_sys_extra_info=json.dumps({"rejectUserId": s.friend_id}))
        assert await s.current() is None
        ok_data(await s.call(INVITE, s.owner_token))
        assert (await next_item(device.controls))["_sys_userid"] == s.owner_id


async def test_another_users_device_is_refused(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        ok_data(await s.call(INVITE, s.owner_token))
        await next_item(device.controls)
        for action in (INVITE, CALL, LEAVE):
            assert error_code(await s.call(action, s.stranger_token)) == NO_PERMISSION, action
            unknown = await s.api.tokenapi(
                s.owner_token, action, DeviceId=f"{s.dev.product_id}/nope"
            )
            assert error_code(unknown) == NO_PERMISSION, action
        # The stranger reached nothing: the owner's call is intact and the device got no more.
        current = await s.current()
        assert current is not None and current.user_id == s.owner_id
        ok_data(await s.call(LEAVE, s.owner_token))
        assert (await next_item(device.controls))["_sys_video_call_status"] == 0


async def test_without_trtc_configured(server: Ivcloud) -> None:
    async with setup(server) as s, trtc_device(s) as device:
        assert (
            error_code(await s.call(INVITE, s.owner_token)) == "FailedOperation.TRTCNotConfigured"
        )
        doc = await s.call(CALL, s.owner_token)
        assert error_code(doc) == "FailedOperation.TRTCNotConfigured"
        assert "trtc_sdk_app_id" in doc["data"]["Error"]["Message"]
        ok_data(await s.call(LEAVE, s.owner_token))
        assert error_code(await s.call(INVITE, s.stranger_token)) == NO_PERMISSION
        assert device.controls.empty() and device.actions.empty()


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        (INVITE, {"CallType": 3}, "InvalidParameterValue"),
        (INVITE, {"CallType": 0}, "InvalidParameterValue"),
        (INVITE, {"CallType": "video"}, "InvalidParameter"),
        (INVITE, {"CallType": 1.5}, "InvalidParameter"),
        (INVITE, {"UserAgent": "x" * 257}, "InvalidParameterValue"),
        (INVITE, {"UserAgent": ["android"]}, "InvalidParameter"),
        (INVITE, {"DeviceId": "no-slash"}, "InvalidParameter"),
        (CALL, {"DeviceId": 5}, "InvalidParameter"),
        (CALL, {"DeviceId": None}, "InvalidParameter"),
        (LEAVE, {"DeviceId": "a/b/c"}, "InvalidParameter"),
        (LEAVE, {"DeviceId": "", "ProductId": "P"}, "InvalidParameter"),
    ],
)
async def test_bad_parameters(
    trtc_server: Ivcloud, action: str, params: dict[str, Any], code: str
) -> None:
    async with setup(trtc_server) as s:
        assert error_code(await s.call(action, s.owner_token, **params)) == code
        assert await s.current() is None


async def test_offline_unknown_call_and_non_trtc_products(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s:
        for action in (INVITE, CALL):
            assert (
                error_code(await s.call(action, s.owner_token)) == "FailedOperation.DeviceOffline"
            )
        async with trtc_device(s):
            assert error_code(await s.call(CALL, s.owner_token)) == "ResourceNotFound"
    async with setup(trtc_server, model={}) as cam:  # a camera: no TRTC call elements
        for action in (INVITE, CALL):
            doc = await cam.call(action, cam.owner_token)
            assert error_code(doc) == "InvalidParameterValue"
            assert "not a TRTC device" in doc["data"]["Error"]["Message"]


async def test_a_call_ends_when_the_device_goes_offline(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s:
        async with trtc_device(s) as device:
            ok_data(await s.call(INVITE, s.owner_token))
            await next_item(device.controls)
        await poll(s.current, lambda c: c is None)
        async with trtc_device(s) as device:
            ok_data(await s.call(INVITE, s.friend_token))
            assert (await next_item(device.controls))["_sys_userid"] == s.friend_id


async def test_an_unanswered_invite_rings_out(tmp_path: Path) -> None:
    settings = {"trtc_sdk_app_id": APP_ID, "trtc_secret_key": KEY, "trtc_ring_timeout_s": 0.3}
    async with running(tmp_path, **settings) as server, setup(server) as s, trtc_device(s) as dev:
        ok_data(await s.call(INVITE, s.owner_token))
        await next_item(dev.controls)
        await poll(s.current, lambda c: c is None)
        ok_data(await s.call(INVITE, s.friend_token))
        assert (await next_item(dev.controls))["_sys_userid"] == s.friend_id


async def test_a_device_that_fails_to_join_ends_the_call(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        device.join_code = 1
        ok_data(await s.call(INVITE, s.owner_token))
        await next_item(device.controls)
        ok_data(await s.call(CALL, s.owner_token))
        await next_item(device.actions)
        await poll(s.current, lambda c: c is None)


async def test_logs_carry_neither_the_key_nor_the_tickets(trtc_server: Ivcloud) -> None:
    async with setup(trtc_server) as s, trtc_device(s) as device:
        with capture_logs() as logs:
            ok_data(await s.call(INVITE, s.owner_token))
            await next_item(device.controls)
            params = ok_data(await s.call(CALL, s.owner_token))["TRTCParams"]
            _, join = await next_item(device.actions)
            ok_data(await s.call(LEAVE, s.owner_token))
            await next_item(device.controls)
        text = repr(logs)
        assert {"rtc_invite", "rtc_join", "rtc_leave"} <= {e["event"] for e in logs}
        for secret in (KEY, params["UserSig"], join["UserSig"]):
            assert secret not in text
        assert KEY not in repr(trtc_server.settings) and KEY not in repr(trtc_server.rtc_calls)


def test_settings_come_as_a_pair_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IVCLOUD_TRTC_SDK_APP_ID", str(APP_ID))
    monkeypatch.setenv("IVCLOUD_TRTC_SECRET_KEY", KEY)
    monkeypatch.setenv("IVCLOUD_TRTC_USERSIG_TTL_S", "600")
    settings = load_settings(data_dir=tmp_path)
    config = TrtcConfig.from_settings(settings)
    assert config is not None
    assert (config.sdk_app_id, config.secret_key, config.usersig_ttl_s) == (APP_ID, KEY, 600)
    assert KEY not in repr(config)
    monkeypatch.delenv("IVCLOUD_TRTC_SECRET_KEY")
    with pytest.raises(ValidationError, match="set together"):
        load_settings(data_dir=tmp_path)
    monkeypatch.delenv("IVCLOUD_TRTC_SDK_APP_ID")
    assert TrtcConfig.from_settings(load_settings(data_dir=tmp_path)) is None


async def test_the_request_shapes_of_the_ios_sdk(trtc_server: Ivcloud) -> None:
    """``TIoTTRTCSessionManager`` sends ``DeviceId`` with ``ProductId`` and ``DeviceName``
    (and, in its first version, the room's ``TRTCParams`` object on leave)."""
    async with setup(trtc_server) as s, trtc_device(s) as device:
        both = {"ProductId": s.dev.product_id, "DeviceName": s.dev.device_name}
        ok_data(await s.call(INVITE, s.owner_token, **both))
        await next_item(device.controls)
        params = ok_data(await s.call(CALL, s.owner_token, **both))["TRTCParams"]
        await next_item(device.actions)
        ok_data(await s.call(LEAVE, s.owner_token, TRTCParams=params, **both))
        assert (await next_item(device.controls))["_sys_video_call_status"] == 0
        mismatch = await s.call(INVITE, s.owner_token, ProductId="OTHERPID00")
        assert error_code(mismatch) == "InvalidParameter"


async def test_get_products_lists_trtc_for_call_capable_products(trtc_server: Ivcloud) -> None:
    """Tencent's apps only treat a device's call-status reports as calls when its product
    lists "TRTC" in ``Services``."""
    for model, expected in ((None, ["TRTC"]), ({}, [])):
        async with setup(trtc_server, model=model) as s:
            doc = await s.api.tokenapi(
                s.owner_token, "AppGetProducts", ProductIds=[s.dev.product_id]
            )
            (product,) = doc["data"]["Products"]
            assert product["Services"] == expected

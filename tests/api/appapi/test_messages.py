"""The message centre (``AppGetMessages`` / ``AppDeleteMessage``) over real HTTP and a real
device over MQTT: every source reaches the right users only, the apps' paging contract,
the category filter, deletion, other users' ids, bad parameters and retention."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ivcloud.app import Ivcloud
from ivcloud.cli import app as cli_app
from ivcloud.protocol import app_messages as wire
from ivcloud.services.messages import DAY_MS, message_row
from tests.api.appapi.family_support import household
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.helpers import Provisioned, provision_custom
from tests.models import SENSOR_MODEL
from tests.rawdevice import device_for

MSG_ID_INVALID = "InvalidParameterValue.MsgIDInvalid"
BAD_VALUE = "InvalidParameterValue"
MISSING = "ErrorRequiredParamNotFound"
#: The sensor of the gateway tests plus a ``fault`` event (same parameter as its alert).
MODEL: dict[str, Any] = {
    **SENSOR_MODEL,
    "events": [
        *SENSOR_MODEL["events"],
        {**SENSOR_MODEL["events"][0], "id": "overheat", "name": "overheat", "type": "fault"},
    ],
}
_EVENT_IDS = {"alert": "alarm", "fault": "overheat", "info": "status_report"}


@dataclass
class World:
    server: Ivcloud
    admin: httpx.AsyncClient
    client: AppApiClient
    dev: Provisioned
    app_id: str
    ids: dict[str, str]  # alice admin, dave member, bob/carol outside the family
    tokens: dict[str, str]
    family: str

    @property
    def device_id(self) -> str:
        return f"{self.dev.product_id}/{self.dev.device_name}"

    async def call(self, who: str, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(self.tokens[who], action, **params)

    async def msgs(self, who: str, category: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"Limit": 100, "MsgID": "", "MsgTimestamp": 0}
        if category is not None:
            params["Category"] = category
        data = ok_data(await self.call(who, "AppGetMessages", **params))["Data"]
        assert data["Listover"] is True
        items: list[dict[str, Any]] = data["Msgs"]
        return items

    async def event(self, event_type: str) -> None:
        event_id = _EVENT_IDS[event_type]
        async with device_for(self.server, self.dev) as device:
            reply = await device.request(
                "event",
                {
                    "method": "event_post",
                    "clientToken": "e-" + event_type,
                    "eventId": event_id,
                    "type": event_type,
                    "params": {"message": "hi"} if event_type == "info" else {"level": 1},
                },
            )
        assert reply["code"] == 0, reply
        # The reply follows the commit, which queued the event for the feed: wait for it.
        await self.server.message_feed.settled()


@pytest.fixture
async def w(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> World:
    dev = await provision_custom(admin, MODEL, "sensor01")
    h = await household(server, admin, appclient, dev, alias="hall sensor")
    return World(server, admin, h.client, dev, h.client.creds.app_id, h.ids, h.tokens, h.family)


async def _share_to(w: World, who: str) -> None:
    sent = ok_data(
        await w.call("alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID=w.ids[who])
    )
    ok_data(
        await w.call(
            who,
            "AppBindUserShareDevice",
            ShareDeviceToken=sent["ShareDeviceToken"],
            DeviceId=w.device_id,
        )
    )


async def test_family_invitation_reaches_the_invitee_who_accepts_with_it(w: World) -> None:
    ok_data(await w.call("alice", "AppInviteMember", FamilyId=w.family))  # link: no message
    ok_data(
        await w.call("alice", "AppSendShareFamilyInvite", FamilyId=w.family, ToUserID=w.ids["bob"])
    )
    [msg] = await w.msgs("bob", wire.CATEGORY_FAMILY)
    assert msg["MsgType"] == wire.TYPE_FAMILY_INVITE
    assert (msg["UserID"], msg["FromUserID"]) == (w.ids["bob"], w.ids["alice"])
    assert (msg["FamilyId"], msg["FamilyName"]) == (w.family, "home")
    assert '"alice"' in msg["MsgContent"] and '"home"' in msg["MsgContent"]
    for who in ("alice", "carol", "dave"):
        assert await w.msgs(who) == []
    # What the apps do on "accept" (IOS TIoTMessageInviteCell): AppJoinFamily(ShareToken).
    ok_data(await w.call("bob", "AppJoinFamily", ShareToken=msg["Attachments"]["ShareToken"]))
    families = ok_data(await w.call("bob", "AppGetFamilyList"))["FamilyList"]
    assert [f["FamilyId"] for f in families] == [w.family]


async def test_device_share_invitation_reaches_the_invitee_who_binds_with_it(w: World) -> None:
    ok_data(
        await w.call(
            "alice", "AppSendShareDeviceInvite", DeviceId=w.device_id, ToUserID=w.ids["bob"]
        )
    )
    [msg] = await w.msgs("bob", wire.CATEGORY_NOTIFY)
    assert msg["MsgType"] == wire.TYPE_DEVICE_SHARE_INVITE
    assert (msg["ProductId"], msg["DeviceName"]) == (w.dev.product_id, w.dev.device_name)
    assert (msg["DeviceAlias"], msg["FamilyId"]) == ("hall sensor", w.family)
    assert await w.msgs("carol") == []
    ok_data(
        await w.call(
            "bob",
            "AppBindUserShareDevice",
            ShareDeviceToken=msg["Attachments"]["ShareToken"],
            ProductId=msg["ProductId"],
            DeviceName=msg["DeviceName"],
        )
    )
    shared = ok_data(await w.call("bob", "AppListUserShareDevices"))["ShareDevices"]
    assert [d["DeviceId"] for d in shared] == [w.device_id]


async def test_refused_invitation_makes_no_message(w: World) -> None:
    # carol is no admin of the family: refused, and nobody gets a message.
    refused = await w.call(
        "carol", "AppSendShareFamilyInvite", FamilyId=w.family, ToUserID=w.ids["bob"]
    )
    assert error_code(refused) == "InvalidParameterValue.NoPermission"
    unknown = await w.call("alice", "AppSendShareFamilyInvite", FamilyId=w.family, ToUserID="nope")
    assert error_code(unknown) == "InvalidParameterValue.ErrorUserNotExists"
    assert await w.msgs("bob") == []


async def test_device_alerts_reach_members_and_sharees_only(w: World) -> None:
    await _share_to(w, "bob")
    await w.event("alert")
    device = wire.CATEGORY_DEVICE
    for who in ("alice", "dave", "bob"):
        [msg] = await w.msgs(who, device)
        assert msg["UserID"] == w.ids[who]
        assert (msg["Category"], msg["MsgType"]) == (wire.CATEGORY_DEVICE, wire.TYPE_DEVICE_ALERT)
        assert (msg["ProductId"], msg["DeviceName"]) == (w.dev.product_id, w.dev.device_name)
        assert (msg["DeviceAlias"], msg["FamilyName"]) == ("hall sensor", "home")
        assert "Attachments" not in msg
    assert await w.msgs("carol") == []

    await w.event("info")  # not a warning: no message
    await w.event("fault")
    assert [m["MsgType"] for m in await w.msgs("dave")] == [
        wire.TYPE_DEVICE_FAULT,
        wire.TYPE_DEVICE_ALERT,
    ]

    # bob's share ends: his old messages stay (as in the real apps), new ones stop.
    ok_data(await w.call("bob", "AppRemoveUserShareDevice", DeviceId=w.device_id))
    await w.event("alert")
    assert len(await w.msgs("bob", device)) == 2
    assert len(await w.msgs("alice", device)) == 3
    assert w.server.message_feed.dropped == 0


async def _fill(w: World, who: str, n: int, category: int = wire.CATEGORY_NOTIFY) -> None:
    """``n`` messages for ``who``, several sharing one timestamp (the cursor's tie-break)."""
    now = w.server.clock.now_ms()
    await w.server.messages.add_rows(
        [
            message_row(
                user_id=w.ids[who],
                category=category,
                msg_type=wire.TYPE_NOTICE,
                title="t",
                content=f"m{i}",
                ts_ms=now - (i // 3) * 1000,
            )
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("android", [True, False])
async def test_paging_follows_the_apps_cursor(w: World, android: bool) -> None:
    await _fill(w, "alice", 45)
    seen: list[dict[str, Any]] = []
    listovers = []
    cursor: dict[str, Any] = {"MsgID": "", "MsgTimestamp": 0}
    while True:
        params = {"Category": wire.CATEGORY_NOTIFY, "Limit": 20, **cursor}
        if android:  # AND MessageFragment also sends how many it shows as Offset
            params["Offset"] = len(seen)
        data = ok_data(await w.call("alice", "AppGetMessages", **params))["Data"]
        seen += data["Msgs"]
        listovers.append(data["Listover"])
        if data["Listover"]:
            break
        last = data["Msgs"][-1]
        cursor = {"MsgID": last["MsgID"], "MsgTimestamp": last["MsgTimestamp"]}
    assert listovers == [False, False, True]
    # Newest first; within one timestamp the later message (higher MsgID) first.
    assert [m["MsgContent"] for m in seen] == [
        f"m{3 * g + k}" for g in range(15) for k in (2, 1, 0)
    ]
    keys = [(m["MsgTimestamp"], int(m["MsgID"])) for m in seen]
    assert keys == sorted(keys, reverse=True)


async def test_offset_pages_without_a_cursor(w: World) -> None:
    await _fill(w, "alice", 5)
    data = ok_data(await w.call("alice", "AppGetMessages", Offset=3, Limit=10))["Data"]
    assert [m["MsgContent"] for m in data["Msgs"]] == ["m4", "m3"]  # after m2, m1, m0
    assert data["Listover"] is True


async def test_category_filter(w: World) -> None:
    await _fill(w, "alice", 2, wire.CATEGORY_NOTIFY)
    await _fill(w, "alice", 3, wire.CATEGORY_DEVICE)
    assert len(await w.msgs("alice", wire.CATEGORY_DEVICE)) == 3
    assert len(await w.msgs("alice", wire.CATEGORY_NOTIFY)) == 2
    assert await w.msgs("alice", wire.CATEGORY_FAMILY) == []
    assert len(await w.msgs("alice")) == 5  # no Category: all of them


async def test_delete_own_message_only(w: World) -> None:
    await _fill(w, "alice", 2)
    first, second = await w.msgs("alice")
    # Another user's MsgID is answered exactly like one that does not exist.
    stolen = await w.call("carol", "AppDeleteMessage", MsgID=first["MsgID"])
    assert error_code(stolen) == MSG_ID_INVALID
    assert stolen["msg"] == "invalid MsgID"
    assert len(await w.msgs("alice")) == 2
    # Tencent's doc example sends MsgID as a number.
    done = await w.call("alice", "AppDeleteMessage", MsgID=int(first["MsgID"]))
    assert ok_data(done)["Data"] == "OK"
    assert [m["MsgID"] for m in await w.msgs("alice")] == [second["MsgID"]]
    again = await w.call("alice", "AppDeleteMessage", MsgID=first["MsgID"])
    assert error_code(again) == MSG_ID_INVALID
    assert error_code(await w.call("alice", "AppDeleteMessage", MsgID="1e3")) == MSG_ID_INVALID
    assert error_code(await w.call("alice", "AppDeleteMessage")) == MISSING
    # carol's cursor built from alice's message shows carol nothing of alice's.
    peek = await w.call(
        "carol", "AppGetMessages", MsgID=str(int(second["MsgID"]) + 1), MsgTimestamp=2**40
    )
    assert ok_data(peek)["Data"] == {"Listover": True, "Msgs": []}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Category": 0}, BAD_VALUE),
        ({"Category": 4}, BAD_VALUE),
        ({"Category": "device"}, "InvalidParameter"),
        ({"Limit": 101}, BAD_VALUE),
        ({"MsgID": "5"}, BAD_VALUE),
        ({"MsgID": "abc", "MsgTimestamp": 1}, MSG_ID_INVALID),
    ],
)
async def test_bad_params_get_spec_codes(w: World, params: dict[str, Any], code: str) -> None:
    assert error_code(await w.call("alice", "AppGetMessages", **params)) == code


async def test_messages_need_a_valid_token(w: World) -> None:
    reply = await w.client.tokenapi("not-a-token", "AppGetMessages", Category=1)
    assert error_code(reply) == "InvalidParameterValue.InvalidAccessToken"


async def test_old_messages_are_not_listed_and_are_swept(w: World) -> None:
    now = w.server.clock.now_ms()
    days = w.server.settings.message_retention_days
    await w.server.messages.add_rows(
        [
            message_row(
                user_id=w.ids["alice"],
                category=wire.CATEGORY_NOTIFY,
                msg_type=wire.TYPE_NOTICE,
                title="t",
                content=content,
                ts_ms=ts,
            )
            for content, ts in (("new", now), ("old", now - (days + 1) * DAY_MS))
        ]
    )
    assert [m["MsgContent"] for m in await w.msgs("alice")] == ["new"]
    assert await w.server.messages.cleanup() == 1


async def test_console_notice_reaches_every_user_of_the_app_only(w: World, server: Ivcloud) -> None:
    other = await create_app(w.admin)
    outsider, outsider_token = await make_user(server, other, "eve")
    resp = await w.admin.post(
        f"/apps/{w.app_id}/messages", json={"Title": "Maintenance", "Content": "Tonight 2-3h."}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"AppId": w.app_id, "Users": 4}
    for who in w.ids:
        [msg] = await w.msgs(who, wire.CATEGORY_NOTIFY)
        assert (msg["MsgType"], msg["MsgTitle"], msg["MsgContent"]) == (
            wire.TYPE_NOTICE,
            "Maintenance",
            "Tonight 2-3h.",
        )
        assert msg["UserID"] == w.ids[who] and "Attachments" not in msg
    eve = AppApiClient(w.client.http, other)
    data = ok_data(await eve.tokenapi(outsider_token, "AppGetMessages", Category=3))["Data"]
    assert outsider and data["Msgs"] == []

    assert (
        await w.admin.post("/apps/nope/messages", json={"Title": "a", "Content": "b"})
    ).status_code == 404
    bad = await w.admin.post(f"/apps/{w.app_id}/messages", json={"Title": "", "Content": "b"})
    assert bad.status_code == 400


async def test_cli_notify(w: World, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        [
            "app",
            "notify",
            w.app_id,
            "--title",
            "Hello",
            "--content",
            "From the CLI",
            "--json",
            "--data-dir",
            str(w.server.settings.data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"Users": 4' in result.stdout
    [msg] = await w.msgs("carol")
    assert msg["MsgContent"] == "From the CLI"

"""``AppUserCancelAccount`` end to end: a family with a bound raw device, a member, a share
receiver, a family the user only joined, a WebSocket push subscription — and afterwards the
same phone registers anew with a verification code."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from websockets.asyncio.client import connect

from ivcloud.app import Ivcloud
from ivcloud.services.codes import LogCodeSender, Target
from ivcloud.store.schema_app import FamilyMember, User
from ivcloud.store.schema_user_extras import UserFeedback, UserSetting, XgToken
from tests.api.appapi.family_support import household
from tests.api.test_push import assert_nothing_pushed, subscribe, wait_online, ws_url
from tests.appclient import error_code, ok_data
from tests.helpers import provision
from tests.rawdevice import device_for

SERVICE = "$thing/down/service/{p}/{d}"


async def test_cancel_account_end_to_end(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    dev = await provision(admin, "lock-video", "lock", "door1")
    h = await household(server, admin, appclient, dev)
    client, tokens, ids = h.client, h.tokens, h.ids
    alice_id, alice = ids["alice"], tokens["alice"]
    await server.users.update(alice_id, country_code="86", phone="13900000001")
    pid, dn = dev.product_id, dev.device_name
    # carol receives the device as a share from alice
    me = await server.users.get(alice_id)
    share, _ = await server.sharing.create_token(me, h.family, pid, dn)
    await server.sharing.accept(await server.users.get(ids["carol"]), share, pid, dn)
    carol_sees = await client.tokenapi(
        tokens["carol"], "AppGetDeviceData", ProductId=pid, DeviceName=dn
    )
    ok_data(carol_sees)
    # alice is also a plain member of bob's family
    bobs = ok_data(await client.tokenapi(tokens["bob"], "AppCreateFamily", Name="bob's"))
    bob_family = bobs["Data"]["FamilyId"]
    invite = ok_data(await client.tokenapi(tokens["bob"], "AppInviteMember", FamilyId=bob_family))
    ok_data(await client.tokenapi(alice, "AppJoinFamily", ShareToken=invite["ShareToken"]))
    # alice's extras
    ok_data(await client.tokenapi(alice, "AppBindXgToken", Token="alice-phone"))
    ok_data(await client.tokenapi(alice, "AppUpdateUserSetting", TemperatureUnit="F"))
    ok_data(await client.tokenapi(alice, "AppUserFeedBack", Desc="leaving, thanks for all"))

    async with device_for(server, dev) as device, connect(ws_url(server)) as ws:
        await wait_online(server, dev)
        assert await subscribe(ws, alice, f"{pid}/{dn}") == [f"{pid}/{dn}"]
        ok_data(await client.tokenapi(alice, "AppUserCancelAccount"))
        notice = await device.next(SERVICE)
        assert notice["method"] == "unbind_device"
        assert notice["params"]["DeviceName"] == dn
        # the subscription ended with the token: no unbind StatusChange reached it
        await assert_nothing_pushed(ws)

    gone = await client.tokenapi(alice, "AppGetUser")
    assert error_code(gone) == "InvalidParameterValue.InvalidAccessToken"
    denied = await client.tokenapi(
        tokens["carol"], "AppGetDeviceData", ProductId=pid, DeviceName=dn
    )
    assert error_code(denied) == "InvalidParameterValue.NoPermission"
    dave_families = ok_data(await client.tokenapi(tokens["dave"], "AppGetFamilyList"))
    assert dave_families["Total"] == 0  # alice's family was deleted with her
    members = ok_data(
        await client.tokenapi(tokens["bob"], "AppGetFamilyMemberList", FamilyId=bob_family)
    )
    assert [m["UserID"] for m in members["MemberList"]] == [ids["bob"]]
    rec = await server.devices.get(pid, dn)
    assert await server.families.device_family(rec) is None
    async with server.sessions() as s:
        assert await s.get(User, alice_id) is None
        assert await s.get(UserSetting, alice_id) is None
        assert (await s.scalars(select(XgToken).where(XgToken.user_id == alice_id))).all() == []
        assert (
            await s.scalars(select(FamilyMember).where(FamilyMember.user_id == alice_id))
        ).all() == []
        kept = (await s.scalars(select(UserFeedback))).one()
    assert kept.user_id is None and kept.content == "leaving, thanks for all"

    # the phone is free again: registration with a verification code works
    phone = {"CountryCode": "86", "PhoneNumber": "13900000001"}
    ok_data(await client.appapi("AppSendVerificationCode", Type="register", **phone))
    sender = server.accounts.codes.sender
    assert isinstance(sender, LogCodeSender)
    code = sender.last(Target.phone("86", "13900000001"))
    assert code is not None
    again = await client.appapi(
        "AppCreateCellphoneUser", VerificationCode=code, Password="a new password", **phone
    )
    assert ok_data(again)["Data"]["UserID"] != alice_id


async def test_cancel_keeps_a_family_with_another_admin_and_needs_a_token(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    """Cancelling touches only the caller: dave (a member) leaves, alice's family and
    device stay; an unknown token cancels nothing."""
    dev = await provision(admin, "lock-video", "lock", "door2")
    h = await household(server, admin, appclient, dev)
    bad = await h.client.tokenapi("forged", "AppUserCancelAccount")
    assert error_code(bad) == "InvalidParameterValue.InvalidAccessToken"
    ok_data(await h.client.tokenapi(h.tokens["dave"], "AppUserCancelAccount"))
    listed = ok_data(
        await h.client.tokenapi(h.tokens["alice"], "AppGetFamilyDeviceList", FamilyId=h.family)
    )
    assert [d["DeviceName"] for d in listed["DeviceList"]] == ["door2"]
    members = ok_data(
        await h.client.tokenapi(h.tokens["alice"], "AppGetFamilyMemberList", FamilyId=h.family)
    )
    assert [m["UserID"] for m in members["MemberList"]] == [h.ids["alice"]]
    ok_data(await h.client.tokenapi(h.tokens["bob"], "AppGetUser"))

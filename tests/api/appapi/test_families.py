"""Family, room and member Actions over real HTTP (spec §2.8)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from ivcloud.app import Ivcloud
from ivcloud.store.schema_app import ShareToken
from tests.api.appapi.family_support import FAMILY_LIST_FIELDS
from tests.appclient import AppApiClient, AppCreds, create_app, error_code, make_user, ok_data


@pytest.fixture
async def creds(admin: httpx.AsyncClient) -> AppCreds:
    return await create_app(admin)


@pytest.fixture
def client(appclient: httpx.AsyncClient, creds: AppCreds) -> AppApiClient:
    return AppApiClient(appclient, creds)


class User:
    def __init__(self, client: AppApiClient, user_id: str, token: str) -> None:
        self.client, self.user_id, self.token = client, user_id, token

    async def call(self, action: str, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(self.token, action, **params)


@pytest.fixture
async def alice(server: Ivcloud, client: AppApiClient, creds: AppCreds) -> User:
    return User(client, *await make_user(server, creds, "alice"))


@pytest.fixture
async def bob(server: Ivcloud, client: AppApiClient, creds: AppCreds) -> User:
    return User(client, *await make_user(server, creds, "bob"))


async def new_family(user: User, name: str = "Home", **extra: Any) -> str:
    data = ok_data(await user.call("AppCreateFamily", Name=name, **extra))
    family_id: str = data["Data"]["FamilyId"]
    return family_id


async def test_family_crud(alice: User) -> None:
    family_id = await new_family(alice, Address="1 Main St")
    data = ok_data(await alice.call("AppGetFamilyList", Offset=0, Limit=100))
    assert data["Total"] == 1
    [item] = data["FamilyList"]
    assert set(item) == FAMILY_LIST_FIELDS
    assert (item["FamilyId"], item["FamilyName"], item["Role"], item["RoomsNum"]) == (
        family_id,
        "Home",
        1,
        0,
    )
    ok_data(await alice.call("AppModifyFamily", FamilyId=family_id, Name="Flat"))
    data = ok_data(await alice.call("AppDescribeFamily", FamilyId=family_id))
    assert set(data["Data"]) == {"FamilyId", "FamilyName", "Address", "CreateTime", "UpdateTime"}
    assert (data["Data"]["FamilyName"], data["Data"]["Address"]) == ("Flat", "1 Main St")
    # Name, when sent, must match (a confirmation guard).
    assert error_code(await alice.call("AppDeleteFamily", FamilyId=family_id, Name="Home")) == (
        "InvalidParameterValue"
    )
    ok_data(await alice.call("AppDeleteFamily", FamilyId=family_id, Name="Flat"))
    assert ok_data(await alice.call("AppGetFamilyList"))["Total"] == 0


async def test_create_family_validation(alice: User) -> None:
    assert error_code(await alice.call("AppCreateFamily")) == "ErrorRequiredParamNotFound"
    assert error_code(await alice.call("AppCreateFamily", Name="x" * 65)) == (
        "InvalidParameterValue"
    )
    assert error_code(await alice.call("AppCreateFamily", Name="  ")) == "InvalidParameterValue"


async def test_default_family_id_is_the_first_family(alice: User) -> None:
    assert error_code(await alice.call("AppDescribeFamily", FamilyId="default")) == (
        "InvalidParameterValue.NoPermission"
    )
    first = await new_family(alice, "First")
    await new_family(alice, "Second")
    data = ok_data(await alice.call("AppDescribeFamily", FamilyId="default"))
    assert data["Data"]["FamilyId"] == first


async def test_rooms(alice: User) -> None:
    family_id = await new_family(alice)
    room_id = ok_data(await alice.call("AppCreateRoom", FamilyId=family_id, Name="Kitchen"))[
        "Data"
    ]["RoomId"]
    ok_data(await alice.call("AppCreateRoom", FamilyId=family_id, Name="Hall"))
    ok_data(await alice.call("AppModifyRoom", FamilyId=family_id, RoomId=room_id, Name="Cook"))
    data = ok_data(await alice.call("AppGetRoomList", FamilyId=family_id))
    assert "RoomList" not in data
    assert data["Total"] == 2
    assert [r["RoomName"] for r in data["Roomlist"]] == ["Cook", "Hall"]
    assert set(data["Roomlist"][0]) == {
        "RoomId",
        "RoomName",
        "DeviceNum",
        "CreateTime",
        "UpdateTime",
    }
    assert data["Roomlist"][0]["DeviceNum"] == 0
    families = ok_data(await alice.call("AppGetFamilyList"))
    assert families["FamilyList"][0]["RoomsNum"] == 2
    page = ok_data(await alice.call("AppGetRoomList", FamilyId=family_id, Offset=1, Limit=1))
    assert [r["RoomName"] for r in page["Roomlist"]] == ["Hall"]
    ok_data(await alice.call("AppDeleteRoom", FamilyId=family_id, RoomId=room_id))
    assert ok_data(await alice.call("AppGetRoomList", FamilyId=family_id))["Total"] == 1
    assert error_code(await alice.call("AppDeleteRoom", FamilyId=family_id, RoomId=room_id)) == (
        "InvalidParameterValue.NoPermission"
    )


async def test_invite_join_members_exit(alice: User, bob: User) -> None:
    family_id = await new_family(alice)
    token = ok_data(await alice.call("AppInviteMember", FamilyId=family_id))["ShareToken"]
    assert isinstance(token, str) and token
    ok_data(await bob.call("AppJoinFamily", ShareToken=token))
    ok_data(await bob.call("AppJoinFamily", ShareToken=token))  # joining twice: no-op
    members = ok_data(await bob.call("AppGetFamilyMemberList", FamilyId=family_id))
    assert members["Total"] == 2
    assert members["MemberList"] == [
        {"UserID": alice.user_id, "NickName": "alice", "Avatar": "", "Role": 1},
        {"UserID": bob.user_id, "NickName": "bob", "Avatar": "", "Role": 0},
    ]
    bob_families = ok_data(await bob.call("AppGetFamilyList"))["FamilyList"]
    assert [(f["FamilyId"], f["Role"]) for f in bob_families] == [(family_id, 0)]
    # The admin cannot leave; a member can.
    assert error_code(await alice.call("AppExitFamily", FamilyId=family_id)) == (
        "InvalidParameterValue"
    )
    ok_data(await bob.call("AppExitFamily", FamilyId=family_id))
    assert ok_data(await bob.call("AppGetFamilyList"))["Total"] == 0
    # Rejoin, then the admin removes him.
    ok_data(await bob.call("AppJoinFamily", ShareToken=token))
    ok_data(await alice.call("AppDeleteFamilyMember", FamilyId=family_id, MemberID=bob.user_id))
    assert ok_data(await bob.call("AppGetFamilyList"))["Total"] == 0
    assert (
        error_code(
            await alice.call("AppDeleteFamilyMember", FamilyId=family_id, MemberID=alice.user_id)
        )
        == "InvalidParameterValue"
    )


async def test_join_with_bad_or_expired_token(server: Ivcloud, alice: User, bob: User) -> None:
    assert error_code(await bob.call("AppJoinFamily", ShareToken="nope")) == (
        "InvalidParameterValue.TokenNotExist"
    )
    family_id = await new_family(alice)
    token = ok_data(await alice.call("AppInviteMember", FamilyId=family_id))["ShareToken"]
    async with server.sessions.begin() as s:
        await s.execute(update(ShareToken).where(ShareToken.token == token).values(expires_ms=1))
    assert error_code(await bob.call("AppJoinFamily", ShareToken=token)) == (
        "InvalidParameterValue.TokenIsExpire"
    )


async def test_in_app_invite_is_for_its_recipient_only(
    server: Ivcloud, client: AppApiClient, creds: AppCreds, alice: User, bob: User
) -> None:
    carol = User(client, *await make_user(server, creds, "carol"))
    family_id = await new_family(alice)
    ok_data(await alice.call("AppSendShareFamilyInvite", FamilyId=family_id, ToUserID=bob.user_id))
    assert error_code(
        await alice.call("AppSendShareFamilyInvite", FamilyId=family_id, ToUserID="nobody")
    ) == ("InvalidParameterValue.ErrorUserNotExists")
    async with server.sessions() as s:
        token = await s.scalar(select(ShareToken.token).where(ShareToken.to_user_id == bob.user_id))
    assert token is not None
    assert error_code(await carol.call("AppJoinFamily", ShareToken=token)) == (
        "InvalidParameterValue.TokenNotExist"
    )
    ok_data(await bob.call("AppJoinFamily", ShareToken=token))
    members = ok_data(await alice.call("AppGetFamilyMemberList", FamilyId=family_id))
    assert members["Total"] == 2

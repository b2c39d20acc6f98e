"""Family & room management Actions (spec §2.8, all 15).

Authorization lives in :mod:`ivcloud.services.families` / :mod:`ivcloud.services.access`;
these handlers only read parameters and shape replies.  ``FamilyId: "default"`` is
rewritten by the mini-program SDK before sending, but other clients (and old SDKs) may
send it as is, so it is accepted here too and means "the caller's first family" — the
same family the SDK would pick (first of ``AppGetFamilyList``)."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import offset_limit, str_param
from ivcloud.services.errors import Forbidden

DEFAULT_FAMILY = "default"
_ID_MAX = 40


async def family_id_param(call: Call) -> str:
    """``FamilyId`` (required), with ``"default"`` resolved to the caller's first family
    (``NoPermission`` when the caller has none)."""
    family_id = str_param(call.params, "FamilyId", max_len=_ID_MAX)
    if family_id != DEFAULT_FAMILY:
        return family_id
    first = await call.instance.families.first_family(call.me)
    if first is None:
        raise Forbidden("the user has no family")
    return first


def register(reg: ActionRegistry) -> None:
    # --- families ----------------------------------------------------------------------

    @reg.action("AppCreateFamily", "token")
    async def create_family(call: Call) -> dict[str, Any]:
        name = str_param(call.params, "Name", max_len=64)
        address = str_param(call.params, "Address", required=False, max_len=255) or ""
        family_id = await call.instance.families.create_family(call.me, name, address)
        return {"Data": {"FamilyId": family_id}}

    @reg.action("AppDeleteFamily", "token")
    async def delete_family(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        name = str_param(call.params, "Name", required=False, max_len=64)
        await call.instance.families.delete_family(call.me, family_id, name)
        return {}

    @reg.action("AppModifyFamily", "token")
    async def modify_family(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        name = str_param(call.params, "Name", required=False, max_len=64)
        address = str_param(call.params, "Address", required=False, max_len=255)
        await call.instance.families.modify_family(call.me, family_id, name, address)
        return {}

    @reg.action("AppGetFamilyList", "token")
    async def family_list(call: Call) -> dict[str, Any]:
        offset, limit = offset_limit(call.params, default_limit=20, max_limit=100)
        total, families = await call.instance.families.list_families(call.me, offset, limit)
        return {"FamilyList": [f.to_api() for f in families], "Total": total}

    @reg.action("AppDescribeFamily", "token")
    async def describe_family(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        info = await call.instance.families.describe_family(call.me, family_id)
        full = info.to_api()
        keys = ("FamilyId", "FamilyName", "Address", "CreateTime", "UpdateTime")
        return {"Data": {k: full[k] for k in keys}}

    # --- rooms -------------------------------------------------------------------------

    @reg.action("AppCreateRoom", "token")
    async def create_room(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        name = str_param(call.params, "Name", max_len=64)
        room_id = await call.instance.families.create_room(call.me, family_id, name)
        return {"Data": {"RoomId": room_id}}

    @reg.action("AppModifyRoom", "token")
    async def modify_room(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        room_id = str_param(call.params, "RoomId", max_len=_ID_MAX)
        name = str_param(call.params, "Name", max_len=64)
        await call.instance.families.modify_room(call.me, family_id, room_id, name)
        return {}

    @reg.action("AppDeleteRoom", "token")
    async def delete_room(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        room_id = str_param(call.params, "RoomId", max_len=_ID_MAX)
        await call.instance.families.delete_room(call.me, family_id, room_id)
        return {}

    @reg.action("AppGetRoomList", "token")
    async def room_list(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        offset, limit = offset_limit(call.params, default_limit=20, max_limit=100)
        total, rooms = await call.instance.families.list_rooms(call.me, family_id, offset, limit)
        # "Roomlist" with a lower-case l: what the Android client parses (spec §2.8).
        return {"Roomlist": [r.to_api() for r in rooms], "Total": total}

    # --- members -----------------------------------------------------------------------

    @reg.action("AppInviteMember", "token")
    async def invite_member(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        token, _ = await call.instance.families.invite(call.me, family_id)
        return {"ShareToken": token}

    @reg.action("AppJoinFamily", "token")
    async def join_family(call: Call) -> dict[str, Any]:
        token = str_param(call.params, "ShareToken", max_len=64)
        await call.instance.families.join(call.me, token)
        return {}

    @reg.action("AppDeleteFamilyMember", "token")
    async def delete_member(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        member_id = str_param(call.params, "MemberID", max_len=_ID_MAX)
        await call.instance.families.delete_member(call.me, family_id, member_id)
        return {}

    @reg.action("AppExitFamily", "token")
    async def exit_family(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        await call.instance.families.exit_family(call.me, family_id)
        return {}

    @reg.action("AppGetFamilyMemberList", "token")
    async def member_list(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        offset, limit = offset_limit(call.params, default_limit=20, max_limit=100)
        total, members = await call.instance.families.list_members(
            call.me, family_id, offset, limit
        )
        return {"MemberList": [m.to_api() for m in members], "Total": total}

    @reg.action("AppSendShareFamilyInvite", "token")
    async def send_invite(call: Call) -> dict[str, Any]:
        family_id = await family_id_param(call)
        to_user = str_param(call.params, "ToUserID", max_len=_ID_MAX)
        await call.instance.families.invite(call.me, family_id, to_user)
        return {}

"""Device sharing (spec §2.7, all 8 actions). Rules live in
:class:`ivcloud.services.sharing.SharingService`; here only parameters are read.

``AppSendShareDeviceInvite`` records an invitation addressed to ``ToUserID`` (a one-shot share
token only that user can accept) and also returns it as ``ShareDeviceToken`` (an ivcloud
addition) so the sender's app can deliver it another way; the invitee also finds it in the
message centre (``AppGetMessages``, Category 3, ``MsgType`` 301)."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import device_ref, offset_limit, str_param

_TOKEN_MAX = 64
_ID_MAX = 40


def _share_token(call: Call) -> str:
    return str_param(call.params, "ShareDeviceToken", max_len=_TOKEN_MAX)


def register(reg: ActionRegistry) -> None:
    @reg.action("AppSendShareDeviceInvite", "token")
    async def send_invite(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        to_user = str_param(call.params, "ToUserID", max_len=_ID_MAX)
        token, expires_ms = await call.instance.sharing.create_token(
            call.me, None, pid, dn, to_user_id=to_user
        )
        return {"ShareDeviceToken": token, "ExpireAt": expires_ms // 1000}

    @reg.action("AppCreateShareDeviceToken", "token")
    async def create_token(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        family_id = str_param(call.params, "FamilyId", required=False, max_len=_ID_MAX)
        context = str_param(call.params, "TokenContext", required=False) or ""
        token, expires_ms = await call.instance.sharing.create_token(
            call.me, family_id, pid, dn, context
        )
        return {"ShareDeviceToken": token, "ExpireAt": expires_ms // 1000}

    @reg.action("AppDescribeShareDeviceToken", "token")
    async def describe(call: Call) -> dict[str, Any]:
        info = await call.instance.sharing.describe(call.me, _share_token(call))
        return {"ShareDeviceTokenInfo": info}

    @reg.action("AppBindUserShareDevice", "token")
    async def accept(call: Call) -> dict[str, Any]:
        token = _share_token(call)
        pid, dn = device_ref(call.params)
        await call.instance.sharing.accept(call.me, token, pid, dn)
        return {}

    @reg.action("AppListUserShareDevices", "token")
    async def list_shared(call: Call) -> dict[str, Any]:
        offset, limit = offset_limit(call.params)
        total, devices = await call.instance.sharing.shared_devices(call.me, offset, limit)
        return {"ShareDevices": devices, "Total": total}

    @reg.action("AppRemoveUserShareDevice", "token")
    async def remove_mine(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        await call.instance.sharing.remove_mine(call.me, pid, dn)
        return {}

    @reg.action("AppListShareDeviceUsers", "token")
    async def list_users(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        offset, limit = offset_limit(call.params)
        total, users = await call.instance.sharing.share_users(call.me, pid, dn, offset, limit)
        return {"Users": users, "Total": total}

    @reg.action("AppRemoveShareDeviceUser", "token")
    async def remove_user(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        user_id = str_param(call.params, "RemoveUserID", max_len=_ID_MAX)
        await call.instance.sharing.remove_user(call.me, pid, dn, user_id)
        return {}

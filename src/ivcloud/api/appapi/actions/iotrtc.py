"""TRTC calls with a device (spec §2.4 ``App::IotRTC::*``; docs/app-api.md "TRTC calls").

The three actions Tencent's open-source apps call around a TRTC audio/video call — numbered
1, 5 and 9 in their flow: ``InviteDevice`` (the phone asks the device for a call),
``CallDevice`` (the phone asks for the room parameters, answered as ``TRTCParams``) and
``LeavelRoom`` (sic: the phone tells the cloud it left). Each takes ``DeviceId`` or
``ProductId`` + ``DeviceName``; other fields the apps send (the early iOS SDK's
``TRTCParams`` on leave) are ignored. Access as for control (a share is enough); any other
device, or one that does not exist, is ``NoPermission``. The use-cases are
:class:`ivcloud.services.rtc_calls.RtcCallService`.
"""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.actions.devices import device_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import int_param, str_param
from ivcloud.protocol.trtc_call import CALL_AUDIO, CALL_VIDEO
from ivcloud.services.access import Access

#: Longest ``UserAgent`` passed on as ``_sys_user_agent``.
MAX_USER_AGENT = 256


def register(reg: ActionRegistry) -> None:
    @reg.action("App::IotRTC::InviteDevice", "token")
    async def invite_device(call: Call) -> dict[str, Any]:
        """Optional ``CallType`` 1 audio / 2 video (default 2; the apps send none) and
        ``UserAgent`` (ivcloud extensions)."""
        rec = await device_param(call, Access.SHARED)
        call_type = int_param(
            call.params, "CallType", default=CALL_VIDEO, min=CALL_AUDIO, max=CALL_VIDEO
        )
        agent = str_param(call.params, "UserAgent", required=False, max_len=MAX_USER_AGENT)
        await call.instance.rtc_calls.invite(call.me, rec, call_type, agent)
        return {}

    @reg.action("App::IotRTC::CallDevice", "token")
    async def call_device(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        room = await call.instance.rtc_calls.join(call.me, rec)
        return {"TRTCParams": room.to_api()}

    @reg.action("App::IotRTC::LeavelRoom", "token")
    async def leave_room(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        await call.instance.rtc_calls.leave(call.me, rec)
        return {}

"""P2P live view through the cloud (ivcloud extensions of the App API; docs/app-api.md).

``IvcloudDescribeP2PParams`` gives the app what it needs to start a WebRTC session (its ICE
servers, the device's ``_sys_xp2p_info``, online); ``IvcloudP2PConnect`` relays its offer
and returns the device's answer; ``IvcloudP2PClose`` ends the session;
``IvcloudXp2pCommand`` relays one XP2P command when no session is up. Access as for
control (a share is enough); any other device, or one that does not exist, is
``NoPermission``. The use-cases are :class:`ivcloud.services.p2p_sessions.P2PSessionService`.
"""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.actions.devices import device_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import INVALID_PARAMETER_VALUE, AppApiError, int_param, str_param
from ivcloud.protocol.p2p_signal import MAX_SDP_CHARS
from ivcloud.protocol.video_signal import MAX_CHANNEL, QUALITIES, Quality
from ivcloud.protocol.xp2p_types import MAX_REQUEST_CHARS
from ivcloud.services.access import Access


def _quality(call: Call) -> Quality:
    quality = str_param(call.params, "Quality", required=False, max_len=16) or "standard"
    for known in QUALITIES:
        if quality == known:
            return known
    raise AppApiError(INVALID_PARAMETER_VALUE, "Quality must be standard, high or super")


def register(reg: ActionRegistry) -> None:
    @reg.action("IvcloudDescribeP2PParams", "token")
    async def describe_p2p_params(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        return (await call.instance.p2p.params(call.me, rec)).to_api()

    @reg.action("IvcloudP2PConnect", "token")
    async def p2p_connect(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        offer = str_param(call.params, "Offer", max_len=MAX_SDP_CHARS)
        channel = int_param(call.params, "Channel", default=0, min=0, max=MAX_CHANNEL)
        quality = _quality(call)
        session, answer = await call.instance.p2p.connect(
            call.me, rec, offer, channel=channel, quality=quality
        )
        return {"SessionId": session, "Answer": answer}

    @reg.action("IvcloudP2PClose", "token")
    async def p2p_close(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        session = str_param(call.params, "SessionId", max_len=64)
        await call.instance.p2p.close(call.me, rec, session)
        return {}

    @reg.action("IvcloudXp2pCommand", "token")
    async def xp2p_command(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        text = str_param(call.params, "Command", max_len=MAX_REQUEST_CHARS)
        return {"Reply": await call.instance.p2p.command(call.me, rec, text)}

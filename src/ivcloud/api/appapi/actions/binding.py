"""Wi-Fi provisioning with a bind token (spec §2.2, §5), plus one ivcloud extension.

``IvcloudGetProvisionQR`` (tokenapi, **ivcloud extension, not a Tencent action**): params
``Ssid``, ``Password`` (may be empty for an open network), optional ``Token``; returns
``Token`` and ``QRString`` — the "len str len str len str" text IoT Video cameras and locks
scan (device-protocol §8.1). Without ``Token`` a new bind token is issued (as
``AppCreateDeviceBindToken``); with one, it must be the caller's own live token. Apps that
have no QR generator of their own can render ``QRString`` directly."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER_VALUE,
    TOKEN_IS_EXPIRE,
    AppApiError,
    device_ref,
    str_param,
)
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.qr import encode_provision_qr
from ivcloud.services.binding import STATE_CREATED

_TOKEN_MAX = 64
_ID_MAX = 40


def _token(call: Call) -> str:
    return str_param(call.params, "Token", max_len=_TOKEN_MAX)


def register(reg: ActionRegistry) -> None:
    @reg.action("AppCreateDeviceBindToken", "token")
    async def create_token(call: Call) -> dict[str, Any]:
        token, expires_ms = await call.instance.app_binding.create_token(call.me)
        return {"Token": token, "ExpireAt": expires_ms // 1000}

    @reg.action("AppGetDeviceBindTokenState", "token")
    async def token_state(call: Call) -> dict[str, Any]:
        state = await call.instance.app_binding.state(call.me, _token(call))
        # WIFICORE reads the fields at the top level; the doc example wraps them in Data.
        return {**state.to_api(), "Data": state.to_api()}

    @reg.action("AppTokenBindDeviceFamily", "token")
    async def bind(call: Call) -> dict[str, Any]:
        token = _token(call)
        pid, dn = device_ref(call.params)
        family_id = str_param(call.params, "FamilyId", max_len=_ID_MAX)
        room_id = str_param(call.params, "RoomId", required=False, max_len=_ID_MAX) or "0"
        rec = await call.instance.app_binding.bind(call.me, token, pid, dn, family_id, room_id)
        placed = await call.instance.families.placement(rec)
        return {"Data": placed.to_api() if placed is not None else {}}

    @reg.action("IvcloudGetProvisionQR", "token")
    async def provision_qr(call: Call) -> dict[str, Any]:
        ssid = str_param(call.params, "Ssid", max_len=99)
        password = str_param(call.params, "Password", required=False, max_len=99) or ""
        token = str_param(call.params, "Token", required=False, max_len=_TOKEN_MAX)
        service = call.instance.app_binding
        if token is None:
            token, expires_ms = await service.create_token(call.me)
        else:
            state = await service.state(call.me, token)
            if state.state != STATE_CREATED:  # a device already claimed it
                raise AppApiError(TOKEN_IS_EXPIRE, "the bind token has already been used")
            expires_ms = state.expires_ms
        try:
            qr = encode_provision_qr(ssid, password, token)
        except ProtocolError as exc:
            raise AppApiError(INVALID_PARAMETER_VALUE, str(exc)) from None
        return {"Token": token, "QRString": qr, "ExpireAt": expires_ms // 1000}

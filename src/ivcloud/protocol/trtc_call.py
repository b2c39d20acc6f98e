"""The device side of a TRTC call (``App::IotRTC::*``, docs/app-api.md "TRTC calls"): the
thing-model names a TRTC device uses, their values, and readers for what it reports.

What Tencent's device SDKs and apps exchange (public sources, cited in docs/app-api.md):

* properties ``_sys_video_call_status`` / ``_sys_audio_call_status`` — 0 idle (or refused,
  or hung up), 1 calling / ringing / accepted, 2 in the call;
* the parties: ``_sys_userid`` (the app user), ``_sys_caller_id`` and ``_sys_called_id``
  (a user id, or ``"<ProductId>/<DeviceName>"`` for the device; several users are
  ``;``-separated; a device that calls ``""`` calls every user), ``_sys_user_agent`` (who
  started it, e.g. ``android/1.0.0 (…)``);
* ``_sys_extra_info``: a JSON *string* ``{"rejectUserId": "<user id>"}`` a busy device reports
  to turn a second caller away;
* the action ``_sys_trtc_join_room`` (inputs ``SdkAppId`` int, ``UserId``, ``UserSig``,
  ``StrRoomId``, ``PrivateMapKey``; output ``Code``) that tells the device which TRTC room to
  enter, with its own user id and ticket.

Readers take whatever a device sent and never raise: values of the wrong type are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ivcloud.protocol.thingmodel import ThingModel

__all__ = [
    "AGENT_PROP",
    "AUDIO_STATUS_PROP",
    "CALLED_PROP",
    "CALLER_PROP",
    "CALL_AUDIO",
    "CALL_VIDEO",
    "EXTRA_INFO_PROP",
    "IDLE",
    "IN_CALL",
    "JOIN_ROOM_ACTION",
    "RINGING",
    "STATUS_PROPS",
    "USERID_PROP",
    "VIDEO_STATUS_PROP",
    "ReportedCall",
    "call_control",
    "device_user_id",
    "join_room_params",
    "parties",
    "reject_user_id",
    "reported_call",
]

VIDEO_STATUS_PROP: Final = "_sys_video_call_status"
AUDIO_STATUS_PROP: Final = "_sys_audio_call_status"
USERID_PROP: Final = "_sys_userid"
CALLER_PROP: Final = "_sys_caller_id"
CALLED_PROP: Final = "_sys_called_id"
AGENT_PROP: Final = "_sys_user_agent"
EXTRA_INFO_PROP: Final = "_sys_extra_info"
JOIN_ROOM_ACTION: Final = "_sys_trtc_join_room"

#: Call types as the TRTC device SDKs number them (``callType`` 1 audio, 2 video).
CALL_AUDIO: Final = 1
CALL_VIDEO: Final = 2
STATUS_PROPS: Final[Mapping[int, str]] = {
    CALL_AUDIO: AUDIO_STATUS_PROP,
    CALL_VIDEO: VIDEO_STATUS_PROP,
}
IDLE: Final = 0
RINGING: Final = 1
IN_CALL: Final = 2

_PARTY_PROPS: Final = (USERID_PROP, CALLER_PROP, CALLED_PROP)
_MAX_PARTIES: Final = 64


def parties(values: Mapping[str, object], *own_ids: str) -> frozenset[str]:
    """The user ids ``_sys_userid`` / ``_sys_caller_id`` / ``_sys_called_id`` name in
    ``values`` (``;``-separated lists split, blanks and the device's own ids — ``"PID/DN"``,
    its TRTC user id, which the C sample reports as ``_sys_userid`` — dropped, at most 64).
    Empty: nobody in particular (a call to every user)."""
    found: set[str] = set()
    for prop in _PARTY_PROPS:
        value = values.get(prop)
        if not isinstance(value, str):
            continue
        for part in value.split(";"):
            part = part.strip()
            if part and part not in own_ids and len(found) < _MAX_PARTIES:
                found.add(part)
    return frozenset(found)


def reject_user_id(value: object) -> str | None:
    """``rejectUserId`` from an ``_sys_extra_info`` value (a JSON string, as the SDKs report
    it, or an object); ``None`` when there is none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    if not isinstance(value, dict):
        return None
    rejected = value.get("rejectUserId")
    return rejected if isinstance(rejected, str) and rejected else None


@dataclass(frozen=True, slots=True)
class ReportedCall:
    """A call the device's latest reports say it is in (or ringing for)."""

    call_type: int
    status: int
    parties: frozenset[str]


def reported_call(latest: Mapping[str, tuple[object, int]], *own_ids: str) -> ReportedCall | None:
    """The call in a device's latest values (``prop → (value, report time ms)``): the newest
    call-status property at 1 or 2, and the parties reported with it or later (older ones
    belong to an earlier call). ``None`` when both statuses are idle or unknown."""
    best: tuple[int, int, int] | None = None  # (ts, call_type, status)
    for call_type, prop in STATUS_PROPS.items():
        entry = latest.get(prop)
        if entry is None:
            continue
        value, ts = entry
        if not isinstance(value, int) or isinstance(value, bool) or value not in (RINGING, IN_CALL):
            continue
        if best is None or ts > best[0]:
            best = (ts, call_type, value)
    if best is None:
        return None
    since = best[0]
    fresh = {p: v for p, (v, ts) in latest.items() if p in _PARTY_PROPS and ts >= since}
    return ReportedCall(best[1], best[2], parties(fresh, *own_ids))


def device_user_id(product_id: str, device_name: str) -> str:
    """The device's TRTC user id: ``d_`` + 30 hex of SHA-256 over ``"PID/DN"``. Device names
    may hold ``: . @`` and run to 48 characters, which TRTC user ids (32 of ``A-Za-z0-9_-``)
    cannot; app user ids are 24 hex, so the two never collide."""
    digest = hashlib.sha256(f"{product_id}/{device_name}".encode()).hexdigest()
    return "d_" + digest[:30]


def supports_calls(model: ThingModel) -> bool:
    """A product whose devices take TRTC calls: a writable call-status property and the
    join-room action. The apps look for ``"TRTC"`` in ``AppGetProducts``' ``Services``
    before they treat a device's status reports as incoming calls."""
    writable = any(
        (prop := model.property(name)) is not None and prop.writable
        for name in STATUS_PROPS.values()
    )
    return writable and model.action(JOIN_ROOM_ACTION) is not None


def call_control(
    call_type: int, status: int, *, user_id: str, device_id: str, user_agent: str | None
) -> dict[str, Any]:
    """The ``control`` an app sends to ring (``status`` 1) or hang up (0) a device, as the
    apps and the device SDK docs write it: status, ``_sys_userid``, caller = the user,
    called = the device, and the user agent when known."""
    params: dict[str, Any] = {
        STATUS_PROPS[call_type]: status,
        USERID_PROP: user_id,
        CALLER_PROP: user_id,
        CALLED_PROP: device_id,
    }
    if user_agent:
        params[AGENT_PROP] = user_agent
    return params


def join_room_params(sdk_app_id: int, user_id: str, user_sig: str, room_id: str) -> dict[str, Any]:
    """The inputs of ``_sys_trtc_join_room`` (``PrivateMapKey`` empty: ivcloud does not
    mint TRTC's optional room-permission tickets)."""
    return {
        "SdkAppId": sdk_app_id,
        "UserId": user_id,
        "UserSig": user_sig,
        "StrRoomId": room_id,
        "PrivateMapKey": "",
    }

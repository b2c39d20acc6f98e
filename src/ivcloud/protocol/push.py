"""Frames of the App API WebSocket long connection (app-api.md §3), sans-IO.

Client frames are ``{"action","reqId","params"}`` JSON text; every reply echoes ``reqId`` with
the client's own JSON type (strings from the SDK and iOS, ints from Android).  Pushes are
``DeviceChange`` envelopes whose ``Payload`` is the base64 of the device's message.  Each
builder returns the finished JSON text so the hub encodes a push once for all subscribers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, loads_strict

ACTIVE_PUSH: Final = "ActivePush"
YUN_API: Final = "YunApi"
HELLO: Final = "Hello"
HEARTBEAT: Final = "AppDeviceTraceHeartBeat"

#: ``error_message`` of the documented generic failure reply (DOC/40792).
SERVER_ERROR_MESSAGE: Final = "后台连接出错,请联系管理员"
#: ``RequestId`` of documented replies when the client sent none (DOC/40791).
DEFAULT_REQUEST_ID: Final = "rest-client"
MAX_FRAME_CHARS: Final = 256 * 1024
MAX_DEVICE_IDS: Final = 1000
_MAX_ID_CHARS: Final = 256

ReqId = str | int | float | None


class FrameError(ProtocolError):
    """A client frame that cannot be understood; ``req_id`` is echoed if it was readable."""

    def __init__(self, message: str, req_id: ReqId = None) -> None:
        super().__init__(message)
        self.req_id = req_id


@dataclass(frozen=True, slots=True)
class ClientFrame:
    action: str
    req_id: ReqId
    params: dict[str, Any]

    @property
    def yun_action(self) -> str:
        """``params.Action`` of a ``YunApi`` frame ("" when absent)."""
        value = self.params.get("Action")
        return value if isinstance(value, str) else ""

    @property
    def action_params(self) -> dict[str, Any]:
        value = self.params.get("ActionParams")
        return value if isinstance(value, dict) else {}

    def access_token(self) -> str:
        """The token in ``params`` (ActivePush; iOS heartbeat) or ``params.ActionParams``
        (SDK and Android heartbeat): real clients use both places (§3.2)."""
        for place in (self.params, self.action_params):
            token = place.get("AccessToken")
            if isinstance(token, str) and token:
                return token
        return ""

    def request_id(self) -> str:
        for place in (self.action_params, self.params):
            rid = place.get("RequestId")
            if isinstance(rid, str | int) and not isinstance(rid, bool) and str(rid):
                return str(rid)[:128]
        return DEFAULT_REQUEST_ID

    def device_ids(self) -> list[str]:
        """``DeviceIds`` ("PID/DN") of ActivePush (in ``params``) or of a heartbeat (in
        ``ActionParams``), de-duplicated in order; malformed entries are skipped."""
        raw = self.params.get("DeviceIds")
        if raw is None:
            raw = self.action_params.get("DeviceIds")
        if not isinstance(raw, list):
            return []
        out: dict[str, None] = {}
        for item in raw[: MAX_DEVICE_IDS * 2]:
            if isinstance(item, dict):  # the SDK also accepts device objects
                item = item.get("DeviceId")
            if isinstance(item, str) and valid_device_id(item):
                out.setdefault(item, None)
        return list(out)[:MAX_DEVICE_IDS]


def valid_device_id(device_id: str) -> bool:
    pid, sep, dn = device_id.partition("/")
    return bool(sep and pid and dn) and "/" not in dn and len(device_id) <= _MAX_ID_CHARS


def parse_frame(text: str | bytes) -> ClientFrame:
    if len(text) > MAX_FRAME_CHARS:
        raise FrameError("frame is too large")
    try:
        doc = loads_strict(text)
    except BadJson as exc:
        raise FrameError(f"frame: {exc}") from None
    if not isinstance(doc, dict):
        raise FrameError("frame is not a JSON object")
    req_id = doc.get("reqId")
    if not isinstance(req_id, str | int | float) or isinstance(req_id, bool):
        req_id = None
    action = doc.get("action")
    if not isinstance(action, str) or not action:
        raise FrameError("missing action", req_id)
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise FrameError("params must be an object", req_id)
    return ClientFrame(action, req_id, params)


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def reply(req_id: ReqId, data: dict[str, Any], error: str = "", error_message: str = "") -> str:
    """The reply envelope: field order as documented (DOC/40792)."""
    return _dump({"error": error, "error_message": error_message, "data": data, "reqId": req_id})


def active_push_ok(req_id: ReqId, device_ids: list[str]) -> str:
    return reply(req_id, {"deviceIds": device_ids})


def heartbeat_ok(req_id: ReqId, request_id: str) -> str:
    return reply(req_id, {"Response": {"RequestId": request_id}})


def api_error(
    req_id: ReqId, code: str, message: str, request_id: str = DEFAULT_REQUEST_ID, **extra: Any
) -> str:
    """A documented API-level error: ``error`` empty, the error in ``data.Response.Error``
    (DOC/40792).  ``extra`` adds fields to ``data`` (ActivePush adds ``deviceIds: []``, the
    failure signal some clients look at instead, §3.3)."""
    data: dict[str, Any] = {
        "Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id},
        **extra,
    }
    return reply(req_id, data)


def server_error(req_id: ReqId, message: str = SERVER_ERROR_MESSAGE) -> str:
    return reply(req_id, {}, "-1", message)


def hello_ok(req_id: ReqId) -> str:
    """Android's keep-alive reply; the value of ``result`` is UNCONFIRMED (§3.2)."""
    return reply(req_id, {"result": "ok"})


# -- pushes ---------------------------------------------------------------------------------


def iso_time(ts_ms: int) -> str:
    """``2023-07-13T06:19:48+00:00``: second precision with an offset, parseable by JS
    ``new Date()`` as the SDK requires (§3.4)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="seconds")


def device_change(
    *,
    device_id: str,
    type_: str,
    sub_type: str,
    topic: str,
    payload: bytes,
    ts_ms: int,
) -> str:
    """A ``DeviceChange`` push (DOC/40793); ``Seq`` is the event time in ms, as upstream."""
    return _dump(
        {
            "push": True,
            "action": "DeviceChange",
            "params": {
                "Time": iso_time(ts_ms),
                "Type": type_,
                "SubType": sub_type,
                "Topic": topic,
                "Payload": base64.b64encode(payload).decode("ascii"),
                "Seq": ts_ms,
                "DeviceId": device_id,
            },
        }
    )


def encode_json(doc: dict[str, Any]) -> bytes:
    return _dump(doc).encode()


def report_payload(client_token: str, params: dict[str, Any], ts_ms: int) -> bytes:
    """A property report rebuilt from its parts, when the original bytes are not at hand."""
    return encode_json(
        {"method": "report", "clientToken": client_token, "timestamp": ts_ms, "params": params}
    )


def event_payload(
    client_token: str, event_id: str, event_type: str, params: dict[str, Any], ts_ms: int
) -> bytes:
    """One event as an ``event_post`` (an ``events_post`` is pushed one event per frame, the
    shape the SDK's ``wsEventReport`` consumers read)."""
    return encode_json(
        {
            "method": "event_post",
            "clientToken": client_token,
            "version": "1.0",
            "eventId": event_id,
            "type": event_type,
            "timestamp": ts_ms,
            "params": params,
        }
    )


def status_payload(product_id: str, device_name: str, online: bool, ts_ms: int) -> bytes:
    """Payload of a ``StatusChange`` push: the SDK ignores it and its upstream content is
    UNCONFIRMED (§3.4), so it states the fact plainly."""
    return encode_json(
        {
            "method": "online" if online else "offline",
            "productId": product_id,
            "deviceName": device_name,
            "status": 1 if online else 0,
            "timestamp": ts_ms,
        }
    )


def binding_payload(
    product_id: str, device_name: str, bound: bool, family_id: str, ts_ms: int
) -> bytes:
    """Payload of a ``StatusChange`` Bind/Unbind push (shape UNCONFIRMED upstream, §3.4)."""
    return encode_json(
        {
            "method": "bind" if bound else "unbind",
            "productId": product_id,
            "deviceName": device_name,
            "familyId": family_id,
            "timestamp": ts_ms,
        }
    )

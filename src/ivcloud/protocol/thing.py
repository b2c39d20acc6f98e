"""``$thing`` data-template messages (spec §3): parse what devices send, build what the cloud
sends.  Tolerates the quirks of real SDKs listed in the spec (control_reply without
``method``, event_post carrying a one-element ``events`` array, timestamps in s or ms)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, loads_strict

MAX_TOKEN_LEN = 128
EVENT_TYPES = frozenset({"info", "alert", "fault"})
# Timestamps above this are milliseconds (10-digit second values end in 2286).
_MS_THRESHOLD = 10_000_000_000


class MessageError(ProtocolError):
    """A ``$thing`` payload that is not a well-formed message; ``client_token`` is echoed in
    the 406 reply when it could be read."""

    def __init__(self, message: str, client_token: str = "", method: str = "") -> None:
        super().__init__(message)
        self.client_token = client_token
        self.method = method


@dataclass(frozen=True, slots=True)
class UpMessage:
    """A device→cloud message on a ``$thing/up/*`` topic."""

    method: str
    client_token: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PostedEvent:
    event_id: str
    event_type: str
    timestamp_ms: int | None
    params: dict[str, Any]


def decode_json_object(payload: bytes) -> dict[str, Any]:
    try:
        doc = loads_strict(payload)
    except BadJson as exc:
        raise MessageError(f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MessageError("payload is not a JSON object")
    return doc


def parse_up(payload: bytes) -> UpMessage:
    """Parse a ``$thing/up/*`` payload.  ``method`` may be missing only on a control_reply
    (Python SDK 1.0.0 quirk): such a message gets method ``control_reply``."""
    doc = decode_json_object(payload)
    token = doc.get("clientToken", "")
    if not isinstance(token, str):
        token = str(token) if isinstance(token, int) and not isinstance(token, bool) else ""
    if len(token) > MAX_TOKEN_LEN:
        raise MessageError("clientToken is longer than 128 characters")
    method = doc.get("method")
    if method is None and "code" in doc:
        # A reply without ``method`` is a control_reply (Python SDK 1.0.0), even with an
        # empty or null token (its sample replies to every message that way); answering it
        # with an error would start a reply loop.
        method = "control_reply"
    if not isinstance(method, str) or not method:
        raise MessageError("missing method", token)
    return UpMessage(method, token, doc)


def normalise_ts_ms(value: object) -> int | None:
    """Seconds or milliseconds → milliseconds; 0/absent → None (device has no clock)."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float) or value < 0:
        raise ProtocolError(f"timestamp {value!r} is not a non-negative number")
    if value == 0:
        return None
    return int(value) if value >= _MS_THRESHOLD else int(value * 1000)


def report_params(msg: UpMessage) -> dict[str, Any]:
    params = msg.raw.get("params")
    if not isinstance(params, dict) or not params:
        raise MessageError("params must be a non-empty object", msg.client_token, msg.method)
    return params


def report_timestamp_ms(msg: UpMessage) -> int | None:
    try:
        return normalise_ts_ms(msg.raw.get("timestamp"))
    except ProtocolError as exc:
        raise MessageError(str(exc), msg.client_token, msg.method) from None


def _one_event(doc: dict[str, Any], token: str, method: str) -> PostedEvent:
    event_id = doc.get("eventId")
    event_type = doc.get("type", "info")
    params = doc.get("params", {})
    if not isinstance(event_id, str) or not event_id:
        raise MessageError("eventId must be a non-empty string", token, method)
    if event_type not in EVENT_TYPES:
        raise MessageError(f"event type {event_type!r} is not info/alert/fault", token, method)
    if not isinstance(params, dict):
        raise MessageError("event params must be an object", token, method)
    try:
        ts = normalise_ts_ms(doc.get("timestamp"))
    except ProtocolError as exc:
        raise MessageError(str(exc), token, method) from None
    return PostedEvent(event_id, event_type, ts, params)


def posted_events(msg: UpMessage) -> list[PostedEvent]:
    """Events of an ``event_post``/``events_post``: top-level fields or an ``events`` list."""
    events = msg.raw.get("events")
    if events is None:
        if msg.method != "event_post":
            raise MessageError("events_post needs an events array", msg.client_token, msg.method)
        return [_one_event(msg.raw, msg.client_token, msg.method)]
    if not isinstance(events, list) or not events:
        raise MessageError("events must be a non-empty array", msg.client_token, msg.method)
    out = []
    for item in events:
        if not isinstance(item, dict):
            raise MessageError("events entries must be objects", msg.client_token, msg.method)
        out.append(_one_event(item, msg.client_token, msg.method))
    return out


def reply_code(msg: UpMessage) -> int:
    code = msg.raw.get("code", 0)
    if isinstance(code, bool) or not isinstance(code, int):
        if isinstance(code, str) and code.lstrip("-").isdigit():
            return int(code)
        raise MessageError("code must be an integer", msg.client_token, msg.method)
    return code


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def reply(method: str, client_token: str, code: int, status: str, **extra: Any) -> bytes:
    """A ``*_reply`` message: ``{"method","clientToken","code","status",...}``."""
    return encode(
        {"method": method, "clientToken": client_token, "code": code, "status": status, **extra}
    )


def control_message(client_token: str, params: dict[str, Any]) -> bytes:
    return encode({"method": "control", "clientToken": client_token, "params": params})


def action_message(client_token: str, action_id: str, ts_s: int, params: dict[str, Any]) -> bytes:
    return encode(
        {
            "method": "action",
            "clientToken": client_token,
            "actionId": action_id,
            "timestamp": ts_s,
            "params": params,
        }
    )


def thing_topic(direction: str, channel: str, product_id: str, device_name: str) -> str:
    return f"$thing/{direction}/{channel}/{product_id}/{device_name}"

"""ivcloud's device ↔ cloud video signalling over MQTT (an ivcloud extension; see
docs/device-protocol.md "ivcloud extension: video signalling").

Tencent's XP2P signalling runs inside Tencent's closed P2P network, so a self-hosted cloud
needs its own way to ask a camera for video. It rides the device's standing MQTT
connection on two topics per device, with the ``$thing`` conventions devices already know::

    $video/down/{ProductId}/{DeviceName}   cloud → device   requests, replies to the device
    $video/up/{ProductId}/{DeviceName}     device → cloud   replies, requests to the cloud

    request  {"method": m, "clientToken": t, "params": {...}}
    reply    {"method": m + "_reply", "clientToken": t, "code": 0, "status": "...",
              "data": {...}}

Either side may send requests; the ``clientToken`` (chosen by the requester, echoed by the
responder) pairs a reply with its request. One parser for both directions, keyed by
``method``, so later methods (WebRTC offer/answer/candidates, XP2P commands) only add a
params reader here and a handler on each side. Parsers raise :class:`SignalError` and
nothing else, whatever the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, dumps_safe, loads_strict

__all__ = [
    "FAILED",
    "INVALID",
    "MAX_CHANNEL",
    "MAX_TOKEN_LEN",
    "NOT_FOUND",
    "OK",
    "PUSH_START",
    "PUSH_STOP",
    "QUALITIES",
    "REPLY_SUFFIX",
    "PushStart",
    "PushStop",
    "Quality",
    "SignalError",
    "SignalMessage",
    "encode_reply",
    "encode_request",
    "parse_message",
    "parse_push_start",
    "parse_push_stop",
    "push_start_params",
    "push_stop_params",
    "reply_doc",
    "request_doc",
    "video_topic",
]

PUSH_START: Final = "stream_push_start"
PUSH_STOP: Final = "stream_push_stop"
REPLY_SUFFIX: Final = "_reply"

#: Reply codes, as on ``$thing``: 0 success, 404 unknown method, 406 malformed message or
#: params, 500 the handler failed (e.g. the device could not open the push connection).
OK, NOT_FOUND, INVALID, FAILED = 0, 404, 406, 500

Quality = Literal["standard", "high", "super"]
QUALITIES: Final[tuple[Quality, ...]] = ("standard", "high", "super")
#: Channels are 0 for a camera, 1… for an NVR's sub-cameras (spec §7.4; the SDK allows
#: up to 64 channels, as in :mod:`ivcloud.protocol.xp2p`).
MAX_CHANNEL: Final = 64
MAX_TOKEN_LEN: Final = 128
MAX_URL_LEN: Final = 2048
_METHOD = re.compile(r"[a-z][a-z0-9_]{0,63}")


class SignalError(ProtocolError):
    """A message or params that do not follow the format. ``client_token`` and ``method``
    are whatever could be read, so the 406 reply can still be matched by the sender;
    ``method`` ends with ``_reply`` when the bad message was itself a reply (which gets no
    answer, see :attr:`answerable`)."""

    @property
    def answerable(self) -> bool:
        """Whether a 406 reply can and should be sent: the sender's token is known and the
        message was a request (answering a reply could start a reply loop)."""
        return bool(self.client_token) and not self.method.endswith(REPLY_SUFFIX)

    def __init__(self, message: str, client_token: str = "", method: str = "") -> None:
        super().__init__(message)
        self.client_token = client_token
        self.method = method


@dataclass(frozen=True, slots=True)
class SignalMessage:
    """One message in either direction. For a reply, ``method`` is the request's method
    (without ``_reply``) and ``code``/``status``/``data`` are set; for a request, ``code``
    is ``None`` and ``params`` holds the arguments."""

    method: str
    client_token: str
    params: dict[str, Any] = field(default_factory=dict)
    code: int | None = None
    status: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.code is not None


def video_topic(direction: Literal["up", "down"], product_id: str, device_name: str) -> str:
    return f"$video/{direction}/{product_id}/{device_name}"


def parse_message(payload: bytes) -> SignalMessage:
    """A ``$video`` payload → :class:`SignalMessage`, or :class:`SignalError`."""
    try:
        doc = loads_strict(payload)
    except BadJson as exc:
        raise SignalError(f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SignalError("payload is not a JSON object")
    token = doc.get("clientToken")
    if not isinstance(token, str) or not token:
        raise SignalError("clientToken must be a non-empty string", "", _method_hint(doc))
    if len(token) > MAX_TOKEN_LEN:
        raise SignalError(f"clientToken is longer than {MAX_TOKEN_LEN} characters")
    method = doc.get("method")
    if not isinstance(method, str) or _METHOD.fullmatch(method) is None:
        raise SignalError("method must match [a-z][a-z0-9_]{0,63}", token)
    if method.endswith(REPLY_SUFFIX) and len(method) > len(REPLY_SUFFIX):
        return _reply(doc, method[: -len(REPLY_SUFFIX)], token)
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise SignalError("params must be an object", token, method)
    return SignalMessage(method, token, params)


def _method_hint(doc: dict[str, Any]) -> str:
    method = doc.get("method")
    if isinstance(method, str) and _METHOD.fullmatch(method):
        return method
    return ""


def _reply(doc: dict[str, Any], method: str, token: str) -> SignalMessage:
    # Errors name the reply method (``…_reply``): receivers never answer a bad reply.
    name = method + REPLY_SUFFIX
    code = doc.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise SignalError("a reply needs an integer code", token, name)
    status = doc.get("status", "")
    if not isinstance(status, str):
        raise SignalError("status must be a string", token, name)
    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise SignalError("data must be an object", token, name)
    return SignalMessage(method, token, {}, code, status, data)


def request_doc(method: str, client_token: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "clientToken": client_token, "params": params}


def reply_doc(
    method: str,
    client_token: str,
    code: int,
    status: str,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The reply to ``method`` (``_reply`` is appended here). ``extra`` carries e.g. ``msg``
    with the reason of a 406, as ``$thing`` replies do."""
    return {
        "method": method + REPLY_SUFFIX,
        "clientToken": client_token,
        "code": code,
        "status": status,
        "data": data or {},
        **extra,
    }


def encode_request(method: str, client_token: str, params: dict[str, Any]) -> bytes:
    return dumps_safe(request_doc(method, client_token, params))


def encode_reply(
    method: str,
    client_token: str,
    code: int,
    status: str,
    data: dict[str, Any] | None = None,
    **extra: Any,
) -> bytes:
    return dumps_safe(reply_doc(method, client_token, code, status, data, **extra))


# -- method params ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushStart:
    """``stream_push_start``: open a WebSocket to ``url`` and push FLV of that stream."""

    url: str
    channel: int
    quality: Quality


@dataclass(frozen=True, slots=True)
class PushStop:
    """``stream_push_stop``: stop pushing that stream (no viewer is left)."""

    channel: int
    quality: Quality


def push_start_params(url: str, channel: int, quality: Quality) -> dict[str, Any]:
    return {"url": url, "channel": channel, "quality": quality}


def push_stop_params(channel: int, quality: Quality) -> dict[str, Any]:
    return {"channel": channel, "quality": quality}


def parse_push_start(msg: SignalMessage) -> PushStart:
    channel, quality = _stream_params(msg)
    url = msg.params.get("url")
    if not isinstance(url, str) or not url:
        raise SignalError("url must be a non-empty string", msg.client_token, msg.method)
    if len(url) > MAX_URL_LEN or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise SignalError("url is too long or contains spaces or controls", msg.client_token)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        valid = False
    if not valid:
        raise SignalError("url must be a ws:// or wss:// URL", msg.client_token, msg.method)
    return PushStart(url, channel, quality)


def parse_push_stop(msg: SignalMessage) -> PushStop:
    channel, quality = _stream_params(msg)
    return PushStop(channel, quality)


def _stream_params(msg: SignalMessage) -> tuple[int, Quality]:
    channel = msg.params.get("channel", 0)
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise SignalError("channel must be an integer", msg.client_token, msg.method)
    if not 0 <= channel <= MAX_CHANNEL:
        raise SignalError(f"channel must be 0..{MAX_CHANNEL}", msg.client_token, msg.method)
    quality = msg.params.get("quality", "standard")
    for known in QUALITIES:
        if quality == known:
            return channel, known
    raise SignalError("quality must be standard, high or super", msg.client_token, msg.method)

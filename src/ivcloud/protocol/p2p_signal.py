"""The P2P methods of ivcloud's ``$video`` signalling (docs/device-protocol.md, "ivcloud
extension: video signalling"): WebRTC session set-up and teardown, and XP2P commands relayed
by the cloud when no P2P session is up.

==================  ==========  ===========================================================
method              direction   params → reply ``data``
==================  ==========  ===========================================================
``webrtc_offer``    cloud→dev   ``session``, ``offer`` (SDP), ``ice_servers``, ``visitor``,
                                ``channel``, ``quality`` → ``{"answer": SDP}``
``webrtc_close``    cloud→dev   ``session`` → ``{}`` (status ``closed`` / ``not open``)
``webrtc_closed``   dev→cloud   ``session``, ``reason`` → ``{}`` (the device's peer ended)
``xp2p_command``    cloud→dev   ``visitor``, ``request`` (command text) → ``{"reply": text}``
==================  ==========  ===========================================================

Reply codes are those of :mod:`ivcloud.protocol.video_signal` plus :data:`REFUSED` (403):
the device understood and will not — ``data.xp2p_status`` carries the XP2P status (405 too
many viewers, 406 unsupported, 404 bad request, 1 refused). A device that cannot answer the
offer (no common codec, not SDP) answers 406 like any bad params.

Parsers take a :class:`~ivcloud.protocol.video_signal.SignalMessage` and raise
:class:`~ivcloud.protocol.video_signal.SignalError` only; :func:`check_offer` and
:func:`check_answer` bound SDP text before anything parses it (raising :class:`SdpError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.video_signal import (
    MAX_CHANNEL,
    QUALITIES,
    Quality,
    SignalError,
    SignalMessage,
)
from ivcloud.protocol.xp2p_types import MAX_REQUEST_CHARS

__all__ = [
    "MAX_ICE_SERVERS",
    "MAX_SDP_CHARS",
    "REFUSED",
    "WEBRTC_CLOSE",
    "WEBRTC_CLOSED",
    "WEBRTC_OFFER",
    "XP2P_COMMAND",
    "SdpError",
    "WebRtcOffer",
    "Xp2pCommand",
    "check_answer",
    "check_offer",
    "parse_answer_data",
    "parse_command_reply",
    "parse_ice_servers",
    "parse_refusal",
    "parse_session",
    "parse_webrtc_closed",
    "parse_webrtc_offer",
    "parse_xp2p_command",
    "valid_session_id",
    "valid_visitor",
    "webrtc_closed_params",
    "webrtc_offer_params",
]

WEBRTC_OFFER: Final = "webrtc_offer"
WEBRTC_CLOSE: Final = "webrtc_close"
WEBRTC_CLOSED: Final = "webrtc_closed"
XP2P_COMMAND: Final = "xp2p_command"
#: ``$video`` reply code: refused by the device, XP2P status in ``data.xp2p_status``.
REFUSED: Final = 403

#: An offer with every candidate of a dual-stack host is a few KiB; 64 KiB is generous and
#: keeps a hostile one from costing the MQTT path or aiortc's parser anything.
MAX_SDP_CHARS: Final = 64 * 1024
MAX_SDP_MEDIA: Final = 16
MAX_ICE_SERVERS: Final = 8
MAX_ICE_URLS: Final = 8
MAX_ICE_FIELD: Final = 512
MAX_REASON: Final = 128
_SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_VISITOR = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SDP_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_ICE_URL = re.compile(r"(?:stun|stuns|turn|turns):[!-~]{1,500}")


class SdpError(ProtocolError):
    """SDP text that is too large, not SDP, or not an offer ivcloud relays."""


def valid_session_id(value: object) -> bool:
    return isinstance(value, str) and _SESSION.fullmatch(value) is not None


def valid_visitor(value: object) -> bool:
    return isinstance(value, str) and _VISITOR.fullmatch(value) is not None


# -- SDP bounds -------------------------------------------------------------------------------


def _sdp_lines(sdp: object, what: str) -> list[str]:
    if not isinstance(sdp, str) or not sdp:
        raise SdpError(f"the {what} must be a non-empty string")
    if len(sdp) > MAX_SDP_CHARS:
        raise SdpError(f"the {what} is longer than {MAX_SDP_CHARS} characters")
    lines = sdp.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if not lines or lines[0] != "v=0":
        raise SdpError(f"the {what} is not SDP (it must start with v=0)")
    for line in lines:
        if _SDP_LINE.fullmatch(line) is None:
            raise SdpError(f"the {what} is not SDP (every line is <letter>=<text>)")
    media = sum(line.startswith("m=") for line in lines)
    if not 1 <= media <= MAX_SDP_MEDIA:
        raise SdpError(f"the {what} must have 1..{MAX_SDP_MEDIA} m= sections")
    return lines


def check_offer(sdp: object) -> str:
    """An offer the cloud relays: bounded SDP with an ``m=application`` data channel over
    DTLS/SCTP (the ``xp2p`` channel every ivcloud session carries)."""
    lines = _sdp_lines(sdp, "offer")
    if not any(line.startswith("m=application ") and "DTLS/SCTP" in line for line in lines):
        raise SdpError("the offer has no data channel (m=application … DTLS/SCTP)")
    assert isinstance(sdp, str)
    return sdp


def check_answer(sdp: object) -> str:
    """A device's answer: bounded SDP."""
    _sdp_lines(sdp, "answer")
    assert isinstance(sdp, str)
    return sdp


# -- ICE servers ------------------------------------------------------------------------------


def parse_ice_servers(value: object) -> tuple[dict[str, Any], ...]:
    """``RTCIceServer`` dicts as ivcloud sends them: at most 8, each with ``urls`` (a
    string or list of ``stun:``/``turn:`` URLs) and optional string ``username`` /
    ``credential``; other keys are dropped. ``ValueError`` otherwise."""
    if not isinstance(value, list) or len(value) > MAX_ICE_SERVERS:
        raise ValueError(f"ice_servers must be a list of at most {MAX_ICE_SERVERS} objects")
    out: list[dict[str, Any]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ValueError("each ice server must be an object")
        urls = entry.get("urls")
        url_list = [urls] if isinstance(urls, str) else urls
        if (
            not isinstance(url_list, list)
            or not 1 <= len(url_list) <= MAX_ICE_URLS
            or not all(isinstance(u, str) and _ICE_URL.fullmatch(u) for u in url_list)
        ):
            raise ValueError("ice server urls must be 1..8 stun:/turn: URLs")
        server: dict[str, Any] = {"urls": list(url_list)}
        for key in ("username", "credential"):
            field = entry.get(key)
            if field is None:
                continue
            if not isinstance(field, str) or len(field) > MAX_ICE_FIELD:
                raise ValueError(f"ice server {key} must be a string of ≤ {MAX_ICE_FIELD}")
            server[key] = field
        out.append(server)
    return tuple(out)


# -- cloud → device ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    session: str
    offer: str
    ice_servers: tuple[dict[str, Any], ...]
    visitor: str
    channel: int
    quality: Quality


@dataclass(frozen=True, slots=True)
class Xp2pCommand:
    visitor: str
    request: str


def webrtc_offer_params(
    session: str,
    offer: str,
    ice_servers: Sequence[Mapping[str, Any]],
    visitor: str,
    channel: int = 0,
    quality: Quality = "standard",
) -> dict[str, Any]:
    return {
        "session": session,
        "offer": offer,
        "ice_servers": [dict(s) for s in ice_servers],
        "visitor": visitor,
        "channel": channel,
        "quality": quality,
    }


def _fail(msg: SignalMessage, message: str) -> SignalError:
    return SignalError(message, msg.client_token, msg.method)


def parse_session(msg: SignalMessage) -> str:
    """``session`` of ``webrtc_close`` (and of the other session methods)."""
    session = msg.params.get("session")
    if not valid_session_id(session):
        raise _fail(msg, "session must be 1..64 characters of [A-Za-z0-9_-]")
    assert isinstance(session, str)
    return session


def _visitor(msg: SignalMessage) -> str:
    visitor = msg.params.get("visitor")
    if not valid_visitor(visitor):
        raise _fail(msg, "visitor must be 1..64 characters of [A-Za-z0-9_.-]")
    assert isinstance(visitor, str)
    return visitor


def parse_webrtc_offer(msg: SignalMessage) -> WebRtcOffer:
    session = parse_session(msg)
    try:
        offer = check_offer(msg.params.get("offer"))
        servers = parse_ice_servers(msg.params.get("ice_servers", []))
    except ValueError as exc:  # SdpError is one
        raise _fail(msg, str(exc)) from None
    channel = msg.params.get("channel", 0)
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise _fail(msg, "channel must be an integer")
    if not 0 <= channel <= MAX_CHANNEL:
        raise _fail(msg, f"channel must be 0..{MAX_CHANNEL}")
    quality = msg.params.get("quality", "standard")
    for known in QUALITIES:
        if quality == known:
            return WebRtcOffer(session, offer, servers, _visitor(msg), channel, known)
    raise _fail(msg, "quality must be standard, high or super")


def parse_xp2p_command(msg: SignalMessage) -> Xp2pCommand:
    request = msg.params.get("request")
    if not isinstance(request, str) or not request or len(request) > MAX_REQUEST_CHARS:
        raise _fail(msg, f"request must be a string of 1..{MAX_REQUEST_CHARS} characters")
    return Xp2pCommand(_visitor(msg), request)


# -- device → cloud ---------------------------------------------------------------------------


def webrtc_closed_params(session: str, reason: str) -> dict[str, Any]:
    return {"session": session, "reason": reason[:MAX_REASON]}


def parse_webrtc_closed(msg: SignalMessage) -> tuple[str, str]:
    """``(session, reason)``; the reason is informational (clipped, never required)."""
    session = parse_session(msg)
    reason = msg.params.get("reason", "")
    return session, reason[:MAX_REASON] if isinstance(reason, str) else ""


# -- reply data -------------------------------------------------------------------------------


def parse_answer_data(data: Mapping[str, Any]) -> str:
    """The answer SDP of a ``webrtc_offer_reply`` (``SdpError`` if absent or not SDP)."""
    return check_answer(data.get("answer"))


def parse_command_reply(data: Mapping[str, Any]) -> str:
    """The reply text of an ``xp2p_command_reply`` (``ProtocolError`` if absent)."""
    reply = data.get("reply")
    if not isinstance(reply, str) or len(reply) > MAX_REQUEST_CHARS * 4:
        raise ProtocolError("xp2p_command_reply data.reply must be a string")
    return reply


def parse_refusal(data: Mapping[str, Any]) -> int | None:
    """``data.xp2p_status`` of a 403 reply (``None`` if missing or not an integer)."""
    status = data.get("xp2p_status")
    if isinstance(status, bool) or not isinstance(status, int) or not -9999 <= status <= 9999:
        return None
    return status

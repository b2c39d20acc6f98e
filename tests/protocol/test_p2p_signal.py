"""The P2P ``$video`` methods and ivcloud's ``_sys_xp2p_info`` format (sans-IO): round trips,
the offers aiortc and browsers produce, and — for arbitrary input — a typed value or the
module's own error, never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.client.p2p import AppPeer
from ivcloud.protocol import p2p_signal as ps
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.xp2p_info import (
    FLAGS,
    MAX_INFO_CHARS,
    Xp2pInfo,
    Xp2pInfoError,
    format_xp2p_info,
    new_peer_id,
    parse_xp2p_info,
)
from ivcloud.services.ice import IceService

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=sctp-port:5000\r\n"
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def request(method: str, params: dict[str, Any]) -> vs.SignalMessage:
    return vs.parse_message(vs.encode_request(method, "video-1", params))


# -- SDP bounds -------------------------------------------------------------------------------


async def test_a_real_aiortc_offer_passes_and_so_does_its_answer_shape() -> None:
    app = AppPeer()
    try:
        offer = await app.offer()
    finally:
        await app.close()
    assert ps.check_offer(offer) == offer
    assert ps.check_answer(offer) == offer
    assert ps.check_offer(OFFER.replace("\r\n", "\n")) == OFFER.replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        (None, "non-empty string"),
        ("", "non-empty string"),
        ("v=1\r\n", "start with v=0"),
        ("hello", "start with v=0"),
        (OFFER + "not a line\r\n", "<letter>=<text>"),
        (OFFER + "a=x\x00y\r\n", "<letter>=<text>"),
        ("v=0\r\ns=-\r\n", "m= sections"),
        ("v=0\r\n" + "m=video 9 RTP/AVP 96\r\n" * 17, "m= sections"),
        (OFFER.replace("m=application 9 UDP/DTLS/SCTP", "m=video 9 RTP/AVP"), "no data channel"),
        (OFFER + "a=" + "x" * ps.MAX_SDP_CHARS + "\r\n", "longer than"),
    ],
)
def test_offers_that_are_refused(offer: object, reason: str) -> None:
    with pytest.raises(ps.SdpError, match=reason):
        ps.check_offer(offer)


@given(st.text(max_size=300))
def test_any_text_is_an_offer_or_an_sdp_error(text: str) -> None:
    for candidate in (text, "v=0\r\n" + text, OFFER + text):
        with contextlib.suppress(ps.SdpError):
            assert ps.check_offer(candidate) == candidate


# -- ICE servers ------------------------------------------------------------------------------


def test_ice_servers_as_ivcloud_mints_them_pass_unchanged() -> None:
    ice = IceService(
        stun_urls=["stun:127.0.0.1:3478"],
        turn_urls=["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
        turn_secret="s",
    )
    servers = ice.ice_servers("dev-1", 1_767_225_600)
    assert list(ps.parse_ice_servers(servers)) == servers
    assert ps.parse_ice_servers([{"urls": "stun:a:1", "extra": 1}]) == ({"urls": ["stun:a:1"]},)


@pytest.mark.parametrize(
    "value",
    [
        {},
        [{"urls": []}],
        [{"urls": ["http://x"]}],
        [{"urls": "stun:a", "username": 5}],
        [{"urls": "stun:a", "credential": "x" * 600}],
        [{"urls": "stun:a"}] * 9,
        ["stun:a"],
    ],
)
def test_bad_ice_servers(value: object) -> None:
    with pytest.raises(ValueError, match=r"ice.server"):
        ps.parse_ice_servers(value)


@given(json_values)
def test_any_json_is_ice_servers_or_a_value_error(value: object) -> None:
    try:
        servers = ps.parse_ice_servers(value)
    except ValueError:
        return
    assert all(set(s) <= {"urls", "username", "credential"} for s in servers)


# -- methods ----------------------------------------------------------------------------------


def test_webrtc_offer_round_trip_and_defaults() -> None:
    servers = [{"urls": ["turn:t:3478"], "username": "1:dev-1", "credential": "c"}]
    params = ps.webrtc_offer_params("p2p-1", OFFER, servers, "vabc", 2, "high")
    parsed = ps.parse_webrtc_offer(request(ps.WEBRTC_OFFER, params))
    assert parsed == ps.WebRtcOffer("p2p-1", OFFER, tuple(servers), "vabc", 2, "high")
    minimal = {"session": "s", "offer": OFFER, "visitor": "v"}
    parsed = ps.parse_webrtc_offer(request(ps.WEBRTC_OFFER, minimal))
    assert (parsed.ice_servers, parsed.channel, parsed.quality) == ((), 0, "standard")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"session": "a b"}, "session"),
        ({"session": "x" * 65}, "session"),
        ({"visitor": ""}, "visitor"),
        ({"visitor": "v/1"}, "visitor"),
        ({"offer": "v=0"}, "m= sections"),
        ({"ice_servers": "stun:a"}, "ice_servers"),
        ({"channel": 65}, "channel"),
        ({"channel": True}, "channel"),
        ({"quality": "4k"}, "quality"),
    ],
)
def test_bad_webrtc_offers_name_the_problem(change: dict[str, Any], reason: str) -> None:
    params = {"session": "s", "offer": OFFER, "visitor": "v", **change}
    with pytest.raises(vs.SignalError, match=reason) as info:
        ps.parse_webrtc_offer(request(ps.WEBRTC_OFFER, params))
    assert info.value.answerable and info.value.client_token == "video-1"


PARAM_KEYS = ["session", "offer", "visitor", "ice_servers", "channel", "quality", "request"]


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from([*PARAM_KEYS, "reason"]), json_values | st.just(OFFER)))
def test_any_params_parse_or_fail_with_signal_error(params: dict[str, Any]) -> None:
    for method, parse in (
        (ps.WEBRTC_OFFER, ps.parse_webrtc_offer),
        (ps.WEBRTC_CLOSE, ps.parse_session),
        (ps.WEBRTC_CLOSED, ps.parse_webrtc_closed),
        (ps.XP2P_COMMAND, ps.parse_xp2p_command),
    ):
        try:
            parse(request(method, params))
        except vs.SignalError as exc:
            assert exc.answerable


def test_close_closed_and_command() -> None:
    assert ps.parse_session(request(ps.WEBRTC_CLOSE, {"session": "p2p-9"})) == "p2p-9"
    closed = request(ps.WEBRTC_CLOSED, ps.webrtc_closed_params("p2p-9", "x" * 500))
    assert ps.parse_webrtc_closed(closed) == ("p2p-9", "x" * ps.MAX_REASON)
    assert ps.parse_webrtc_closed(request(ps.WEBRTC_CLOSED, {"session": "s", "reason": 3})) == (
        "s",
        "",
    )
    text = "action=user_define&channel=0&cmd=ptz_left"
    command = ps.parse_xp2p_command(request(ps.XP2P_COMMAND, {"visitor": "v1", "request": text}))
    assert command == ps.Xp2pCommand("v1", text)
    with pytest.raises(vs.SignalError, match="request"):
        ps.parse_xp2p_command(request(ps.XP2P_COMMAND, {"visitor": "v1", "request": "x" * 20000}))


def test_reply_data() -> None:
    assert ps.parse_answer_data({"answer": OFFER}) == OFFER
    with pytest.raises(ps.SdpError):
        ps.parse_answer_data({})
    assert ps.parse_command_reply({"reply": "[]"}) == "[]"
    with pytest.raises(ValueError, match="reply"):
        ps.parse_command_reply({"reply": 5})
    assert ps.parse_refusal({"xp2p_status": 405}) == 405
    for bad in ({}, {"xp2p_status": "405"}, {"xp2p_status": True}, {"xp2p_status": 10**9}):
        assert ps.parse_refusal(bad) is None
    # The reply documents as they travel.
    body = vs.encode_reply(ps.WEBRTC_OFFER, "t", ps.REFUSED, "full", {"xp2p_status": 405})
    assert json.loads(body)["code"] == 403


# -- _sys_xp2p_info ---------------------------------------------------------------------------


def test_xp2p_info_format() -> None:
    peer = new_peer_id(bytes(range(16)))
    assert len(peer) == 22
    value = format_xp2p_info(peer, "wcu")
    assert value == f"XP2P1:{peer}:cuw" and len(value) <= MAX_INFO_CHARS
    assert parse_xp2p_info(value) == Xp2pInfo(peer, frozenset("cuw"))
    assert parse_xp2p_info(value + ":future-field").flags == frozenset("cuw")
    assert str(parse_xp2p_info(f"XP2P1:{peer}:")) == f"XP2P1:{peer}:"
    with pytest.raises(ValueError, match="flags"):
        format_xp2p_info(peer, "z")
    with pytest.raises(ValueError, match="peer id"):
        format_xp2p_info("short", "")


@pytest.mark.parametrize(
    "value",
    [
        "XP2Pk3fS3onCsgGaQJCinTCtfw==%2.4.46",  # a Tencent device's (app-api.md §6.1)
        "XP2P1:q0V3b2Qp1kqjv8d2c0xq3A",
        "XP2P2:q0V3b2Qp1kqjv8d2c0xq3A:c",
        "XP2P1:q0V3b2Qp:wc",  # not sorted
        "XP2P1:q0V3b2Qp:cc",  # repeated
        "XP2P1:q0V3b2Qp:cz",  # unknown flag
        "XP2P1:q0V3=2Qp:c",
        "XP2P1:" + "a" * 60 + ":c",
    ],
)
def test_values_that_are_not_ivcloud_xp2p_info(value: str) -> None:
    with pytest.raises(Xp2pInfoError):
        parse_xp2p_info(value)


@given(st.binary(min_size=6, max_size=32), st.sets(st.sampled_from(sorted(FLAGS))))
def test_xp2p_info_round_trip(entropy: bytes, flags: set[str]) -> None:
    value = format_xp2p_info(new_peer_id(entropy), flags)
    assert len(value) <= MAX_INFO_CHARS and value.startswith("XP2P")
    assert parse_xp2p_info(value).flags == frozenset(flags)


@given(st.text(max_size=80) | st.from_regex(r"XP2P1:[A-Za-z0-9_=-]{0,50}:[a-z]{0,8}(:.*)?"))
def test_any_text_is_xp2p_info_or_its_error(text: str) -> None:
    try:
        info = parse_xp2p_info(text)
    except Xp2pInfoError:
        return
    assert text.startswith(str(info))

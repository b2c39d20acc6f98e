"""The ``$video`` signalling messages and the hub's signed stream URLs (sans-IO)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import stream_urls
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.signing import BadSignedUrl
from ivcloud.protocol.stream_urls import StreamKey

KEY = b"k" * 32


def msg(doc: dict[str, Any]) -> vs.SignalMessage:
    return vs.parse_message(json.dumps(doc).encode())


# -- messages ---------------------------------------------------------------------------------


def test_request_round_trip() -> None:
    params = vs.push_start_params("wss://iot.example.com/media/v1/publish/P/D?x=1", 2, "high")
    parsed = vs.parse_message(vs.encode_request(vs.PUSH_START, "video-1", params))
    assert parsed == vs.SignalMessage(vs.PUSH_START, "video-1", params)
    assert not parsed.is_reply
    assert vs.parse_push_start(parsed) == vs.PushStart(params["url"], 2, "high")


def test_reply_round_trip() -> None:
    body = vs.encode_reply(vs.PUSH_STOP, "t-9", 0, "stopped", {"n": 1})
    assert json.loads(body) == {
        "method": "stream_push_stop_reply",
        "clientToken": "t-9",
        "code": 0,
        "status": "stopped",
        "data": {"n": 1},
    }
    parsed = vs.parse_message(body)
    assert parsed.is_reply and parsed.method == vs.PUSH_STOP
    assert (parsed.code, parsed.status, parsed.data) == (0, "stopped", {"n": 1})


def test_defaults() -> None:
    parsed = msg({"method": "stream_push_stop", "clientToken": "t"})
    assert parsed.params == {}
    assert vs.parse_push_stop(parsed) == vs.PushStop(0, "standard")
    reply = msg({"method": "x_reply", "clientToken": "t", "code": 404})
    assert (reply.status, reply.data) == ("", {})


def test_topics() -> None:
    assert vs.video_topic("down", "P", "D") == "$video/down/P/D"
    assert vs.video_topic("up", "P", "D") == "$video/up/P/D"


@pytest.mark.parametrize(
    ("payload", "token", "answerable"),
    [
        (b"not json", "", False),
        (b"[1,2]", "", False),
        (b'{"method":"a","clientToken":"t","x":NaN}', "", False),
        (b'{"method":"stream_push_start"}', "", False),
        (b'{"method":"stream_push_start","clientToken":""}', "", False),
        (b'{"method":"stream_push_start","clientToken":7}', "", False),
        (b'{"method":"Bad-Name","clientToken":"t"}', "t", True),
        (b'{"clientToken":"t"}', "t", True),
        (b'{"method":"a","clientToken":"t","params":[]}', "t", True),
        (b'{"method":"a_reply","clientToken":"t"}', "t", False),
        (b'{"method":"a_reply","clientToken":"t","code":true}', "t", False),
        (b'{"method":"a_reply","clientToken":"t","code":"0"}', "t", False),
        (b'{"method":"a_reply","clientToken":"t","code":0,"status":1}', "t", False),
        (b'{"method":"a_reply","clientToken":"t","code":0,"data":[]}', "t", False),
    ],
)
def test_malformed_messages(payload: bytes, token: str, answerable: bool) -> None:
    with pytest.raises(vs.SignalError) as info:
        vs.parse_message(payload)
    assert info.value.client_token == token
    assert info.value.answerable is answerable


def test_overlong_token_is_refused() -> None:
    with pytest.raises(vs.SignalError, match="longer"):
        msg({"method": "a", "clientToken": "t" * 129})


def test_bare_reply_suffix_is_a_method_name() -> None:
    # "_reply" alone is not a reply to anything; it is not a valid method either.
    with pytest.raises(vs.SignalError):
        msg({"method": "_reply", "clientToken": "t"})


@pytest.mark.parametrize(
    "params",
    [
        {"channel": 0, "quality": "standard"},  # no url
        {"url": "", "channel": 0},
        {"url": 5},
        {"url": "http://host/x"},
        {"url": "ws:///no-host"},
        {"url": "ws://host:99999/x"},
        {"url": "ws://host/with space"},
        {"url": "ws://host/" + "x" * 3000},
        {"url": "ws://host/x", "channel": -1},
        {"url": "ws://host/x", "channel": 65},
        {"url": "ws://host/x", "channel": True},
        {"url": "ws://host/x", "channel": "0"},
        {"url": "ws://host/x", "quality": "ultra"},
        {"url": "ws://host/x", "quality": None},
    ],
)
def test_bad_push_start_params(params: dict[str, Any]) -> None:
    with pytest.raises(vs.SignalError):
        vs.parse_push_start(msg({"method": vs.PUSH_START, "clientToken": "t", "params": params}))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_message_or_signal_error(data: bytes) -> None:
    try:
        parsed = vs.parse_message(data)
    except vs.SignalError:
        return
    assert parsed.client_token and parsed.method


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["method", "clientToken", "params", "code", "status", "data", "url"]),
        _json,
    ),
    st.dictionaries(st.sampled_from(["url", "channel", "quality"]), _json),
)
def test_arbitrary_documents_never_escape_signal_error(
    doc: dict[str, Any], params: dict[str, Any]
) -> None:
    for candidate in (
        doc,
        {**doc, "method": "stream_push_start", "clientToken": "t", "params": params},
    ):
        try:
            parsed = vs.parse_message(json.dumps(candidate).encode())
            if not parsed.is_reply:
                vs.parse_push_start(parsed)
                vs.parse_push_stop(parsed)
        except vs.SignalError:
            pass


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=30).filter(
        lambda m: m[0].isalpha()
    ),
    st.text(min_size=1, max_size=128),
    st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=4),
    st.integers(-(2**31), 2**31),
)
def test_round_trips_for_any_method_and_token(
    method: str, token: str, params: dict[str, Any], code: int
) -> None:
    request = vs.parse_message(vs.encode_request(method, token, params))
    if method.endswith("_reply"):
        return  # a name ending in _reply reads as a reply by definition
    assert (request.method, request.client_token, request.params) == (method, token, params)
    reply = vs.parse_message(vs.encode_reply(method, token, code, "s", {"k": 1}))
    assert (reply.method, reply.code, reply.data) == (method, code, {"k": 1})


# -- signed stream URLs -----------------------------------------------------------------------


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_viewer_url_round_trip() -> None:
    stream = StreamKey("PID0000001", "cam 01/x", 3, "high")
    url = stream_urls.sign_live(KEY, stream, "flv", "u-1", 2_000)
    path = urlsplit(url).path
    assert path == "/media/v1/live/PID0000001/cam%2001%2Fx.flv"
    assert stream_urls.verify_live(KEY, "PID0000001", "cam 01/x", "flv", query(url), 1_999) == (
        stream,
        "u-1",
    )


def test_publish_url_round_trip() -> None:
    stream = StreamKey("P", "D", 0, "super")
    url = stream_urls.sign_publish(KEY, stream, 100)
    assert urlsplit(url).path == "/media/v1/publish/P/D"
    assert "uid" not in query(url)
    assert stream_urls.verify_publish(KEY, "P", "D", query(url), 100) == stream


def _tampered(url_query: dict[str, str], field: str, value: str | None) -> dict[str, str]:
    out = dict(url_query)
    if value is None:
        out.pop(field)
    else:
        out[field] = value
    return out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel", "1"),
        ("channel", "00"),
        ("quality", "super"),
        ("uid", "u-2"),
        ("uid", None),
        ("expires", "99999999999"),
        ("sign", "0" * 64),
        ("sign", None),
        ("expires", None),
    ],
)
def test_tampered_viewer_urls_are_refused(field: str, value: str | None) -> None:
    url = stream_urls.sign_live(KEY, StreamKey("P", "D"), "flv", "u-1", 2_000)
    with pytest.raises(BadSignedUrl):
        stream_urls.verify_live(KEY, "P", "D", "flv", _tampered(query(url), field, value), 0)


def test_viewer_url_is_bound_to_device_format_and_key() -> None:
    url = stream_urls.sign_live(KEY, StreamKey("P", "D"), "flv", "u-1", 2_000)
    q = query(url)
    for pid, dn, fmt, key in [
        ("P", "E", "flv", KEY),
        ("Q", "D", "flv", KEY),
        ("P", "D", "mp4", KEY),
        ("P", "D", "flv", b"other"),
    ]:
        with pytest.raises(BadSignedUrl):
            stream_urls.verify_live(key, pid, dn, fmt, q, 0)  # type: ignore[arg-type]
    # A viewer URL does not open the publish endpoint, nor the other way round.
    with pytest.raises(BadSignedUrl):
        stream_urls.verify_publish(KEY, "P", "D", q, 0)
    pub = query(stream_urls.sign_publish(KEY, StreamKey("P", "D"), 2_000))
    with pytest.raises(BadSignedUrl):
        stream_urls.verify_live(KEY, "P", "D", "flv", {**pub, "uid": "u-1"}, 0)


def test_expired_url_is_refused() -> None:
    url = stream_urls.sign_live(KEY, StreamKey("P", "D"), "mp4", "u-1", 2_000)
    with pytest.raises(BadSignedUrl, match="expired"):
        stream_urls.verify_live(KEY, "P", "D", "mp4", query(url), 2_001)


_ids = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)


@given(
    _ids,
    _ids,
    st.integers(0, vs.MAX_CHANNEL),
    st.sampled_from(vs.QUALITIES),
    st.sampled_from(["flv", "mp4"]),
    _ids,
    st.integers(0, 2**40),
)
def test_any_stream_and_user_round_trip(
    pid: str, dn: str, channel: int, quality: vs.Quality, fmt: str, uid: str, expires: int
) -> None:
    stream = StreamKey(pid, dn, channel, quality)
    url = stream_urls.sign_live(KEY, stream, fmt, uid, expires)  # type: ignore[arg-type]
    got = stream_urls.verify_live(KEY, pid, dn, fmt, query(url), expires)  # type: ignore[arg-type]
    assert got == (stream, uid)


@given(
    st.dictionaries(
        st.sampled_from(["channel", "quality", "uid", "expires", "sign"]), st.text(max_size=70)
    )
)
def test_arbitrary_queries_are_refused_cleanly(q: dict[str, str]) -> None:
    with pytest.raises(BadSignedUrl):
        stream_urls.verify_live(KEY, "P", "D", "flv", q, 0)

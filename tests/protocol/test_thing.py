"""``$thing`` message parsing: real-client quirks, rejections, and fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import thing
from ivcloud.protocol.errors import ProtocolError


def test_parse_report() -> None:
    msg = thing.parse_up(b'{"method":"report","clientToken":"t","params":{"a":1}}')
    assert (msg.method, msg.client_token) == ("report", "t")
    assert thing.report_params(msg) == {"a": 1}
    assert thing.report_timestamp_ms(msg) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1_700_000_000, 1_700_000_000_000),
        (1_700_000_000_123, 1_700_000_000_123),
        (0, None),
        (None, None),
        (1.5, 1500),
    ],
)
def test_timestamps_seconds_or_milliseconds(raw: object, expected: int | None) -> None:
    assert thing.normalise_ts_ms(raw) == expected


@pytest.mark.parametrize("raw", [-1, "123", [1], {"a": 1}])
def test_bad_timestamps(raw: object) -> None:
    with pytest.raises(ProtocolError):
        thing.normalise_ts_ms(raw)


def test_control_reply_without_method_python_sdk_quirk() -> None:
    msg = thing.parse_up(b'{"clientToken":"clientToken-1","code":0,"status":"ok"}')
    assert msg.method == "control_reply"
    assert thing.reply_code(msg) == 0


def test_control_reply_with_null_token_is_still_a_reply() -> None:
    msg = thing.parse_up(b'{"code":0,"clientToken":null,"status":"\\u0000"}')
    assert (msg.method, msg.client_token) == ("control_reply", "")


def test_numeric_client_token_is_echoed_as_text() -> None:
    assert thing.parse_up(b'{"method":"report","clientToken":42}').client_token == "42"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "not JSON"),
        (b"nope", "not JSON"),
        (b"[]", "object"),
        (b"\xff", "not JSON"),
        (b'{"clientToken":"x"}', "missing method"),
        (b'{"method":""}', "missing method"),
        (b'{"method":"report","clientToken":"' + b"x" * 129 + b'"}', "128"),
    ],
)
def test_parse_up_rejections(payload: bytes, fragment: str) -> None:
    with pytest.raises(thing.MessageError, match=fragment):
        thing.parse_up(payload)


def test_missing_method_keeps_the_token_for_the_error_reply() -> None:
    with pytest.raises(thing.MessageError) as info:
        thing.parse_up(b'{"clientToken":"abc"}')
    assert info.value.client_token == "abc"


@pytest.mark.parametrize("params", [None, {}, [], "x"])
def test_report_params_must_be_a_non_empty_object(params: object) -> None:
    msg = thing.parse_up(json.dumps({"method": "report", "params": params}).encode())
    with pytest.raises(thing.MessageError):
        thing.report_params(msg)


def test_event_shapes() -> None:
    top = thing.parse_up(
        b'{"method":"event_post","clientToken":"e","eventId":"a",'
        b'"type":"alert","timestamp":1700000000,"params":{"x":1}}'
    )
    assert thing.posted_events(top) == [
        thing.PostedEvent("a", "alert", 1_700_000_000_000, {"x": 1})
    ]
    arr = thing.parse_up(
        b'{"method":"event_post","events":[{"eventId":"a","type":"info",'
        b'"timestamp":0,"params":{}}]}'
    )
    assert thing.posted_events(arr) == [thing.PostedEvent("a", "info", None, {})]
    with pytest.raises(thing.MessageError):
        thing.posted_events(thing.parse_up(b'{"method":"events_post"}'))
    with pytest.raises(thing.MessageError):
        thing.posted_events(thing.parse_up(b'{"method":"events_post","events":[1]}'))


def test_builders_are_compact_json() -> None:
    assert thing.reply("report_reply", "t", 0, "success") == (
        b'{"method":"report_reply","clientToken":"t","code":0,"status":"success"}'
    )
    doc = json.loads(thing.action_message("c", "wake_up", 1_700_000_000, {}))
    assert doc == {
        "method": "action",
        "clientToken": "c",
        "actionId": "wake_up",
        "timestamp": 1_700_000_000,
        "params": {},
    }
    assert json.loads(thing.control_message("c", {"v": 1})) == {
        "method": "control",
        "clientToken": "c",
        "params": {"v": 1},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200))
def test_parse_up_never_raises_anything_but_protocol_errors_on_bytes(data: bytes) -> None:
    try:
        msg = thing.parse_up(data)
    except thing.MessageError:
        return
    assert isinstance(msg.method, str) and msg.method


@given(
    st.dictionaries(
        st.sampled_from(
            ["method", "clientToken", "params", "events", "eventId", "type", "timestamp", "code"]
        ),
        json_values,
        max_size=6,
    )
)
def test_message_helpers_only_raise_protocol_errors(doc: dict[str, object]) -> None:
    payload = json.dumps(doc).encode()
    try:
        msg = thing.parse_up(payload)
        thing.report_params(msg)
        thing.report_timestamp_ms(msg)
        thing.posted_events(msg)
        thing.reply_code(msg)
    except ProtocolError:
        pass

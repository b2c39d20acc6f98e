"""The P2P data channel's framing: exact wire texts, round trips, decoders that refuse junk
with ``ChannelFrameError`` and nothing else, and the credit window's guarantees (never more
than the window in flight, never a deadlock) under arbitrary schedules."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.p2p_channel import (
    HEADER_SIZE,
    MAX_CHUNK,
    MAX_ID,
    MAX_REQUEST_CHARS,
    MAX_WINDOW,
    MIN_WINDOW,
    Accepted,
    Ack,
    Cancel,
    ChannelFrameError,
    CommandAnswer,
    DataFrame,
    Failed,
    RecvWindow,
    Request,
    RequestRefused,
    SendWindow,
    chunks,
    decode_answer,
    decode_data,
    decode_request,
    encode_data,
    encode_text,
)

# -- exact wire forms (what docs/live-video.md shows) ----------------------------------------


def test_wire_texts() -> None:
    live = "ipc.flv?action=live&channel=0&quality=high"
    assert json.loads(encode_text(Request(1, live))) == {"id": 1, "req": live}
    assert json.loads(encode_text(Request(2, live, 65536))) == {
        "id": 2,
        "req": live,
        "window": 65536,
    }
    assert encode_text(Cancel(3)) == '{"id":3,"cancel":true}'
    assert encode_text(Ack(3, 70000)) == '{"id":3,"ack":70000}'
    body = '[{"status":"0","appConnectNum":"2"}]'
    assert json.loads(encode_text(CommandAnswer(4, body))) == {
        "id": 4,
        "status": 0,
        "kind": "command",
        "body": body,
    }
    assert encode_text(Accepted(5, "stream")) == '{"id":5,"status":0,"kind":"stream"}'
    assert encode_text(Failed(6, 404, "unknown request")) == (
        '{"id":6,"status":404,"error":"unknown request"}'
    )


def test_data_header() -> None:
    assert encode_data(1, b"FLV") == b"\x00\x00\x00\x01\x00FLV"
    assert encode_data(0x01020304, b"", end=True) == b"\x01\x02\x03\x04\x01"
    assert encode_data(7, b"", error=True) == b"\x00\x00\x00\x07\x03"  # ERROR implies END
    assert decode_data(b"\x00\x00\x00\x07\x03") == DataFrame(7, b"", end=True, error=True)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"\x00\x00\x01", "shorter than its header"),
        (b"\x00\x00\x00\x00\x00x", "id 0"),
        (b"\x00\x00\x00\x01\x04", "unknown flags"),
        (b"\x00\x00\x00\x01\x02", "ERROR without END"),
        (b"\x00\x00\x00\x01\x00" + b"x" * (MAX_CHUNK + 1), "over"),
    ],
)
def test_bad_binary(message: bytes, why: str) -> None:
    with pytest.raises(ChannelFrameError, match=why):
        decode_data(message)


@pytest.mark.parametrize(
    ("text", "why", "msg_id"),
    [
        ("not json", "not JSON", None),
        ("[1]", "not a JSON object", None),
        ('{"req":"x"}', '"id"', None),
        ('{"id":0,"req":"x"}', '"id"', None),
        ('{"id":true,"req":"x"}', '"id"', None),
        (f'{{"id":{MAX_ID + 1},"req":"x"}}', '"id"', None),
        ('{"id":1}', "exactly one", 1),
        ('{"id":1,"req":"x","cancel":true}', "exactly one", 1),
        ('{"id":1,"req":""}', '"req"', 1),
        ('{"id":1,"req":5}', '"req"', 1),
        (json.dumps({"id": 1, "req": "x" * (MAX_REQUEST_CHARS + 1)}), '"req"', 1),
        ('{"id":2,"req":"x","window":1}', '"window"', 2),
        (f'{{"id":2,"req":"x","window":{MAX_WINDOW + 1}}}', '"window"', 2),
        ('{"id":3,"cancel":false}', '"cancel"', 3),
        ('{"id":4,"ack":-1}', '"ack"', 4),
        ('{"id":4,"ack":1.5}', '"ack"', 4),
        ('{"id":5,"req":NaN}', "NaN", None),
        ('{"id":5,"req":"\\udc80"}', "surrogate", None),
        ("[" * 60_000, "not JSON", None),
        ("x" * 70_000, "over 65536", None),
        ('{"id":1,"ack":' + "9" * 5000 + "}", "not JSON", None),
    ],
)
def test_bad_requests(text: str, why: str, msg_id: int | None) -> None:
    with pytest.raises(ChannelFrameError, match=why) as info:
        decode_request(text)
    assert info.value.id == msg_id  # so the device can name the request in its answer


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"id":1}', '"status"'),
        ('{"id":1,"status":0}', '"kind"'),
        ('{"id":1,"status":0,"kind":"command"}', '"body"'),
        ('{"id":0,"status":0,"kind":"stream"}', "needs a request id"),
        ('{"id":1,"status":-1,"error":"x"}', '"status"'),
        ('{"id":1,"status":500,"error":5}', '"error"'),
    ],
)
def test_bad_answers(text: str, why: str) -> None:
    with pytest.raises(ChannelFrameError, match=why):
        decode_answer(text)


def test_failed_without_id_and_unknown_keys() -> None:
    # A device answering junk it could not attribute uses id 0.
    assert decode_answer('{"id":0,"status":400,"error":"not JSON"}') == Failed(0, 400, "not JSON")
    # Unknown keys are ignored: room to grow without breaking old peers.
    assert decode_request('{"id":9,"cancel":true,"reason":"user"}') == Cancel(9)


def test_request_refused_status() -> None:
    assert RequestRefused(405, "too many viewers").status == 405
    with pytest.raises(ValueError):
        RequestRefused(0, "no")


def test_chunks() -> None:
    assert chunks(b"") == []
    assert chunks(b"abcde", 2) == [b"ab", b"cd", b"e"]
    assert b"".join(chunks(bytes(range(256)) * 200)) == bytes(range(256)) * 200
    assert all(len(c) <= MAX_CHUNK for c in chunks(b"x" * (3 * MAX_CHUNK + 1)))


# -- properties ------------------------------------------------------------------------------

ids = st.integers(1, MAX_ID)
request_messages = st.one_of(
    st.builds(
        Request,
        ids,
        st.text(min_size=1, max_size=200),
        st.none() | st.integers(MIN_WINDOW, MAX_WINDOW),
    ),
    st.builds(Cancel, ids),
    st.builds(Ack, ids, st.integers(0, 2**53 - 1)),
)
answer_messages = st.one_of(
    st.builds(CommandAnswer, ids, st.text(max_size=200)),
    st.builds(Accepted, ids, st.sampled_from(["stream", "voice"])),
    st.builds(Failed, st.integers(0, MAX_ID), st.integers(1, 0xFFFF), st.text(max_size=50)),
)


def _no_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(request_messages)
def test_request_round_trip(message: Request | Cancel | Ack) -> None:
    if isinstance(message, Request) and not _no_surrogates(message.req):
        with pytest.raises(ChannelFrameError):  # lone surrogates are refused at the door
            decode_request(encode_text(message))
        return
    assert decode_request(encode_text(message)) == message


@given(answer_messages)
def test_answer_round_trip(message: CommandAnswer | Accepted | Failed) -> None:
    text = getattr(message, "body", None) or getattr(message, "error", "")
    if not _no_surrogates(text):
        with pytest.raises(ChannelFrameError):
            decode_answer(encode_text(message))
        return
    assert decode_answer(encode_text(message)) == message


@given(ids, st.binary(max_size=MAX_CHUNK), st.booleans(), st.booleans())
def test_data_round_trip(msg_id: int, payload: bytes, end: bool, error: bool) -> None:
    frame = decode_data(encode_data(msg_id, payload, end=end, error=error))
    assert frame == DataFrame(msg_id, payload, end or error, error)
    assert len(encode_data(msg_id, payload)) == HEADER_SIZE + len(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
json_objects = st.dictionaries(
    st.sampled_from(["id", "req", "cancel", "ack", "window", "status", "kind", "body", "error"])
    | st.text(max_size=5),
    json_values,
    max_size=6,
)


@settings(max_examples=300)
@given(st.text(max_size=300) | json_objects.map(json.dumps))
def test_text_decoders_only_raise_channel_errors(text: str) -> None:
    for decode in (decode_request, decode_answer):
        try:
            decode(text)
        except ChannelFrameError as exc:
            assert isinstance(exc, ProtocolError)
            assert exc.id is None or 1 <= exc.id <= MAX_ID


@given(st.binary(max_size=64))
def test_binary_decoder_only_raises_channel_errors(message: bytes) -> None:
    try:
        frame = decode_data(message)
    except ChannelFrameError:
        return
    assert 1 <= frame.id <= MAX_ID and len(frame.payload) == len(message) - HEADER_SIZE


@settings(max_examples=200)
@given(
    st.integers(MIN_WINDOW, 256 * 1024),
    st.lists(st.integers(0, MAX_CHUNK), min_size=1, max_size=60),
    st.lists(st.integers(0, 3 * MAX_CHUNK), max_size=60),
)
def test_window_bounds_and_never_deadlocks(window: int, sizes: list[int], reads: list[int]) -> None:
    """Sender and reader connected by an in-order pipe: whatever the chunk sizes and however
    unevenly the reader consumes, the unacknowledged bytes never exceed the window, the
    reader never sees a violation, and a reader that keeps reading gets everything."""
    sender, reader = SendWindow(window), RecvWindow(window)
    pending = list(sizes)
    buffered: list[int] = []  # chunk sizes waiting in the reader
    read_plan = iter(reads)
    for _ in range(10_000):
        if not pending and not buffered:
            break
        while pending and sender.can_send(pending[0]):
            size = pending.pop(0)
            sender.on_sent(size)
            reader.on_data(size)  # raises if the sender broke the window
            buffered.append(size)
            assert sender.outstanding <= window
        if pending and not buffered:
            raise AssertionError("deadlock: the sender waits for an ack that never comes")
        budget = next(read_plan, 3 * MAX_CHUNK)  # a pause (0) now and then, then steady
        while buffered and budget > 0:
            size = buffered.pop(0)
            budget -= max(size, 1)
            ack = reader.on_consumed(size)
            if ack is not None:
                sender.on_ack(ack)
    assert not pending and not buffered
    assert reader.received == sender.sent == sum(sizes)


def test_windows_refuse_violations() -> None:
    sender = SendWindow(MIN_WINDOW)
    sender.on_sent(MIN_WINDOW)
    assert not sender.can_send(1)
    with pytest.raises(ValueError):
        sender.on_sent(1)
    with pytest.raises(ChannelFrameError):
        sender.on_ack(MIN_WINDOW + 1)  # ack for bytes never sent
    assert sender.on_ack(100) and not sender.on_ack(50)  # an old ack changes nothing
    reader = RecvWindow(MIN_WINDOW)
    reader.on_data(MIN_WINDOW)
    with pytest.raises(ChannelFrameError, match="window"):
        reader.on_data(1)
    with pytest.raises(ValueError):
        RecvWindow(MIN_WINDOW - 1)

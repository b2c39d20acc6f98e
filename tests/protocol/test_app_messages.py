"""The message centre's parameter parsers and item rendering (pure functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import app_messages as wire
from ivcloud.protocol.appapi_errors import (
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    MSG_ID_INVALID,
    REQUIRED_PARAM_NOT_FOUND,
    AppApiError,
)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(["Category", "Limit", "Offset", "MsgID", "MsgTimestamp", "Other"])


@given(st.dictionaries(_KEYS, _JSON, max_size=6))
def test_parse_query_accepts_or_refuses_with_a_spec_code(params: dict[str, Any]) -> None:
    try:
        q = wire.parse_query(params)
    except AppApiError as exc:
        assert exc.code in {
            INVALID_PARAMETER,
            INVALID_PARAMETER_VALUE,
            MSG_ID_INVALID,
            REQUIRED_PARAM_NOT_FOUND,
        }
        return
    assert q.category is None or q.category in wire.CATEGORIES
    assert 1 <= q.limit <= wire.LIMIT_MAX
    if q.cursor is not None:
        assert q.offset == 0  # the cursor wins over Offset
        assert q.cursor[0] > 0 and q.cursor[1] >= 0


@given(
    st.sampled_from(sorted(wire.CATEGORIES)),
    st.integers(1, wire.LIMIT_MAX),
    st.integers(1, 2**53 - 1),
    st.integers(0, 10**18 - 1),
    st.booleans(),
    st.integers(0, 1000),
)
def test_parse_query_round_trips_what_the_apps_send(
    category: int, limit: int, ts: int, msg_id: int, id_as_number: bool, offset: int
) -> None:
    first = wire.parse_query(
        {"Category": category, "Limit": limit, "MsgID": "", "MsgTimestamp": 0, "Offset": 0}
    )
    assert first == wire.MessageQuery(category, limit, None, 0)
    more = wire.parse_query(
        {
            "Category": category,
            "Limit": limit,
            "MsgID": msg_id if id_as_number else str(msg_id),
            "MsgTimestamp": ts,
            "Offset": offset,  # Android sends the count shown so far: ignored with a cursor
        }
    )
    assert more == wire.MessageQuery(category, limit, (ts, msg_id), 0)


@given(st.text(max_size=30) | st.integers() | st.floats() | st.booleans() | st.none())
def test_parse_msg_id_only_takes_decimal_ids(value: object) -> None:
    try:
        parsed = wire.parse_msg_id(value)
    except AppApiError as exc:
        assert exc.code == MSG_ID_INVALID
        return
    assert not isinstance(value, bool)
    assert str(parsed) == str(value).lstrip("0") or parsed == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Category": 4}, INVALID_PARAMETER_VALUE),
        ({"Category": "device"}, INVALID_PARAMETER),
        ({"Limit": 101}, INVALID_PARAMETER_VALUE),
        ({"Limit": 0}, INVALID_PARAMETER_VALUE),
        ({"MsgID": "12"}, INVALID_PARAMETER_VALUE),  # a cursor needs both halves
        ({"MsgTimestamp": 1_700_000_000_000}, INVALID_PARAMETER_VALUE),
        ({"MsgID": "x1", "MsgTimestamp": 1}, MSG_ID_INVALID),
        ({"MsgTimestamp": -1}, INVALID_PARAMETER_VALUE),
    ],
)
def test_bad_query_params(params: dict[str, Any], code: str) -> None:
    with pytest.raises(AppApiError) as info:
        wire.parse_query(params)
    assert info.value.code == code


def test_delete_msg_id() -> None:
    assert wire.delete_msg_id({"MsgID": 1633328834809856}) == 1633328834809856  # DOC example
    assert wire.delete_msg_id({"MsgID": "42"}) == 42
    with pytest.raises(AppApiError) as info:
        wire.delete_msg_id({})
    assert info.value.code == REQUIRED_PARAM_NOT_FOUND
    with pytest.raises(AppApiError) as info:
        wire.delete_msg_id({"MsgID": "4-2"})
    assert info.value.code == MSG_ID_INVALID


def test_render_has_every_documented_field_and_attachments_only_on_invites() -> None:
    plain = wire.MessageView(7, "u1", 1, 100, "Device alert", "text", 1574855521420)
    item = wire.render(plain)
    assert set(item) == {
        "UserID",
        "FromUserID",
        "MsgID",
        "Category",
        "MsgType",
        "MsgTitle",
        "MsgContent",
        "MsgTimestamp",
        "ProductId",
        "DeviceName",
        "DeviceAlias",
        "FamilyId",
        "FamilyName",
        "RelateUserID",
        "CreateAt",
    }
    assert item["MsgID"] == "7" and item["MsgTimestamp"] == 1574855521420
    assert item["CreateAt"] == "2019-11-27T11:52:01.42Z"  # the DOC example's own pair
    invite = wire.render(
        wire.MessageView(8, "u1", 2, 204, "t", "c", 1_700_000_000_000, share_token="abc")
    )
    assert invite["Attachments"] == {"ShareToken": "abc"}
    assert invite["CreateAt"] == "2023-11-14T22:13:20Z"


@given(st.integers(0, 2**41))
def test_create_at_parses_back_to_the_timestamp(ts_ms: int) -> None:
    text = wire.render(wire.MessageView(1, "u", 3, 300, "t", "c", ts_ms))["CreateAt"]
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert round(parsed.timestamp() * 1000) == ts_ms

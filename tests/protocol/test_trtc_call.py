"""Readers of what a TRTC device reports (parties, ``rejectUserId``, the call in its latest
values) and the messages ivcloud sends it; the readers take any value without raising."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import trtc_call as tc
from ivcloud.protocol.trtc_usersig import valid_user_id

DEV = "PID0000001/cam-01"


def test_parties_as_the_sdks_report_them() -> None:
    # App called the device (video-call docs §2): user is caller and _sys_userid.
    app_call = {tc.USERID_PROP: "u1", tc.CALLER_PROP: "u1", tc.CALLED_PROP: DEV}
    assert tc.parties(app_call, DEV) == {"u1"}
    # Device calls two users (Java SDK: several ids ';'-separated in _sys_called_id).
    assert tc.parties({tc.CALLER_PROP: DEV, tc.CALLED_PROP: "u1;u2; "}, DEV) == {"u1", "u2"}
    # Device calls everyone: no user named.
    assert tc.parties({tc.CALLER_PROP: DEV, tc.CALLED_PROP: ""}, DEV) == frozenset()
    assert tc.parties({tc.USERID_PROP: 7, "other": "u9"}, DEV) == frozenset()
    # The C sample reports the TRTC user id it joined with as _sys_userid: the device's own.
    own = tc.device_user_id("PID0000001", "cam-01")
    assert tc.parties({tc.USERID_PROP: own, tc.CALLER_PROP: "u1"}, DEV, own) == {"u1"}


def test_reject_user_id_from_extra_info() -> None:
    assert tc.reject_user_id(json.dumps({"rejectUserId": "u2"})) == "u2"
    assert tc.reject_user_id({"rejectUserId": "u2"}) == "u2"
    for value in (None, "", "{", "[]", '{"rejectUserId": 5}', '{"rejectUserId": ""}', 3):
        assert tc.reject_user_id(value) is None


def test_reported_call_takes_the_newest_status_and_its_parties() -> None:
    latest: dict[str, tuple[object, int]] = {
        tc.VIDEO_STATUS_PROP: (0, 100),
        tc.AUDIO_STATUS_PROP: (1, 200),
        tc.USERID_PROP: ("old-user", 50),  # from an earlier call: ignored
        tc.CALLED_PROP: ("u7", 200),
    }
    call = tc.reported_call(latest, DEV)
    assert call == tc.ReportedCall(tc.CALL_AUDIO, tc.RINGING, frozenset({"u7"}))
    latest[tc.VIDEO_STATUS_PROP] = (2, 300)
    call = tc.reported_call(latest, DEV)
    assert call is not None and (call.call_type, call.status) == (tc.CALL_VIDEO, tc.IN_CALL)
    assert call.parties == frozenset()  # nothing reported with or after it
    assert tc.reported_call({tc.VIDEO_STATUS_PROP: (True, 1)}, DEV) is None
    assert (
        tc.reported_call({tc.VIDEO_STATUS_PROP: (0, 1), tc.AUDIO_STATUS_PROP: (0, 1)}, DEV) is None
    )


def test_messages_to_the_device() -> None:
    assert tc.call_control(tc.CALL_VIDEO, 1, user_id="u1", device_id=DEV, user_agent="ios/1") == {
        "_sys_video_call_status": 1,
        "_sys_userid": "u1",
        "_sys_caller_id": "u1",
        "_sys_called_id": DEV,
        "_sys_user_agent": "ios/1",
    }
    hang_up = tc.call_control(tc.CALL_AUDIO, 0, user_id="u1", device_id=DEV, user_agent=None)
    assert hang_up["_sys_audio_call_status"] == 0 and "_sys_user_agent" not in hang_up
    assert tc.join_room_params(1400000000, "d_x", "sig", "ivc_1") == {
        "SdkAppId": 1400000000,
        "UserId": "d_x",
        "UserSig": "sig",
        "StrRoomId": "ivc_1",
        "PrivateMapKey": "",
    }


@given(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=48))
def test_device_user_ids_are_valid_trtc_ids(product_id: str, device_name: str) -> None:
    uid = tc.device_user_id(product_id, device_name)
    assert valid_user_id(uid) and uid.startswith("d_") and len(uid) == 32
    assert uid == tc.device_user_id(product_id, device_name)


any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
prop_names = st.sampled_from(
    [*tc.STATUS_PROPS.values(), tc.USERID_PROP, tc.CALLER_PROP, tc.CALLED_PROP, "x"]
)


@given(st.dictionaries(prop_names, any_value), st.text(max_size=20))
def test_parties_never_raise_and_name_only_users(values: dict[str, object], dev: str) -> None:
    found = tc.parties(values, dev)
    assert len(found) <= 64
    assert all(p and p == p.strip() and ";" not in p and p != dev for p in found)


@given(any_value | st.text(max_size=60).map(lambda t: '{"rejectUserId": ' + t + "}"))
def test_reject_user_id_never_raises(value: object) -> None:
    found = tc.reject_user_id(value)
    assert found is None or (isinstance(found, str) and found)


@given(st.dictionaries(prop_names, st.tuples(any_value, st.integers(0, 2**45))))
def test_reported_call_never_raises(latest: dict[str, tuple[object, int]]) -> None:
    call = tc.reported_call(latest, DEV)
    if call is not None:
        assert call.call_type in tc.STATUS_PROPS and call.status in (tc.RINGING, tc.IN_CALL)
        assert DEV not in call.parties

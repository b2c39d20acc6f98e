"""App API sans-IO layer: appapi signatures, replay checks, envelopes, body readers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.protocol import appapi
from ivcloud.protocol.appapi import (
    APP_KEY_NOT_FOUND,
    INVALID_ACTION,
    INVALID_JSON,
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REPLAY_ATTACK,
    REQUIRED_PARAM_NOT_FOUND,
    SIGNATURE_EXPIRE,
    SIGNATURE_FAILURE,
    AppApiError,
    NonceCache,
    action_name,
    canonical_string,
    check_timestamp,
    device_ref,
    error,
    error_from,
    int_param,
    js_string,
    json_string_field,
    offset_limit,
    ok,
    sign,
    str_param,
    verify_signature,
)
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import RawJson, dumps_safe

SECRET = "testAppSecret"
EXAMPLE: dict[str, object] = {
    "Action": "AppGetToken",
    "AppKey": "testAppKey",
    "CountryCode": "86",
    "Nonce": 1234,
    "Password": "p@ss word",
    "PhoneNumber": "13800000000",
    "RequestId": "req-1",
    "Timestamp": 1700000000,
    "Type": "phone",
}
EXAMPLE_STRING = (
    "Action=AppGetToken&AppKey=testAppKey&CountryCode=86&Nonce=1234&Password=p@ss word"
    "&PhoneNumber=13800000000&RequestId=req-1&Timestamp=1700000000&Type=phone"
)
EXAMPLE_SIGNATURE = "9njMPUtyVcCxMvv5psgfwF3ty9w="


def _code(fn: Callable[[], object]) -> str:
    with pytest.raises(AppApiError) as info:
        fn()
    return info.value.code


# --- signature: spec §1.3 worked example ---------------------------------------------------------


def test_worked_example_canonical_string() -> None:
    assert canonical_string(EXAMPLE, drop_empty=False) == EXAMPLE_STRING
    assert canonical_string(EXAMPLE, drop_empty=True) == EXAMPLE_STRING


def test_worked_example_signature() -> None:
    assert sign(SECRET, EXAMPLE) == EXAMPLE_SIGNATURE
    assert verify_signature(SECRET, {**EXAMPLE, "Signature": EXAMPLE_SIGNATURE})


def test_signature_param_excluded_from_canonical() -> None:
    signed = {**EXAMPLE, "Signature": "whatever"}
    assert canonical_string(signed, drop_empty=False) == EXAMPLE_STRING
    assert sign(SECRET, signed) == EXAMPLE_SIGNATURE


def test_key_order_irrelevant() -> None:
    reordered = dict(reversed(list(EXAMPLE.items())))
    assert sign(SECRET, reordered) == EXAMPLE_SIGNATURE


def test_both_canonicalisations_accepted() -> None:
    params = {**EXAMPLE, "Platform": "", "lang": None}
    keep = canonical_string(params, drop_empty=False)
    drop = canonical_string(params, drop_empty=True)
    assert keep == (
        "Action=AppGetToken&AppKey=testAppKey&CountryCode=86&Nonce=1234&Password=p@ss word"
        "&PhoneNumber=13800000000&Platform=&RequestId=req-1&Timestamp=1700000000&Type=phone"
        "&lang=null"
    )
    # JSON null is JS null: "null" in both variants; only "" is dropped.
    assert drop == EXAMPLE_STRING + "&lang=null"
    assert canonical_string({**EXAMPLE, "Platform": ""}, drop_empty=True) == EXAMPLE_STRING
    keep_sig = sign(SECRET, params)
    drop_sig = sign(SECRET, {**EXAMPLE, "lang": None})  # what MPDEMO/P2PDOC compute
    assert keep_sig != drop_sig
    assert verify_signature(SECRET, {**params, "Signature": keep_sig})
    assert verify_signature(SECRET, {**params, "Signature": drop_sig})


def test_empty_list_dropped_in_drop_empty_variant() -> None:
    assert canonical_string({"a": [], "b": 1}, drop_empty=True) == "b=1"
    assert canonical_string({"a": [], "b": 1}, drop_empty=False) == "a=&b=1"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(Password="p@ss words"),
        lambda p: p.update(Nonce=1235),
        lambda p: p.update(Timestamp="1700000001"),
        lambda p: p.update(Extra="x"),
        lambda p: p.pop("Type"),
        lambda p: p.update(Signature=EXAMPLE_SIGNATURE.lower()),
        lambda p: p.update(Signature=EXAMPLE_SIGNATURE.rstrip("=")),
        lambda p: p.update(Signature=EXAMPLE_SIGNATURE + " "),
    ],
)
def test_tampered_rejected(mutate: Callable[[dict[str, object]], object]) -> None:
    params: dict[str, object] = {**EXAMPLE, "Signature": EXAMPLE_SIGNATURE}
    mutate(params)
    assert not verify_signature(SECRET, params)


def test_string_and_int_values_sign_alike() -> None:
    # JS `${1234}` == `${"1234"}`: a client may send either type.
    assert verify_signature(SECRET, {**EXAMPLE, "Nonce": "1234", "Signature": EXAMPLE_SIGNATURE})


def test_wrong_secret_rejected() -> None:
    assert not verify_signature("otherSecret", {**EXAMPLE, "Signature": EXAMPLE_SIGNATURE})
    assert not verify_signature("", {**EXAMPLE, "Signature": EXAMPLE_SIGNATURE})


@pytest.mark.parametrize("signature", [None, "", 0, 1, True, ["x"], {"a": 1}, "é", "\ud800"])
def test_missing_or_non_string_signature_rejected(signature: object) -> None:
    params: dict[str, object] = dict(EXAMPLE)
    if signature is not None:
        params["Signature"] = signature
    assert not verify_signature(SECRET, params)


def test_signature_none_value_rejected() -> None:
    assert not verify_signature(SECRET, {**EXAMPLE, "Signature": None})


def test_non_ascii_params_signed_as_utf8() -> None:
    params = {**EXAMPLE, "NickName": "小明"}
    assert "NickName=小明" in canonical_string(params, drop_empty=False)
    assert verify_signature(SECRET, {**params, "Signature": sign(SECRET, params)})
    # a different encoding of the message gives a different MAC
    assert sign(SECRET, params) != sign(SECRET, {**params, "NickName": "小"})


def test_lone_surrogate_does_not_crash() -> None:
    params: dict[str, object] = {"a": "\ud800", "b": "x"}
    signature = sign(SECRET, params)
    # Node encodes a lone surrogate as U+FFFD before hashing
    assert signature == sign(SECRET, {"a": "\ufffd", "b": "x"})
    assert verify_signature(SECRET, {**params, "Signature": signature})


# --- ordering ------------------------------------------------------------------------------------


def test_uppercase_before_lowercase() -> None:
    assert canonical_string({"a": 1, "Z": 2, "B": 3, "_": 4}, drop_empty=False) == (
        "B=3&Z=2&_=4&a=1"
    )
    assert canonical_string({"lang": "zh-CN", "Timestamp": 1}, drop_empty=False) == (
        "Timestamp=1&lang=zh-CN"
    )


def test_prefix_sorts_first() -> None:
    assert canonical_string({"ab": 1, "a": 2, "aB": 3}, drop_empty=False) == "a=2&aB=3&ab=1"


def test_utf16_code_unit_order_for_non_bmp() -> None:
    # U+1F600 is D83D DE00 in UTF-16, so JS sorts it *before* U+FF21 (code point order would
    # put it after).
    emoji, fullwidth = "\U0001f600", "\uff21"
    assert sorted([fullwidth, emoji]) == [fullwidth, emoji]  # Python: code point order
    assert (
        canonical_string({fullwidth: 1, emoji: 2}, drop_empty=False) == f"{emoji}=2&{fullwidth}=1"
    )


# --- js_string -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (0, "0"),
        (-5, "-5"),
        (1700000000, "1700000000"),
        (10**30, "1" + "0" * 30),
        (1.0, "1"),
        (1.5, "1.5"),
        (-1.5, "-1.5"),
        (0.0, "0"),
        (-0.0, "0"),
        (100.0, "100"),
        (0.1, "0.1"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.2345678901234568e20, "123456789012345680000"),
        (1.5e21, "1.5e+21"),
        (123456.789, "123456.789"),
        (1e-6, "0.000001"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (1.23e-18, "1.23e-18"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (2.0**53, "9007199254740992"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ([], ""),
        (["a", "b"], "a,b"),
        ([1, 2.0, True, None], "1,2,true,"),
        ([1, [2, [3, None]], "x"], "1,2,3,,x"),
        ([{}], "[object Object]"),
        ({}, "[object Object]"),
        ({"a": 1}, "[object Object]"),
        ((1, 2), "1,2"),
    ],
)
def test_js_string(value: object, expected: str) -> None:
    assert js_string(value) == expected


def test_js_string_cyclic_list() -> None:
    cyc: list[object] = [1]
    cyc.append(cyc)
    assert js_string(cyc) == "1,"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
@settings(max_examples=1, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True)
        | st.integers(min_value=-(2**53), max_value=2**53),
        min_size=300,
        max_size=300,
    )
)
def test_js_number_matches_node(values: list[float]) -> None:
    extra = [1e21, 1e-7, 1e-6, 123e-20, 0.000001234, 1.5e300, 2**-1074, 9.999999999999999e20]
    values = [*values, *extra]
    script = (
        "const v=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "process.stdout.write(JSON.stringify(v.map(x=>`${x}`)))"
    )
    payload = json.dumps(values)  # NaN/Infinity tokens: make them JS-parsable
    payload = payload.replace("-Infinity", '"-I"').replace("Infinity", '"I"').replace("NaN", '"N"')
    script = script.replace(
        "v.map(", "v.map(x=>x==='I'?Infinity:x==='-I'?-Infinity:x==='N'?NaN:x).map("
    )
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run(  # noqa: S603 - fixed script, data on stdin
        [node, "-e", script], input=payload, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [js_string(float(v)) for v in values]


# --- timestamp -----------------------------------------------------------------------------------

NOW = 1_700_000_000


@pytest.mark.parametrize("ts", [NOW, NOW - 300, NOW + 300, str(NOW), str(NOW + 300)])
def test_timestamp_inside_window(ts: object) -> None:
    check_timestamp(ts, NOW)


@pytest.mark.parametrize("ts", [NOW - 301, NOW + 301, 0, str(NOW - 301), -1])
def test_timestamp_outside_window(ts: object) -> None:
    assert _code(lambda: check_timestamp(ts, NOW)) == SIGNATURE_EXPIRE


def test_timestamp_custom_window() -> None:
    check_timestamp(NOW + 10, NOW, window=10)
    assert _code(lambda: check_timestamp(NOW + 11, NOW, window=10)) == SIGNATURE_EXPIRE


@pytest.mark.parametrize(
    "ts", [True, False, float(NOW), "1.7e9", " 1700000000", "+1700000000", "0x10", "١٢", [NOW], {}]
)
def test_timestamp_not_an_int(ts: object) -> None:
    assert _code(lambda: check_timestamp(ts, NOW)) == INVALID_PARAMETER


@pytest.mark.parametrize("ts", [None, ""])
def test_timestamp_missing(ts: object) -> None:
    assert _code(lambda: check_timestamp(ts, NOW)) == REQUIRED_PARAM_NOT_FOUND


# --- nonce cache ---------------------------------------------------------------------------------


def test_nonce_seen_within_window() -> None:
    cache = NonceCache(window=600)
    assert not cache.seen("k", "1234", 1000)
    assert cache.seen("k", "1234", 1000)
    assert cache.seen("k", "1234", 1600)  # edge: still inside
    assert not cache.seen("k2", "1234", 1000)  # per AppKey
    assert not cache.seen("k", "1235", 1000)


def test_nonce_expires_after_window() -> None:
    cache = NonceCache(window=600)
    assert not cache.seen("k", "1", 1000)
    assert not cache.seen("k", "1", 1601)  # expired → recorded afresh
    assert cache.seen("k", "1", 2201)
    assert not cache.seen("k", "1", 2202)


def test_nonce_expired_entries_pruned() -> None:
    cache = NonceCache(window=10)
    for i in range(100):
        cache.seen("k", str(i), 0)
    assert len(cache) == 100
    cache.seen("k", "x", 11)
    assert len(cache) == 1


def test_nonce_bounded_evicts_oldest() -> None:
    cache = NonceCache(window=600, max_entries=3)
    for nonce in "abc":
        assert not cache.seen("k", nonce, 1000)
    assert not cache.seen("k", "d", 1001)  # evicts "a"
    assert len(cache) == 3
    assert cache.seen("k", "b", 1002)
    assert not cache.seen("k", "a", 1002)  # forgotten: bounded memory wins over memory of "a"
    assert len(cache) == 3


def test_nonce_clock_going_backwards() -> None:
    cache = NonceCache(window=10)
    assert not cache.seen("k", "a", 100)
    assert cache.seen("k", "a", 50)


def test_nonce_cache_arguments() -> None:
    with pytest.raises(ValueError):
        NonceCache(window=-1)
    with pytest.raises(ValueError):
        NonceCache(max_entries=0)
    assert NonceCache().window == 2 * appapi.DEFAULT_TIMESTAMP_WINDOW


# --- envelopes -----------------------------------------------------------------------------------


def test_ok_envelope() -> None:
    assert ok("r1") == {"code": 0, "msg": "", "data": {"RequestId": "r1"}}
    assert ok("r1", {"Data": {"a": 1}, "Total": 2}) == {
        "code": 0,
        "msg": "",
        "data": {"RequestId": "r1", "Data": {"a": 1}, "Total": 2},
    }
    assert ok("r1", {"RequestId": "other"}) == {"code": 0, "msg": "", "data": {"RequestId": "r1"}}


def test_error_envelope() -> None:
    assert error("r1", "InvalidParameterValue.InvalidAccessToken", "Token无效") == {
        "code": -1000,
        "msg": "Token无效",
        "data": {
            "Error": {"Code": "InvalidParameterValue.InvalidAccessToken", "Message": "Token无效"},
            "RequestId": "r1",
        },
    }
    exc = AppApiError(SIGNATURE_FAILURE, "bad signature")
    assert error_from("r2", exc) == error("r2", SIGNATURE_FAILURE, "bad signature")


def test_app_api_error() -> None:
    exc = AppApiError("InvalidAction", "nope")
    assert isinstance(exc, ProtocolError)
    assert (exc.code, exc.message) == ("InvalidAction", "nope")
    assert "InvalidAction" in str(exc)


def test_error_code_catalogue() -> None:
    documented = {
        "InternalError", "ErrorRequiredParamNotFound", "InvalidAction", "InvalidParameter",
        "InvalidParameterValue", "InvalidParameterValue.InvalidJSON",
        "InvalidParameterValue.InvalidAccessToken", "InvalidParameterValue.ErrorUserNotExists",
        "InvalidParameterValue.UserLoginFailed", "InvalidParameterValue.PhoneNumberInvalid",
        "InvalidParameterValue.SendVerifyCodeTooQuick", "InvalidParameterValue.NoPermission",
        "InvalidParameterValue.TokenNotExist", "InvalidParameterValue.TokenIsExpire",
        "InvalidParameterValue.ReadTokenInfoError", "InvalidParameterValue.TokenInfoSaveError",
        "InvalidParameterValue.InvalidShareDeviceToken",
        "InvalidParameterValue.BindDeviceNotConnected",
        "UnauthorizedOperation.APPNoPermissionToStudioProduct", "FailedOperation",
        "FailedOperation.DeviceInfoOutdated",
    }  # fmt: skip
    codes = {
        getattr(appapi, n)
        for n in appapi.__all__
        if n.isupper() and isinstance(getattr(appapi, n), str)
    }
    assert documented <= codes
    assert {SIGNATURE_FAILURE, APP_KEY_NOT_FOUND, SIGNATURE_EXPIRE, REPLAY_ATTACK} == {
        "AuthFailure.SignatureFailure",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.SignatureExpire",
        "AuthFailure.ReplayAttack",
    }
    for name in appapi.__all__:
        assert hasattr(appapi, name), name


# --- action_name ---------------------------------------------------------------------------------


def test_action_from_body_first() -> None:
    assert action_name({"Action": "AppGetToken"}, "Other", "Third") == "AppGetToken"


def test_action_fallbacks() -> None:
    assert action_name({}, "AppGetDeviceData", "x") == "AppGetDeviceData"
    assert action_name({"Action": ""}, "", "AppControlDeviceData") == "AppControlDeviceData"
    assert action_name({"Action": None}, None, "App::IotRTC::CallDevice") == (
        "App::IotRTC::CallDevice"
    )
    assert action_name({}, None, "A" * 64) == "A" * 64


@pytest.mark.parametrize(
    "action",
    ["1App", "App-Get", "App Get", "A" * 65, "AppGet\n", "Äpp", 5, True, ["AppGetToken"], "::X"],
)
def test_action_malformed(action: object) -> None:
    assert _code(lambda: action_name({"Action": action}, "AppGetToken", None)) == INVALID_ACTION


def test_action_malformed_path_segment() -> None:
    assert _code(lambda: action_name({}, "../etc", None)) == INVALID_ACTION


def test_action_missing() -> None:
    assert _code(lambda: action_name({}, None, None)) == REQUIRED_PARAM_NOT_FOUND
    assert _code(lambda: action_name({"Action": ""}, "", "")) == REQUIRED_PARAM_NOT_FOUND


# --- str_param -----------------------------------------------------------------------------------


def test_str_param() -> None:
    assert str_param({"A": "x"}, "A") == "x"
    assert str_param({"A": 86}, "A") == "86"
    assert str_param({}, "A", required=False) is None
    assert str_param({"A": None}, "A", required=False) is None
    assert str_param({"A": ""}, "A", required=False) is None
    assert str_param({"A": "x" * 5}, "A", max_len=5) == "xxxxx"


@pytest.mark.parametrize(
    ("params", "kwargs", "code"),
    [
        ({}, {}, REQUIRED_PARAM_NOT_FOUND),
        ({"A": None}, {}, REQUIRED_PARAM_NOT_FOUND),
        ({"A": ""}, {}, REQUIRED_PARAM_NOT_FOUND),
        ({"A": True}, {}, INVALID_PARAMETER),
        ({"A": 1.5}, {}, INVALID_PARAMETER),
        ({"A": ["x"]}, {}, INVALID_PARAMETER),
        ({"A": {"x": 1}}, {"required": False}, INVALID_PARAMETER),
        ({"A": "x" * 6}, {"max_len": 5}, INVALID_PARAMETER_VALUE),
        ({"A": "x" * 1025}, {}, INVALID_PARAMETER_VALUE),
    ],
)
def test_str_param_rejects(params: dict[str, object], kwargs: dict[str, Any], code: str) -> None:
    assert _code(lambda: str_param(params, "A", **kwargs)) == code


# --- int_param / offset_limit --------------------------------------------------------------------


def test_int_param() -> None:
    assert int_param({"A": 5}, "A") == 5
    assert int_param({"A": "-12"}, "A") == -12
    assert int_param({}, "A") is None
    assert int_param({"A": ""}, "A", default=7) == 7
    assert int_param({"A": None}, "A", default=7) == 7
    assert int_param({"A": 10}, "A", min=10, max=10) == 10


@pytest.mark.parametrize(
    ("value", "kwargs", "code"),
    [
        (True, {}, INVALID_PARAMETER),
        (False, {"default": 1}, INVALID_PARAMETER),
        (1.0, {}, INVALID_PARAMETER),
        ("1.0", {}, INVALID_PARAMETER),
        (" 1", {}, INVALID_PARAMETER),
        ("+1", {}, INVALID_PARAMETER),
        ("1" * 19, {}, INVALID_PARAMETER),
        ("٣", {}, INVALID_PARAMETER),
        ([1], {}, INVALID_PARAMETER),
        ({}, {}, INVALID_PARAMETER),
        (9, {"min": 10}, INVALID_PARAMETER_VALUE),
        (11, {"max": 10}, INVALID_PARAMETER_VALUE),
        ("11", {"min": 0, "max": 10}, INVALID_PARAMETER_VALUE),
        (None, {"required": True}, REQUIRED_PARAM_NOT_FOUND),
        ("", {"required": True}, REQUIRED_PARAM_NOT_FOUND),
    ],
)
def test_int_param_rejects(value: object, kwargs: dict[str, Any], code: str) -> None:
    assert _code(lambda: int_param({"A": value}, "A", **kwargs)) == code


def test_offset_limit() -> None:
    assert offset_limit({}) == (0, 20)
    assert offset_limit({"Offset": "40", "Limit": 100}) == (40, 100)
    assert offset_limit({"Limit": 5}, default_limit=10, max_limit=5) == (0, 5)
    assert offset_limit({}, default_limit=10) == (0, 10)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Offset": -1}, INVALID_PARAMETER_VALUE),
        ({"Limit": 0}, INVALID_PARAMETER_VALUE),
        ({"Limit": 101}, INVALID_PARAMETER_VALUE),
        ({"Offset": 2**31}, INVALID_PARAMETER_VALUE),
        ({"Limit": "ten"}, INVALID_PARAMETER),
        ({"Offset": True}, INVALID_PARAMETER),
    ],
)
def test_offset_limit_rejects(params: dict[str, object], code: str) -> None:
    assert _code(lambda: offset_limit(params)) == code


# --- device_ref ----------------------------------------------------------------------------------


def test_device_ref() -> None:
    assert device_ref({"DeviceId": "PID123/dev1"}) == ("PID123", "dev1")
    assert device_ref({"ProductId": "PID123", "DeviceName": "dev1"}) == ("PID123", "dev1")
    assert device_ref({"DeviceId": "PID123/dev1", "ProductId": "PID123"}) == ("PID123", "dev1")
    assert device_ref({"DeviceId": "", "ProductId": "P", "DeviceName": "d"}) == ("P", "d")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"DeviceId": "PID123"},
        {"DeviceId": "PID123/dev/1"},
        {"DeviceId": "/dev1"},
        {"DeviceId": "PID123/"},
        {"DeviceId": "/"},
        {"DeviceId": 5},
        {"DeviceId": ["PID123", "dev1"]},
        {"DeviceId": "PID123/dev1", "ProductId": "OTHER"},
        {"DeviceId": "PID123/dev1", "DeviceName": "other"},
        {"ProductId": "PID123"},
        {"DeviceName": "dev1"},
        {"ProductId": "PID123", "DeviceName": ""},
        {"ProductId": 1, "DeviceName": "dev1"},
        {"ProductId": "PID123", "DeviceName": ["dev1"]},
        {"ProductId": "PID/123", "DeviceName": "dev1"},
        {"ProductId": "PID123", "DeviceName": "d" * 129},
    ],
)
def test_device_ref_rejects(params: dict[str, object]) -> None:
    assert _code(lambda: device_ref(params)) == INVALID_PARAMETER


def test_device_ref_message_is_clear() -> None:
    with pytest.raises(AppApiError, match="ProductId"):
        device_ref({"DeviceId": "nope"})


# --- json_string_field ---------------------------------------------------------------------------


def test_json_string_field() -> None:
    assert json_string_field({"Data": '{"power_switch":1}'}, "Data") == {"power_switch": 1}
    assert json_string_field({"Data": {"power_switch": 1}}, "Data") == {"power_switch": 1}
    assert json_string_field({"Data": "{}"}, "Data") == {}
    assert json_string_field({}, "Data", required=False) == {}
    assert json_string_field({"Data": ""}, "Data", required=False) == {}


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, REQUIRED_PARAM_NOT_FOUND),
        ("", REQUIRED_PARAM_NOT_FOUND),
        ("{", INVALID_JSON),
        ("{'a':1}", INVALID_JSON),
        ("[1,2]", INVALID_JSON),
        ("1", INVALID_JSON),
        ('"{}"', INVALID_JSON),
        ("null", INVALID_JSON),
        ('{"a": NaN}', INVALID_JSON),
        ('{"a": Infinity}', INVALID_JSON),
        ("[" * 100_000, INVALID_JSON),
        ('{"a":' + "9" * 5000 + "}", INVALID_JSON),
        (5, INVALID_PARAMETER),
        (True, INVALID_PARAMETER),
        ([{"a": 1}], INVALID_PARAMETER),
        ({1: "a"}, INVALID_PARAMETER),
    ],
)
def test_json_string_field_rejects(value: object, code: str) -> None:
    assert _code(lambda: json_string_field({"Data": value}, "Data")) == code


# --- properties ----------------------------------------------------------------------------------

_keys = st.text(min_size=1, max_size=12).filter(lambda k: k != "Signature")
_scalars = st.text(max_size=20) | st.integers() | st.booleans()
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
_anything = _json | st.binary(max_size=8) | st.tuples(st.integers(), st.text(max_size=3))


@given(st.text(max_size=30), st.dictionaries(_keys, _scalars, max_size=10))
def test_property_sign_verify_round_trip(secret: str, params: dict[str, object]) -> None:
    signature = sign(secret, params)
    assert verify_signature(secret, {**params, "Signature": signature})
    assert not verify_signature(secret + "x", {**params, "Signature": signature})


_plain_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)


@given(
    _plain_text,
    st.dictionaries(
        _plain_text.filter(lambda k: k not in ("", "Signature")),
        _plain_text | st.integers() | st.booleans() | st.none(),
        max_size=10,
    ),
)
def test_property_drop_empty_signature_verifies(secret: str, params: dict[str, object]) -> None:
    """A newer-MPDEMO-style client (drops null/"" before signing) is accepted too."""
    message = canonical_string(params, drop_empty=True).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha1).digest()
    signature = base64.b64encode(digest).decode()
    assert verify_signature(secret, {**params, "Signature": signature})


@given(st.text(max_size=10), st.dictionaries(st.text(max_size=10), _anything, max_size=8))
def test_property_verify_never_raises(secret: str, params: dict[str, object]) -> None:
    assert verify_signature(secret, params) in (True, False)
    assert not verify_signature(secret, {**params, "Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="})


_HELPERS: list[Callable[[Mapping[str, object]], object]] = [
    lambda p: action_name(p, None, None),
    lambda p: str_param(p, "A"),
    lambda p: str_param(p, "A", required=False, max_len=3),
    lambda p: int_param(p, "A", min=0, max=10),
    lambda p: int_param(p, "A", required=True),
    offset_limit,
    device_ref,
    lambda p: json_string_field(p, "Data"),
    lambda p: json_string_field(p, "A", required=False),
    lambda p: check_timestamp(p.get("A"), NOW),
]

_param_names = st.sampled_from(
    ["A", "Action", "Data", "DeviceId", "ProductId", "DeviceName", "Offset", "Limit"]
)
_param_values = _anything | st.from_regex(r"[A-Za-z0-9/{}\[\]\":,. -]{0,20}", fullmatch=True)


@settings(max_examples=300)
@given(st.dictionaries(_param_names, _param_values, max_size=8))
def test_property_helpers_raise_only_app_api_error(params: dict[str, object]) -> None:
    for helper in _HELPERS:
        with contextlib.suppress(AppApiError):
            helper(params)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    request_id=st.text(),
    plain=st.dictionaries(st.text(), _json_values, max_size=4),
    raw=st.dictionaries(st.text() | st.just("RequestId"), _json_values, max_size=3),
)
def test_ok_json_splices_raw_values_as_if_serialised_in_place(
    request_id: str, plain: dict[str, Any], raw: dict[str, Any]
) -> None:
    data: dict[str, object] = dict(plain)
    for key, value in raw.items():
        data[key] = RawJson(dumps_safe(value).decode())
    expected = appapi.ok(request_id, {**plain, **raw})
    assert json.loads(appapi.ok_json(request_id, data)) == expected

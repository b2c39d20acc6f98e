"""Parsers of the user-extras parameters: the shapes the official apps send are accepted,
everything else is refused with the App API's own codes — never an unexpected exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol import user_extras as ux
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REQUIRED_PARAM_NOT_FOUND,
    AppApiError,
)

_CODES = {INVALID_PARAMETER, INVALID_PARAMETER_VALUE, REQUIRED_PARAM_NOT_FOUND}
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
_key = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)


def test_the_official_apps_shapes() -> None:
    assert ux.settings_patch({"TemperatureUnit": "F"}) == {"TemperatureUnit": "F"}
    assert ux.settings_patch({"Region": "America/Argentina/Buenos_Aires"}) == {
        "Region": "America/Argentina/Buenos_Aires"
    }
    switches = dict.fromkeys(ux.PUSH_SWITCHES, 0) | {"EnableDeviceMessagePush": "1"}
    assert ux.settings_patch(switches) == dict.fromkeys(ux.PUSH_SWITCHES, 0) | {
        "EnableDeviceMessagePush": 1
    }
    assert ux.config_keys("RegionListEN") == ["RegionListEN"]
    assert ux.config_keys("RegionListCN, RegisterRegionListCN,RegionListCN") == [
        "RegionListCN",
        "RegisterRegionListCN",
    ]
    assert ux.config_keys(["A", "B"]) == ["A", "B"]
    assert ux.log_urls("") == []
    assert ux.log_urls("https://x.example/a.png,http://y/b.jpg") == [
        "https://x.example/a.png",
        "http://y/b.jpg",
    ]
    assert ux.xg_token({"Token": "0a1b2c3d"}) == "0a1b2c3d"
    assert ux.platform({"Platform": "iOS"}) == "ios"
    assert ux.platform({}) == ""


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, REQUIRED_PARAM_NOT_FOUND),
        ({"EnableWechatPush": 2}, INVALID_PARAMETER_VALUE),
        ({"EnableWechatPush": -1}, INVALID_PARAMETER_VALUE),
        ({"EnableWechatPush": True}, INVALID_PARAMETER),
        ({"TemperatureUnit": "K"}, INVALID_PARAMETER_VALUE),
        ({"TemperatureUnit": 1}, INVALID_PARAMETER_VALUE),
        ({"Region": "Asia/Shanghai; DROP"}, INVALID_PARAMETER_VALUE),
        ({"Region": "x" * 65}, INVALID_PARAMETER_VALUE),
        ({"Region": ["Asia/Shanghai"]}, INVALID_PARAMETER),
    ],
)
def test_bad_settings(params: dict[str, object], code: str) -> None:
    with pytest.raises(AppApiError) as exc:
        ux.settings_patch(params)
    assert exc.value.code == code


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, REQUIRED_PARAM_NOT_FOUND),
        ("", REQUIRED_PARAM_NOT_FOUND),
        ([], REQUIRED_PARAM_NOT_FOUND),
        (5, INVALID_PARAMETER),
        ([1], INVALID_PARAMETER),
        ("a b", INVALID_PARAMETER_VALUE),
        ("a,,b", INVALID_PARAMETER_VALUE),
        (["k"] * 51, INVALID_PARAMETER_VALUE),
    ],
)
def test_bad_keys(value: object, code: str) -> None:
    with pytest.raises(AppApiError) as exc:
        ux.config_keys(value)
    assert exc.value.code == code


@given(st.dictionaries(st.sampled_from([*ux.PUSH_SWITCHES, "TemperatureUnit", "Region"]), _json))
def test_settings_patch_total(params: dict[str, object]) -> None:
    try:
        patch = ux.settings_patch(params)
    except AppApiError as exc:
        assert exc.code in _CODES
        return
    assert patch and set(patch) <= set(params)
    for name in ux.PUSH_SWITCHES:
        assert patch.get(name, 0) in (0, 1)
    assert patch.get("TemperatureUnit", "C") in ux.TEMPERATURE_UNITS


@given(_json)
def test_config_keys_total(value: object) -> None:
    try:
        keys = ux.config_keys(value)
    except AppApiError as exc:
        assert exc.code in _CODES
        return
    assert 1 <= len(keys) <= ux.CONFIG_KEYS_MAX and len(set(keys)) == len(keys)
    assert all(ux.config_key(k) == k for k in keys)


@given(st.lists(_key, min_size=1, max_size=ux.CONFIG_KEYS_MAX))
def test_config_keys_round_trip(keys: list[str]) -> None:
    unique = list(dict.fromkeys(keys))
    assert ux.config_keys(",".join(keys)) == unique
    assert ux.config_keys(keys) == unique


@given(st.text(max_size=300))
def test_log_urls_total(value: str) -> None:
    try:
        urls = ux.log_urls(value)
    except AppApiError as exc:
        assert exc.code == INVALID_PARAMETER_VALUE
        return
    assert len(urls) <= ux.LOG_URLS_MAX
    assert all(u.startswith(("http://", "https://")) and "," not in u for u in urls)


@given(st.dictionaries(st.sampled_from(["Token", "Platform"]), _json))
def test_xg_token_and_platform_total(params: dict[str, object]) -> None:
    for parse in (ux.xg_token, ux.platform):
        try:
            value = parse(params)
        except AppApiError as exc:
            assert exc.code in _CODES
            continue
        assert isinstance(value, str) and value == value.strip()

"""Pure parsers of the per-user extras' parameters (spec app-api §2.1): user settings,
XG push tokens, feedback ``LogUrl`` and ``AppGetGlobalConfig`` ``Keys``.

Shapes follow what the official clients send (see docs/app-api.md "User extras"):
``Keys`` is a single string in both official apps (``"RegionListEN"``) and a list in the
docs, so both are accepted, a string also comma-separated; ``LogUrl`` is the uploaded
images' URLs joined by ``,``; the push switches are integers ``0``/``1``; the temperature
unit is ``"C"`` or ``"F"``; the region is an IANA time zone name (``Asia/Shanghai``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ivcloud.protocol.appapi import (
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REQUIRED_PARAM_NOT_FOUND,
    AppApiError,
    int_param,
    str_param,
)

#: Request parameter → ``UserSetting`` field of the push switches (0 = off, 1 = on).
PUSH_SWITCHES: Final[tuple[str, ...]] = (
    "EnableWechatPush",
    "EnableDeviceMessagePush",
    "EnableFamilyMessagePush",
    "EnableNotifyMessagePush",
)
TEMPERATURE_UNITS: Final[frozenset[str]] = frozenset({"C", "F"})
REGION_MAX: Final[int] = 64
_REGION = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}")
CONFIG_KEY_MAX: Final[int] = 64
CONFIG_KEYS_MAX: Final[int] = 50
_CONFIG_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
XG_TOKEN_MAX: Final[int] = 256
_XG_TOKEN = re.compile(r"[\x21-\x7e]{1,256}")
PLATFORM_MAX: Final[int] = 16
LOG_URL_MAX: Final[int] = 4096
LOG_URLS_MAX: Final[int] = 9
_URL = re.compile(r"https?://[\x21-\x2b\x2d-\x7e]{1,1000}")  # printable ASCII, no comma


def settings_patch(params: Mapping[str, object]) -> dict[str, int | str]:
    """The settings an ``AppUpdateUserSetting`` call changes, keyed by their wire names;
    absent parameters are left out (a partial update keeps the others)."""
    patch: dict[str, int | str] = {}
    for name in PUSH_SWITCHES:
        value = int_param(params, name, min=0, max=1)
        if value is not None:
            patch[name] = value
    unit = str_param(params, "TemperatureUnit", required=False, max_len=8)
    if unit is not None:
        if unit not in TEMPERATURE_UNITS:
            raise AppApiError(INVALID_PARAMETER_VALUE, "TemperatureUnit must be C or F")
        patch["TemperatureUnit"] = unit
    region = str_param(params, "Region", required=False, max_len=REGION_MAX)
    if region is not None:
        if _REGION.fullmatch(region) is None:
            raise AppApiError(
                INVALID_PARAMETER_VALUE, "Region must be a time zone name such as Asia/Shanghai"
            )
        patch["Region"] = region
    if not patch:
        raise AppApiError(REQUIRED_PARAM_NOT_FOUND, "no setting to update")
    return patch


def config_key(key: str) -> str:
    """A global-config key: 1-64 of ``A-Z a-z 0-9 _ . -``."""
    if _CONFIG_KEY.fullmatch(key) is None:
        raise AppApiError(INVALID_PARAMETER_VALUE, "a config key is 1-64 of A-Z a-z 0-9 _ . -")
    return key


def config_keys(value: object) -> list[str]:
    """``Keys``: a string (one key, or several joined by ``,``) or a list of strings;
    duplicates are dropped, order kept."""
    if value is None or value == "" or value == []:
        raise AppApiError(REQUIRED_PARAM_NOT_FOUND, "missing parameter Keys")
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",")]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise AppApiError(INVALID_PARAMETER, "Keys must be a string or a list of strings")
    if len(items) > CONFIG_KEYS_MAX:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"at most {CONFIG_KEYS_MAX} Keys")
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise AppApiError(INVALID_PARAMETER, "Keys must be a string or a list of strings")
        key = config_key(item)
        if key not in keys:
            keys.append(key)
    return keys


def xg_token(params: Mapping[str, object]) -> str:
    """``Token``: the XG/TPNS device token, printable ASCII without spaces."""
    token = str_param(params, "Token", max_len=XG_TOKEN_MAX)
    if _XG_TOKEN.fullmatch(token) is None:
        raise AppApiError(INVALID_PARAMETER_VALUE, "Token must be printable ASCII")
    return token


def platform(params: Mapping[str, object]) -> str:
    """``Platform`` (``ios`` from the iOS app; optional): lower-cased, letters only."""
    value = (str_param(params, "Platform", required=False, max_len=PLATFORM_MAX) or "").lower()
    if value and not (value.isascii() and value.isalpha()):
        raise AppApiError(INVALID_PARAMETER_VALUE, "Platform must be letters only")
    return value


def log_urls(value: str) -> list[str]:
    """``LogUrl``: the uploaded files' URLs joined by ``,`` (empty = none); each must be an
    http(s) URL."""
    if len(value) > LOG_URL_MAX:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"LogUrl is longer than {LOG_URL_MAX}")
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if len(urls) > LOG_URLS_MAX:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"at most {LOG_URLS_MAX} LogUrl entries")
    for url in urls:
        if _URL.fullmatch(url) is None:
            raise AppApiError(INVALID_PARAMETER_VALUE, "LogUrl entries must be http(s) URLs")
    return urls

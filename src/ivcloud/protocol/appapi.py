"""Sans-IO pieces of the App API (``appapi`` / ``tokenapi``, app-api.md §1).

* signing, timestamp window, nonce cache — :mod:`ivcloud.protocol.appapi_sign`, re-exported;
* error codes and :class:`AppApiError` — :mod:`ivcloud.protocol.appapi_errors`, re-exported
  (its docstring lists the codes chosen where Tencent's are unconfirmed);
* here: the ``{"code","msg","data"}`` envelopes (§1.4) and typed readers for the flat JSON body
  (§1.2) that raise only :class:`AppApiError`.

Reader conventions: a parameter that is absent, ``null`` or ``""`` is *missing*
(``ErrorRequiredParamNotFound`` when required); a wrong JSON type or shape is
``InvalidParameter``; a right type with a bad value (too long, out of range) is
``InvalidParameterValue``. Messages name the parameter but never echo client input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final, Literal, overload

from ivcloud.protocol.appapi_errors import *  # noqa: F403 - re-export the catalogue
from ivcloud.protocol.appapi_errors import (
    API_ERROR_CODE,
    INVALID_ACTION,
    INVALID_JSON,
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REQUIRED_PARAM_NOT_FOUND,
    AppApiError,
)
from ivcloud.protocol.appapi_errors import __all__ as _errors_all
from ivcloud.protocol.appapi_sign import (
    DEFAULT_NONCE_WINDOW,
    DEFAULT_TIMESTAMP_WINDOW,
    NonceCache,
    canonical_string,
    check_timestamp,
    js_string,
    sign,
    verify_signature,
)
from ivcloud.protocol.jsontext import RawJson, dumps_safe

__all__ = [
    *_errors_all,
    "DEFAULT_MAX_STR_LEN",
    "DEFAULT_NONCE_WINDOW",
    "DEFAULT_TIMESTAMP_WINDOW",
    "NonceCache",
    "action_name",
    "canonical_string",
    "check_timestamp",
    "device_ref",
    "error",
    "error_from",
    "int_param",
    "js_string",
    "json_string_field",
    "offset_limit",
    "ok",
    "sign",
    "str_param",
    "verify_signature",
]

DEFAULT_MAX_STR_LEN: Final[int] = 1024
_MAX_ID_LEN: Final[int] = 128
_ACTION = re.compile(r"[A-Za-z][A-Za-z0-9:_]{0,63}")
_DECIMAL_INT = re.compile(r"-?[0-9]{1,18}")


# --- envelopes (§1.4) ----------------------------------------------------------------------------


def ok(request_id: str, data: Mapping[str, object] | None = None) -> dict[str, object]:
    """Success: ``{"code": 0, "msg": "", "data": {"RequestId": request_id, **data}}``.

    ``RequestId`` always echoes ``request_id``, even if ``data`` carries one.
    """
    body: dict[str, object] = {"RequestId": request_id}
    if data:
        body.update(data)
        body["RequestId"] = request_id
    return {"code": 0, "msg": "", "data": body}


def ok_json(request_id: str, data: Mapping[str, object] | None = None) -> bytes:
    """:func:`ok` serialised; ``RawJson`` values of ``data`` are spliced in unparsed."""
    if not data or not any(isinstance(v, RawJson) for v in data.values()):
        return dumps_safe(ok(request_id, data))
    plain = {k: v for k, v in data.items() if not isinstance(v, RawJson)}
    head = dumps_safe(ok(request_id, plain))  # always ends with the two closing braces
    raw = "".join(
        f",{json.dumps(k)}:{v.text}"
        for k, v in data.items()
        if isinstance(v, RawJson) and k != "RequestId"  # the echo always wins, as in ok()
    )
    return head[:-2] + raw.encode("utf-8") + b"}}"


def error(request_id: str, code: str, message: str) -> dict[str, object]:
    """API error: ``code`` -1000, ``data.Error = {Code, Message}`` (clients read both)."""
    return {
        "code": API_ERROR_CODE,
        "msg": message,
        "data": {"Error": {"Code": code, "Message": message}, "RequestId": request_id},
    }


def error_from(request_id: str, exc: AppApiError) -> dict[str, object]:
    """:func:`error` for a raised :class:`AppApiError`."""
    return error(request_id, exc.code, exc.message)


# --- body readers (§1.2) -------------------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def action_name(body: Mapping[str, object], path_segment: str | None, query_cmd: str | None) -> str:
    """The action: body ``Action``, else the ``/appapi/<Action>`` path segment, else ``?cmd=``.

    The first non-empty source wins and must match ``[A-Za-z][A-Za-z0-9:_]{0,63}`` (names like
    ``App::IotRTC::CallDevice`` contain ``::``); whether the action exists is the caller's call.
    """
    for value in (body.get("Action"), path_segment, query_cmd):
        if _missing(value):
            continue
        if not isinstance(value, str) or _ACTION.fullmatch(value) is None:
            raise AppApiError(INVALID_ACTION, "malformed Action")
        return value
    raise AppApiError(REQUIRED_PARAM_NOT_FOUND, "missing parameter Action")


@overload
def str_param(
    params: Mapping[str, object],
    name: str,
    *,
    required: Literal[True] = ...,
    max_len: int = ...,
) -> str: ...
@overload
def str_param(
    params: Mapping[str, object],
    name: str,
    *,
    required: Literal[False],
    max_len: int = ...,
) -> str | None: ...
def str_param(
    params: Mapping[str, object],
    name: str,
    *,
    required: bool = True,
    max_len: int = DEFAULT_MAX_STR_LEN,
) -> str | None:
    """A string parameter of at most ``max_len`` characters.

    JSON integers are accepted and written in decimal (some clients send ``CountryCode: 86``
    or ``PhoneNumber`` as a number). Missing optional → ``None``.
    """
    value = params.get(name)
    if _missing(value):
        if required:
            raise AppApiError(REQUIRED_PARAM_NOT_FOUND, f"missing parameter {name}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = js_string(value)
    if not isinstance(value, str):
        raise AppApiError(INVALID_PARAMETER, f"{name} must be a string")
    if len(value) > max_len:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"{name} is longer than {max_len} characters")
    return value


@overload
def int_param(
    params: Mapping[str, object],
    name: str,
    *,
    default: int,
    min: int | None = ...,
    max: int | None = ...,
    required: bool = ...,
) -> int: ...
@overload
def int_param(
    params: Mapping[str, object],
    name: str,
    *,
    default: None = ...,
    min: int | None = ...,
    max: int | None = ...,
    required: Literal[True],
) -> int: ...
@overload
def int_param(
    params: Mapping[str, object],
    name: str,
    *,
    default: None = ...,
    min: int | None = ...,
    max: int | None = ...,
    required: Literal[False] = ...,
) -> int | None: ...
def int_param(
    params: Mapping[str, object],
    name: str,
    *,
    default: int | None = None,
    min: int | None = None,
    max: int | None = None,
    required: bool = False,
) -> int | None:
    """An integer parameter: a JSON integer or a decimal string (``"-12"``; at most 18
    digits). Booleans and floats are refused (JS ``JSON.stringify`` never writes ``20.0``).

    Missing → ``default`` (``ErrorRequiredParamNotFound`` if ``required``); ``min``/``max`` are
    inclusive bounds checked on supplied values only.
    """
    value = params.get(name)
    if _missing(value):
        if required:
            raise AppApiError(REQUIRED_PARAM_NOT_FOUND, f"missing parameter {name}")
        return default
    if not (isinstance(value, int) and not isinstance(value, bool)) and not (
        isinstance(value, str) and _DECIMAL_INT.fullmatch(value)
    ):
        raise AppApiError(INVALID_PARAMETER, f"{name} must be an integer")
    number = int(value)
    if (min is not None and number < min) or (max is not None and number > max):
        low = "-inf" if min is None else str(min)
        high = "inf" if max is None else str(max)
        raise AppApiError(INVALID_PARAMETER_VALUE, f"{name} must be between {low} and {high}")
    return number


def offset_limit(
    params: Mapping[str, object], *, default_limit: int = 20, max_limit: int = 100
) -> tuple[int, int]:
    """``(Offset, Limit)`` for list actions: ``Offset`` ≥ 0 (default 0), ``1 ≤ Limit ≤ max_limit``
    (default ``default_limit``). An over-large ``Limit`` is refused rather than clamped, since a
    client paging by ``Offset += Limit`` would otherwise skip rows."""
    offset = int_param(params, "Offset", default=0, min=0, max=2**31 - 1)
    limit = int_param(params, "Limit", default=default_limit, min=1, max=max_limit)
    return offset, limit


def _id_part(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise AppApiError(INVALID_PARAMETER, f"{name} must be a non-empty string")
    if "/" in value or len(value) > _MAX_ID_LEN:
        raise AppApiError(INVALID_PARAMETER, f"{name} is malformed")
    return value


def device_ref(params: Mapping[str, object]) -> tuple[str, str]:
    """``(ProductId, DeviceName)`` from ``DeviceId`` (``"PID/DN"``) or ``ProductId`` +
    ``DeviceName``. If both forms are sent they must agree. Every failure is
    ``InvalidParameter``."""
    device_id = params.get("DeviceId")
    product_id = params.get("ProductId")
    device_name = params.get("DeviceName")
    if not _missing(device_id):
        if not isinstance(device_id, str) or device_id.count("/") != 1:
            raise AppApiError(INVALID_PARAMETER, 'DeviceId must be "<ProductId>/<DeviceName>"')
        pid_part, dn_part = device_id.split("/")
        pid = _id_part(pid_part, "DeviceId")
        dn = _id_part(dn_part, "DeviceId")
        if (not _missing(product_id) and product_id != pid) or (
            not _missing(device_name) and device_name != dn
        ):
            raise AppApiError(INVALID_PARAMETER, "DeviceId contradicts ProductId/DeviceName")
        return pid, dn
    if _missing(product_id) or _missing(device_name):
        raise AppApiError(INVALID_PARAMETER, "DeviceId or ProductId and DeviceName required")
    return _id_part(product_id, "ProductId"), _id_part(device_name, "DeviceName")


def _reject_constant(token: str) -> object:
    raise ValueError(f"{token} is not JSON")


def json_string_field(
    params: Mapping[str, object], name: str, *, required: bool = True
) -> dict[str, object]:
    """A field such as ``Data``/``InputParams``/``DeviceValue`` that holds a JSON object,
    normally as a string (``"{\\"power_switch\\":1}"``), sometimes as the object itself.

    Missing optional → ``{}``. Unparsable text, or JSON that is not an object →
    ``InvalidParameterValue.InvalidJSON``; neither a string nor an object → ``InvalidParameter``.
    """
    value = params.get(name)
    if _missing(value):
        if required:
            raise AppApiError(REQUIRED_PARAM_NOT_FOUND, f"missing parameter {name}")
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise AppApiError(INVALID_JSON, f"{name} is not valid JSON") from None
        if not isinstance(value, dict):
            raise AppApiError(INVALID_JSON, f"{name} must be a JSON object")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise AppApiError(INVALID_PARAMETER, f"{name} must be an object")
        return dict(value)
    raise AppApiError(INVALID_PARAMETER, f"{name} must be a JSON object or a JSON string")

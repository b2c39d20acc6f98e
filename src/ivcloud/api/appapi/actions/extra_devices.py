"""The remaining Actions of spec §2.2–2.4: binding by device signature, the multi-device
bind-token state, reporting as the device, publishing to a device, product info/config.

Decisions where the spec is silent or **[UNCONFIRMED]** (all ivcloud's own):

``AppSigBindDeviceInFamily`` (tokenapi)
    Checked in this order, so that nothing is learnt before the caller is entitled to it:
    ``FamilyId`` must be a family the caller is a member of (else ``NoPermission``); the
    product must be linked to the app (else
    ``UnauthorizedOperation.APPNoPermissionToStudioProduct``, as ``AppTokenBindDeviceFamily``);
    then the signature. Plaintext ``DeviceName=%s&DeviceTimestamp=%d&ProductId=%s&ConnId=%s``
    (DOC/50205, used for every ``BindType``; ``BindType`` is optional, default ``wifi_sign``,
    checked against the three documented values only), key = base64-decoded DeviceSecret,
    ``SignMethod`` ``hmacsha1`` (default when absent) or ``hmacsha256``, lowercase hex (upper
    case accepted), compared in constant time.
    A wrong signature *and* an unknown device both answer
    ``InvalidParameterValue.SignatureFailure`` (:data:`DEVICE_SIGNATURE_FAILURE`, defined here),
    so device names cannot be probed. Only a valid signature is then checked for age:
    ``DeviceTimestamp`` (Unix seconds) must lie within ±:data:`SIG_WINDOW_S` (300 s) of server
    time, else ``InvalidParameterValue.TokenIsExpire`` (Tencent's SDK docs say an expired bind
    signature gives "bind token expired"). A device without a clock cannot produce this
    signature; it has to use the bind-token flow. A signature that already bound the device
    is refused (``TokenIsExpire``) until it ages out of the window, so a captured signature
    cannot re-bind a device after it was removed (per-process memory: best effort when
    several processes serve the API). On success the device is bound
    (``FamilyService.bind_device``), gets the legacy ``bind_device`` notice on
    ``$thing/down/service`` (best effort, as after a token bind), and the answer carries the
    ``AppGetFamilyDeviceList`` item twice: ``AppDeviceInfo`` (DOC name) and ``Data`` (what
    clients of ``AppTokenBindDeviceFamily`` read).

``AppGetMultiDeviceBindTokenState`` (tokenapi)
    Same token rules and error codes as ``AppGetDeviceBindTokenState``. ``Data`` lists the
    devices that reported the token: ``[]`` while none has (state 1), else one
    ``{ProductId, DeviceName, State}`` (2 reported, 3 used) — ivcloud lets one device claim a
    token. There is **no** server-side auto-bind of "v3.0" tokens: the app still calls
    ``AppTokenBindDeviceFamily``.

``AppReportDataAsDevice`` (tokenapi)
    Needs family MEMBER or ADMIN access: a user the device is only *shared* with may control
    it but not forge its reports (``NoPermission``). ``Data`` is validated as a device report
    (thing model; invalid → ``InvalidParameterValue``). ``TimeStamp`` (ms) is optional (absent
    or 0 = now) and must lie within [now − 24 h, now + 5 min] so history cannot be back- or
    forward-filled arbitrarily. The answer comes after the values are committed, and is
    ``Data`` = JSON string ``{"<prop>": {"Value": v, "LastUpdate": ms}}`` of what was stored
    (the ``AppGetDeviceData`` shape, values normalised).

``AppApiPublishMessage`` (appapi — the OEM back end, no user)
    The product must be linked to the calling app and the device must exist (else
    ``NoPermission``). ``Topic`` must be a topic name (no wildcard, else
    ``InvalidParameterValue``) the device itself may SUBSCRIBE to (``may_subscribe``; else
    ``NoPermission``). ``Payload`` is text, sent UTF-8 encoded, at most :data:`MAX_PAYLOAD`
    bytes; ``Qos`` 0 (default) or 1. Device not connected → ``FailedOperation.DeviceOffline``;
    connected but not subscribed to that topic (or not keeping up) → ``FailedOperation``.

``AppGetProductInfo`` / ``AppGetProductsConfig`` (tokenapi)
    Any product not linked to the app → ``NoPermission``. Each product carries the
    ``AppGetProducts`` fields plus ``Config`` (panel configuration, JSON string; ivcloud has
    none, so ``"{}"``). ``AppGetProductInfo`` → ``Data: {…}``; ``AppGetProductsConfig`` →
    ``Data: [{…}]`` (iOS reads ``Data[i].Config``) and the same list as ``Products``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from typing import Any, Final

import structlog

from ivcloud.api.appapi.actions.devices import product_api
from ivcloud.api.appapi.actions.families import family_id_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import (
    FAILED_OPERATION,
    INVALID_PARAMETER,
    INVALID_PARAMETER_VALUE,
    REQUIRED_PARAM_NOT_FOUND,
    TOKEN_IS_EXPIRE,
    AppApiError,
    device_ref,
    int_param,
    json_string_field,
    str_param,
)
from ivcloud.protocol.credentials import decode_device_secret
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.mqtt.names import valid_topic_name
from ivcloud.protocol.topics import may_subscribe
from ivcloud.services.access import Access
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, Forbidden, InvalidInput
from ivcloud.services.family_types import ProductNotLinked

log = structlog.get_logger("ivcloud.appapi.extra_devices")

#: Code for a device signature that does not verify (ivcloud's; Tencent's is unconfirmed).
DEVICE_SIGNATURE_FAILURE: Final = "InvalidParameterValue.SignatureFailure"
#: ``DeviceTimestamp`` may differ from server time by at most this many seconds.
SIG_WINDOW_S: Final = 300
BIND_TYPES: Final = ("wifi_sign", "bluetooth_sign", "other_sign")
_DIGESTS: Final[dict[str, Callable[..., Any]]] = {
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}
_HEX = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
#: Reports as the device: accepted ``TimeStamp`` range around now (ms).
REPORT_PAST_MS: Final = 24 * 3600 * 1000
REPORT_FUTURE_MS: Final = 5 * 60 * 1000
#: How long to wait for the report's commit before answering ``FailedOperation``.
COMMIT_TIMEOUT_S: Final = 10.0
MAX_PAYLOAD: Final = 64 * 1024
MAX_TOPIC: Final = 512
MAX_PRODUCT_IDS: Final = 100
_ID_MAX: Final = 40


# --- pure helpers --------------------------------------------------------------------------------


def bind_plaintext(product_id: str, device_name: str, timestamp: int, conn_id: str) -> str:
    """The text a device signs for ``AppSigBindDeviceInFamily`` (DOC/50205)."""
    return (
        f"DeviceName={device_name}&DeviceTimestamp={timestamp}"
        f"&ProductId={product_id}&ConnId={conn_id}"
    )


def sign_bind(secret_b64: str, plaintext: str, method: str = "hmacsha1") -> str:
    """Lowercase hex HMAC of ``plaintext`` keyed with the base64-decoded device secret."""
    key = decode_device_secret(secret_b64)
    return hmac.new(key, plaintext.encode("utf-8"), _DIGESTS[method]).hexdigest()


def _verify_bind(rec: DeviceRecord | None, plaintext: str, method: str, signature: str) -> bool:
    """Constant-time check; an unknown device is checked against a random key (always fails,
    in about the same time)."""
    key = decode_device_secret(rec.secret) if rec is not None else secrets.token_bytes(16)
    expected = hmac.new(key, plaintext.encode("utf-8"), _DIGESTS[method]).hexdigest()
    return hmac.compare_digest(expected, signature.lower()) and rec is not None


class _UsedSignatures:
    """Signatures that already bound a device, kept until they fall out of the window."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._until: dict[str, int] = {}  # insertion order ≈ expiry order
        self._max = max_entries

    def _prune(self, now: int) -> None:
        while self._until:
            key = next(iter(self._until))
            if self._until[key] >= now and len(self._until) <= self._max:
                break
            del self._until[key]

    def used(self, key: str, now: int) -> bool:
        self._prune(now)
        return key in self._until

    def mark(self, key: str, until: int) -> None:
        self._until[key] = until


def _enum_param(call: Call, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = str_param(call.params, name, required=False, max_len=32)
    if value is None:
        return default
    value = value.lower()
    if value not in allowed:
        raise AppApiError(INVALID_PARAMETER_VALUE, f"{name} must be one of {', '.join(allowed)}")
    return value


def _product_ids(call: Call) -> list[str]:
    value = call.params.get("ProductIds")
    if value is None or value == []:
        raise AppApiError(REQUIRED_PARAM_NOT_FOUND, "missing parameter ProductIds")
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AppApiError(INVALID_PARAMETER, "ProductIds must be an array of strings")
    if len(value) > MAX_PRODUCT_IDS:
        raise AppApiError(
            INVALID_PARAMETER_VALUE, f"ProductIds has more than {MAX_PRODUCT_IDS} items"
        )
    return list(dict.fromkeys(value))


async def _product_with_config(call: Call, product_id: str) -> dict[str, Any]:
    """The ``AppGetProducts`` fields of a product, plus ``Config`` (``"{}"``)."""
    return {**await product_api(call, product_id), "Config": "{}"}


# --- actions -------------------------------------------------------------------------------------


def register(reg: ActionRegistry) -> None:
    used_signatures = _UsedSignatures()

    @reg.action("AppSigBindDeviceInFamily", "token")
    async def sig_bind(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        family_id = await family_id_param(call)
        room_id = str_param(call.params, "RoomId", required=False, max_len=_ID_MAX) or "0"
        timestamp = int_param(call.params, "DeviceTimestamp", required=True, min=0, max=2**40)
        conn_id = str_param(call.params, "ConnId", max_len=64)
        signature = str_param(call.params, "Signature", max_len=128)
        _enum_param(call, "BindType", BIND_TYPES, "wifi_sign")
        method = _enum_param(call, "SignMethod", tuple(_DIGESTS), "hmacsha1")

        await call.instance.access.require_family(call.me, family_id, admin=False)
        if not await call.instance.access.product_linked(call.me, pid):
            raise ProductNotLinked("the device's product is not linked to this app")
        rec = await call.instance.devices.find(pid, dn)
        plaintext = bind_plaintext(pid, dn, timestamp, conn_id)
        if not _HEX.fullmatch(signature) or not _verify_bind(rec, plaintext, method, signature):
            raise AppApiError(DEVICE_SIGNATURE_FAILURE, "the device signature does not match")
        assert rec is not None
        now = call.instance.clock.now_ms() // 1000
        if abs(now - timestamp) > SIG_WINDOW_S:
            raise AppApiError(TOKEN_IS_EXPIRE, "the device signature has expired")
        used_key = f"{pid}/{dn}/{signature.lower()}"
        if used_signatures.used(used_key, now):
            raise AppApiError(TOKEN_IS_EXPIRE, "the device signature has already been used")

        await call.instance.families.bind_device(call.me, family_id, room_id, rec)
        used_signatures.mark(used_key, timestamp + SIG_WINDOW_S)
        await call.instance.app_binding.notify_bound(rec, family_id)
        placed = await call.instance.families.placement(rec)
        info = placed.to_api() if placed is not None else {}
        return {"AppDeviceInfo": info, "Data": info}

    @reg.action("AppGetMultiDeviceBindTokenState", "token")
    async def multi_token_state(call: Call) -> dict[str, Any]:
        token = str_param(call.params, "Token", max_len=64)
        state = await call.instance.app_binding.state(call.me, token)
        return {"Data": [state.to_api()] if state.product_id else []}

    @reg.action("AppReportDataAsDevice", "token")
    async def report_as_device(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        rec = await call.instance.access.require_device(call.me, pid, dn, Access.MEMBER)
        data = json_string_field(call.params, "Data")
        now_ms = call.instance.clock.now_ms()
        ts = int_param(call.params, "TimeStamp", default=0, min=0, max=2**53)
        if ts == 0:
            ts = now_ms
        elif not now_ms - REPORT_PAST_MS <= ts <= now_ms + REPORT_FUTURE_MS:
            raise AppApiError(
                INVALID_PARAMETER_VALUE,
                "TimeStamp must be in milliseconds, within the last 24 h and not in the future",
            )
        model = await call.instance.products.require_model(rec.product_id)
        try:
            params = model.validate_report(data)
        except ProtocolError as exc:
            raise InvalidInput(str(exc)) from None

        committed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def ack(ok: bool) -> None:
            if not committed.done():
                committed.set_result(ok)

        await call.instance.telemetry.record_report(rec, params, ts, ack)
        try:
            ok = await asyncio.wait_for(committed, COMMIT_TIMEOUT_S)
        except TimeoutError:
            ok = False
        if not ok:
            log.warning("report_as_device_not_committed", product_id=pid, device_name=dn)
            raise AppApiError(FAILED_OPERATION, "the report could not be stored")
        stored = {k: {"Value": v, "LastUpdate": ts} for k, v in sorted(params.items())}
        return {"Data": json.dumps(stored, ensure_ascii=False)}

    @reg.action("AppApiPublishMessage", "sign")
    async def publish_message(call: Call) -> dict[str, Any]:
        pid, dn = device_ref(call.params)
        topic = str_param(call.params, "Topic", max_len=MAX_TOPIC)
        payload = str_param(call.params, "Payload", required=False, max_len=MAX_PAYLOAD) or ""
        body = payload.encode("utf-8")
        if len(body) > MAX_PAYLOAD:
            raise AppApiError(INVALID_PARAMETER_VALUE, f"Payload exceeds {MAX_PAYLOAD} bytes")
        qos = int_param(call.params, "Qos", default=0, min=0, max=1)
        if pid not in call.app.product_ids:
            raise Forbidden("no permission for this product")
        rec = await call.instance.devices.find(pid, dn)
        if rec is None:
            raise Forbidden("no permission for this device")
        if not valid_topic_name(topic):
            raise AppApiError(INVALID_PARAMETER_VALUE, "Topic must be a topic name (no wildcards)")
        if not may_subscribe(pid, dn, topic):
            raise Forbidden("the device may not subscribe to this topic")
        if not call.instance.downlink.is_connected(rec.client_id):
            raise DeviceOffline(f"device {pid}/{dn} is offline")
        if not await call.instance.downlink.publish(rec.client_id, topic, body, qos):
            raise AppApiError(
                FAILED_OPERATION, "the device is not subscribed to this topic or is busy"
            )
        return {}

    @reg.action("AppGetProductInfo", "token")
    async def product_info(call: Call) -> dict[str, Any]:
        pid = str_param(call.params, "ProductId", max_len=_ID_MAX)
        if not await call.instance.access.product_linked(call.me, pid):
            raise Forbidden("no permission for this product")
        return {"Data": await _product_with_config(call, pid)}

    @reg.action("AppGetProductsConfig", "token")
    async def products_config(call: Call) -> dict[str, Any]:
        ids = _product_ids(call)
        linked = set(await call.instance.access.product_ids(call.me))
        if any(pid not in linked for pid in ids):
            raise Forbidden("no permission for this product")
        products = [await _product_with_config(call, pid) for pid in ids]
        return {"Data": products, "Products": products}

"""``$gateway/operation`` messages (device-protocol spec §6.2): what a gateway device says
about its sub-devices, and what the cloud answers on ``$gateway/operation/result/{P}/{D}``.

Shapes follow the official Python SDK (``hub/services/gateway/gateway.py``) and Tencent's
topology document field for field: requests ``{"type", "payload": {"devices": [{"product_id",
"device_name", …}]}}``, answers ``{"type", "payload": {"devices": [{"product_id",
"device_name", "result"}]}}`` with one ``result`` per device, ``describe_sub_devices`` answered
with the bare device list, and the cloud-initiated ``change`` (``status`` 1 bound, 0 unbound)
that the gateway acknowledges with ``{"type": "change", "result": 0}``.

The bind proof is the sub-device's: ``base64(HMAC(key = the DeviceSecret *as its literal
base64 text*, "{product_id}{device_name};{random};{timestamp}"))`` with SHA-1 (what the SDKs
send) or SHA-256 (``signmethod`` ``hmacsha256``).  Note the key is the text, not the decoded
secret as in MQTT passwords — both SDKs do it that way.

A message that cannot be read at all raises :class:`GatewayOpError`; a readable message with
a bad device entry keeps that entry (``error`` 801) so every device still gets its own
``result``, as a gateway matches answers per device.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, loads_strict

UP_PREFIX: Final = "$gateway/operation"
DOWN_PREFIX: Final = "$gateway/operation/result"

# Per-device ``result`` codes (Tencent's topology document; C SDK ``QCLOUD_ERR_BIND_*``).
OK: Final = 0
NOT_BOUND: Final = -1  # the gateway is not bound to this sub-device
SYSTEM_ERROR: Final = -2
BAD_PARAMS: Final = 801
BAD_DEVICE: Final = 802  # invalid name or no such device
SIGNATURE_FAILED: Final = 803
UNSUPPORTED_SIGN_METHOD: Final = 804
SIGNATURE_EXPIRED: Final = 805
BOUND_ELSEWHERE: Final = 806  # bound to another gateway
NOT_GENERAL: Final = 807
FORBIDDEN: Final = 808
ALREADY_BOUND: Final = 809  # a repeated bind: already bound to this gateway
UNSUPPORTED_SUBDEVICE: Final = 810

ONLINE: Final = "online"
OFFLINE: Final = "offline"
BIND: Final = "bind"
UNBIND: Final = "unbind"
DESCRIBE: Final = "describe_sub_devices"
CHANGE: Final = "change"
REQUEST_TYPES: Final = frozenset({ONLINE, OFFLINE, BIND, UNBIND, DESCRIBE})

#: A bind's ``timestamp`` (seconds) may differ from server time by at most this much.
BIND_WINDOW_S: Final = 300
#: Device entries per message; a gateway with more sub-devices sends several messages.
MAX_DEVICES: Final = 100
MAX_ID_LEN: Final = 64
MAX_SIGNATURE_LEN: Final = 128
_DIGESTS: Final[dict[str, Callable[..., Any]]] = {
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}
_AUTH_TYPES: Final = frozenset({"psk"})
_ID_FORBIDDEN: Final = ("/", "+", "#", "\x00")
_MAX_DECIMAL_DIGITS: Final = 19


class GatewayOpError(ProtocolError):
    """A ``$gateway/operation`` payload that cannot be processed at all; ``op_type`` is the
    type it claimed (echoed in the 801 answer), ``""`` when unreadable."""

    def __init__(self, message: str, op_type: str = "") -> None:
        super().__init__(message)
        self.op_type = op_type


@dataclass(frozen=True, slots=True)
class BindProof:
    """What a gateway presents to bind a sub-device.  ``random``/``timestamp`` keep the
    decimal text the device signed (an integer is rendered with ``str``)."""

    signature: str
    random: str
    timestamp: str
    signmethod: str
    authtype: str

    @property
    def timestamp_s(self) -> int:
        return int(self.timestamp)


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One ``payload.devices`` item.  ``error`` is 0 for a usable entry, else the result to
    answer (801) — ``product_id``/``device_name`` are then echoed as far as they were read."""

    product_id: str
    device_name: str
    error: int = OK
    proof: BindProof | None = None

    @property
    def client_id(self) -> str:
        return self.product_id + self.device_name


@dataclass(frozen=True, slots=True)
class GatewayOp:
    """A parsed message.  ``result`` is only set on the gateway's ``change`` answer."""

    type: str
    devices: tuple[DeviceEntry, ...] = ()
    result: int | None = None


# -- parsing --------------------------------------------------------------------------------


def up_topic(product_id: str, device_name: str) -> str:
    return f"{UP_PREFIX}/{product_id}/{device_name}"


def down_topic(product_id: str, device_name: str) -> str:
    return f"{DOWN_PREFIX}/{product_id}/{device_name}"


def _identity(value: object) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LEN:
        return None
    if any(c in value for c in _ID_FORBIDDEN):
        return None
    return value


def _decimal(value: object) -> str | None:
    """A non-negative integer as the decimal text the device signed, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value < 10**_MAX_DECIMAL_DIGITS else None
    if isinstance(value, str) and 1 <= len(value) <= _MAX_DECIMAL_DIGITS and value.isdigit():
        return value if value.isascii() else None
    return None


def _proof(item: dict[str, Any]) -> BindProof | None:
    signature = item.get("signature")
    random = _decimal(item.get("random"))
    timestamp = _decimal(item.get("timestamp"))
    method = item.get("signmethod", "hmacsha1")
    authtype = item.get("authtype", "psk")
    if (
        not isinstance(signature, str)
        or not 1 <= len(signature) <= MAX_SIGNATURE_LEN
        or random is None
        or timestamp is None
        or not isinstance(method, str)
        or not isinstance(authtype, str)
    ):
        return None
    return BindProof(signature, random, timestamp, method[:32], authtype[:32])


def _entry(item: object, with_proof: bool) -> DeviceEntry:
    if not isinstance(item, dict):
        return DeviceEntry("", "", BAD_PARAMS)
    pid, dn = _identity(item.get("product_id")), _identity(item.get("device_name"))
    if pid is None or dn is None:
        return DeviceEntry(pid or "", dn or "", BAD_PARAMS)
    if not with_proof:
        return DeviceEntry(pid, dn)
    proof = _proof(item)
    if proof is None:
        return DeviceEntry(pid, dn, BAD_PARAMS)
    return DeviceEntry(pid, dn, OK, proof)


def parse_operation(payload: bytes) -> GatewayOp:
    """Parse what a gateway published on ``$gateway/operation/{P}/{D}``."""
    try:
        doc = loads_strict(payload)
    except BadJson as exc:
        raise GatewayOpError(f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise GatewayOpError("payload is not a JSON object")
    op_type = doc.get("type")
    if not isinstance(op_type, str) or not op_type:
        raise GatewayOpError("type must be a non-empty string")
    op_type = op_type[:32]
    if op_type == CHANGE:
        result = doc.get("result")
        if isinstance(result, bool) or not isinstance(result, int):
            raise GatewayOpError("change answer without an integer result", CHANGE)
        return GatewayOp(CHANGE, (), result)
    if op_type not in REQUEST_TYPES:
        raise GatewayOpError(f"unknown type {op_type!r}", op_type)
    if op_type == DESCRIBE:
        return GatewayOp(DESCRIBE)
    body = doc.get("payload")
    devices = body.get("devices") if isinstance(body, dict) else None
    if not isinstance(devices, list) or not devices:
        raise GatewayOpError("payload.devices must be a non-empty array", op_type)
    if len(devices) > MAX_DEVICES:
        raise GatewayOpError(f"more than {MAX_DEVICES} devices in one message", op_type)
    return GatewayOp(op_type, tuple(_entry(item, op_type == BIND) for item in devices))


# -- the bind signature ---------------------------------------------------------------------


def bind_sign_text(
    product_id: str, device_name: str, random: str | int, timestamp: str | int
) -> str:
    return f"{product_id}{device_name};{random};{timestamp}"


def sign_bind(
    secret_b64: str,
    product_id: str,
    device_name: str,
    random: str | int,
    timestamp: str | int,
    method: str = "hmacsha1",
) -> str:
    """The ``signature`` a gateway sends for a sub-device (the SDKs' exact computation)."""
    if method not in _DIGESTS:
        raise ValueError(f"signmethod must be one of {', '.join(_DIGESTS)}")
    text = bind_sign_text(product_id, device_name, random, timestamp)
    mac = hmac.new(secret_b64.encode("utf-8"), text.encode("utf-8"), _DIGESTS[method])
    return base64.b64encode(mac.digest()).decode("ascii")


def check_bind(
    entry: DeviceEntry, secret_b64: str, now_s: int, window_s: int = BIND_WINDOW_S
) -> int:
    """The result code of a bind proof against the sub-device's secret: 804 for an
    unsupported method/auth type, 803 for a signature that does not verify, 805 when it is
    older (or newer) than ``window_s``, else 0.  The age is checked only after the
    signature, so a guess never learns anything from it."""
    proof = entry.proof
    if proof is None:
        return BAD_PARAMS
    method = proof.signmethod.lower()
    if method not in _DIGESTS or proof.authtype.lower() not in _AUTH_TYPES:
        return UNSUPPORTED_SIGN_METHOD
    try:
        given = base64.b64decode(proof.signature, validate=True)
    except (binascii.Error, ValueError):
        given = b""
    text = bind_sign_text(entry.product_id, entry.device_name, proof.random, proof.timestamp)
    expected = hmac.new(secret_b64.encode("utf-8"), text.encode("utf-8"), _DIGESTS[method])
    if not hmac.compare_digest(expected.digest(), given):
        return SIGNATURE_FAILED
    if abs(now_s - proof.timestamp_s) > window_s:
        return SIGNATURE_EXPIRED
    return OK


# -- building answers -----------------------------------------------------------------------


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def result_reply(op_type: str, results: Iterable[tuple[str, str, int]]) -> bytes:
    """``{"type", "payload": {"devices": [{"product_id","device_name","result"}]}}``."""
    devices = [{"product_id": p, "device_name": d, "result": code} for p, d, code in results]
    return _encode({"type": op_type, "payload": {"devices": devices}})


def error_reply(op_type: str, code: int = BAD_PARAMS) -> bytes:
    """The answer to a message that could not be read (ivcloud's: Tencent's is not public):
    the claimed type, a top-level ``result`` and an empty device list (so a gateway that
    indexes ``payload.devices`` still finds the key)."""
    return _encode({"type": op_type, "result": code, "payload": {"devices": []}})


def describe_reply(devices: Iterable[tuple[str, str]]) -> bytes:
    return _encode(
        {
            "type": DESCRIBE,
            "payload": {"devices": [{"product_id": p, "device_name": d} for p, d in devices]},
        }
    )


def change_message(bound: bool, devices: Iterable[tuple[str, str]]) -> bytes:
    """Cloud-initiated topology change: ``status`` 1 bound, 0 unbound."""
    return _encode(
        {
            "type": CHANGE,
            "payload": {
                "status": 1 if bound else 0,
                "devices": [{"product_id": p, "device_name": d} for p, d in devices],
            },
        }
    )

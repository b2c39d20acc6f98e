"""Events published on the bus.  Plain frozen dataclasses so they are cheap to create on the
report hot path and trivially serialisable for an out-of-process bus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DeviceOnline:
    product_id: str
    device_name: str
    online: bool
    ts_ms: int
    topic: str = field(default="device.online", init=False)


@dataclass(frozen=True, slots=True)
class DeviceReported:
    product_id: str
    device_name: str
    params: dict[str, Any]
    ts_ms: int
    #: The report's clientToken and the device's message as it arrived (optional: the App
    #: push forwards ``payload`` verbatim when present, else rebuilds the report from the
    #: fields above).
    client_token: str = ""
    payload: bytes = b""
    topic: str = field(default="device.reported", init=False)


@dataclass(frozen=True, slots=True)
class DeviceEventPosted:
    product_id: str
    device_name: str
    event_id: str
    event_type: str
    params: dict[str, Any]
    ts_ms: int
    #: The event_post's clientToken (optional; echoed in the App push payload).
    client_token: str = ""
    topic: str = field(default="device.event", init=False)


@dataclass(frozen=True, slots=True)
class ControlRequested:
    product_id: str
    device_name: str
    client_token: str
    params: dict[str, Any]
    topic: str = field(default="device.control", init=False)


@dataclass(frozen=True, slots=True)
class ControlReplied:
    product_id: str
    device_name: str
    client_token: str
    code: int
    topic: str = field(default="device.control_reply", init=False)


@dataclass(frozen=True, slots=True)
class BindTokenReceived:
    product_id: str
    device_name: str
    token: str
    topic: str = field(default="device.bind_token", init=False)


@dataclass(frozen=True, slots=True)
class OtaProgress:
    product_id: str
    device_name: str
    version: str
    state: str
    percent: int
    result_code: int
    topic: str = field(default="device.ota", init=False)


@dataclass(frozen=True, slots=True)
class DeviceBindingChanged:
    """A device was placed into (``bound``) or removed from a family."""

    product_id: str
    device_name: str
    bound: bool
    family_id: str
    ts_ms: int
    topic: str = field(default="device.binding", init=False)


@dataclass(frozen=True, slots=True)
class EntityRemoved:
    """A device, product or app was deleted.  The database cascades the deletion into rows
    that caches elsewhere hold (a product's devices, a device's family placement and
    shares), so those caches listen for this."""

    kind: str  # "device" | "product" | "app"
    key: str  # client id (ProductId + DeviceName), ProductId or AppId
    topic: str = field(default="entity.removed", init=False)


BusEvent = (
    DeviceOnline
    | DeviceReported
    | DeviceEventPosted
    | ControlRequested
    | ControlReplied
    | BindTokenReceived
    | OtaProgress
    | DeviceBindingChanged
    | EntityRemoved
)


"""Value types, result codes and callback shapes shared by the device SDK modules.

Kept apart from :mod:`ivcloud.device.sdk` so the OTA agent and the simulators can import them
without importing the connection machinery (and without import cycles)."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from ivcloud.protocol.credentials import Algorithm

__all__ = [
    "ERR_FAIL",
    "ERR_TIMEOUT",
    "OFFLINE_GIVE_UP",
    "OFFLINE_RECONNECTING",
    "OK",
    "Algorithm",
    "BrokerAddress",
    "DeviceInfo",
    "Transport",
    "backoff_delay",
    "maybe_await",
]

T = TypeVar("T")
_RNG = random.Random()

#: ``report_reply``/``event_reply``/… code for success; other server codes (406, 404, 500)
#: are passed through unchanged.
OK = 0
#: Generic device-side failure (what the C SDK puts in a failed ``control_reply``).
ERR_FAIL = -1
#: No reply within the command timeout (``iv_dm_property_report``'s ``-2``).
ERR_TIMEOUT = -2

#: ``on_offline`` status: the link dropped and the SDK is reconnecting.
OFFLINE_RECONNECTING = 0
#: ``on_offline`` status: :meth:`IvDevice.stop` was called; no reconnect will follow.
OFFLINE_GIVE_UP = 1

Transport = Literal["tcp", "websockets"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device's identity (``iv_sys_init``'s ``device_info``).

    The secret is excluded from ``repr`` so that logging a ``DeviceInfo`` — which integrators
    will do — never leaks the key that signs every MQTT password."""

    product_id: str
    device_name: str
    device_secret: str = field(repr=False)

    @property
    def client_id(self) -> str:
        return self.product_id + self.device_name


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where to connect: TCP host/port, or a ``ws://``/``wss://`` URL for MQTT over WebSocket."""

    host: str
    port: int
    transport: Transport = "tcp"
    ws_path: str = "/mqtt"
    tls: bool = False

    @classmethod
    def from_ws_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
        tls = parts.scheme == "wss"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, "websockets", parts.path or "/mqtt", tls)


def backoff_delay(
    attempt: int, *, first: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): ``first`` doubling up to ``cap``,
    stretched by up to 25 % of random jitter so a fleet that lost the broker together does not
    come back in lock-step (the thundering herd the PY/C SDKs' jitter exists to avoid)."""
    base = min(cap, first * 2.0 ** min(attempt, 32))
    jitter = (rng or _RNG).uniform(1.0, 1.25)
    return min(cap, base * jitter)


def reraise_lost_cancel() -> None:
    """Re-raise a cancellation that Python 3.11's ``asyncio.wait_for`` dropped because the
    awaited result arrived in the same loop iteration (CPython gh-86296, fixed in 3.12).
    Without this, ``IvDevice.stop()`` could wait out a whole command timeout: aiomqtt's
    publish completes exactly when the link's reader is being torn down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def maybe_await(value: Awaitable[T] | T) -> T:
    """Callbacks may be plain functions or coroutines; integrators porting C callbacks
    usually write plain functions, asyncio code usually writes coroutines."""
    if inspect.isawaitable(value):
        return await value
    return value


OnlineCallback = Callable[[int], Awaitable[None] | None]
OfflineCallback = Callable[[int], Awaitable[None] | None]
ControlCallback = Callable[[dict[str, Any]], Awaitable[int] | int]
ActionCallback = Callable[
    [str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]] | tuple[int, dict[str, Any]]
]

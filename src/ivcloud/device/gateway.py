"""Gateway devices for ivcloud's device SDK (device-protocol spec §6.2).

A gateway (a hub with Zigbee/BLE/RS-485 devices behind it) connects once and speaks for its
sub-devices over ``$gateway/operation/{P}/{D}``: ``bind`` (with a signature the sub-device's
secret makes — often computed by the sub-device itself, so the gateway never holds the
secret), ``online``/``offline``, ``unbind``, ``describe_sub_devices``.  After ``online`` the
sub-device's own ``$thing`` topics travel over the gateway's connection; :class:`SubDevice` is
that proxy — ``property_report``/``property_sync``/``event_report`` and the control/action
callbacks, like :class:`~ivcloud.device.sdk.IvDevice`'s own.

Usage::

    device = IvDevice(); await device.sys_init(gateway_info, host=..., port=...)
    gw = GatewayClient(device, on_change=...)
    await gw.bind(sub_pid, sub_dn, sub_secret)          # 0, or the spec's result code
    sensor = gw.sub_device(sub_pid, sub_dn)
    sensor.dm_init(model, on_control=...)
    await gw.online(sub_pid, sub_dn)                    # subscribes the sub-device's topics
    await sensor.property_report({"temperature": 21.5})

Replies on ``$gateway/operation/result`` carry no token, so one operation is in flight at a
time (as in Tencent's SDKs) and a reply is matched by its ``type`` and device.  After a
reconnect the cloud has forgotten which sub-devices were online: every sub-device that was
online is brought online again before the app's ``on_online`` runs.  A cloud ``change``
(the app bound/unbound a sub-device) is acknowledged with ``{"type":"change","result":0}``
and handed to ``on_change(bound, [(product_id, device_name), …])``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from ivcloud.device.dm import DataModel
from ivcloud.device.rpc import reply_code
from ivcloud.device.sdk import IvDevice, NotInitialised
from ivcloud.device.types import (
    ERR_FAIL,
    ERR_TIMEOUT,
    OK,
    ActionCallback,
    ControlCallback,
    maybe_await,
)
from ivcloud.protocol import gateway_ops as ops
from ivcloud.protocol.thingmodel import ThingModel

log = structlog.get_logger("ivcloud.device")

ChangeCallback = Callable[[bool, list[tuple[str, str]]], Any]
_SUB_DOWN: Final = ("property", "event", "action", "service")


class SubDevice:
    """A sub-device whose ``$thing`` traffic goes through its gateway's connection."""

    def __init__(self, device: IvDevice, product_id: str, device_name: str) -> None:
        self.product_id = product_id
        self.device_name = device_name
        #: Whether the cloud has it online through this gateway (set by ``GatewayClient``).
        self.online = False
        self._device = device
        self._dm = DataModel(device.publish)
        self._dm.property_topic = self._topic("up", "property")
        self._dm.action_topic = self._topic("up", "action")

    def _topic(self, direction: str, channel: str) -> str:
        return f"$thing/{direction}/{channel}/{self.product_id}/{self.device_name}"

    def dm_init(
        self,
        model: ThingModel | None = None,
        *,
        on_control: ControlCallback | None = None,
        on_action: ActionCallback | None = None,
    ) -> None:
        """As ``IvDevice.dm_init``: controls are validated against ``model`` (``rw`` only)."""
        self._dm.model = model
        self._dm.on_control, self._dm.on_action = on_control, on_action

    async def property_report(
        self, params: dict[str, Any], *, timestamp_ms: int | None = None
    ) -> int:
        """``report``; the ``report_reply`` code (0, 406 …) or -2 without a reply."""
        doc: dict[str, Any] = {"method": "report", "params": params}
        if timestamp_ms is not None:
            doc["timestamp"] = timestamp_ms
        return reply_code(await self._device.request(self._topic("up", "property"), doc))

    async def property_sync(self) -> dict[str, Any] | None:
        """``get_status``: pending controls go to the control callback, then
        ``clear_control``.  ``data`` of the reply, or None."""
        topic = self._topic("up", "property")
        reply = await self._device.request(topic, {"method": "get_status"})
        if reply is None or reply_code(reply) != OK:
            return None
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        control = data.get("control")
        if isinstance(control, dict) and control:
            await self._dm.apply_control(control)
            await self._device.request(topic, {"method": "clear_control"})
        return data

    async def event_report(
        self,
        event_id: str,
        type: str = "info",
        params: dict[str, Any] | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> int:
        ts = timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000
        doc = {
            "method": "event_post",
            "version": "1.0",
            "eventId": event_id,
            "type": type,
            "timestamp": ts,
            "params": params or {},
        }
        return reply_code(await self._device.request(self._topic("up", "event"), doc))

    def submit(self, doc: dict[str, Any]) -> None:
        """A ``control``/``action`` for this sub-device (called by the reader)."""
        self._dm.start()
        self._dm.submit(doc)

    async def close(self) -> None:
        await self._dm.stop()


class GatewayClient:
    """The gateway half of spec §6.2 on an :class:`IvDevice` (after ``sys_init``)."""

    def __init__(
        self,
        device: IvDevice,
        *,
        on_change: ChangeCallback | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if device.info is None:
            raise NotInitialised("sys_init first")
        self.device = device
        self.on_change = on_change
        self._timeout = timeout_s
        info = device.info
        self._up = ops.up_topic(info.product_id, info.device_name)
        self._down = ops.down_topic(info.product_id, info.device_name)
        self._subs: dict[str, SubDevice] = {}
        self._waiting: tuple[str, str, asyncio.Future[dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._subscribed = False
        self._background: set[asyncio.Task[Any]] = set()
        device.add_extension(self)
        if device.online:  # else on_session_start does it
            self._spawn(self._subscribe_results())

    def sub_device(self, product_id: str, device_name: str) -> SubDevice:
        """The proxy of a sub-device (one per sub-device)."""
        key = product_id + device_name
        sub = self._subs.get(key)
        if sub is None:
            sub = self._subs[key] = SubDevice(self.device, product_id, device_name)
        return sub

    # -- operations -----------------------------------------------------------------------

    async def bind(
        self, product_id: str, device_name: str, device_secret: str, *, method: str = "hmacsha1"
    ) -> int:
        """Bind a sub-device with a signature made from its secret (as the SDKs do)."""
        nonce, ts = secrets.randbelow(2**31 - 1), int(time.time())
        entry = {
            "product_id": product_id,
            "device_name": device_name,
            "signature": ops.sign_bind(device_secret, product_id, device_name, nonce, ts, method),
            "random": nonce,
            "timestamp": ts,
            "signmethod": method,
            "authtype": "psk",
        }
        return await self._device_op(ops.BIND, entry)

    async def unbind(self, product_id: str, device_name: str) -> int:
        code = await self._device_op(ops.UNBIND, _ref(product_id, device_name))
        if code == OK:
            self._went_offline(product_id + device_name)
        return code

    async def online(self, product_id: str, device_name: str) -> int:
        """``online``, then subscribe the sub-device's ``$thing/down`` topics."""
        code = await self._device_op(ops.ONLINE, _ref(product_id, device_name))
        if code != OK:
            return code
        sub = self.sub_device(product_id, device_name)
        for channel in _SUB_DOWN:
            if not await self.device.subscribe(sub._topic("down", channel)):
                return ERR_FAIL
        sub.online = True
        return OK

    async def offline(self, product_id: str, device_name: str) -> int:
        code = await self._device_op(ops.OFFLINE, _ref(product_id, device_name))
        if code == OK:
            self._went_offline(product_id + device_name)
        return code

    async def describe(self) -> list[tuple[str, str]] | None:
        """The sub-devices bound to this gateway, or None without an answer."""
        reply = await self._request(ops.DESCRIBE, "", {"type": ops.DESCRIBE})
        if reply is None:
            return None
        return [(p, d) for p, d, _ in _devices(reply)]

    async def close(self) -> None:
        for sub in self._subs.values():
            await sub.close()
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _went_offline(self, client_id: str) -> None:
        sub = self._subs.get(client_id)
        if sub is not None:
            sub.online = False

    async def _device_op(self, op_type: str, entry: dict[str, Any]) -> int:
        cid = entry["product_id"] + entry["device_name"]
        reply = await self._request(
            op_type, cid, {"type": op_type, "payload": {"devices": [entry]}}
        )
        if reply is None:
            return ERR_TIMEOUT
        for p, d, code in _devices(reply):
            if p + d == cid and isinstance(code, int):
                return code
        top = reply.get("result")  # a message the cloud could not read at all
        return top if isinstance(top, int) and not isinstance(top, bool) else ERR_FAIL

    async def _request(self, op_type: str, cid: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        async with self._lock:
            if not self._subscribed:
                self._subscribed = await self.device.subscribe(self._down)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiting = (op_type, cid, fut)
            try:
                if not await self.device.publish(self._up, doc):
                    return None
                return await asyncio.wait_for(fut, self._timeout)
            except TimeoutError:
                return None
            finally:
                self._waiting = None

    # -- DeviceExtension ------------------------------------------------------------------

    def on_message(self, topic: str, doc: dict[str, Any]) -> bool:
        if topic == self._down:
            self._on_result(doc)
            return True
        parts = topic.split("/")
        if len(parts) == 5 and parts[0] == "$thing" and parts[1] == "down":
            sub = self._subs.get(parts[3] + parts[4])
            if sub is not None and doc.get("method") in ("control", "action"):
                sub.submit(doc)
                return True
        return False  # sub-device replies resolve by clientToken in the device itself

    async def on_session_start(self) -> None:
        """The new connection has neither our subscriptions nor the cloud's routes."""
        self._subscribed = False
        await self._subscribe_results()
        for sub in list(self._subs.values()):
            if sub.online:
                sub.online = False
                code = await self.online(sub.product_id, sub.device_name)
                if code != OK:
                    log.info("subdevice_reonline_failed", sub=sub.product_id + sub.device_name)

    async def _subscribe_results(self) -> None:
        """Listen on ``$gateway/operation/result`` (answers and cloud ``change``s)."""
        async with self._lock:
            if not self._subscribed:
                self._subscribed = await self.device.subscribe(self._down)

    def _on_result(self, doc: dict[str, Any]) -> None:
        op_type = doc.get("type")
        if op_type == ops.CHANGE:
            self._spawn(self._change(doc))
            return
        waiting = self._waiting
        if waiting is None or waiting[0] != op_type or waiting[2].done():
            return
        devices = _devices(doc)
        if op_type != ops.DESCRIBE and devices and devices[0][0] + devices[0][1] != waiting[1]:
            return  # a late answer to an earlier request
        waiting[2].set_result(doc)

    async def _change(self, doc: dict[str, Any]) -> None:
        payload = doc.get("payload")
        bound = isinstance(payload, dict) and payload.get("status") == 1
        devices = [(p, d) for p, d, _ in _devices(doc)]
        await self.device.publish(self._up, {"type": ops.CHANGE, "result": 0})
        if not bound:
            for p, d in devices:
                self._went_offline(p + d)
        if self.on_change is not None:
            try:
                await maybe_await(self.on_change(bound, devices))
            except Exception:
                log.exception("gateway_change_callback_failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _ref(product_id: str, device_name: str) -> dict[str, Any]:
    return {"product_id": product_id, "device_name": device_name}


def _devices(doc: dict[str, Any]) -> list[tuple[str, str, object]]:
    """``(product_id, device_name, result)`` of ``payload.devices`` (malformed items skipped)."""
    payload = doc.get("payload")
    items = payload.get("devices") if isinstance(payload, dict) else None
    out: list[tuple[str, str, object]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            p, d = item.get("product_id"), item.get("device_name")
            if isinstance(p, str) and isinstance(d, str):
                out.append((p, d, item.get("result")))
    return out

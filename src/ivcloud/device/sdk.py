"""``IvDevice``: the asyncio device SDK, shaped like the IoT Video device API.

The C SDK's modules map onto methods (see ``docs/device-sdk.md``): ``sys_init`` ≈
``iv_sys_init``, ``dm_init`` ≈ ``iv_dm_init``, ``property_report`` ≈
``iv_dm_property_report``, ``send_bind_info`` ≈ ``iv_ad_send_bind_info``, ``ota_init`` ≈
``iv_ota_init``. Underneath everything is the public ``$thing``/``$ota``/``$sys`` protocol of
device-protocol.md §2–§6.

Control and action callbacks run in one worker task, in arrival order, never in the MQTT
reader: a callback that reports a property awaits a ``report_reply`` the reader must deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import ssl
import time
from pathlib import Path
from typing import Any

import structlog

from ivcloud.device.link import MqttLink
from ivcloud.device.ota import FirmwareUpdate, InstallCallback, OtaAgent, UpdateCallback
from ivcloud.device.types import (
    ERR_FAIL,
    ERR_TIMEOUT,
    OFFLINE_GIVE_UP,
    OFFLINE_RECONNECTING,
    OK,
    ActionCallback,
    Algorithm,
    BrokerAddress,
    ControlCallback,
    DeviceInfo,
    OfflineCallback,
    OnlineCallback,
    maybe_await,
)
from ivcloud.protocol.errors import ValidationFailed
from ivcloud.protocol.thingmodel import ThingModel

log = structlog.get_logger("ivcloud.device")

# (topic channel, QoS) of the down topics a device subscribes to (spec §2, §3.6).
_DOWN = (
    ("$thing/down/property", 0),
    ("$thing/down/event", 0),
    ("$thing/down/action", 0),
    ("$thing/down/service", 0),
    ("$ota/update", 1),
    ("$sys/operation/result", 0),
)


class NotInitialised(RuntimeError):
    """A call that needs ``sys_init`` (or ``dm_init``) first, as in the C SDK."""


class IvDevice:
    """One device connection. Create, ``await sys_init(...)``, ``dm_init(...)``, then use."""

    def __init__(self) -> None:
        self.info: DeviceInfo | None = None
        self.model: ThingModel | None = None
        self._link: MqttLink | None = None
        self._on_online: OnlineCallback | None = None
        self._on_offline: OfflineCallback | None = None
        self._on_control: ControlCallback | None = None
        self._on_action: ActionCallback | None = None
        self._sync_on_connect = True
        self._timeout = 5.0
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tokens = itertools.count(secrets.randbelow(1 << 20))
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._time_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.ota: OtaAgent | None = None
        self.online_time_ms: int | None = None

    # -- iv_sys ---------------------------------------------------------------------------

    async def sys_init(
        self,
        info: DeviceInfo,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        ws_url: str | None = None,
        keepalive: int = 240,
        on_online: OnlineCallback | None = None,
        on_offline: OfflineCallback | None = None,
        algorithm: Algorithm = "hmacsha256",
        command_timeout: float = 5.0,
        reconnect_first: float = 1.0,
        reconnect_cap: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
        wait_online: float | None = None,
    ) -> bool:
        """Start connecting (and keep reconnecting). ``ws_url`` (``ws://host:port/mqtt``)
        selects MQTT over WebSocket. ``on_online(cloud_time_ms)`` runs after each connect
        once the session start-up (OTA version report, property sync) is done;
        ``on_offline(status)`` gets 0 while reconnecting, 1 after :meth:`stop`.
        With ``wait_online`` seconds, returns whether the first connect succeeded in time."""
        if self._link is not None:
            raise RuntimeError("sys_init was already called")
        self.info = info
        self._on_online, self._on_offline = on_online, on_offline
        self._timeout = command_timeout
        address = BrokerAddress.from_ws_url(ws_url) if ws_url else BrokerAddress(host, port)
        p, d = info.product_id, info.device_name
        self._link = MqttLink(
            info,
            address,
            [(f"{prefix}/{p}/{d}", qos) for prefix, qos in _DOWN],
            self._on_message,
            on_connected=self._session_start,
            on_disconnected=self._session_end,
            keepalive=keepalive,
            algorithm=algorithm,
            command_timeout=max(command_timeout, 5.0),
            reconnect_first=reconnect_first,
            reconnect_cap=reconnect_cap,
            tls_context=tls_context,
        )
        self._worker = asyncio.create_task(self._work(), name=f"dm-{info.client_id}")
        self._link.start()
        if wait_online is None:
            return False
        return await self._link.wait_connected(wait_online)

    @property
    def online(self) -> bool:
        return self._link is not None and self._link.connected

    async def wait_online(self, timeout_s: float | None = None) -> bool:
        return self._link is not None and await self._link.wait_connected(timeout_s)

    async def stop(self) -> None:
        """Disconnect, stop reconnecting, cancel background work (``iv_sys_exit``)."""
        if self.ota is not None:
            await self.ota.close()
        if self._link is not None:
            await self._link.stop()
        tasks = [t for t in (self._worker, *self._background) if t is not None]
        self._worker = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fut in self._waiters.values():
            fut.cancel()
        self._waiters.clear()

    async def get_time(self, timeout_s: float | None = None) -> int | None:
        """Cloud time in ms via ``$sys/operation`` (``iv_sys_get_time``), corrected for half
        the round trip as the C SDK does; ``None`` if the cloud did not answer."""
        info = self._need_info()
        async with self._time_lock:
            t_send = time.time_ns() // 1_000_000
            doc = await self._request(
                f"$sys/operation/{info.product_id}/{info.device_name}",
                {"type": "get", "resource": ["time"]},
                "$sys:time",
                timeout_s,
            )
        t_recv = time.time_ns() // 1_000_000
        if doc is None:
            return None
        n1, n2 = doc.get("ntptime1"), doc.get("ntptime2")
        if isinstance(n1, int) and isinstance(n2, int):
            return (n1 + n2 + t_recv - t_send) // 2
        seconds = doc.get("time")
        return seconds * 1000 if isinstance(seconds, int) else None

    # -- iv_dm ----------------------------------------------------------------------------

    def dm_init(
        self,
        model: ThingModel | None = None,
        *,
        on_control: ControlCallback | None = None,
        on_action: ActionCallback | None = None,
        sync_on_connect: bool = True,
    ) -> None:
        """Register the thing model and the writable-property / action callbacks.
        ``on_control(params) -> code`` gets only validated ``rw`` params; ``on_action(id,
        params) -> (code, response)``. With ``sync_on_connect`` every (re)connect runs
        :meth:`property_sync`, so controls queued while offline are not missed."""
        self.model = model
        self._on_control, self._on_action = on_control, on_action
        self._sync_on_connect = sync_on_connect

    async def property_report(
        self,
        params: dict[str, Any],
        *,
        timestamp_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Send ``report``; the ``report_reply`` code (0 ok, 406 rejected), or -2 timeout."""
        doc: dict[str, Any] = {"method": "report", "params": params}
        if timestamp_ms is not None:
            doc["timestamp"] = timestamp_ms
        return self._code(await self._thing("property", doc, timeout_s))

    async def property_sync(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """``get_status``: apply ``data.control`` through the control callback, then
        ``clear_control`` (``iv_dm_property_sync``). Returns ``data`` or ``None`` on timeout."""
        reply = await self._thing("property", {"method": "get_status"}, timeout_s)
        if reply is None or reply.get("code", OK) != OK:
            return None
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        control = data.get("control")
        if isinstance(control, dict) and control:
            await self._apply_control(control)
            await self._thing("property", {"method": "clear_control"}, timeout_s)
        return data

    async def event_report(
        self,
        event_id: str,
        type: str = "info",
        params: dict[str, Any] | None = None,
        *,
        timestamp_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """``event_post`` (``iv_dm_event_report``); the ``event_reply`` code or -2."""
        ts = timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000
        doc = {
            "method": "event_post",
            "version": "1.0",
            "eventId": event_id,
            "type": type,
            "timestamp": ts,
            "params": params or {},
        }
        return self._code(await self._thing("event", doc, timeout_s))

    async def report_info(
        self,
        *,
        fw_ver: str,
        module_hardinfo: str = "",
        module_softinfo: str = "",
        imei: str | None = None,
        mac: str | None = None,
        lat: str | None = None,
        lon: str | None = None,
        device_label: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """``report_info``: the system information shown in the console."""
        params: dict[str, Any] = {
            "module_hardinfo": module_hardinfo,
            "module_softinfo": module_softinfo,
            "fw_ver": fw_ver,
        }
        extra = {"imei": imei, "mac": mac, "lat": lat, "lon": lon, "device_label": device_label}
        params.update({k: v for k, v in extra.items() if v is not None})
        doc = {"method": "report_info", "params": params}
        return self._code(await self._thing("property", doc, timeout_s))

    # -- iv_ad ----------------------------------------------------------------------------

    async def send_bind_info(self, token: str, *, attempts: int = 3, interval: float = 3.0) -> int:
        """``app_bind_token`` until ``app_bind_token_reply`` (``iv_ad_send_bind_info``):
        up to ``attempts`` sends, ``interval`` s apart, as the C SDK does (a reply lost on a
        flaky Wi-Fi link must not leave the device unbound). The reply code, or -2."""
        doc = {"method": "app_bind_token", "params": {"token": token}}
        for _ in range(max(1, attempts)):
            reply = await self._thing("service", doc, interval)
            if reply is not None:
                return self._code(reply)
        return ERR_TIMEOUT

    # -- iv_ota ---------------------------------------------------------------------------

    def ota_init(
        self,
        version: str,
        *,
        on_install: InstallCallback,
        on_update: UpdateCallback | None = None,
        download_dir: Path | None = None,
    ) -> OtaAgent:
        """Enable OTA (``iv_ota_init``): the running ``version`` is reported on every
        connect; ``update_firmware`` downloads, verifies and hands the file to
        ``on_install(update, path) -> bool``. ``on_update(update) -> bool`` may refuse."""
        info = self._need_info()
        self.ota = OtaAgent(
            info,
            version,
            self._publish,
            on_install=on_install,
            on_update=on_update,
            download_dir=download_dir,
        )
        if self.online:  # otherwise the next session start reports it
            task = asyncio.create_task(self.ota.report_version())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return self.ota

    async def ota_update_progress(
        self, state: str, percent: int, result_code: int = 0, result_msg: str = ""
    ) -> bool:
        """Report OTA progress by hand (``iv_ota_update_progress``)."""
        if self.ota is None:
            raise NotInitialised("ota_init first")
        return await self.ota.report_progress(
            self.ota.target_version or self.ota.version, state, percent, result_code, result_msg
        )

    # -- internals: session start/end -----------------------------------------------------

    async def _session_start(self) -> None:
        cloud_ms = await self.get_time()
        self.online_time_ms = cloud_ms if cloud_ms is not None else time.time_ns() // 1_000_000
        if self.ota is not None:
            await self.ota.report_version()
        if self._sync_on_connect and self._on_control is not None:
            await self.property_sync()
        if self._on_online is not None:
            await maybe_await(self._on_online(self.online_time_ms))

    async def _session_end(self, final: bool) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        if self._on_offline is not None:
            status = OFFLINE_GIVE_UP if final else OFFLINE_RECONNECTING
            try:
                await maybe_await(self._on_offline(status))
            except Exception:
                log.exception("device_offline_callback_failed")

    # -- internals: request/reply ---------------------------------------------------------

    def _need_info(self) -> DeviceInfo:
        if self.info is None or self._link is None:
            raise NotInitialised("sys_init first")
        return self.info

    def _token(self) -> str:
        return f"{self._need_info().product_id}-{next(self._tokens)}"

    async def _publish(self, topic: str, doc: dict[str, Any], qos: int = 0) -> bool:
        link = self._link
        if link is None or not await link.wait_connected(self._timeout):
            return False
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return await link.publish(topic, payload, qos)

    async def _thing(
        self, channel: str, doc: dict[str, Any], timeout_s: float | None
    ) -> dict[str, Any] | None:
        info = self._need_info()
        token = self._token()
        topic = f"$thing/up/{channel}/{info.product_id}/{info.device_name}"
        return await self._request(topic, {**doc, "clientToken": token}, token, timeout_s)

    async def _request(
        self, topic: str, doc: dict[str, Any], key: str, timeout_s: float | None
    ) -> dict[str, Any] | None:
        wait = self._timeout if timeout_s is None else timeout_s
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        try:
            if not await self._publish(topic, doc):
                return None
            return await asyncio.wait_for(asyncio.shield(fut), wait)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not fut.cancelled():
                raise  # our caller was cancelled, not the reply future
            return None
        finally:
            self._waiters.pop(key, None)

    @staticmethod
    def _code(reply: dict[str, Any] | None) -> int:
        if reply is None:
            return ERR_TIMEOUT
        code = reply.get("code", OK)
        if isinstance(code, str) and code.lstrip("-").isdigit():
            return int(code)
        return code if isinstance(code, int) and not isinstance(code, bool) else ERR_FAIL

    def _resolve(self, key: str, doc: dict[str, Any]) -> None:
        fut = self._waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(doc)

    # -- internals: inbound ---------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.info("device_bad_payload", topic=topic)
            return
        if not isinstance(doc, dict):
            return
        if topic.startswith("$thing/down/"):
            method = doc.get("method")
            if method in ("control", "action"):
                self._inbox.put_nowait(doc)
            elif isinstance(method, str) and method.endswith("_reply"):
                self._resolve(str(doc.get("clientToken", "")), doc)
            else:
                log.info("device_unhandled_method", topic=topic, method=method)
        elif topic.startswith("$ota/update/"):
            if doc.get("type") == "update_firmware" and self.ota is not None:
                self.ota.on_update_message(doc)
            elif doc.get("type") == "report_version_rsp" and self.ota is not None:
                self.ota.on_version_reply(doc)
        elif topic.startswith("$sys/operation/result/"):
            self._resolve("$sys:time", doc)

    async def _work(self) -> None:
        while True:
            doc = await self._inbox.get()
            try:
                if doc.get("method") == "control":
                    await self._handle_control(doc)
                else:
                    await self._handle_action(doc)
            except Exception:
                log.exception("device_callback_failed", method=doc.get("method"))

    async def _apply_control(self, params: dict[str, Any]) -> int:
        if self._on_control is None:
            return ERR_FAIL
        if self.model is not None:
            try:
                params = self.model.validate_control(params)
            except ValidationFailed as exc:
                log.info("device_control_invalid", error=str(exc))
                return ERR_FAIL
        try:
            return int(await maybe_await(self._on_control(params)))
        except Exception:
            log.exception("device_control_callback_failed")
            return ERR_FAIL

    async def _handle_control(self, doc: dict[str, Any]) -> None:
        params = doc.get("params")
        code = await self._apply_control(params if isinstance(params, dict) else {})
        info = self._need_info()
        reply = {
            "method": "control_reply",
            "clientToken": doc.get("clientToken", ""),
            "code": code,
            "status": "success" if code == OK else "fail",
        }
        await self._publish(f"$thing/up/property/{info.product_id}/{info.device_name}", reply)

    async def _handle_action(self, doc: dict[str, Any]) -> None:
        action_id = str(doc.get("actionId", ""))
        params = doc.get("params")
        params = params if isinstance(params, dict) else {}
        code: int = ERR_FAIL
        response: dict[str, Any] = {}
        try:
            if self.model is not None:
                params = self.model.validate_action_input(action_id, params)
            if self._on_action is not None:
                code, response = await maybe_await(self._on_action(action_id, params))
        except ValidationFailed as exc:
            log.info("device_action_invalid", action=action_id, error=str(exc))
        except Exception:
            log.exception("device_action_callback_failed", action=action_id)
        info = self._need_info()
        reply = {
            "method": "action_reply",
            "clientToken": doc.get("clientToken", ""),
            "code": code,
            "status": "success" if code == OK else "fail",
            "response": response,
        }
        await self._publish(f"$thing/up/action/{info.product_id}/{info.device_name}", reply)


__all__ = [
    "ERR_FAIL",
    "ERR_TIMEOUT",
    "OK",
    "DeviceInfo",
    "FirmwareUpdate",
    "IvDevice",
    "NotInitialised",
]

"""``IvDevice``: the asyncio device SDK, shaped like the IoT Video device API.

The C SDK's modules map onto methods (see ``docs/device-sdk.md``): ``sys_init`` ≈
``iv_sys_init``, ``dm_init`` ≈ ``iv_dm_init``, ``property_report`` ≈
``iv_dm_property_report``, ``send_bind_info`` ≈ ``iv_ad_send_bind_info``, ``ota_init`` ≈
``iv_ota_init``. Underneath is the public ``$thing``/``$ota``/``$sys`` protocol of
device-protocol.md §2–§6: :mod:`~ivcloud.device.link` keeps the connection,
:mod:`~ivcloud.device.rpc` matches replies to requests, :mod:`~ivcloud.device.dm` runs the
control/action callbacks, :mod:`~ivcloud.device.ota` upgrades.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import structlog

from ivcloud.device.dm import DataModel
from ivcloud.device.link import MqttLink
from ivcloud.device.ota import FirmwareUpdate, InstallCallback, OtaAgent, UpdateCallback
from ivcloud.device.rpc import Requests, reply_code
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
    Transport,
    maybe_await,
)
from ivcloud.device.video_link import VideoHandler, VideoLink
from ivcloud.protocol.thingmodel import ThingModel

log = structlog.get_logger("ivcloud.device")

# (topic prefix, QoS) of the down topics a device subscribes to (spec §2, §3.6).
_DOWN = (
    ("$thing/down/property", 0),
    ("$thing/down/event", 0),
    ("$thing/down/action", 0),
    ("$thing/down/service", 0),
    ("$ota/update", 1),
    ("$sys/operation/result", 0),
    ("$video/down", 0),  # ivcloud extension: video signalling (device/video_link.py)
)
_TIME_KEY = "$sys:time"


class NotInitialised(RuntimeError):
    """A call that needs ``sys_init`` (or ``ota_init``) first, as in the C SDK."""


class DeviceExtension(Protocol):
    """A module riding on the device's connection (``device.gateway``): ``on_message`` sees
    each JSON message first (in the reader, must not block; True = taken);
    ``on_session_start`` runs after each (re)connect, before the app's ``on_online``."""

    def on_message(self, topic: str, doc: dict[str, Any]) -> bool: ...
    async def on_session_start(self) -> None: ...


class IvDevice:
    """One device. ``await sys_init(...)`` and ``dm_init(...)`` (either order), then use."""

    def __init__(self) -> None:
        self.info: DeviceInfo | None = None
        self.ota: OtaAgent | None = None
        #: Cloud time (ms) at the last connect, as passed to ``on_online``.
        self.online_time_ms: int | None = None
        self._link: MqttLink | None = None
        self._on_online: OnlineCallback | None = None
        self._on_offline: OfflineCallback | None = None
        self._rpc = Requests()
        self._dm = DataModel(self._rpc.publish)
        self._video = VideoLink(self._rpc.publish)
        self._time_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._extensions: list[DeviceExtension] = []

    @property
    def model(self) -> ThingModel | None:
        return self._dm.model

    # -- iv_sys ---------------------------------------------------------------------------

    async def sys_init(
        self,
        info: DeviceInfo,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        ws_url: str | None = None,
        transport: Transport = "tcp",
        ws_path: str = "/mqtt",
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
        """Start connecting and keep reconnecting (back-off ``reconnect_first`` doubling to
        ``reconnect_cap`` s). ``transport="websockets"`` (path ``ws_path``) or a ``ws_url``
        (``ws://host:port/mqtt``) selects MQTT over WebSocket; a ``tls_context``, TLS.
        ``on_online(cloud_time_ms)`` runs after each connect, once session start-up (OTA
        version report, property sync) is done; ``on_offline(status)`` gets 0 while
        reconnecting, 1 after :meth:`stop`. With ``wait_online`` s, returns whether the first
        connect succeeded in time (without, ``False`` at once)."""
        if self._link is not None:
            raise RuntimeError("sys_init was already called")
        self.info = info
        self._on_online, self._on_offline = on_online, on_offline
        p, d = info.product_id, info.device_name
        self._rpc.prefix, self._rpc.timeout = p, command_timeout
        self._dm.property_topic = f"$thing/up/property/{p}/{d}"
        self._dm.action_topic = f"$thing/up/action/{p}/{d}"
        self._video.up_topic = f"$video/up/{p}/{d}"
        if ws_url:
            address = BrokerAddress.from_ws_url(ws_url)
        else:
            address = BrokerAddress(host, port, transport, ws_path, tls=tls_context is not None)
        self._link = self._rpc.link = MqttLink(
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
        self._dm.start()
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
        """Disconnect cleanly, stop reconnecting, cancel background work (``iv_sys_exit``)."""
        if self.ota is not None:
            await self.ota.close()
        if self._link is not None:
            await self._link.stop()
        await self._dm.stop()
        await self._video.stop()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rpc.cancel_all()

    async def get_time(self, timeout_s: float | None = None) -> int | None:
        """Cloud time in ms via ``$sys/operation`` (``iv_sys_get_time``), corrected by half
        the round trip as the C SDK does; ``None`` if the cloud did not answer. Serialised:
        the reply carries no token to tell two concurrent answers apart."""
        info = self._need_info()
        async with self._time_lock:
            t_send = time.time_ns() // 1_000_000
            doc = await self._rpc.request(
                f"$sys/operation/{info.product_id}/{info.device_name}",
                {"type": "get", "resource": ["time"]},
                _TIME_KEY,
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
        :meth:`property_sync`, so controls queued while offline are not missed (called while
        already online, it syncs once at once for the same reason)."""
        self._dm.model = model
        self._dm.on_control, self._dm.on_action = on_control, on_action
        self._dm.sync_on_connect = sync_on_connect
        if sync_on_connect and on_control is not None and self.online:
            self._spawn(self.property_sync())

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
        return reply_code(await self._thing("property", doc, timeout_s))

    async def property_sync(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """``get_status``: apply ``data.control`` through the control callback, then
        ``clear_control`` (``iv_dm_property_sync``). Returns ``data`` (``reported`` and
        ``control``) or ``None`` on timeout/error."""
        reply = await self._thing("property", {"method": "get_status"}, timeout_s)
        if reply is None or reply_code(reply) != OK:
            return None
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        control = data.get("control")
        if isinstance(control, dict) and control:
            await self._dm.apply_control(control)
            # Cleared whatever the callback said, as the C SDK does: a control the device
            # refuses would otherwise come back on every connect forever.
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
        return reply_code(await self._thing("event", doc, timeout_s))

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
        return reply_code(await self._thing("property", doc, timeout_s))

    def on_video(self, method: str, handler: VideoHandler | None) -> None:
        """Handle a ``$video`` signalling method from the cloud (e.g. ``stream_push_start``,
        see :class:`ivcloud.device.av.pusher.PushManager`); ``None`` removes it."""
        self._video.on(method, handler)

    # -- iv_ad ----------------------------------------------------------------------------

    async def send_bind_info(self, token: str, *, attempts: int = 3, interval: float = 3.0) -> int:
        """``app_bind_token`` until ``app_bind_token_reply`` (``iv_ad_send_bind_info``):
        up to ``attempts`` sends, ``interval`` s apart, as the C SDK does (a reply lost on a
        flaky Wi-Fi link must not leave the device unbound). The reply code, or -2."""
        doc = {"method": "app_bind_token", "params": {"token": token}}
        for _ in range(max(1, attempts)):
            reply = await self._thing("service", doc, interval)
            if reply is not None:
                return reply_code(reply)
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
            self._rpc.publish,
            on_install=on_install,
            on_update=on_update,
            download_dir=download_dir,
        )
        if self.online:  # otherwise the next session start reports it
            self._spawn(self.ota.report_version())
        return self.ota

    async def ota_update_progress(
        self, state: str, percent: int, result_code: int = 0, result_msg: str = ""
    ) -> bool:
        """Report OTA progress by hand (``iv_ota_update_progress``)."""
        if self.ota is None:
            raise NotInitialised("ota_init first")
        version = self.ota.target_version or self.ota.version
        return await self.ota.report_progress(version, state, percent, result_code, result_msg)

    # -- extensions -----------------------------------------------------------------------

    def add_extension(self, extension: DeviceExtension) -> None:
        self._extensions.append(extension)

    async def publish(self, topic: str, doc: dict[str, Any], qos: int = 0) -> bool:
        """Send a JSON message on any topic (waits for the link up to the command timeout)."""
        return await self._rpc.publish(topic, doc, qos)

    async def request(self, topic: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Send with a fresh ``clientToken``; the ``$thing/down`` reply echoing it, or None."""
        return await self._rpc.thing(topic, doc)

    async def subscribe(self, topic: str, qos: int = 0) -> bool:
        """Subscribe on the current connection (gone after a reconnect: re-subscribe
        from ``on_session_start``); whether the broker granted it."""
        client = None if self._link is None else self._link._client
        if client is None:
            return False
        try:
            result = await client.subscribe(topic, qos=qos, timeout=self._rpc.timeout)
        except aiomqtt.MqttError:
            return False
        first = result[0] if result else 0x80  # a ReasonCode (paho 2) or an int
        return (first if isinstance(first, int) else first.value) < 0x80

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _need_info(self) -> DeviceInfo:
        if self.info is None or self._link is None:
            raise NotInitialised("sys_init first")
        return self.info

    async def _thing(
        self, channel: str, doc: dict[str, Any], timeout_s: float | None
    ) -> dict[str, Any] | None:
        info = self._need_info()
        topic = f"$thing/up/{channel}/{info.product_id}/{info.device_name}"
        return await self._rpc.thing(topic, doc, timeout_s)

    async def _session_start(self) -> None:
        """Spec §3.6 order: time, version, get_status (+ clear_control), then the app's
        ``on_online`` — which typically sends the bind token, report_info and a full report."""
        cloud_ms = await self.get_time()
        self.online_time_ms = cloud_ms if cloud_ms is not None else time.time_ns() // 1_000_000
        if self.ota is not None:
            await self.ota.report_version()
        if self._dm.sync_on_connect and self._dm.on_control is not None:
            await self.property_sync()
        for extension in self._extensions:
            await extension.on_session_start()
        if self._on_online is not None:
            await maybe_await(self._on_online(self.online_time_ms))

    async def _session_end(self, final: bool) -> None:
        self._rpc.cancel_all()
        if self._on_offline is not None:
            status = OFFLINE_GIVE_UP if final else OFFLINE_RECONNECTING
            try:
                await maybe_await(self._on_offline(status))
            except Exception:
                log.exception("device_offline_callback_failed")

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Route one incoming message (runs in the reader: must not block)."""
        if topic.startswith("$video/down/"):
            self._video.submit(payload)
            return
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.info("device_bad_payload", topic=topic)
            return
        if not isinstance(doc, dict):
            return
        if any(extension.on_message(topic, doc) for extension in self._extensions):
            return
        if topic.startswith("$thing/down/"):
            method = doc.get("method")
            if method in ("control", "action"):
                self._dm.submit(doc)
            elif isinstance(method, str) and method.endswith("_reply"):
                self._rpc.resolve(str(doc.get("clientToken", "")), doc)
            else:
                log.info("device_unhandled_method", topic=topic, method=method)
        elif topic.startswith("$ota/update/") and self.ota is not None:
            if doc.get("type") == "update_firmware":
                self.ota.on_update_message(doc)
            elif doc.get("type") == "report_version_rsp":
                self.ota.on_version_reply(doc)
        elif topic.startswith("$sys/operation/result/"):
            self._rpc.resolve(_TIME_KEY, doc)


__all__ = [
    "ERR_FAIL",
    "ERR_TIMEOUT",
    "OK",
    "DeviceInfo",
    "FirmwareUpdate",
    "IvDevice",
    "NotInitialised",
]

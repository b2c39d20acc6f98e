"""What every simulated device shares: identity, a standard thing model, a local property
state mirrored to the cloud, QR provisioning, OTA that "installs" instantly.

A simulator is a real :class:`IvDevice` client over real sockets — it only fakes the hardware
— so it exercises the same code paths a Raspberry Pi running the SDK would, and tests that
drive simulators test the server the way devices in the field will."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, Literal

import structlog

from ivcloud.device.ota import FirmwareUpdate
from ivcloud.device.sdk import IvDevice
from ivcloud.device.types import OK, DeviceInfo
from ivcloud.protocol.qr import ProvisionQR, parse_provision_qr
from ivcloud.protocol.thingmodel import StandardModel, ThingModel, load_standard_model

log = structlog.get_logger("ivcloud.device.sim")

SimulatorKind = Literal["camera", "lock-image", "lock-video"]
ActionHandler = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


class Simulator:
    """Base class; subclasses set ``kind``/``model_name`` and override :meth:`initial_state`,
    :meth:`actions` and the hooks."""

    kind: ClassVar[SimulatorKind]
    model_name: ClassVar[StandardModel]
    hardware: ClassVar[str] = "ivcloud-sim"

    def __init__(
        self,
        *,
        product_id: str,
        device_name: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        ws_url: str | None = None,
        keepalive: int = 60,
        reconnect_first: float = 1.0,
        firmware_version: str = "1.0.0",
        download_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.info = DeviceInfo(product_id, device_name, secret)
        self.model: ThingModel = load_standard_model(self.model_name).with_product_id(product_id)
        self.state: dict[str, Any] = self.initial_state()
        self.device = IvDevice()
        self.firmware_version = firmware_version
        self.installed: list[str] = []
        self.bind_token: str | None = None
        self.bind_result: int | None = None
        self.last_report_code: int | None = None
        self.clock = clock
        self._host, self._port, self._ws_url = host, port, ws_url
        self._keepalive, self._reconnect_first = keepalive, reconnect_first
        self._download_dir = download_dir
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # -- what subclasses define -----------------------------------------------------------

    def initial_state(self) -> dict[str, Any]:
        """Power-on property values; every one is reported in full on each connect."""
        return {}

    def actions(self) -> dict[str, ActionHandler]:
        return {}

    async def on_started(self) -> None:
        """Start background behaviour (battery drain, sleep timers)."""

    async def on_activity(self) -> None:
        """Something from the cloud arrived (control/action): locks wake up."""

    async def on_disconnected(self) -> None:
        """The MQTT link dropped (the SDK reconnects by itself): drop what depended on it."""

    # -- lifecycle ------------------------------------------------------------------------

    def provision_qr(self, qr: str) -> ProvisionQR:
        """Take the Wi-Fi QR string; its bind token is sent once online (or now, if online)."""
        parsed = parse_provision_qr(qr)
        self.bind_token = parsed.token
        if self.device.online:
            self.spawn(self._bind())
        return parsed

    async def start(self, *, wait_online: float | None = None) -> bool:
        if self._started:
            raise RuntimeError("simulator already started")
        self._started = True
        self.device.dm_init(self.model, on_control=self._on_control, on_action=self._on_action)
        await self.device.sys_init(
            self.info,
            host=self._host,
            port=self._port,
            ws_url=self._ws_url,
            keepalive=self._keepalive,
            on_online=self._on_online,
            on_offline=self._on_offline,
            reconnect_first=self._reconnect_first,
        )
        # Before the first connect completes, so the first session reports the version.
        self.device.ota_init(
            self.firmware_version, on_install=self._on_install, download_dir=self._download_dir
        )
        await self.on_started()
        return wait_online is not None and await self.device.wait_online(wait_online)

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("simulator_task_failed")
        await self.device.stop()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, then run until ``stop`` is set (forever without one)."""
        await self.start()
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            await self.stop()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work owned by the simulator (cancelled by :meth:`stop`)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- state ----------------------------------------------------------------------------

    async def report(self, **changes: Any) -> int:
        """Change local state and report the changed properties."""
        return await self.report_params(changes)

    async def report_params(self, changes: dict[str, Any]) -> int:
        self.state.update(changes)
        await self._notify()
        code = await self.device.property_report(changes)
        self.last_report_code = code
        if code != OK:
            log.info("simulator_report_refused", code=code, keys=sorted(changes))
        return code

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        """Wait until ``predicate()`` holds for the local state; ``False`` on timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)
            except TimeoutError:
                return False
        return True

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- SDK callbacks --------------------------------------------------------------------

    async def _on_online(self, cloud_ms: int) -> None:
        if self.bind_token is not None and self.bind_result != OK:
            self.spawn(self._bind())
        await self.device.report_info(
            fw_ver=self.device.ota.version if self.device.ota else self.firmware_version,
            module_hardinfo=self.hardware,
            module_softinfo=f"ivcloud-sim/{self.kind}",
            device_label={"manufacturer": "ivcloud"},
        )
        await self.report_params(dict(self.state))

    async def _on_offline(self, status: int) -> None:
        await self.on_disconnected()

    async def _bind(self) -> None:
        token = self.bind_token
        if token is None:
            return
        self.bind_result = await self.device.send_bind_info(token)
        await self._notify()

    async def _on_control(self, params: dict[str, Any]) -> int:
        await self.on_activity()
        code = await self.report_params(params)
        return OK if code == OK else code

    async def _on_action(
        self, action_id: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        handler = self.actions().get(action_id)
        if handler is None:
            return -1, {}
        await self.on_activity()
        return await handler(params)

    async def _on_install(self, update: FirmwareUpdate, path: Path) -> bool:
        self.installed.append(update.version)
        self.firmware_version = update.version
        await self._notify()
        return True  # the agent already checked size and MD5; nothing to flash

"""Simulated camera, picture-stream lock and video-stream lock, behaving as the seed manual
describes (camera / 图片流门锁 / 视频流门锁 device pages).

* camera — reports the ``_sys_*`` IoT Video properties and ``record_enable``; applies and
  re-reports any control.
* lock-image — battery that drains slowly, ``lock_motor_state`` 1 (locked), ``lock_state``;
  ``unlock_remote`` reports the motor at 0, answers ``result`` 1, relocks after a delay. A
  temporary password (RFC 4226, §9) unlocks too, but not while already unlocked.
* lock-video — the same plus ``wakeup_state``: sleeps after an idle period, ``wake_up``
  reports 1 and answers ``wakeup_state`` 1.

All of them take a provisioning QR string and send its token with ``send_bind_info``."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, ClassVar, Literal

from ivcloud.device.av.pusher import PushManager, live_source_factory
from ivcloud.device.simbase import ActionHandler, Simulator, SimulatorKind
from ivcloud.device.types import OK
from ivcloud.protocol.otp import verify_lock_temp_password
from ivcloud.protocol.thingmodel import StandardModel

__all__ = [
    "SIMULATORS",
    "CameraSimulator",
    "LockImageSimulator",
    "LockVideoSimulator",
    "Simulator",
    "SimulatorKind",
    "fake_xp2p_info",
    "run_simulator",
]

LOCKED, UNLOCKED = 1, 0


def fake_xp2p_info() -> str:
    """A stand-in ``_sys_xp2p_info``: real values start with ``XP2P`` and their structure is
    not public (spec §7.8); apps only pass it through, so the shape is all that matters."""
    return ("XP2P" + secrets.token_urlsafe(33)[:44] + "%2.4.0")[:64]


def _sys_state() -> dict[str, Any]:
    return {
        "_sys_xp2p_info": fake_xp2p_info(),
        "_sys_cs_days": 0,
        "_sys_cs_status": 0,
        "_sys_cs_type": 1,
        "_sys_ai_status": 0,
    }


class _LiveVideo(Simulator):
    """Answers the cloud's ``stream_push_start`` / ``stream_push_stop`` with a real
    :class:`~ivcloud.device.av.LiveSource` per pushed stream: the quality's profile (640x360
    @ 15 fps for ``standard``) with ``video_overrides`` applied, e.g. ``{"width": 320,
    "height": 240, "fps": 10}`` for light test streams."""

    def __init__(self, *, video_overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pushers = PushManager(live_source_factory(**(video_overrides or {})))
        self.pushers.install(self.device)

    async def stop(self) -> None:
        await self.pushers.close()
        await super().stop()


class CameraSimulator(_LiveVideo):
    kind = "camera"
    model_name = "camera"
    hardware = "ivcloud-sim-ipc"

    def initial_state(self) -> dict[str, Any]:
        return {**_sys_state(), "record_enable": 1}


class LockImageSimulator(Simulator):
    """Picture-stream lock. ``relock_delay=None`` keeps it open until :meth:`relock`."""

    kind: ClassVar[SimulatorKind] = "lock-image"
    model_name: ClassVar[StandardModel] = "lock-image"
    hardware = "ivcloud-sim-lock"

    def __init__(
        self,
        *,
        relock_delay: float | None = 5.0,
        battery_drain_s: float = 600.0,
        battery: int = 100,
        **kwargs: Any,
    ) -> None:
        self.relock_delay = relock_delay
        self.battery_drain_s = battery_drain_s
        self._battery = battery
        super().__init__(**kwargs)
        self._relock_task: asyncio.Task[Any] | None = None
        self._last_otp_counter = -1

    def initial_state(self) -> dict[str, Any]:
        return {
            **_sys_state(),
            "battery_percentage": self._battery,
            "lock_motor_state": LOCKED,
            "lock_state": LOCKED,
        }

    def actions(self) -> dict[str, ActionHandler]:
        return {"unlock_remote": self._unlock_remote}

    @property
    def locked(self) -> bool:
        return bool(self.state.get("lock_motor_state") == LOCKED)

    async def on_started(self) -> None:
        self.spawn(self._drain())

    async def _drain(self) -> None:
        """One percent per ``battery_drain_s``; stops at 0 (a flat lock just goes silent)."""
        while True:
            await asyncio.sleep(self.battery_drain_s)
            level = int(self.state.get("battery_percentage", 0))
            if level > 0 and self.device.online:
                await self.report(battery_percentage=level - 1)

    async def _unlock_remote(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code = await self.unlock()
        return OK, {"result": 1 if code == OK else 0}

    async def unlock(self) -> int:
        """Open the motor, report it, schedule the relock. The app shows "unlocked" when it
        sees ``lock_motor_state`` go 1 → 0, so the report precedes the action reply."""
        code = await self.report(lock_motor_state=UNLOCKED, lock_state=UNLOCKED)
        if self._relock_task is not None:
            self._relock_task.cancel()
        if self.relock_delay is not None:
            self._relock_task = self.spawn(self._relock_later(self.relock_delay))
        return code

    async def relock(self) -> int:
        if self._relock_task is not None and self._relock_task is not asyncio.current_task():
            self._relock_task.cancel()
        self._relock_task = None
        return await self.report(lock_motor_state=LOCKED, lock_state=LOCKED)

    async def _relock_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.relock()

    async def try_temp_password(self, code: str, now: int | None = None) -> bool:
        """Check a temporary password typed on the keypad (spec §9): refused while unlocked
        (the seed's rule) and single-use (our policy: a code's counter must be newer than the
        last accepted one, so a shoulder-surfed code cannot be replayed in its window)."""
        if not self.locked:
            return False
        ts = int(self.clock()) if now is None else now
        counter = verify_lock_temp_password(self.info.device_secret, code, ts)
        if counter is None or counter <= self._last_otp_counter:
            return False
        self._last_otp_counter = counter
        await self.on_activity()
        await self.unlock()
        return True


class LockVideoSimulator(_LiveVideo, LockImageSimulator):
    """Video-stream lock: a low-power device that sleeps after ``sleep_after_s`` idle."""

    kind = "lock-video"
    model_name = "lock-video"

    def __init__(self, *, sleep_after_s: float = 30.0, **kwargs: Any) -> None:
        self.sleep_after_s = sleep_after_s
        super().__init__(**kwargs)
        self._awake = asyncio.Event()

    def initial_state(self) -> dict[str, Any]:
        return {**super().initial_state(), "wakeup_state": 1}

    def actions(self) -> dict[str, ActionHandler]:
        return {**super().actions(), "wake_up": self._wake_up}

    @property
    def awake(self) -> bool:
        return bool(self.state.get("wakeup_state") == 1)

    async def on_started(self) -> None:
        await super().on_started()
        self.spawn(self._sleeper())

    async def on_activity(self) -> None:
        self._awake.set()
        if not self.awake:
            await self.report(wakeup_state=1)

    async def _wake_up(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # on_activity already reported wakeup_state 1 before this handler runs.
        return OK, {"wakeup_state": 1 if self.awake else 0}

    async def _sleeper(self) -> None:
        """Go to sleep after ``sleep_after_s`` without activity; any activity restarts the
        countdown (the Wi-Fi module stays connected; the main controller sleeps)."""
        while True:
            self._awake.clear()
            try:
                await asyncio.wait_for(self._awake.wait(), self.sleep_after_s)
            except TimeoutError:
                if self.awake:
                    if self.device.online:
                        await self.report(wakeup_state=0)
                    else:  # reported with the full state on the next connect
                        self.state["wakeup_state"] = 0
                await self._awake.wait()


SIMULATORS: dict[SimulatorKind, type[Simulator]] = {
    "camera": CameraSimulator,
    "lock-image": LockImageSimulator,
    "lock-video": LockVideoSimulator,
}


async def run_simulator(
    kind: Literal["camera", "lock-image", "lock-video"],
    *,
    host: str,
    port: int,
    product_id: str,
    device_name: str,
    secret: str,
    qr: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one simulated device until ``stop`` is set (forever without one)."""
    sim = SIMULATORS[kind](
        host=host, port=port, product_id=product_id, device_name=device_name, secret=secret
    )
    if qr is not None:
        sim.provision_qr(qr)
    await sim.run(stop)

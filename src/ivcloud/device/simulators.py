"""Simulated camera, picture-stream lock and video-stream lock, behaving as the seed manual
describes (camera / 图片流门锁 / 视频流门锁 device pages).

* camera — reports the ``_sys_*`` IoT Video properties and ``record_enable``; applies and
  re-reports any control.
* lock-image — battery that drains slowly, ``lock_motor_state`` 1 (locked), ``lock_state``;
  ``unlock_remote`` reports the motor at 0, answers ``result`` 1, relocks after a delay. A
  temporary password (RFC 4226, §9) unlocks too, but not while already unlocked.
* lock-video — the same plus ``wakeup_state``: sleeps after an idle period, ``wake_up``
  reports 1 and answers ``wakeup_state`` 1.

The camera and the video lock also serve live video (:class:`_LiveVideo`): P2P sessions
through the cloud, hub pushes and SD-card recording, from one encoder per quality.

All of them take a provisioning QR string and send its token with ``send_bind_info``."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from ivcloud.device.av import AudioProfile, LiveSource, VideoProfile
from ivcloud.device.av.p2p_agent import P2PAgent
from ivcloud.device.av.ptz import SimulatedCommands
from ivcloud.device.av.pusher import PushManager, feed_source_factory
from ivcloud.device.av.sdcard import SdCard
from ivcloud.device.av.xp2p_device import Xp2pCallbacks, Xp2pDevice
from ivcloud.device.simbase import ActionHandler, Simulator, SimulatorKind
from ivcloud.device.types import OK
from ivcloud.protocol.otp import verify_lock_temp_password
from ivcloud.protocol.thingmodel import StandardModel
from ivcloud.protocol.xp2p import Quality

__all__ = [
    "SIMULATORS",
    "VIDEO_KINDS",
    "CameraSimulator",
    "LockImageSimulator",
    "LockVideoSimulator",
    "Simulator",
    "SimulatorKind",
    "check_video_overrides",
    "fake_xp2p_info",
    "run_simulator",
]

LOCKED, UNLOCKED = 1, 0


def fake_xp2p_info() -> str:
    """A stand-in ``_sys_xp2p_info``: real values start with ``XP2P`` and their structure is
    not public (spec §7.8); apps only pass it through, so the shape is all that matters."""
    return ("XP2P" + secrets.token_urlsafe(33)[:44] + "%2.4.0")[:64]


def check_video_overrides(overrides: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless every quality profile takes ``overrides``: they apply to
    all three qualities, so an odd width or a 3 s GOP is refused when the camera is built,
    not later when someone first watches (and the encoder fails in the middle of a view)."""
    for quality in get_args(Quality):
        VideoProfile.named(quality, **overrides)


def _sys_state() -> dict[str, Any]:
    return {
        "_sys_xp2p_info": fake_xp2p_info(),
        "_sys_cs_days": 0,
        "_sys_cs_status": 0,
        "_sys_cs_type": 1,
        "_sys_ai_status": 0,
    }


class _LiveVideo(Simulator):
    """A camera's video side: one :class:`~ivcloud.device.av.LiveSource` per (channel,
    quality), opened on demand and shared through an
    :class:`~ivcloud.device.av.xp2p_device.Xp2pDevice` by P2P viewers
    (:class:`~ivcloud.device.av.p2p_agent.P2PAgent`), the hub upload (``stream_push_start``)
    and the SD-card recorder — one encoder per quality, running only while someone watches
    or records.

    ``video_overrides`` change every quality's profile (640x360 @ 15 fps for ``standard``),
    e.g. ``{"width": 320, "height": 240, "fps": 10}`` for light test streams; fields a profile
    refuses are a ``ValueError`` here (:func:`check_video_overrides`). With a ``data_dir``
    the camera has an SD card in ``data_dir/sdcard/ch0`` and records channel 0 ``standard``
    onto it in 60 s segments, kept ``retention_hours`` (2); ``record`` overrides that
    (``record=True`` without a ``data_dir`` records into a temporary directory removed at
    :meth:`stop`). Without either the camera has no SD card and encodes nothing until
    someone watches — what load tests and benchmarks want. ``max_viewers`` bounds P2P
    sessions and viewers. Talk audio is kept in :attr:`talk_frames` (the last 256 frames);
    ``user_define`` commands move a simulated pan/tilt head
    (:class:`~ivcloud.device.av.ptz.SimulatedCommands`)."""

    def __init__(
        self,
        *,
        video_overrides: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        record: bool | None = None,
        retention_hours: float = 2.0,
        max_viewers: int = 4,
        **kwargs: Any,
    ) -> None:
        check_video_overrides(video_overrides or {})
        super().__init__(**kwargs)
        self.video_overrides = dict(video_overrides or {})
        self.record_enabled = data_dir is not None if record is None else record
        self._tmp_dir: Path | None = None
        if data_dir is None and self.record_enabled:
            self._tmp_dir = data_dir = Path(tempfile.mkdtemp("-ivcloud-sim"))
        self.data_dir = data_dir
        self.sdcard = (
            None
            if data_dir is None
            else SdCard(data_dir / "sdcard" / "ch0", retention_hours=retention_hours)
        )
        self.talk_frames: deque[bytes] = deque(maxlen=256)
        self.commands = SimulatedCommands(version=self.firmware_version)
        self.xp2p = Xp2pDevice(
            sources=self._open_source,
            sdcards={0: self.sdcard} if self.sdcard is not None else None,
            callbacks=Xp2pCallbacks(on_user_command=self.commands, on_talk_audio=self._talk),
            max_viewers=max_viewers,
        )
        self.commands.status = self.xp2p.status
        # The full-state report on every connect carries _sys_xp2p_info.
        self.p2p = P2PAgent(self.xp2p, report_info=False)
        self.p2p.install(self.device)
        self.state["_sys_xp2p_info"] = self.p2p.xp2p_info
        self.pushers = PushManager(feed_source_factory(self.xp2p, self._profile))
        self.pushers.install(self.device)
        self.recording: asyncio.Task[None] | None = None

    def _profile(self, channel: int, quality: Quality) -> VideoProfile:
        return VideoProfile.named(quality, **self.video_overrides)

    def _open_source(self, channel: int, quality: Quality) -> LiveSource:
        # AAC for FLV (hub, data channel, SD card), Opus for WebRTC audio tracks.
        audio = (AudioProfile("aac"), AudioProfile("opus"))
        return LiveSource(self._profile(channel, quality), audio)

    def _talk(self, visitor: str, channel: int, codec: str, frame: bytes) -> None:
        self.talk_frames.append(frame)

    async def on_started(self) -> None:
        await super().on_started()
        if self.record_enabled:
            self.recording = self.xp2p.record(0, "standard", segment_s=60.0)

    async def on_disconnected(self) -> None:
        await super().on_disconnected()
        await self.p2p.on_offline()

    async def stop(self) -> None:
        await self.pushers.close()
        await self.p2p.aclose()
        await self.xp2p.aclose()
        await super().stop()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)


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


VIDEO_KINDS: frozenset[SimulatorKind] = frozenset(
    kind for kind, cls in SIMULATORS.items() if issubclass(cls, _LiveVideo)
)
"""The kinds with a camera (live video, SD card): ``camera`` and ``lock-video``."""


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
    data_dir: Path | None = None,
    record: bool = False,
    retention_hours: float | None = None,
    video_overrides: dict[str, Any] | None = None,
) -> None:
    """Run one simulated device until ``stop`` is set (forever without one).

    For the video kinds (:data:`VIDEO_KINDS`), ``video_overrides`` change the quality
    profiles (see :class:`_LiveVideo`), ``data_dir`` holds the SD card (none without it) and
    ``retention_hours`` is how long the card keeps recordings (2). ``record`` is off here
    (``ivcloud demo`` and ``ivcloud sim`` run through this, and turn it on only when asked):
    continuous SD recording keeps a 640x360 @ 15 fps encoder busy, ~14 % of a core per camera
    on 2 cores (the demo idles at 0.5 % without it, 28 % with it on its two video devices);
    with it off the encoders run only while someone watches. A picture-stream lock has no
    camera: any of these options given to it is a ``ValueError``, not silently ignored."""
    video: dict[str, Any] = {}
    if kind in VIDEO_KINDS:
        video = {"data_dir": data_dir, "record": record, "video_overrides": video_overrides}
        if retention_hours is not None:
            video["retention_hours"] = retention_hours
    elif video_overrides or data_dir is not None or record or retention_hours is not None:
        raise ValueError(f"a {kind} simulator has no camera: no video, SD card or recording")
    sim = SIMULATORS[kind](
        host=host,
        port=port,
        product_id=product_id,
        device_name=device_name,
        secret=secret,
        **video,
    )
    if qr is not None:
        sim.provision_qr(qr)
    await sim.run(stop)

"""The three simulators against the real server: what they report, how they answer control
and actions, QR binding, lock relock/battery/temporary passwords, video-lock sleep/wake."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.device import (
    OK,
    CameraSimulator,
    LockImageSimulator,
    LockVideoSimulator,
    run_simulator,
)
from ivcloud.protocol.otp import lock_temp_password
from ivcloud.protocol.qr import encode_provision_qr
from tests.device.support import broker, device_doc, poll, prop, simulator, wait_prop
from tests.helpers import Provisioned, provision

SYS_PROPS = ("_sys_xp2p_info", "_sys_cs_days", "_sys_cs_status", "_sys_cs_type", "_sys_ai_status")


@pytest.fixture
async def cam(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "camera", "camera", "cam01")


@pytest.fixture
async def img_lock(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "lock-image", "lock", "imglock01")


@pytest.fixture
async def vid_lock(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "lock-video", "lock", "vidlock01")


def url(dev: Provisioned, tail: str) -> str:
    return f"/products/{dev.product_id}/devices/{dev.device_name}{tail}"


async def action(
    admin: httpx.AsyncClient, dev: Provisioned, action_id: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    resp = await admin.post(
        url(dev, f"/actions/{action_id}"), json={"Params": params or {}, "TimeoutSeconds": 5}
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def history(admin: httpx.AsyncClient, dev: Provisioned, prop_id: str) -> list[Any]:
    """Values oldest first."""
    resp = await admin.get(url(dev, f"/properties/{prop_id}/history"))
    assert resp.status_code == 200, resp.text
    return [v["Value"] for v in reversed(resp.json()["Values"])]


async def tokens(admin: httpx.AsyncClient, dev: Provisioned) -> list[str]:
    resp = await admin.get(url(dev, "/bind-tokens"))
    assert resp.status_code == 200, resp.text
    result: list[str] = resp.json()["Tokens"]
    return result


# -- camera ------------------------------------------------------------------------------


async def test_camera_reports_sys_properties_and_info(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    async with simulator(server, CameraSimulator, cam) as sim:
        assert await sim.start(wait_online=10)
        doc = await poll(
            lambda: device_doc(admin, cam),
            lambda d: all(prop(d, p) is not None for p in (*SYS_PROPS, "record_enable")),
        )
        xp2p = prop(doc, "_sys_xp2p_info")
        assert xp2p.startswith("XP2P") and len(xp2p) <= 64
        assert prop(doc, "_sys_cs_type") in (1, 2)
        assert prop(doc, "record_enable") == 1
        assert sim.last_report_code == OK
        info = (await device_doc(admin, cam))["DeviceInfo"]
        assert info["fw_ver"] == "1.0.0"


async def test_camera_applies_and_rereports_record_enable(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    async with simulator(server, CameraSimulator, cam) as sim:
        assert await sim.start(wait_online=10)
        await wait_prop(admin, cam, "record_enable", 1)
        resp = await admin.post(
            url(cam, "/control"), json={"Params": {"record_enable": 0}, "WaitSeconds": 2}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["Code"] == 0
        assert sim.state["record_enable"] == 0
        await wait_prop(admin, cam, "record_enable", 0)


async def test_camera_sends_qr_bind_token_once_online(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    qr = encode_provision_qr("Tencent-wifi", "l", "v3_00d02b0248546d5a5fbf95a5812e4")
    async with simulator(server, CameraSimulator, cam) as sim:
        parsed = sim.provision_qr(qr)
        assert parsed.ssid == "Tencent-wifi"
        await sim.start()
        assert await sim.wait_for(lambda: sim.bind_result is not None, 10)
        assert sim.bind_result == OK
    assert await tokens(admin, cam) == ["v3_00d02b0248546d5a5fbf95a5812e4"]


async def test_qr_scanned_while_online_is_sent_at_once(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    async with simulator(server, CameraSimulator, cam) as sim:
        assert await sim.start(wait_online=10)
        sim.provision_qr(encode_provision_qr("home", "pw", "tok-late"))
        assert await sim.wait_for(lambda: sim.bind_result is not None, 10)
    assert await tokens(admin, cam) == ["tok-late"]


async def test_camera_over_websocket(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    assert server.endpoints is not None
    async with simulator(server, CameraSimulator, cam, ws_url=server.endpoints.mqtt_ws_url) as sim:
        assert await sim.start(wait_online=10)
        await wait_prop(admin, cam, "record_enable", 1)


async def test_simulator_installs_firmware(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    async with simulator(server, CameraSimulator, cam, download_dir=tmp_path) as sim:
        assert await sim.start(wait_online=10)
        resp = await admin.post(
            f"/products/{cam.product_id}/firmware",
            data={"version": "1.1.0"},
            files={"file": ("fw.bin", b"new firmware" * 100, "application/octet-stream")},
        )
        assert resp.status_code == 201, resp.text
        resp = await admin.post(f"/products/{cam.product_id}/ota-jobs", json={"Version": "1.1.0"})
        assert resp.status_code == 201, resp.text
        assert await sim.wait_for(lambda: sim.installed == ["1.1.0"], 20)
        await poll(lambda: device_doc(admin, cam), lambda d: d["FirmwareVersion"] == "1.1.0")


# -- picture-stream lock -----------------------------------------------------------------


async def test_lock_image_unlock_remote_then_relock(
    server: Ivcloud, admin: httpx.AsyncClient, img_lock: Provisioned
) -> None:
    async with simulator(server, LockImageSimulator, img_lock, relock_delay=None) as sim:
        assert await sim.start(wait_online=10)
        doc = await wait_prop(admin, img_lock, "lock_motor_state", 1)
        assert prop(doc, "battery_percentage") == 100
        assert prop(doc, "lock_state") == 1
        reply = await action(admin, img_lock, "unlock_remote")
        assert reply["Code"] == 0 and reply["Response"] == {"result": 1}
        await wait_prop(admin, img_lock, "lock_motor_state", 0)
        assert await sim.relock() == OK
        await wait_prop(admin, img_lock, "lock_motor_state", 1)
    assert await history(admin, img_lock, "lock_motor_state") == [1, 0, 1]


async def test_lock_relocks_by_itself_after_the_delay(
    server: Ivcloud, admin: httpx.AsyncClient, img_lock: Provisioned
) -> None:
    async with simulator(server, LockImageSimulator, img_lock, relock_delay=0.3) as sim:
        assert await sim.start(wait_online=10)
        await wait_prop(admin, img_lock, "lock_motor_state", 1)
        reply = await action(admin, img_lock, "unlock_remote")
        assert reply["Response"] == {"result": 1}
        assert await sim.wait_for(lambda: not sim.locked, 5)
        assert await sim.wait_for(lambda: sim.locked, 5)
        await poll(lambda: history(admin, img_lock, "lock_motor_state"), lambda h: h == [1, 0, 1])


async def test_lock_battery_drains(
    server: Ivcloud, admin: httpx.AsyncClient, img_lock: Provisioned
) -> None:
    async with simulator(server, LockImageSimulator, img_lock, battery_drain_s=0.05) as sim:
        assert await sim.start(wait_online=10)
        await poll(
            lambda: device_doc(admin, img_lock),
            lambda d: (
                isinstance(prop(d, "battery_percentage"), int)
                and prop(d, "battery_percentage") < 100
            ),
        )


async def test_lock_temporary_password(
    server: Ivcloud, admin: httpx.AsyncClient, img_lock: Provisioned
) -> None:
    now = int(time.time())
    async with simulator(server, LockImageSimulator, img_lock, relock_delay=None) as sim:
        assert await sim.start(wait_online=10)
        code = lock_temp_password(img_lock.secret, now)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert not await sim.try_temp_password(wrong, now)
        assert sim.locked
        assert await sim.try_temp_password(code, now)
        assert not sim.locked
        await wait_prop(admin, img_lock, "lock_motor_state", 0)
        # Refused while unlocked, even a fresh code.
        later = now + 30
        assert not await sim.try_temp_password(lock_temp_password(img_lock.secret, later), later)
        await sim.relock()
        # Single use: the same code is refused after relocking.
        assert not await sim.try_temp_password(code, now)
        assert await sim.try_temp_password(lock_temp_password(img_lock.secret, later), later)


# -- video-stream lock -------------------------------------------------------------------


async def test_lock_video_sleeps_and_wakes_up(
    server: Ivcloud, admin: httpx.AsyncClient, vid_lock: Provisioned
) -> None:
    async with simulator(server, LockVideoSimulator, vid_lock, sleep_after_s=0.3) as sim:
        assert await sim.start(wait_online=10)
        await wait_prop(admin, vid_lock, "wakeup_state", 0)
        sim.sleep_after_s = 60.0  # stay awake once woken, so the check below is stable
        reply = await action(admin, vid_lock, "wake_up")
        assert reply["Code"] == 0 and reply["Response"] == {"wakeup_state": 1}
        assert sim.awake
        await wait_prop(admin, vid_lock, "wakeup_state", 1)


async def test_lock_video_unlock_remote(
    server: Ivcloud, admin: httpx.AsyncClient, vid_lock: Provisioned
) -> None:
    async with simulator(server, LockVideoSimulator, vid_lock, relock_delay=None) as sim:
        assert await sim.start(wait_online=10)
        await wait_prop(admin, vid_lock, "lock_motor_state", 1)
        reply = await action(admin, vid_lock, "unlock_remote")
        assert reply["Response"] == {"result": 1}
        await wait_prop(admin, vid_lock, "lock_motor_state", 0)
        await sim.relock()
        await wait_prop(admin, vid_lock, "lock_motor_state", 1)


async def test_lock_video_refuses_temp_password_while_unlocked(
    server: Ivcloud, vid_lock: Provisioned
) -> None:
    now = int(time.time())
    async with simulator(server, LockVideoSimulator, vid_lock, relock_delay=None) as sim:
        assert await sim.start(wait_online=10)
        await sim.unlock()
        assert not await sim.try_temp_password(lock_temp_password(vid_lock.secret, now), now)


# -- entry point -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "model", "category"),
    [
        ("camera", "camera", "camera"),
        ("lock-image", "lock-image", "lock"),
        ("lock-video", "lock-video", "lock"),
    ],
)
async def test_run_simulator_until_stopped(
    server: Ivcloud, admin: httpx.AsyncClient, kind: Any, model: str, category: str
) -> None:
    dev = await provision(admin, model, category, f"run-{kind}")
    host, port = broker(server)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_simulator(
            kind,
            host=host,
            port=port,
            product_id=dev.product_id,
            device_name=dev.device_name,
            secret=dev.secret,
            qr=encode_provision_qr("ssid", "pw", f"tok-{kind}"),
            stop=stop,
        )
    )
    await poll(lambda: tokens(admin, dev), lambda t: t == [f"tok-{kind}"])
    await poll(lambda: device_doc(admin, dev), lambda d: d["Online"] == 1)
    stop.set()
    await asyncio.wait_for(task, 10)
    await poll(lambda: device_doc(admin, dev), lambda d: d["Online"] == 0)


@pytest.mark.parametrize(
    "options",
    [
        {"data_dir": "card"},
        {"record": True},
        {"retention_hours": 1.0},
        {"video_overrides": {"fps": 10}},
    ],
)
async def test_run_simulator_refuses_video_options_for_the_picture_lock(
    server: Ivcloud, admin: httpx.AsyncClient, tmp_path: Path, options: dict[str, Any]
) -> None:
    """A lock-image has no camera: options for one are an error, not silently dropped."""
    dev = await provision(admin, "lock-image", "lock", "no-camera")
    host, port = broker(server)
    if "data_dir" in options:
        options = {"data_dir": tmp_path / "sim"}
    with pytest.raises(ValueError, match="has no camera"):
        await run_simulator(
            "lock-image",
            host=host,
            port=port,
            product_id=dev.product_id,
            device_name=dev.device_name,
            secret=dev.secret,
            **options,
        )
    assert not await asyncio.to_thread((tmp_path / "sim").exists)  # no SD card made
    assert (await device_doc(admin, dev))["Online"] == 0  # it never connected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"width": 321}, "even"), ({"fps": 0}, "fps 0"), ({"gop_seconds": 3.0}, "gop_seconds")],
)
async def test_video_simulators_refuse_overrides_no_profile_takes(
    overrides: dict[str, Any], message: str
) -> None:
    """Refused when built, not when the first viewer makes the encoder open."""
    for cls in (CameraSimulator, LockVideoSimulator):
        with pytest.raises(ValueError, match=message):
            cls(
                host="127.0.0.1",
                port=1,
                product_id="P",
                device_name="D",
                secret="c2VjcmV0",
                video_overrides=overrides,
            )

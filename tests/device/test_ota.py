"""OTA end to end: firmware upload and job in the console, download (with resume), MD5 check,
install callback and progress reports from the SDK, job state in the console."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.bus.events import OtaProgress
from ivcloud.device import FirmwareUpdate
from ivcloud.device.ota import MD5_MISMATCH, UPGRADE_FAILED
from tests.device.support import device_doc, poll, sdk_device
from tests.helpers import Provisioned, provision

FIRMWARE = bytes(range(256)) * 1200  # 300 KiB: several chunks, so resume is meaningful


@pytest.fixture
async def cam(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "camera", "camera", "cam01")


async def upload_and_start_job(
    admin: httpx.AsyncClient, dev: Provisioned, version: str = "1.1.0", data: bytes = FIRMWARE
) -> int:
    resp = await admin.post(
        f"/products/{dev.product_id}/firmware",
        data={"version": version},
        files={"file": ("fw.bin", data, "application/octet-stream")},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["Md5sum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    resp = await admin.post(f"/products/{dev.product_id}/ota-jobs", json={"Version": version})
    assert resp.status_code == 201, resp.text
    job_id: int = resp.json()["JobId"]
    return job_id


async def job_task(admin: httpx.AsyncClient, job_id: int) -> dict[str, Any]:
    resp = await admin.get(f"/ota-jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    tasks: list[dict[str, Any]] = resp.json()["Tasks"]
    assert len(tasks) == 1
    return tasks[0]


def ota_states(events: list[OtaProgress]) -> list[str]:
    """Distinct consecutive states, e.g. downloading, burning, done."""
    out: list[str] = []
    for ev in events:
        if not out or out[-1] != ev.state:
            out.append(ev.state)
    return out


async def drain(sub: Any) -> list[OtaProgress]:
    got: list[OtaProgress] = []
    while not sub.queue.empty():
        ev = sub.queue.get_nowait()
        if isinstance(ev, OtaProgress):
            got.append(ev)
    return got


async def test_ota_end_to_end(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    installed: list[tuple[str, bytes]] = []

    def install(update: FirmwareUpdate, path: Path) -> bool:
        installed.append((update.version, path.read_bytes()))
        return True

    sub = server.bus.subscribe("device.ota")
    async with sdk_device(server, cam, wait_online=10) as dev:
        agent = dev.ota_init("1.0.0", on_install=install, download_dir=tmp_path)
        await poll(lambda: device_doc(admin, cam), lambda d: d["FirmwareVersion"] == "1.0.0")
        job_id = await upload_and_start_job(admin, cam)
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == 0
        assert agent.version == "1.1.0"
        assert agent.resumed_from == 0
        assert installed == [("1.1.0", FIRMWARE)]
        task = await poll(lambda: job_task(admin, job_id), lambda t: t["State"] == "done")
        assert task["Percent"] == 100 and task["ResultCode"] == 0
        doc = await poll(lambda: device_doc(admin, cam), lambda d: d["FirmwareVersion"] == "1.1.0")
        assert doc["FirmwareVersion"] == "1.1.0"
    assert ota_states(await drain(sub)) == ["downloading", "burning", "done"]


async def test_ota_resumes_a_partial_download_with_range(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    half = len(FIRMWARE) // 2
    (tmp_path / "firmware-1.1.0.bin.part").write_bytes(FIRMWARE[:half])
    installed: list[bytes] = []
    async with sdk_device(server, cam, wait_online=10) as dev:
        agent = dev.ota_init(
            "1.0.0",
            on_install=lambda u, p: keep(installed, p.read_bytes()),
            download_dir=tmp_path,
        )
        job_id = await upload_and_start_job(admin, cam)
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == 0
        assert agent.resumed_from == half
        assert installed == [FIRMWARE]
        await poll(lambda: job_task(admin, job_id), lambda t: t["State"] == "done")


async def test_ota_md5_mismatch_reports_fail_minus_4(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    # A full-size but corrupt leftover: nothing left to download, so the MD5 check decides.
    (tmp_path / "firmware-1.1.0.bin.part").write_bytes(b"\0" * len(FIRMWARE))
    installed: list[str] = []
    async with sdk_device(server, cam, wait_online=10) as dev:
        agent = dev.ota_init(
            "1.0.0",
            on_install=lambda u, p: keep(installed, u.version),
            download_dir=tmp_path,
        )
        job_id = await upload_and_start_job(admin, cam)
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == MD5_MISMATCH
        assert installed == []
        task = await poll(lambda: job_task(admin, job_id), lambda t: t["State"] == "fail")
        assert task["ResultCode"] == MD5_MISMATCH


async def test_ota_install_refused_reports_fail_minus_5(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    async with sdk_device(server, cam, wait_online=10) as dev:
        agent = dev.ota_init("1.0.0", on_install=lambda u, p: False, download_dir=tmp_path)
        job_id = await upload_and_start_job(admin, cam)
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == UPGRADE_FAILED
        assert agent.version == "1.0.0"
        task = await poll(lambda: job_task(admin, job_id), lambda t: t["State"] == "fail")
        assert task["ResultCode"] == UPGRADE_FAILED


async def test_ota_job_created_while_offline_is_picked_up_on_connect(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, tmp_path: Path
) -> None:
    job_id = await upload_and_start_job(admin, cam)
    async with sdk_device(server, cam) as dev:
        agent = dev.ota_init("1.0.0", on_install=lambda u, p: True, download_dir=tmp_path)
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == 0
        await poll(lambda: job_task(admin, job_id), lambda t: t["State"] == "done")


async def test_bad_download_url_reports_file_not_found(
    server: Ivcloud, cam: Provisioned, tmp_path: Path
) -> None:
    assert server.endpoints is not None
    async with sdk_device(server, cam, wait_online=10) as dev:
        agent = dev.ota_init("1.0.0", on_install=lambda u, p: True, download_dir=tmp_path)
        agent.on_update_message(
            {
                "type": "update_firmware",
                "version": "9.9.9",
                "url": server.endpoints.http_url + "/no/such/firmware.bin",
                "md5sum": "0" * 32,
                "file_size": 10,
            }
        )
        await asyncio.wait_for(agent.finished.wait(), 20)
        assert agent.last_result == -2


def keep(into: list[Any], item: Any) -> bool:
    """An install callback body: remember what was installed, report success."""
    into.append(item)
    return True

"""Firmware upgrade (spec §5) end to end at the wire level: console upload and job, the
device's report_version / update_firmware / report_progress, signed Range downloads."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.helpers import Provisioned, provision
from tests.rawdevice import RawDevice, device_for

FIRMWARE = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
async def cam(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "camera", "camera", "cam01")


async def upload(admin: httpx.AsyncClient, pid: str, version: str, data: bytes) -> httpx.Response:
    return await admin.post(
        f"/products/{pid}/firmware",
        data={"version": version},
        files={"file": ("fw.bin", data, "application/octet-stream")},
    )


async def report_version(dev: RawDevice, version: str) -> dict[str, object]:
    await dev.publish(
        "$ota/report/{p}/{d}", {"type": "report_version", "report": {"version": version}}, qos=1
    )
    return await dev.next("$ota/update/{p}/{d}")


async def test_upgrade_flow(server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned) -> None:
    resp = await upload(admin, cam.product_id, "1.1.0", FIRMWARE)
    assert resp.status_code == 201, resp.text
    fw = resp.json()
    assert fw["FileSize"] == len(FIRMWARE)
    assert fw["Md5sum"] == hashlib.md5(FIRMWARE).hexdigest()  # noqa: S324
    async with device_for(server, cam) as dev:
        rsp = await report_version(dev, "1.0.0")
        assert rsp == {
            "result_code": 0,
            "result_msg": "success",
            "type": "report_version_rsp",
            "version": "1.0.0",
        }
        resp = await admin.post(f"/products/{cam.product_id}/ota-jobs", json={"Version": "1.1.0"})
        assert resp.status_code == 201, resp.text
        job = resp.json()
        assert job["Devices"] == ["cam01"] and job["Sent"] == 1
        update = await dev.next("$ota/update/{p}/{d}")
        assert update["type"] == "update_firmware"
        assert update["version"] == "1.1.0"
        assert update["md5sum"] == fw["Md5sum"]
        assert update["file_size"] == len(FIRMWARE)
        url = str(update["url"])
        async with httpx.AsyncClient() as http:
            whole = await http.get(url)
            assert whole.status_code == 200
            assert whole.content == FIRMWARE
            part = await http.get(url, headers={"Range": "bytes=1000-"})
            assert part.status_code == 206
            assert part.content == FIRMWARE[1000:]
            forged = await http.get(url.replace("sign=", "sign=0"))
            assert forged.status_code == 403
        # Device restarts mid-download and reports the old version: the job is resumed.
        await report_version(dev, "1.0.0")
        again = await dev.next("$ota/update/{p}/{d}")
        assert again["type"] == "update_firmware"
        for state, pct in (("downloading", "50"), ("downloading", "100"), ("burning", "100")):
            await dev.publish(
                "$ota/report/{p}/{d}",
                {
                    "type": "report_progress",
                    "report": {
                        "progress": {
                            "state": state,
                            "percent": pct,
                            "result_code": "0",
                            "result_msg": "",
                        },
                        "version": "1.1.0",
                    },
                },
                qos=1,
            )
        await dev.publish(
            "$ota/report/{p}/{d}",
            {
                "type": "report_progress",
                "report": {
                    "progress": {"state": "done", "result_code": "0", "result_msg": ""},
                    "version": "1.1.0",
                },
            },
            qos=1,
        )
        await report_version(dev, "1.1.0")
    status = (await admin.get(f"/ota-jobs/{job['JobId']}")).json()
    [task] = status["Tasks"]
    assert task["State"] == "done"
    device = (await admin.get(f"/products/{cam.product_id}/devices/cam01")).json()
    assert device["FirmwareVersion"] == "1.1.0"


async def test_failure_is_recorded_with_result_code(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    await upload(admin, cam.product_id, "2.0", FIRMWARE)
    async with device_for(server, cam) as dev:
        await report_version(dev, "1.0")
        job = (
            await admin.post(f"/products/{cam.product_id}/ota-jobs", json={"Version": "2.0"})
        ).json()
        await dev.next("$ota/update/{p}/{d}")
        await dev.publish(
            "$ota/report/{p}/{d}",
            {
                "type": "report_progress",
                "report": {
                    "progress": {
                        "state": "fail",
                        "result_code": "-4",
                        "result_msg": "md5 not match",
                    },
                    "version": "2.0",
                },
            },
            qos=1,
        )
        # Round trip so the progress has been handled.
        await report_version(dev, "1.0")
    [task] = (await admin.get(f"/ota-jobs/{job['JobId']}")).json()["Tasks"]
    assert (task["State"], task["ResultCode"], task["ResultMsg"]) == ("fail", -4, "md5 not match")


async def test_gray_percentage_selects_a_stable_subset(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    for i in range(9):
        await admin.post(f"/products/{cam.product_id}/devices", json={"DeviceName": f"c{i}"})
    await upload(admin, cam.product_id, "3.0", FIRMWARE)
    job = (
        await admin.post(
            f"/products/{cam.product_id}/ota-jobs", json={"Version": "3.0", "GrayPercent": 30}
        )
    ).json()
    assert len(job["Devices"]) == 3  # ceil(10 * 30%)
    status = (await admin.get(f"/ota-jobs/{job['JobId']}")).json()
    assert sorted(t["DeviceName"] for t in status["Tasks"]) == job["Devices"]
    named = (
        await admin.post(
            f"/products/{cam.product_id}/ota-jobs",
            json={"Version": "3.0", "DeviceNames": ["c1", "c2"]},
        )
    ).json()
    assert named["Devices"] == ["c1", "c2"]


@pytest.mark.parametrize(
    ("version", "data", "status", "code"),
    [
        ("1.0", b"", 400, "InvalidParameterValue"),
        ("bad version!", b"x", 400, "InvalidParameterValue"),
        ("x" * 33, b"x", 400, "InvalidParameter"),
    ],
)
async def test_bad_uploads_are_refused(
    admin: httpx.AsyncClient, cam: Provisioned, version: str, data: bytes, status: int, code: str
) -> None:
    resp = await upload(admin, cam.product_id, version, data)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert (await admin.get(f"/products/{cam.product_id}/firmware")).json() == {"Firmware": []}


async def test_duplicate_version_conflicts_and_keeps_the_original(
    admin: httpx.AsyncClient, cam: Provisioned
) -> None:
    assert (await upload(admin, cam.product_id, "1.0", b"original")).status_code == 201
    resp = await upload(admin, cam.product_id, "1.0", b"replacement")
    assert resp.status_code == 409
    [fw] = (await admin.get(f"/products/{cam.product_id}/firmware")).json()["Firmware"]
    assert fw["FileSize"] == len(b"original")


async def test_job_errors(admin: httpx.AsyncClient, cam: Provisioned) -> None:
    resp = await admin.post(f"/products/{cam.product_id}/ota-jobs", json={"Version": "9.9"})
    assert resp.status_code == 404
    await upload(admin, cam.product_id, "1.0", b"fw")
    resp = await admin.post(
        f"/products/{cam.product_id}/ota-jobs", json={"Version": "1.0", "DeviceNames": ["ghost"]}
    )
    assert resp.status_code == 404
    resp = await admin.post(
        f"/products/{cam.product_id}/ota-jobs", json={"Version": "1.0", "GrayPercent": 0}
    )
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        b"nonsense",
        {"type": "report_version", "report": {"version": ""}},
        {"type": "report_progress", "report": {"progress": {"state": "weird"}, "version": "1"}},
        {
            "type": "report_progress",
            "report": {"progress": {"state": "downloading", "percent": "150"}, "version": "1"},
        },
    ],
)
async def test_malformed_ota_reports_change_nothing(
    server: Ivcloud, admin: httpx.AsyncClient, cam: Provisioned, payload: object
) -> None:
    async with device_for(server, cam) as dev:
        await dev.publish("$ota/report/{p}/{d}", payload)  # type: ignore[arg-type]
        rsp = await report_version(dev, "0.1")
        assert rsp["version"] == "0.1"
    device = (await admin.get(f"/products/{cam.product_id}/devices/cam01")).json()
    assert device["FirmwareVersion"] == "0.1"


async def test_firmware_url_expired_or_unknown(server: Ivcloud) -> None:
    assert server.endpoints is not None
    async with httpx.AsyncClient(base_url=server.endpoints.http_url) as http:
        resp = await http.get("/ota/firmware/1/fw.bin?expires=1&sign=00")
        assert resp.status_code == 403
        resp = await http.get("/ota/firmware/1/fw.bin")
        assert resp.status_code == 403

"""Firmware upgrade from the app (spec §2.9), on top of :class:`ivcloud.services.ota.OtaService`.

* ``AppCheckFirmwareUpdate``: ``CurrentVersion`` = the version the device last reported,
  ``DstVersion`` = the newest firmware of the product that is newer than it (or the current
  version when there is none). "Newer" compares the numeric parts of the version
  (``1.10.0`` > ``1.9.3``), then upload order — firmware versions are free text.
* ``AppPublishFirmwareUpdateMessage`` (family member): an OTA job for this one device to
  ``DstVersion``; repeated taps while that upgrade is open do not create more jobs. An
  offline device gets ``update_firmware`` when it reconnects (OTA resume rule).
* ``AppDescribeFirmwareUpdateStatus``: the device's latest upgrade task mapped to the MPDEMO
  ``Status`` codes: pending 1, sent 2, downloading 3, burning 4, fail 5, done 6, and 0 while
  the device is offline with the upgrade still open. With no upgrade task at all the answer
  is 0 when offline, else 6 with ``DstVersion == OriVersion`` (nothing to do).
  ``OriVersion`` is the version the device currently reports (the pre-upgrade version is not
  stored, so after success it equals ``DstVersion``); ``ErrMsg`` is the device's
  ``result_msg`` of a failed upgrade.

Viewing (check, status) needs ``Access.SHARED``; starting an upgrade ``Access.MEMBER``."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import FAILED_OPERATION, AppApiError, device_ref
from ivcloud.services.access import Access
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.ota import OPEN_STATES
from ivcloud.store.schema import Firmware, OtaJob, OtaTask

STATUS_OFFLINE = 0
STATUS_CODES = {"pending": 1, "sent": 2, "downloading": 3, "burning": 4, "fail": 5, "done": 6}
_NUMBER = re.compile(r"\d+")


async def _device(call: Call, need: Access) -> DeviceRecord:
    pid, dn = device_ref(call.params)
    return await call.instance.access.require_device(call.me, pid, dn, need)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in _NUMBER.findall(version))


async def _versions(call: Call, rec: DeviceRecord) -> tuple[str, str]:
    """(current, destination) as ``AppCheckFirmwareUpdate`` reports them."""
    current = rec.fw_version or ""
    uploaded = [fw.version for fw in await call.instance.ota.list_firmware(rec.product_id)]
    order = {v: i for i, v in enumerate(uploaded)}

    def key(version: str) -> tuple[tuple[int, ...], int]:
        return _numbers(version), order.get(version, -1)

    newer = [v for v in uploaded if not current or key(v) > key(current)]
    return current, max(newer, key=key) if newer else current


async def _latest_task(call: Call, rec: DeviceRecord) -> tuple[OtaTask, str] | None:
    """The device's most recent upgrade task (any state) and its target version."""
    async with call.instance.sessions() as s:
        row = (
            await s.execute(
                select(OtaTask, Firmware.version)
                .join(OtaJob, OtaJob.id == OtaTask.job_id)
                .join(Firmware, Firmware.id == OtaJob.firmware_id)
                .where(OtaTask.device_id == rec.id)
                .order_by(OtaTask.id.desc())
                .limit(1)
            )
        ).first()
    return None if row is None else (row[0], row[1])


def register(reg: ActionRegistry) -> None:
    @reg.action("AppCheckFirmwareUpdate", "token")
    async def check(call: Call) -> dict[str, Any]:
        rec = await _device(call, Access.SHARED)
        current, dst = await _versions(call, rec)
        return {"CurrentVersion": current, "DstVersion": dst}

    @reg.action("AppPublishFirmwareUpdateMessage", "token")
    async def publish(call: Call) -> dict[str, Any]:
        rec = await _device(call, Access.MEMBER)
        current, dst = await _versions(call, rec)
        if dst == current:
            raise AppApiError(FAILED_OPERATION, "the device already runs the newest firmware")
        latest = await _latest_task(call, rec)
        if latest is None or latest[0].state not in OPEN_STATES or latest[1] != dst:
            await call.instance.ota.create_job(rec.product_id, dst, device_names=[rec.device_name])
        return {}

    @reg.action("AppDescribeFirmwareUpdateStatus", "token")
    async def status(call: Call) -> dict[str, Any]:
        rec = await _device(call, Access.SHARED)
        current = rec.fw_version or ""
        latest = await _latest_task(call, rec)
        if latest is None:
            code = STATUS_CODES["done"] if rec.online else STATUS_OFFLINE
            return {
                "Status": code,
                "Percent": 0,
                "DstVersion": current,
                "OriVersion": current,
                "ErrMsg": "",
            }
        task, version = latest
        code = STATUS_CODES.get(task.state, STATUS_CODES["pending"])
        if task.state in OPEN_STATES and not rec.online:
            code = STATUS_OFFLINE
        percent = 100 if task.state == "done" else task.percent
        return {
            "Status": code,
            "Percent": percent,
            "DstVersion": version,
            "OriVersion": current,
            "ErrMsg": task.result_msg if task.state == "fail" else "",
        }

"""Firmware and upgrade jobs (spec §5).

A job targets named devices or a whole product; ``gray_percent`` picks a stable subset
(ordered by a hash of job id and device name, so re-running selection gives the same
devices).  ``update_firmware`` is sent when the job is created (to online devices) and again
whenever a targeted device reports a version other than the job's — the resume rule of the
spec — until the task reaches ``done`` or ``fail``."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.bus.events import OtaProgress
from ivcloud.protocol import ota
from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.signing import sign_path
from ivcloud.services.devices import DeviceRecord, DeviceService
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.ports import Bus, Clock, Downlink
from ivcloud.services.products import ProductService
from ivcloud.store.objects import ObjectStore
from ivcloud.store.schema import Device, Firmware, OtaJob, OtaTask

MAX_FIRMWARE_BYTES = 512 * 1024 * 1024
URL_TTL_S = 24 * 3600
OPEN_STATES = ("pending", "downloading", "burning")


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    id: int
    product_id: str
    version: str
    filename: str
    size: int
    md5: str
    object_key: str
    created_ms: int

    def to_api(self) -> dict[str, Any]:
        return {
            "FirmwareId": self.id,
            "ProductId": self.product_id,
            "Version": self.version,
            "FileName": self.filename,
            "FileSize": self.size,
            "Md5sum": self.md5,
            "CreateTime": self.created_ms // 1000,
        }


def _fw(row: Firmware) -> FirmwareInfo:
    return FirmwareInfo(
        row.id,
        row.product_id,
        row.version,
        row.filename,
        row.size,
        row.md5,
        row.object_key,
        row.created_ms,
    )


def _safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in base)[:128]
    if not clean.strip("._"):
        raise InvalidInput("firmware file name is empty")
    return clean


def gray_rank(job_id: int, names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: hashlib.sha256(f"{job_id}:{n}".encode()).digest())


class OtaService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        products: ProductService,
        devices: DeviceService,
        objects: ObjectStore,
        downlink: Downlink,
        bus: Bus,
        clock: Clock,
        *,
        url_key: bytes,
        base_url: str,
    ) -> None:
        self._sessions = sessions
        self._products = products
        self._devices = devices
        self._objects = objects
        self._downlink = downlink
        self._bus = bus
        self._clock = clock
        self._url_key = url_key
        self.base_url = base_url

    # -- firmware ---------------------------------------------------------------------------

    async def upload_firmware(
        self, product_id: str, version: str, filename: str, data: bytes
    ) -> FirmwareInfo:
        try:
            ota.check_version(version)
        except ProtocolError as exc:
            raise InvalidInput(str(exc)) from None
        if not data:
            raise InvalidInput("firmware file is empty")
        if len(data) > MAX_FIRMWARE_BYTES:
            raise InvalidInput(f"firmware file is larger than {MAX_FIRMWARE_BYTES} bytes")
        if not await self._products.exists(product_id):
            raise NotFound(f"product {product_id} does not exist")
        name = _safe_filename(filename)
        key = f"firmware/{product_id}/{version}/{name}"
        async with self._sessions() as s:
            exists = await s.scalar(
                select(Firmware.id).where(
                    Firmware.product_id == product_id, Firmware.version == version
                )
            )
        if exists is not None:
            raise Conflict(f"firmware {version} already exists for product {product_id}")
        self._objects.put(key, data)
        row = Firmware(
            product_id=product_id,
            version=version,
            filename=name,
            size=len(data),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            object_key=key,
            created_ms=self._clock.now_ms(),
        )
        try:
            async with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            raise Conflict(f"firmware {version} already exists for product {product_id}") from None
        return _fw(row)

    async def list_firmware(self, product_id: str) -> list[FirmwareInfo]:
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(Firmware).where(Firmware.product_id == product_id).order_by(Firmware.id)
                )
            ).all()
        return [_fw(r) for r in rows]

    async def firmware(self, firmware_id: int) -> FirmwareInfo:
        async with self._sessions() as s:
            row = await s.get(Firmware, firmware_id)
        if row is None:
            raise NotFound(f"firmware {firmware_id} does not exist")
        return _fw(row)

    def download_url(self, fw: FirmwareInfo) -> str:
        path = f"/ota/firmware/{fw.id}/{fw.filename}"
        expires = self._clock.now_ms() // 1000 + URL_TTL_S
        return self.base_url + sign_path(self._url_key, path, expires)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(
        self,
        product_id: str,
        version: str,
        *,
        device_names: list[str] | None = None,
        gray_percent: int = 100,
    ) -> dict[str, Any]:
        if not 1 <= gray_percent <= 100:
            raise InvalidInput("gray percent must be 1-100")
        async with self._sessions() as s:
            fw_row = await s.scalar(
                select(Firmware).where(
                    Firmware.product_id == product_id, Firmware.version == version
                )
            )
        if fw_row is None:
            raise NotFound(f"firmware {version} does not exist for product {product_id}")
        fw = _fw(fw_row)
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            q = select(Device.id, Device.device_name).where(Device.product_id == product_id)
            if device_names is not None:
                q = q.where(Device.device_name.in_(device_names))
            targets = {dev_id: name for dev_id, name in (await s.execute(q)).all()}
            if device_names is not None:
                missing = set(device_names) - set(targets.values())
                if missing:
                    raise NotFound(f"devices do not exist: {', '.join(sorted(missing))}")
            job = OtaJob(
                product_id=product_id, firmware_id=fw.id, gray_percent=gray_percent, created_ms=now
            )
            s.add(job)
            await s.flush()
            ranked = gray_rank(job.id, list(targets.values()))
            chosen = set(ranked[: math.ceil(len(ranked) * gray_percent / 100)])
            for dev_id, name in targets.items():
                if name in chosen:
                    s.add(OtaTask(job_id=job.id, device_id=dev_id, state="pending", updated_ms=now))
            job_id = job.id
        sent = 0
        for name in sorted(chosen):
            rec = await self._devices.find(product_id, name)
            if rec is not None and rec.fw_version != version and await self._send(rec, fw):
                sent += 1
        return {"JobId": job_id, "Version": version, "Devices": sorted(chosen), "Sent": sent}

    async def _send(self, rec: DeviceRecord, fw: FirmwareInfo) -> bool:
        return await self._downlink.publish(
            rec.client_id,
            ota.ota_topic("update", rec.product_id, rec.device_name),
            ota.update_firmware(fw.version, self.download_url(fw), fw.md5, fw.size),
            qos=1,
        )

    async def _open_task(self, rec: DeviceRecord) -> tuple[OtaTask, FirmwareInfo] | None:
        async with self._sessions() as s:
            row = (
                await s.execute(
                    select(OtaTask, Firmware)
                    .join(OtaJob, OtaJob.id == OtaTask.job_id)
                    .join(Firmware, Firmware.id == OtaJob.firmware_id)
                    .where(OtaTask.device_id == rec.id, OtaTask.state.in_(OPEN_STATES))
                    .order_by(OtaTask.id.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else (row[0], _fw(row[1]))

    async def on_version(self, rec: DeviceRecord, version: str) -> None:
        """A device reported its running version: reply, record it, resume or finish."""
        await self._downlink.publish(
            rec.client_id,
            ota.ota_topic("update", rec.product_id, rec.device_name),
            ota.version_reply(version),
            qos=1,
        )
        await self._devices.save_fw_version(rec, version)
        found = await self._open_task(rec)
        if found is None:
            return
        task, fw = found
        if version == fw.version:
            await self._update_task(task.id, "done", 100, 0, "success")
            self._publish(rec, fw.version, "done", 100, 0)
        elif task.state == "pending" or task.state == "downloading":
            await self._send(rec, fw)

    async def on_progress(self, rec: DeviceRecord, report: ota.ProgressReport) -> None:
        found = await self._open_task(rec)
        if found is None or found[1].version != report.version:
            return
        task, fw = found
        await self._update_task(
            task.id, report.state, report.percent, report.result_code, report.result_msg
        )
        if report.state == "done":
            await self._devices.save_fw_version(rec, fw.version)
        self._publish(rec, fw.version, report.state, report.percent, report.result_code)

    async def _update_task(
        self, task_id: int, state: str, percent: int, code: int, msg: str
    ) -> None:
        async with self._sessions.begin() as s:
            task = await s.get(OtaTask, task_id)
            if task is not None:
                task.state = state
                task.percent = percent
                task.result_code = code
                task.result_msg = msg
                task.updated_ms = self._clock.now_ms()

    def _publish(self, rec: DeviceRecord, version: str, state: str, pct: int, code: int) -> None:
        self._bus.publish(OtaProgress(rec.product_id, rec.device_name, version, state, pct, code))

    async def job_status(self, job_id: int) -> dict[str, Any]:
        async with self._sessions() as s:
            job = await s.get(OtaJob, job_id)
            if job is None:
                raise NotFound(f"upgrade job {job_id} does not exist")
            fw = await s.get(Firmware, job.firmware_id)
            rows = (
                await s.execute(
                    select(OtaTask, Device.device_name)
                    .join(Device, Device.id == OtaTask.device_id)
                    .where(OtaTask.job_id == job_id)
                    .order_by(Device.device_name)
                )
            ).all()
        return {
            "JobId": job.id,
            "ProductId": job.product_id,
            "Version": fw.version if fw else None,
            "GrayPercent": job.gray_percent,
            "CreateTime": job.created_ms // 1000,
            "Tasks": [
                {
                    "DeviceName": name,
                    "State": t.state,
                    "Percent": t.percent,
                    "ResultCode": t.result_code,
                    "ResultMsg": t.result_msg,
                    "UpdateTime": t.updated_ms // 1000,
                }
                for t, name in rows
            ],
        }

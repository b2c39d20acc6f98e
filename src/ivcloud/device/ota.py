"""Device-side OTA (device-protocol.md §5; ``iv_ota_*``): report the running version, take
``update_firmware``, download with resume, verify, install, report progress.

The download goes to ``<dir>/firmware-<version>.bin.part`` and is renamed only once its MD5
matches, so a device that loses power mid-download resumes with ``Range: bytes=<size>-``
instead of starting over — on a metered 4G link or a slow Wi-Fi that is the difference between
an upgrade that finishes and one that never does."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog

from ivcloud.device.types import DeviceInfo, maybe_await

log = structlog.get_logger("ivcloud.device.ota")

# Failure result codes of report_progress (spec §5).
DOWNLOAD_TIMEOUT = -1
FILE_NOT_FOUND = -2
AUTH_FAILED = -3
MD5_MISMATCH = -4
UPGRADE_FAILED = -5
RESULT_MESSAGES = {
    0: "success",
    DOWNLOAD_TIMEOUT: "timeout",
    FILE_NOT_FOUND: "file not exit",  # sic: the C SDK's wording, kept for log compatibility
    AUTH_FAILED: "auth fail",
    MD5_MISMATCH: "md5 not match",
    UPGRADE_FAILED: "upgrade fail",
}
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FirmwareUpdate:
    """An ``update_firmware`` order (``iv_ota_firmware_update_cb``'s arguments)."""

    version: str
    url: str
    md5sum: str
    file_size: int


UpdateCallback = Callable[[FirmwareUpdate], Awaitable[bool] | bool]
InstallCallback = Callable[[FirmwareUpdate, Path], Awaitable[bool] | bool]
PublishJson = Callable[[str, dict[str, Any], int], Awaitable[bool]]


class _Failed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(RESULT_MESSAGES.get(code, "fail"))
        self.code = code


class _PartFile:
    """Blocking file access for the download, kept out of the coroutines (the chunks are
    small; an integrator on a slow flash can swap in a thread-backed variant)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def md5_of_existing(self) -> Any:
        digest = hashlib.md5(usedforsecurity=False)
        if self.path.exists():
            with self.path.open("rb") as fh:
                for block in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(block)
        return digest

    def truncate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")

    def append(self, data: bytes) -> None:
        with self.path.open("ab") as fh:
            fh.write(data)

    def finish(self, final: Path) -> Path:
        self.path.replace(final)
        return final


class OtaAgent:
    """OTA state for one device; created by :meth:`IvDevice.ota_init`."""

    def __init__(
        self,
        info: DeviceInfo,
        version: str,
        publish: PublishJson,
        *,
        on_install: InstallCallback,
        on_update: UpdateCallback | None = None,
        download_dir: Path | None = None,
        progress_interval: float = 1.0,
        http_timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        self.version = version
        self.target_version: str | None = None
        self._topic = f"$ota/report/{info.product_id}/{info.device_name}"
        self._publish = publish
        self._on_install = on_install
        self._on_update = on_update
        self._dir = download_dir or Path(tempfile.gettempdir()) / "ivcloud-ota" / info.client_id
        self._interval = progress_interval
        self._http_timeout = http_timeout
        self._retries = retries
        self._task: asyncio.Task[None] | None = None
        #: Where the last download started (non-zero = resumed with ``Range``).
        self.resumed_from = 0
        #: Result code of the last finished upgrade (0 done, negative = failure code).
        self.last_result: int | None = None
        self.last_version_reply: dict[str, Any] | None = None
        self.finished = asyncio.Event()

    # -- messages -------------------------------------------------------------------------

    async def report_version(self) -> bool:
        doc = {"type": "report_version", "report": {"version": self.version}}
        return await self._publish(self._topic, doc, 1)

    async def report_progress(
        self, version: str, state: str, percent: int, result_code: int = 0, result_msg: str = ""
    ) -> bool:
        progress = {
            "state": state,
            "percent": str(percent),
            "result_code": str(result_code),
            "result_msg": result_msg or RESULT_MESSAGES.get(result_code, ""),
        }
        doc = {"type": "report_progress", "report": {"progress": progress, "version": version}}
        # Intermediate percentages are disposable (QoS 0); the outcome is not (QoS 1).
        qos = 1 if state in ("done", "fail") else 0
        return await self._publish(self._topic, doc, qos)

    def on_version_reply(self, doc: dict[str, Any]) -> None:
        self.last_version_reply = doc

    def on_update_message(self, doc: dict[str, Any]) -> None:
        """Called by the reader: start (or keep) the upgrade task. The cloud re-sends the
        order whenever the device reports an older version, so duplicates are normal."""
        try:
            update = FirmwareUpdate(
                str(doc["version"]),
                str(doc["url"]),
                str(doc["md5sum"]).lower(),
                int(doc["file_size"]),
            )
        except (KeyError, TypeError, ValueError):
            log.info("ota_bad_update_message")
            return
        if update.version == self.version:
            return
        if self._task is not None and not self._task.done():
            if update.version == self.target_version:
                return
            self._task.cancel()
        self.target_version = update.version
        self.finished.clear()
        self._task = asyncio.create_task(self._upgrade(update), name=f"ota-{update.version}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the upgrade ----------------------------------------------------------------------

    async def _upgrade(self, update: FirmwareUpdate) -> None:
        try:
            await self._install(update)
            code = 0
        except _Failed as exc:
            code = exc.code
            await self.report_progress(update.version, "fail", 0, code)
        except Exception:  # e.g. a full disk: the cloud must still hear that the job failed
            log.exception("ota_upgrade_crashed", version=update.version)
            code = UPGRADE_FAILED
            await self.report_progress(update.version, "fail", 0, code)
        self.last_result = code
        self.finished.set()
        log.info("ota_finished", version=update.version, result=code)

    async def _install(self, update: FirmwareUpdate) -> None:
        if self._on_update is not None and not await maybe_await(self._on_update(update)):
            raise _Failed(UPGRADE_FAILED)
        path = await self._download(update)
        await self.report_progress(update.version, "burning", 100)
        try:
            ok = await maybe_await(self._on_install(update, path))
        except Exception:
            log.exception("ota_install_failed", version=update.version)
            ok = False
        if not ok:
            raise _Failed(UPGRADE_FAILED)
        self.version = update.version
        await self.report_progress(update.version, "done", 100)
        await self.report_version()

    async def _download(self, update: FirmwareUpdate) -> Path:
        part = _PartFile(self._dir / f"firmware-{update.version}.bin.part")
        final = self._dir / f"firmware-{update.version}.bin"
        if part.size() > update.file_size:
            part.truncate()
        self.resumed_from = part.size()
        async with httpx.AsyncClient(timeout=self._http_timeout) as http:
            for attempt in range(self._retries + 1):
                try:
                    await self._fetch(http, update, part)
                    break
                except (httpx.TransportError, _Retry) as exc:
                    log.info("ota_download_retry", attempt=attempt, error=str(exc))
                    if attempt == self._retries:
                        raise _Failed(DOWNLOAD_TIMEOUT) from None
                    await asyncio.sleep(min(2.0**attempt, 10.0))
        if part.size() != update.file_size or part.md5_of_existing().hexdigest() != update.md5sum:
            part.truncate()  # corrupt: next attempt must start from zero
            raise _Failed(MD5_MISMATCH)
        return part.finish(final)

    async def _fetch(
        self, http: httpx.AsyncClient, update: FirmwareUpdate, part: _PartFile
    ) -> None:
        offset = part.size()
        if offset >= update.file_size:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with http.stream("GET", update.url, headers=headers) as resp:
            status = resp.status_code
            if status in (401, 403):
                raise _Failed(AUTH_FAILED)
            if status in (404, 410):
                raise _Failed(FILE_NOT_FOUND)
            if status == 408 or status >= 500:
                raise _Retry(f"HTTP {status}")
            if status not in (200, 206):
                raise _Failed(FILE_NOT_FOUND)
            if offset and status == 200:  # server ignored Range: start over
                part.truncate()
                offset = 0
            done, last = offset, 0.0
            await self.report_progress(update.version, "downloading", _pct(done, update.file_size))
            async for chunk in resp.aiter_bytes(_CHUNK):
                part.append(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last >= self._interval and done < update.file_size:
                    last = now
                    pct = _pct(done, update.file_size)
                    await self.report_progress(update.version, "downloading", pct)
            await self.report_progress(update.version, "downloading", _pct(done, update.file_size))


class _Retry(Exception):
    """A transient HTTP failure worth another (resumed) attempt."""


def _pct(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, done * 100 // total)

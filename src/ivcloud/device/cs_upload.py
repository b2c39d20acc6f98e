"""The device's cloud-storage upload queue: signed HTTP requests sent in order, with retries.

One worker task sends jobs strictly in the order they were queued — an init segment before
the segments that name it, an event before its picture and its stop — so the server never
sees a reference before its target. Network errors, 5xx, 408 and 429 are retried with
exponential back-off and jitter (:func:`~ivcloud.device.types.backoff_delay`); any other
4xx is final (the server refused *this* upload; sending it again cannot help, and
ivcloud's uploads are idempotent, so a retry after a lost answer is harmless).

Media segments are the only bulky jobs: at most ``media_max`` of them wait, a newer one is
dropped beyond that (counted and reported). Control jobs are small and always queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

import httpx
import structlog

from ivcloud.device.types import DeviceInfo, backoff_delay
from ivcloud.protocol.device_http_auth import authorization_header

__all__ = ["API_PREFIX", "Job", "UploadKind", "UploadQueue", "UploadResult", "UploadStats"]

log = structlog.get_logger("ivcloud.device.cloud_storage")

API_PREFIX = "/api/device/v1/cs"
UploadKind = Literal["init", "segment", "event", "stop", "thumbnail"]
_REQUEST_LIFETIME_S = 60


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What ``on_result`` gets for every upload (``iv_cs_event_report_result_cb`` and
    ``iv_cs_notify_cb`` rolled into one)."""

    kind: UploadKind
    ok: bool
    status: int | None  # HTTP status, None for a network failure or a local drop
    detail: str = ""


@dataclass(slots=True)
class UploadStats:
    segments: int = 0
    segment_bytes: int = 0
    dropped_segments: int = 0
    failed: int = 0
    retries: int = 0


@dataclass(slots=True)
class Job:
    kind: UploadKind
    method: str
    path: str  # under API_PREFIX
    query: dict[str, int | str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/octet-stream"


class UploadQueue:
    def __init__(
        self,
        info: DeviceInfo,
        base_url: str,
        *,
        media_max: int = 16,
        retries: int = 5,
        backoff_first: float = 0.5,
        backoff_cap: float = 10.0,
        http_timeout: float = 30.0,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_result: Callable[[UploadResult], None] | None = None,
    ) -> None:
        self.info = info
        self.stats = UploadStats()
        self._base = base_url.rstrip("/")
        self._media_max, self._retries = media_max, retries
        self._first, self._cap, self._timeout = backoff_first, backoff_cap, http_timeout
        self._clock, self._sleep, self._on_result = clock, sleep, on_result
        self._queue: deque[Job] = deque()
        self._media = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._http: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._worker is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
            self._worker = asyncio.create_task(self._work())

    async def wait_idle(self) -> None:
        while self._queue:
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def push(self, job: Job) -> bool:
        """Queue ``job``; False (and reported) when it is a segment and the queue is full."""
        if job.kind == "segment":
            if self._media >= self._media_max:
                self.stats.dropped_segments += 1
                self.report(UploadResult("segment", False, None, "upload queue full: dropped"))
                return False
            self._media += 1
        self._queue.append(job)
        self._idle.clear()
        self._wakeup.set()
        return True

    def report(self, result: UploadResult) -> None:
        if not result.ok:
            log.info(
                "cs_upload_failed", kind=result.kind, status=result.status, error=result.detail
            )
        if self._on_result is not None:
            self._on_result(result)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._queue[0]
            try:
                await self._send(job)
            finally:
                self._queue.popleft()
                if job.kind == "segment":
                    self._media -= 1

    async def _send(self, job: Job) -> None:
        assert self._http is not None
        target = f"{API_PREFIX}/{job.path}" + (f"?{urlencode(job.query)}" if job.query else "")
        status: int | None = None
        detail = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self.stats.retries += 1
                await self._sleep(backoff_delay(attempt - 1, first=self._first, cap=self._cap))
            auth = authorization_header(
                self.info.device_secret,
                self.info.product_id,
                self.info.device_name,
                job.method,
                target,
                job.body,
                int(self._clock()) + _REQUEST_LIFETIME_S,
            )
            headers = {"Authorization": auth, "Content-Type": job.content_type}
            try:
                resp = await self._http.request(
                    job.method, self._base + target, content=job.body, headers=headers
                )
            except httpx.HTTPError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
                continue
            status, detail = resp.status_code, resp.text[:200]
            if resp.is_success:
                if job.kind == "segment":
                    self.stats.segments += 1
                    self.stats.segment_bytes += len(job.body)
                self.report(UploadResult(job.kind, True, status))
                return
            if 400 <= status < 500 and status not in (408, 429):
                break  # the server refused this upload: retrying cannot help
        self.stats.failed += 1
        self.report(UploadResult(job.kind, False, status, detail))

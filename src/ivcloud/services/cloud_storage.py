"""Cloud storage, write side: what devices upload (init segments, GOP segments, events,
thumbnails). Reads are in :mod:`cloud_storage_query`, retention in
:mod:`cloud_storage_retention`.

Two rules keep the index and the bytes consistent whatever fails, and make every upload
idempotent (so a device may retry — or an attacker replay — freely):

* **object first, then row.** The object key contains a hash of the content, so writing it
  never disturbs an object a row already points to; the row is inserted only once the
  object is durable, and a failed insert removes the object again (unless a row for that
  very key won the race). A reader never sees a row whose bytes are missing.
* **the natural key decides.** A segment is (device, channel, start), an event (device,
  channel, event id, start), an init segment (device, sha256). Uploading the same thing
  again is a no-op that answers "not created"; uploading *different* bytes under a key
  that is taken is :class:`Conflict` and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.protocol.cs_media import InitInfo, vet_init_segment, vet_jpeg, vet_media_segment
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import Conflict, InvalidInput, NotFound
from ivcloud.services.ports import Clock
from ivcloud.store.objects import ObjectStore
from ivcloud.store.schema_cloud import CsEvent, CsInit, CsSegment

log = structlog.get_logger("ivcloud.cloud_storage")

MAX_CHANNEL: Final[int] = 64  # iv_sys_init max_channel_num
EVENT_ID_MIN, EVENT_ID_MAX = 1, 16  # iv_cs event ids
MAX_SEGMENT_MS: Final[int] = 60_000
MAX_EVENT_MS: Final[int] = 24 * 3600 * 1000
MAX_INIT_BYTES: Final[int] = 64 * 1024
MAX_EVENT_DATA_BYTES: Final[int] = 2048
DAY_MS: Final[int] = 86_400_000
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_INIT_CACHE_MAX: Final[int] = 1024


class PayloadTooLarge(InvalidInput):
    """An upload over its size limit (HTTP 413); refused before anything is stored."""


@dataclass(frozen=True, slots=True)
class CsLimits:
    retention_days: int = 7
    max_segment_bytes: int = 8 * 1024 * 1024
    max_thumbnail_bytes: int = 512 * 1024
    clock_skew_s: int = 300


@dataclass(frozen=True, slots=True)
class Stored:
    """Result of an idempotent upload: the row's id (segments, events) and whether this
    call created it."""

    id: int
    created: bool


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CloudStorageService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        objects: ObjectStore,
        clock: Clock,
        limits: CsLimits,
    ) -> None:
        self._sessions = sessions
        self._objects = objects
        self._clock = clock
        self.limits = limits
        self._inits: dict[tuple[int, str], InitInfo] = {}

    # -- validation ------------------------------------------------------------------------

    def _check_channel(self, channel: int) -> None:
        if not 0 <= channel <= MAX_CHANNEL:
            raise InvalidInput(f"channel must be 0..{MAX_CHANNEL}")

    def _check_times(self, start_ms: int, end_ms: int | None, max_len_ms: int) -> None:
        now = self._clock.now_ms()
        oldest = now - self.limits.retention_days * DAY_MS
        newest = now + self.limits.clock_skew_s * 1000
        if not oldest <= start_ms <= newest:
            raise InvalidInput("start_ms is outside the retention window (check the device clock)")
        if end_ms is not None and not start_ms <= end_ms <= min(newest, start_ms + max_len_ms):
            raise InvalidInput(f"end_ms must be within {max_len_ms} ms after start_ms, not future")

    # -- objects (blocking file I/O off the event loop) --------------------------------------

    async def _put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._objects.put, key, data)

    async def _delete(self, key: str) -> None:
        await asyncio.to_thread(self._objects.delete, key)

    # -- init segments -----------------------------------------------------------------------

    async def put_init(self, rec: DeviceRecord, data: bytes) -> tuple[str, bool]:
        """Store an init segment; returns its sha256 and whether it was new. A known one is
        re-announced (its retention clock restarts), since segments are about to use it."""
        if len(data) > MAX_INIT_BYTES:
            raise PayloadTooLarge(f"init segment larger than {MAX_INIT_BYTES} bytes")
        try:
            info = vet_init_segment(data)
        except MediaFormatError as exc:
            raise InvalidInput(f"not an fMP4 init segment: {exc}") from None
        sha = _digest(data)
        now = self._clock.now_ms()
        async with self._sessions.begin() as s:
            found = await s.execute(
                update(CsInit)
                .where(CsInit.device_id == rec.id, CsInit.sha256 == sha)
                .values(created_ms=now)
            )
        if found.rowcount:  # type: ignore[attr-defined]
            return sha, False
        key = f"cs/{rec.id}/init/{sha}.mp4"
        await self._put(key, data)
        try:
            async with self._sessions.begin() as s:
                s.add(
                    CsInit(
                        device_id=rec.id, sha256=sha, object_key=key, size=len(data), created_ms=now
                    )
                )
        except IntegrityError:
            async with self._sessions() as s:
                known = await s.scalar(
                    select(CsInit.sha256).where(CsInit.device_id == rec.id, CsInit.sha256 == sha)
                )
            if known is None:  # not a race but a foreign key: the device went away
                await self._delete(key)
                raise Conflict("the device was removed while the init was stored") from None
            return sha, False  # an identical upload raced us: same key, same bytes
        self._remember_init(rec.id, sha, info)
        return sha, True

    def _remember_init(self, device_id: int, sha: str, info: InitInfo) -> None:
        if len(self._inits) >= _INIT_CACHE_MAX:
            self._inits.pop(next(iter(self._inits)))
        self._inits[(device_id, sha)] = info

    def forget_init(self, device_id: int, sha: str) -> None:
        """Retention removed this init segment: stop vouching for it from the cache."""
        self._inits.pop((device_id, sha), None)

    async def _init_info(self, rec: DeviceRecord, sha: str) -> InitInfo:
        cached = self._inits.get((rec.id, sha))
        if cached is not None:
            return cached
        async with self._sessions() as s:
            key = await s.scalar(
                select(CsInit.object_key).where(CsInit.device_id == rec.id, CsInit.sha256 == sha)
            )
        if key is None:
            raise InvalidInput("unknown init segment: upload it (PUT …/cs/init) first")
        try:
            info = vet_init_segment(await asyncio.to_thread(self._objects.get, key))
        except (OSError, MediaFormatError):
            raise InvalidInput("the init segment is no longer available: upload it again") from None
        self._remember_init(rec.id, sha, info)
        return info

    # -- media segments ----------------------------------------------------------------------

    async def put_segment(
        self,
        rec: DeviceRecord,
        channel: int,
        start_ms: int,
        end_ms: int,
        init_sha: str,
        data: bytes,
    ) -> Stored:
        self._check_channel(channel)
        if len(data) > self.limits.max_segment_bytes:
            raise PayloadTooLarge(f"segment larger than {self.limits.max_segment_bytes} bytes")
        if end_ms <= start_ms:
            raise InvalidInput("end_ms must be after start_ms")
        self._check_times(start_ms, end_ms, MAX_SEGMENT_MS)
        if _SHA256_RE.fullmatch(init_sha) is None:
            raise InvalidInput("init must be the sha256 (64 lower-case hex) of an init segment")
        info = await self._init_info(rec, init_sha)
        try:
            media = vet_media_segment(data, info)
        except MediaFormatError as exc:
            raise InvalidInput(f"not an fMP4 media segment of that init: {exc}") from None
        declared = end_ms - start_ms
        if abs(declared - media.duration_ms) > 1000 + declared // 10:
            raise InvalidInput(
                f"start_ms..end_ms spans {declared} ms but the segment holds "
                f"{media.duration_ms} ms of media"
            )
        key = f"cs/{rec.id}/{channel}/seg/{start_ms}-{_digest(data)[:16]}.m4s"
        row = CsSegment(
            device_id=rec.id,
            channel=channel,
            start_ms=start_ms,
            end_ms=end_ms,
            duration_ms=media.duration_ms,
            size=len(data),
            object_key=key,
            init_sha256=init_sha,
            created_ms=self._clock.now_ms(),
        )
        return await self._insert_segment(row, data)

    async def _segment_at(self, row: CsSegment) -> tuple[int, str] | None:
        async with self._sessions() as s:
            found = (
                await s.execute(
                    select(CsSegment.id, CsSegment.object_key).where(
                        CsSegment.device_id == row.device_id,
                        CsSegment.channel == row.channel,
                        CsSegment.start_ms == row.start_ms,
                    )
                )
            ).first()
        return None if found is None else (found[0], found[1])

    async def _insert_segment(self, row: CsSegment, data: bytes) -> Stored:
        """Object, then row; the same bytes again are a no-op, other bytes a conflict."""
        key = row.object_key
        found = await self._segment_at(row)
        if found is not None:
            if found[1] != key:
                raise Conflict("a different segment is already stored at this start_ms")
            return Stored(found[0], False)
        await self._put(key, data)
        try:
            async with self._sessions.begin() as s:
                s.add(row)
                await s.flush()
                return Stored(row.id, True)
        except IntegrityError:
            found = await self._segment_at(row)
            if found is not None and found[1] == key:
                return Stored(found[0], False)  # an identical upload raced us
            await self._delete(key)  # only the row at this start could point to our key
            if found is None:  # a foreign key failed: the device went away meanwhile
                raise Conflict("the device was removed while the segment was stored") from None
            raise Conflict("a different segment is already stored at this start_ms") from None
        except BaseException:
            # Unknown outcome (storage down, cancelled): drop our object unless a row for
            # exactly this key exists; when even that cannot be checked, keep it (an
            # orphaned file is harmless, a row without its bytes is not).
            with contextlib.suppress(Exception):
                found = await self._segment_at(row)
                if found is None or found[1] != key:
                    await self._delete(key)
            raise

    # -- events ------------------------------------------------------------------------------

    def _check_event(self, channel: int, event_id: int) -> None:
        self._check_channel(channel)
        if not EVENT_ID_MIN <= event_id <= EVENT_ID_MAX:
            raise InvalidInput(f"event_id must be {EVENT_ID_MIN}..{EVENT_ID_MAX}")

    async def _event(
        self, s: AsyncSession, rec: DeviceRecord, channel: int, event_id: int, start_ms: int
    ) -> CsEvent | None:
        return await s.scalar(
            select(CsEvent).where(
                CsEvent.device_id == rec.id,
                CsEvent.channel == channel,
                CsEvent.event_id == event_id,
                CsEvent.start_ms == start_ms,
            )
        )

    async def start_event(
        self,
        rec: DeviceRecord,
        channel: int,
        event_id: int,
        start_ms: int,
        end_ms: int | None = None,
        data: dict[str, Any] | None = None,
        *,
        video: bool = True,
    ) -> Stored:
        """``iv_cs_event_start`` (``end_ms`` None) or a whole event at once; a repeat of a
        known event only fills in a missing ``end_ms``."""
        self._check_event(channel, event_id)
        self._check_times(start_ms, end_ms, MAX_EVENT_MS)
        if data is not None and len(json.dumps(data, separators=(",", ":"))) > MAX_EVENT_DATA_BYTES:
            raise PayloadTooLarge(f"event data larger than {MAX_EVENT_DATA_BYTES} bytes")
        row = CsEvent(
            device_id=rec.id,
            channel=channel,
            event_id=event_id,
            start_ms=start_ms,
            end_ms=end_ms,
            video=video,
            thumbnail_key=None,
            data=data,
            created_ms=self._clock.now_ms(),
        )
        try:
            async with self._sessions.begin() as s:
                s.add(row)
                await s.flush()
            log.info("cs_event", device=rec.client_id, channel=channel, event_id=event_id)
            return Stored(row.id, True)
        except IntegrityError:
            pass
        async with self._sessions.begin() as s:
            known = await self._event(s, rec, channel, event_id, start_ms)
            if known is None:  # deleted in between (retention): nothing to repeat
                raise Conflict("event was removed while being stored; retry")
            if end_ms is not None and known.end_ms is None:
                known.end_ms = end_ms
            return Stored(known.id, False)

    async def stop_event(
        self, rec: DeviceRecord, channel: int, event_id: int, start_ms: int, end_ms: int
    ) -> None:
        self._check_event(channel, event_id)
        self._check_times(start_ms, end_ms, MAX_EVENT_MS)
        async with self._sessions.begin() as s:
            known = await self._event(s, rec, channel, event_id, start_ms)
            if known is None:
                raise NotFound("no such event (POST …/cs/events first)")
            if known.end_ms is None:
                known.end_ms = end_ms
            elif known.end_ms != end_ms:
                raise Conflict("the event already ended at another time")

    async def put_thumbnail(
        self, rec: DeviceRecord, channel: int, event_id: int, start_ms: int, data: bytes
    ) -> bool:
        """The event's picture (one per event); returns whether it was stored now."""
        self._check_event(channel, event_id)
        if len(data) > self.limits.max_thumbnail_bytes:
            raise PayloadTooLarge(f"thumbnail larger than {self.limits.max_thumbnail_bytes} bytes")
        try:
            vet_jpeg(data, self.limits.max_thumbnail_bytes)
        except MediaFormatError as exc:
            raise InvalidInput(str(exc)) from None
        async with self._sessions() as s:
            known = await self._event(s, rec, channel, event_id, start_ms)
        if known is None:
            raise NotFound("no such event (POST …/cs/events first)")
        key = f"cs/{rec.id}/{channel}/thumb/{event_id}-{start_ms}-{_digest(data)[:16]}.jpg"
        if known.thumbnail_key is not None:
            if known.thumbnail_key != key:
                raise Conflict("the event already has another thumbnail")
            return False
        await self._put(key, data)
        async with self._sessions.begin() as s:
            done = await s.execute(
                update(CsEvent)
                .where(CsEvent.id == known.id, CsEvent.thumbnail_key.is_(None))
                .values(thumbnail_key=key)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                return True
            current = await s.scalar(select(CsEvent.thumbnail_key).where(CsEvent.id == known.id))
        if current == key:
            return False
        await self._delete(key)
        raise Conflict("the event already has another thumbnail")

"""Cloud storage, read side: the event list with its paging cursor, the days that have
data, a day's timeline, and the lookups playback needs. The caller has already checked
that the user may see the device (``AccessService.require_device``); every query here is
scoped to that one device, so ids from another device's URLs find nothing.

Days are calendar days in the configured time zone (``cloud_storage_timezone``): the
phone shows "2026-11-28" for the user's midnight-to-midnight, not UTC's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.cloud_storage import MAX_EVENT_MS, MAX_SEGMENT_MS
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import InvalidInput
from ivcloud.services.ports import Clock
from ivcloud.store.schema_cloud import CsEvent, CsInit, CsSegment

#: Segments closer than this are one range of the day's timeline (encoder jitter).
MERGE_GAP_MS: Final[int] = 1000
_CURSOR_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,48}")
_CURSOR_BODY_RE: Final = re.compile(r"([0-9]{1,15})\.([0-9]{1,19})")
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class CsEventView:
    id: int
    channel: int
    event_id: int
    start_ms: int
    end_ms: int | None
    video: bool
    thumbnail_key: str | None
    data: dict[str, Any] | None
    has_media: bool  # a segment covers the event (video events)

    @property
    def upload_status(self) -> str:
        """``Finished`` / ``Partial`` / ``Failed`` (the values of Tencent's UploadStatus):
        a video event with clips is Finished once stopped, Partial while running; a stopped
        one without any clip Failed. A picture event is Finished with its picture."""
        if not self.video:
            return "Finished" if self.thumbnail_key else "Partial"
        if self.has_media:
            return "Finished" if self.end_ms is not None else "Partial"
        return "Failed" if self.end_ms is not None else "Partial"


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[CsEventView]
    cursor: str  # "" when the list is over
    listover: bool
    total: int  # events matching the query (all pages)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    id: int
    start_ms: int
    end_ms: int
    duration_ms: int
    init_sha256: str


def encode_cursor(start_ms: int, row_id: int) -> str:
    raw = f"{start_ms}.{row_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> tuple[int, int]:
    """The (start_ms, id) after which the next page starts; anything else is InvalidInput."""
    if _CURSOR_RE.fullmatch(text) is None:
        raise InvalidInput("Context is not a cursor this server issued")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidInput("Context is not a cursor this server issued") from None
    match = _CURSOR_BODY_RE.fullmatch(raw)
    if match is None:
        raise InvalidInput("Context is not a cursor this server issued")
    return int(match.group(1)), int(match.group(2))


def merge_ranges(ranges: Iterable[tuple[int, int]], gap_ms: int) -> list[tuple[int, int]]:
    """Union of ``[start, end)`` ranges, also joining ranges at most ``gap_ms`` apart."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + gap_ms:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _view(row: CsEvent, has_media: bool) -> CsEventView:
    return CsEventView(
        row.id,
        row.channel,
        row.event_id,
        row.start_ms,
        row.end_ms,
        row.video,
        row.thumbnail_key,
        row.data,
        bool(has_media),
    )


def _has_media() -> ColumnElement[bool]:
    """A segment of the event's device and channel overlaps the event (its pre-roll
    segment starts up to a GOP before it); bounded below so the index range stays short."""
    end = func.coalesce(CsEvent.end_ms, CsEvent.start_ms)
    return (
        exists()
        .where(
            CsSegment.device_id == CsEvent.device_id,
            CsSegment.channel == CsEvent.channel,
            CsSegment.start_ms > CsEvent.start_ms - MAX_SEGMENT_MS,
            CsSegment.start_ms <= end,
            CsSegment.end_ms > CsEvent.start_ms,
        )
        .correlate(CsEvent)
    )


def _overlapping(rec: DeviceRecord, channel: int, lo: int, hi: int) -> list[ColumnElement[bool]]:
    return [
        CsSegment.device_id == rec.id,
        CsSegment.channel == channel,
        CsSegment.start_ms > lo - MAX_SEGMENT_MS,
        CsSegment.start_ms < hi,
        CsSegment.end_ms > lo,
    ]


class CloudStorageQuery:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        timezone: str = "UTC",
        retention_days: int = 7,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.tz = ZoneInfo(timezone)
        self._retention_days = retention_days

    # -- events ----------------------------------------------------------------------------

    async def events_page(
        self,
        rec: DeviceRecord,
        start_ms: int,
        end_ms: int,
        *,
        size: int,
        cursor: str | None = None,
        event_id: int | None = None,
        channel: int | None = None,
    ) -> EventsPage:
        """Events starting in ``[start_ms, end_ms]``, newest first, ``size`` per page."""
        where: list[ColumnElement[bool]] = [
            CsEvent.device_id == rec.id,
            CsEvent.start_ms >= start_ms,
            CsEvent.start_ms <= end_ms,
        ]
        if event_id is not None:
            where.append(CsEvent.event_id == event_id)
        if channel is not None:
            where.append(CsEvent.channel == channel)
        page_where = list(where)
        if cursor:
            at, row_id = decode_cursor(cursor)
            page_where.append(
                or_(CsEvent.start_ms < at, and_(CsEvent.start_ms == at, CsEvent.id < row_id))
            )
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(CsEvent, _has_media())
                    .where(*page_where)
                    .order_by(CsEvent.start_ms.desc(), CsEvent.id.desc())
                    .limit(size + 1)
                )
            ).all()
            total = await s.scalar(select(func.count()).select_from(CsEvent).where(*where))
        views = [_view(row, has) for row, has in rows[:size]]
        more = len(rows) > size
        next_cursor = encode_cursor(views[-1].start_ms, views[-1].id) if more and views else ""
        return EventsPage(views, next_cursor, not more, int(total or 0))

    async def event(self, rec: DeviceRecord, row_id: int) -> CsEventView | None:
        return await self._one_event(CsEvent.device_id == rec.id, CsEvent.id == row_id)

    async def event_by_thumbnail(self, rec: DeviceRecord, key: str) -> CsEventView | None:
        return await self._one_event(CsEvent.device_id == rec.id, CsEvent.thumbnail_key == key)

    async def event_at(self, rec: DeviceRecord, t_ms: int) -> CsEventView | None:
        """The newest event of the device under way at ``t_ms`` (to the second)."""
        return await self._one_event(
            CsEvent.device_id == rec.id,
            CsEvent.start_ms > t_ms - MAX_EVENT_MS,
            CsEvent.start_ms <= t_ms + 999,
            func.coalesce(CsEvent.end_ms, CsEvent.start_ms) >= t_ms,
        )

    async def _one_event(self, *where: ColumnElement[bool]) -> CsEventView | None:
        async with self._sessions() as s:
            found = (
                await s.execute(
                    select(CsEvent, _has_media())
                    .where(*where)
                    .order_by(CsEvent.start_ms.desc(), CsEvent.id.desc())
                    .limit(1)
                )
            ).first()
        return None if found is None else _view(found[0], found[1])

    # -- days and timeline -----------------------------------------------------------------

    def day_window(self, day: str) -> tuple[int, int]:
        """``YYYY-MM-DD`` → ``[midnight, next midnight)`` in ms (time-zone aware, so a DST
        day is 23 or 25 hours long)."""
        if _DATE_RE.fullmatch(day) is None:
            raise InvalidInput("Date must be YYYY-MM-DD")
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise InvalidInput("Date must be a real calendar date") from None
        return self._midnight(parsed), self._midnight(parsed + timedelta(days=1))

    def _midnight(self, day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp() * 1000)

    def _day_of(self, ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, tz=self.tz).date()

    async def dates(self, rec: DeviceRecord) -> list[str]:
        """Days (oldest first) with a clip or an event, within the retention period."""
        async with self._sessions() as s:
            seg_lo, seg_hi = (
                await s.execute(
                    select(func.min(CsSegment.start_ms), func.max(CsSegment.end_ms)).where(
                        CsSegment.device_id == rec.id
                    )
                )
            ).one()
            ev_lo, ev_hi = (
                await s.execute(
                    select(func.min(CsEvent.start_ms), func.max(CsEvent.start_ms)).where(
                        CsEvent.device_id == rec.id
                    )
                )
            ).one()
            lows = [v for v in (seg_lo, ev_lo) if v is not None]
            highs = [v for v in (seg_hi, ev_hi) if v is not None]
            if not lows:
                return []
            floor = self._clock.now_ms() - (self._retention_days + 1) * 86_400_000
            day = self._day_of(max(min(lows), floor))
            last = self._day_of(max(highs))
            out: list[str] = []
            while day <= last and len(out) <= self._retention_days + 3:
                lo, hi = self._midnight(day), self._midnight(day + timedelta(days=1))
                if await self._any_data(s, rec, lo, hi):
                    out.append(day.isoformat())
                day += timedelta(days=1)
            return out

    async def _any_data(self, s: AsyncSession, rec: DeviceRecord, lo: int, hi: int) -> bool:
        seg = await s.scalar(
            select(CsSegment.id)
            .where(
                CsSegment.device_id == rec.id,
                CsSegment.start_ms > lo - MAX_SEGMENT_MS,
                CsSegment.start_ms < hi,
                CsSegment.end_ms > lo,
            )
            .limit(1)
        )
        if seg is not None:
            return True
        event = await s.scalar(
            select(CsEvent.id)
            .where(CsEvent.device_id == rec.id, CsEvent.start_ms >= lo, CsEvent.start_ms < hi)
            .limit(1)
        )
        return event is not None

    async def time_ranges(
        self, rec: DeviceRecord, lo: int, hi: int, channel: int = 0
    ) -> list[tuple[int, int]]:
        """Recorded ``[start, end)`` ranges in ``[lo, hi)``, adjacent segments merged and
        the ends clipped to the window."""
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(CsSegment.start_ms, CsSegment.end_ms)
                    .where(*_overlapping(rec, channel, lo, hi))
                    .order_by(CsSegment.start_ms)
                )
            ).all()
        merged = merge_ranges(((a, b) for a, b in rows), MERGE_GAP_MS)
        return [(max(a, lo), min(b, hi)) for a, b in merged]

    # -- playback --------------------------------------------------------------------------

    async def segments(
        self, rec: DeviceRecord, channel: int, lo: int, hi: int, limit: int
    ) -> Sequence[SegmentRef]:
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(
                        CsSegment.id,
                        CsSegment.start_ms,
                        CsSegment.end_ms,
                        CsSegment.duration_ms,
                        CsSegment.init_sha256,
                    )
                    .where(*_overlapping(rec, channel, lo, hi))
                    .order_by(CsSegment.start_ms)
                    .limit(limit)
                )
            ).all()
        return [SegmentRef(*row) for row in rows]

    async def segment_key(self, rec: DeviceRecord, segment_id: int) -> str | None:
        async with self._sessions() as s:
            return await s.scalar(
                select(CsSegment.object_key).where(
                    CsSegment.device_id == rec.id, CsSegment.id == segment_id
                )
            )

    async def init_key(self, rec: DeviceRecord, sha256: str) -> str | None:
        async with self._sessions() as s:
            return await s.scalar(
                select(CsInit.object_key).where(CsInit.device_id == rec.id, CsInit.sha256 == sha256)
            )

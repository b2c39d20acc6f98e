"""Data query Actions (spec §2.5): latest values, property history, event history.

Paging: ``Context`` is an opaque cursor ``"<ms>_<n>"`` = "continue with rows older than or
at <ms>, skipping the first <n> rows at exactly <ms> already returned".  Newest rows come
first.  A timestamp cursor (not an offset) keeps pages stable while the device keeps
reporting, and the skip count keeps rows that share a millisecond from being lost."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ivcloud.api.appapi.actions.devices import device_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER_VALUE,
    AppApiError,
    int_param,
    str_param,
)
from ivcloud.services.access import Access

T = TypeVar("T")

_CURSOR = re.compile(r"([0-9]{1,16})_([0-9]{1,9})")
_MAX_MS = 2**53
_DAY_S = 24 * 3600
EVENT_TYPES = ("alert", "fault", "info")


def _cursor(call: Call, default_until: int) -> tuple[int, int]:
    raw = str_param(call.params, "Context", required=False, max_len=64)
    if raw is None:
        return default_until, 0
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise AppApiError(INVALID_PARAMETER_VALUE, "Context is not a cursor of this API")
    return int(match.group(1)), int(match.group(2))


async def _page(
    fetch: Callable[[int, int], Awaitable[list[T]]],
    ts_of: Callable[[T], int],
    keep: Callable[[T], bool],
    cursor: tuple[int, int],
    size: int,
) -> tuple[list[T], str, bool]:
    """One page of ``size`` kept rows from a newest-first ``fetch(until_ms, n)``; returns
    the rows, the next cursor and whether the list is over.  Fetches more rows (doubling)
    only while a filter (``keep``) discards some."""
    until, skip = cursor
    n = skip + size + 1
    while True:
        rows = await fetch(until, n)
        kept = [i for i in range(skip, len(rows)) if keep(rows[i])]
        if len(kept) > size or len(rows) < n:
            break
        n *= 2
    chosen = kept[:size]
    if not chosen:
        return [], f"{until}_{skip}", True
    last = chosen[-1]
    last_ts = ts_of(rows[last])
    consumed = sum(1 for row in rows[: last + 1] if ts_of(row) == last_ts)
    return [rows[i] for i in chosen], f"{last_ts}_{consumed}", len(kept) <= size


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def register(reg: ActionRegistry) -> None:
    @reg.action("AppGetDeviceData", "token")
    async def device_data(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        latest = await call.instance.telemetry.latest(rec)
        doc = {k: {"Value": v.value, "LastUpdate": v.ts_ms} for k, v in sorted(latest.items())}
        return {"Data": json.dumps(doc, ensure_ascii=False)}

    @reg.action("AppGetDeviceDataHistory", "token")
    async def data_history(call: Call) -> dict[str, Any]:
        """``MinTime`` defaults to 0 and ``MaxTime`` to now (ms); ``Limit`` 1-500, 10."""
        rec = await device_param(call, Access.SHARED)
        field = str_param(call.params, "FieldName", max_len=64)
        now = call.instance.clock.now_ms()
        min_ms = int_param(call.params, "MinTime", default=0, min=0, max=_MAX_MS)
        max_ms = int_param(call.params, "MaxTime", default=now, min=0, max=_MAX_MS)
        limit = int_param(call.params, "Limit", default=10, min=1, max=500)
        cursor = _cursor(call, max_ms)
        telemetry = call.instance.telemetry

        async def fetch(until: int, n: int) -> list[Any]:
            return list(
                await telemetry.history(rec, field, since_ms=min_ms, until_ms=until, limit=n)
            )

        rows, context, over = await _page(
            fetch, lambda r: int(r.ts_ms), lambda _r: True, cursor, limit
        )
        return {
            "FieldName": field,
            "Context": context,
            "Listover": over,
            "Results": [{"Time": str(r.ts_ms), "Value": _text(r.value)} for r in rows],
        }

    @reg.action("AppListEventHistory", "token")
    async def event_history(call: Call) -> dict[str, Any]:
        """``StartTime``/``EndTime`` in seconds: ``EndTime`` 0 = now, ``StartTime`` 0 =
        24 h before ``EndTime``.  ``Type`` filters (``""`` = all); ``Size`` 1-500, 10.
        ``Total`` counts the events of this page (the event log keeps no cheap count)."""
        rec = await device_param(call, Access.SHARED)
        event_type = str_param(call.params, "Type", required=False, max_len=8)
        if event_type is not None and event_type not in EVENT_TYPES:
            raise AppApiError(INVALID_PARAMETER_VALUE, "Type must be alert, fault or info")
        event_id = str_param(call.params, "EventId", required=False, max_len=64)
        end_s = int_param(call.params, "EndTime", default=0, min=0, max=_MAX_MS // 1000)
        start_s = int_param(call.params, "StartTime", default=0, min=0, max=_MAX_MS // 1000)
        size = int_param(call.params, "Size", default=10, min=1, max=500)
        end_ms = end_s * 1000 + 999 if end_s else call.instance.clock.now_ms()
        start_ms = start_s * 1000 if start_s else max(0, end_ms - _DAY_S * 1000)
        cursor = _cursor(call, end_ms)
        telemetry = call.instance.telemetry

        async def fetch(until: int, n: int) -> list[dict[str, Any]]:
            return await telemetry.events(
                rec, event_id=event_id, since_ms=start_ms, until_ms=until, limit=n
            )

        rows, context, over = await _page(
            fetch,
            lambda e: int(e["Timestamp"]),
            lambda e: event_type is None or e["Type"] == event_type,
            cursor,
            size,
        )
        history = [
            {
                "TimeStamp": int(e["Timestamp"]) // 1000,
                "ProductId": rec.product_id,
                "DeviceName": rec.device_name,
                "EventId": e["EventId"],
                "Type": e["Type"],
                "Data": json.dumps(e["Params"], ensure_ascii=False),
            }
            for e in rows
        ]
        return {
            "Context": context,
            "Total": len(history),
            "Listover": over,
            "EventHistory": history,
        }

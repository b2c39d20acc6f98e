"""Cloud storage Actions (spec §2.6, all six), field by field as the docs list them.

Every action resolves the device with ``AccessService.require_device(…, Access.SHARED)``
first — for ``IotVideoGenerateSignedVideoURL`` the device named *inside* the ``VideoURL`` —
so another user's or an unknown device is ``InvalidParameterValue.NoPermission`` before
anything is looked up. Only after that are URLs signed; a signed URL then stands on its own
(see :mod:`ivcloud.api.cloud_storage_playback`).

Choices where the docs are silent (docs/app-api.md §2.6): ``VideoURL`` is returned without
a window (apps append ``?starttime_epoch=S&endtime_epoch=E``, as DOC/80183 tells them);
``EventId`` is the iv_cs number as a string; ``Data`` is the event's JSON as a string;
``Total`` counts all events matching the query; ``StreamData`` answers the playlist of the
event under way at ``StartTime`` (or its picture, for a picture-only event).
"""

from __future__ import annotations

import math
from typing import Any, Final

from ivcloud.api.appapi.actions.devices import device_param
from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.api.cloud_storage_playback import MAX_WINDOW_S
from ivcloud.protocol.appapi import (
    INVALID_PARAMETER_VALUE,
    AppApiError,
    int_param,
    str_param,
)
from ivcloud.protocol.cs_urls import BadVideoUrl, parse_video_url
from ivcloud.protocol.jsontext import dumps_safe
from ivcloud.services.access import Access
from ivcloud.services.cloud_storage import EVENT_ID_MAX, EVENT_ID_MIN, MAX_CHANNEL
from ivcloud.services.cloud_storage_query import CsEventView
from ivcloud.services.devices import DeviceRecord

#: ``ExpireTime`` of ``IotVideoGenerateSignedVideoURL`` may be at most this far ahead.
MAX_SIGNED_URL_S: Final[int] = 7 * 86400
_MAX_EPOCH: Final[int] = 2**40


def _now_s(call: Call) -> int:
    return call.instance.clock.now_ms() // 1000


def _channel(call: Call) -> int | None:
    return int_param(call.params, "ChannelId", min=0, max=MAX_CHANNEL)


def _event_id(call: Call) -> int | None:
    text = str_param(call.params, "EventId", required=False, max_len=16)
    if text is None:
        return None
    if not text.isdigit() or not EVENT_ID_MIN <= int(text) <= EVENT_ID_MAX:
        raise AppApiError(
            INVALID_PARAMETER_VALUE, f"EventId must be {EVENT_ID_MIN}..{EVENT_ID_MAX}"
        )
    return int(text)


def _event_api(view: CsEventView) -> dict[str, Any]:
    end = view.end_ms if view.end_ms is not None else view.start_ms
    return {
        "StartTime": view.start_ms // 1000,
        "EndTime": math.ceil(end / 1000),
        "Thumbnail": view.thumbnail_key or "",
        "EventId": str(view.event_id),
        "UploadStatus": view.upload_status,
        "Data": dumps_safe(view.data).decode("utf-8") if view.data is not None else "",
    }


def _thumbnail_url(call: Call, rec: DeviceRecord, view: CsEventView) -> str:
    urls = call.instance.cs_urls
    expires = _now_s(call) + call.instance.settings.cloud_storage_url_ttl_s
    path = f"{urls.device_path(rec.product_id, rec.device_name)}/thumb/{view.id}.jpg"
    return urls.base_url + urls.sign(path, expires)


def _playlist_url(call: Call, rec: DeviceRecord, start_s: int, end_s: int, expires: int) -> str:
    urls = call.instance.cs_urls
    signed = urls.sign_playlist(rec.product_id, rec.device_name, start_s, end_s, expires)
    return urls.base_url + signed


def register(reg: ActionRegistry) -> None:
    @reg.action("IotVideoDescribeCloudStorageEvents", "token")
    async def events(call: Call) -> dict[str, Any]:
        """Newest first; ``StartTime``/``EndTime`` 0 or absent = now − 24 h / now."""
        rec = await device_param(call, Access.SHARED)
        now = _now_s(call)
        start = int_param(call.params, "StartTime", default=0, min=0, max=_MAX_EPOCH) or now - 86400
        end = int_param(call.params, "EndTime", default=0, min=0, max=_MAX_EPOCH) or now
        if start > end:
            raise AppApiError(INVALID_PARAMETER_VALUE, "StartTime must not be after EndTime")
        size = int_param(call.params, "Size", default=10, min=1, max=100)
        context = str_param(call.params, "Context", required=False, max_len=64)
        page = await call.instance.cs_query.events_page(
            rec,
            start * 1000,
            end * 1000 + 999,
            size=size,
            cursor=context,
            event_id=_event_id(call),
            channel=_channel(call),
        )
        return {
            "Events": [_event_api(e) for e in page.events],
            "Context": page.cursor,
            "Listover": page.listover,
            "ListOver": page.listover,  # the H5 panels read this spelling
            "Total": page.total,
            "VideoURL": call.instance.cs_urls.video_url(rec.product_id, rec.device_name),
        }

    @reg.action("IotVideoDescribeCloudStorageThumbnail", "token")
    async def thumbnail(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        key = str_param(call.params, "Thumbnail", max_len=255)
        view = await call.instance.cs_query.event_by_thumbnail(rec, key)
        if view is None:
            raise AppApiError(INVALID_PARAMETER_VALUE, "no such Thumbnail for this device")
        return {"ThumbnailURL": _thumbnail_url(call, rec, view)}

    @reg.action("IotVideoDescribeCloudStorageDate", "token")
    async def dates(call: Call) -> dict[str, Any]:
        rec = await device_param(call, Access.SHARED)
        return {"Data": await call.instance.cs_query.dates(rec)}

    @reg.action("IotVideoDescribeCloudStorageTime", "token")
    async def day_timeline(call: Call) -> dict[str, Any]:
        """Recorded ranges of one day (in ``cloud_storage_timezone``), optionally narrowed
        by ``StartTime``/``EndTime``; adjacent clips are merged into one range."""
        rec = await device_param(call, Access.SHARED)
        query = call.instance.cs_query
        lo, hi = query.day_window(str_param(call.params, "Date", max_len=10))
        start = int_param(call.params, "StartTime", default=0, min=0, max=_MAX_EPOCH)
        end = int_param(call.params, "EndTime", default=0, min=0, max=_MAX_EPOCH)
        lo = max(lo, start * 1000)
        hi = min(hi, end * 1000) if end else hi
        ranges = await query.time_ranges(rec, lo, hi, _channel(call) or 0) if lo < hi else []
        return {
            "Data": {
                "VideoURL": call.instance.cs_urls.video_url(rec.product_id, rec.device_name),
                "TimeList": [
                    {"StartTime": a // 1000, "EndTime": math.ceil(b / 1000)} for a, b in ranges
                ],
            }
        }

    @reg.action("IotVideoGenerateSignedVideoURL", "token")
    async def signed_video_url(call: Call) -> dict[str, Any]:
        """Signs ``VideoURL`` (as the other actions return it, with the window appended)
        until ``ExpireTime``; the device is the one in the URL and must be reachable."""
        text = str_param(call.params, "VideoURL", max_len=2048)
        expire = int_param(call.params, "ExpireTime", required=True, min=0, max=_MAX_EPOCH)
        try:
            window = parse_video_url(text)
        except BadVideoUrl as exc:
            raise AppApiError(INVALID_PARAMETER_VALUE, str(exc)) from None
        for name, value in (("ProductId", window.product_id), ("DeviceName", window.device_name)):
            given = call.params.get(name)
            if given not in (None, "") and given != value:
                raise AppApiError(INVALID_PARAMETER_VALUE, f"VideoURL is not for this {name}")
        rec = await call.instance.access.require_device(
            call.me, window.product_id, window.device_name, Access.SHARED
        )
        now = _now_s(call)
        if not now < expire <= now + MAX_SIGNED_URL_S:
            raise AppApiError(INVALID_PARAMETER_VALUE, "ExpireTime must be within 7 days from now")
        if window.end_s - window.start_s > MAX_WINDOW_S:
            raise AppApiError(INVALID_PARAMETER_VALUE, "the VideoURL window is longer than 7 days")
        return {"SignedVideoURL": _playlist_url(call, rec, window.start_s, window.end_s, expire)}

    @reg.action("IotVideoDescribeCloudStorageStreamData", "token")
    async def stream_data(call: Call) -> dict[str, Any]:
        """The event under way at ``StartTime``: ``VideoStream`` is its signed playlist
        (audio is inside the fMP4 segments, so ``AudioStream`` is ``""``); for a
        picture-only event it is the signed URL of its JPEG."""
        rec = await device_param(call, Access.SHARED)
        start = int_param(call.params, "StartTime", required=True, min=0, max=_MAX_EPOCH)
        view = await call.instance.cs_query.event_at(rec, start * 1000)
        if view is None:
            raise AppApiError(INVALID_PARAMETER_VALUE, "no cloud-storage event at StartTime")
        expires = _now_s(call) + call.instance.settings.cloud_storage_url_ttl_s
        if view.video and view.has_media:
            end_ms = view.end_ms if view.end_ms is not None else call.instance.clock.now_ms()
            first, last = (
                view.start_ms // 1000,
                max(math.ceil(end_ms / 1000), view.start_ms // 1000 + 1),
            )
            video = _playlist_url(call, rec, first, last, expires)
        elif view.thumbnail_key is not None:
            video = _thumbnail_url(call, rec, view)
        else:
            raise AppApiError(INVALID_PARAMETER_VALUE, "the event's media is not uploaded yet")
        return {"VideoStream": video, "AudioStream": ""}

"""Cloud-storage playback over HTTP: the HLS playlist of a time window and the init
segments, media segments and thumbnails it references (docs/cloud-storage.md).

Nothing here knows users: every URL is signed (:class:`ivcloud.protocol.cs_urls.CsUrls`)
by the App API after it checked the user may see the device, and the signature covers the
device, the object and the expiry — a URL cannot be bent to another device, window or clip.
The playlist signs its own segment URLs with its own expiry, relative to itself, so it
keeps working behind a reverse proxy. Check order: signature (403), then existence (404).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ivcloud.api.errors import error_body
from ivcloud.protocol.cs_urls import PREFIX, CsUrls
from ivcloud.protocol.hls import HlsSegment, media_playlist
from ivcloud.protocol.signing import BadSignedUrl
from ivcloud.services.cloud_storage_query import MERGE_GAP_MS, SegmentRef
from ivcloud.services.devices import DeviceRecord

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud

#: Longest window one playlist covers, and most segments it lists (a day of 4 s GOPs).
MAX_WINDOW_S: Final[int] = 7 * 86400
MAX_PLAYLIST_SEGMENTS: Final[int] = 25_000
PLAYLIST_TYPE: Final[str] = "application/vnd.apple.mpegurl"
_EPOCH_RE: Final = re.compile(r"[0-9]{1,11}")
_DEVICE = "{product_id:str}/{device_name:str}"


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


def _serve(instance: Ivcloud, key: str, media_type: str) -> Response:
    local = instance.objects.local_path(key)
    if local is not None:
        return FileResponse(local, media_type=media_type)
    try:
        return Response(instance.objects.get(key), media_type=media_type)
    except OSError:
        return _refuse(404, "ResourceNotFound", "object not found")


def build_playlist(
    urls: CsUrls, device_path: str, segments: list[SegmentRef], expires: int, *, ended: bool
) -> str:
    """The playlist text; segment and map URIs are relative to the playlist's directory.
    CPU-bound for long windows (a day of 4 s GOPs: ~0.4 s), so callers run it in a thread."""

    def relative(path: str) -> str:
        return urls.sign(f"{device_path}/{path}", expires)[len(device_path) + 1 :]

    maps: dict[str, str] = {}
    items: list[HlsSegment] = []
    previous_end: int | None = None
    for seg in segments:
        gap = previous_end is not None and seg.start_ms - previous_end > MERGE_GAP_MS
        items.append(
            HlsSegment(
                uri=relative(f"seg/{seg.id}.mp4"),
                duration_ms=max(1, seg.duration_ms),
                map_uri=maps.get(seg.init_sha256)
                or maps.setdefault(seg.init_sha256, relative(f"init/{seg.init_sha256}.mp4")),
                discontinuity=gap,
                program_date_ms=seg.start_ms,
            )
        )
        previous_end = seg.end_ms
    return media_playlist(items, playlist_type="VOD" if ended else "EVENT", ended=ended)


def playback_routes(instance: Ivcloud) -> list[BaseRoute]:
    urls = instance.cs_urls
    query = instance.cs_query

    async def device(request: Request) -> DeviceRecord | None:
        params = request.path_params
        return await instance.devices.find(params["product_id"], params["device_name"])

    def now_s() -> int:
        return instance.clock.now_ms() // 1000

    def checked(request: Request, tail: str) -> JSONResponse | None:
        """Verify the signature of ``<device path>/<tail>`` (rebuilt from the route's
        parameters, so a proxy's path prefix does not matter)."""
        params, q = request.path_params, request.query_params
        path = f"{urls.device_path(params['product_id'], params['device_name'])}/{tail}"
        try:
            urls.verify(path, q.get("expires"), q.get("sign"), now_s())
        except BadSignedUrl as exc:
            return _refuse(403, "UnauthorizedOperation", str(exc))
        return None

    async def playlist(request: Request) -> Response:
        pid, dn = request.path_params["product_id"], request.path_params["device_name"]
        q = request.query_params
        start, end = q.get("starttime_epoch", ""), q.get("endtime_epoch", "")
        if _EPOCH_RE.fullmatch(start) is None or _EPOCH_RE.fullmatch(end) is None:
            return _refuse(403, "UnauthorizedOperation", "missing signature")
        try:
            urls.verify_playlist(
                pid, dn, int(start), int(end), q.get("expires"), q.get("sign"), now_s()
            )
        except BadSignedUrl as exc:
            return _refuse(403, "UnauthorizedOperation", str(exc))
        start_s, end_s = int(start), int(end)
        if not 0 < end_s - start_s <= MAX_WINDOW_S:
            return _refuse(400, "InvalidParameterValue", "window must be 1 s..7 days")
        rec = await device(request)
        if rec is None:
            return _refuse(404, "ResourceNotFound", "device not found")
        segments = await query.segments(rec, 0, start_s * 1000, end_s * 1000, MAX_PLAYLIST_SEGMENTS)
        if not segments:
            return _refuse(404, "ResourceNotFound", "no recordings in this window")
        ended = end_s * 1000 <= instance.clock.now_ms()
        expires = int(q["expires"])
        text = await asyncio.to_thread(
            build_playlist, urls, urls.device_path(pid, dn), list(segments), expires, ended=ended
        )
        headers = {"Cache-Control": "no-store" if not ended else "private, max-age=60"}
        return Response(text, media_type=PLAYLIST_TYPE, headers=headers)

    async def stored(
        request: Request,
        tail: str,
        lookup: Callable[[DeviceRecord], Awaitable[str | None]],
        what: str,
        media_type: str,
    ) -> Response:
        """A signed GET of one stored object of the device: signature, device, key, bytes."""
        denied = checked(request, tail)
        if denied is not None:
            return denied
        rec = await device(request)
        key = None if rec is None else await lookup(rec)
        if key is None:
            return _refuse(404, "ResourceNotFound", f"{what} not found")
        return _serve(instance, key, media_type)

    async def segment(request: Request) -> Response:
        seg_id: int = request.path_params["id"]
        return await stored(
            request,
            f"seg/{seg_id}.mp4",
            lambda rec: query.segment_key(rec, seg_id),
            "segment",
            "video/mp4",
        )

    async def init(request: Request) -> Response:
        sha: str = request.path_params["sha"]
        return await stored(
            request,
            f"init/{sha}.mp4",
            lambda rec: query.init_key(rec, sha),
            "init segment",
            "video/mp4",
        )

    async def thumbnail(request: Request) -> Response:
        event_row: int = request.path_params["id"]

        async def thumbnail_key(rec: DeviceRecord) -> str | None:
            event = await query.event(rec, event_row)
            return None if event is None else event.thumbnail_key

        return await stored(
            request, f"thumb/{event_row}.jpg", thumbnail_key, "thumbnail", "image/jpeg"
        )

    base = f"{PREFIX}/{_DEVICE}"
    return [
        Route(f"{base}/timeshift.m3u8", playlist, methods=["GET"]),
        Route(f"{base}/seg/{{id:int}}.mp4", segment, methods=["GET"]),
        Route(f"{base}/init/{{sha:str}}.mp4", init, methods=["GET"]),
        Route(f"{base}/thumb/{{id:int}}.jpg", thumbnail, methods=["GET"]),
    ]

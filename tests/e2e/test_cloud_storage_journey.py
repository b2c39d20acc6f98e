"""The cloud-storage journey over real sockets (DESIGN §2 "event clip"): a camera online with
its SDK credentials runs a live 320x240@10 fps stream (1 s GOP) into the uploader, has a
~3 s event; an app user of its family lists the event, the day and its timeline, opens the
thumbnail, signs the video URL, and PyAV plays the HLS playlist over HTTP — decoding
frames whose burnt-in capture times cover the event."""

from __future__ import annotations

import asyncio
import io
import math
import time
from datetime import UTC, datetime
from typing import Any

import av
import httpx

from ivcloud.app import Ivcloud
from ivcloud.device import DeviceInfo
from ivcloud.device.av import LiveSource
from ivcloud.device.cloud_storage import CloudStorageUploader, UploadResult
from ivcloud.media.clockcode import read_clock
from tests.api.test_push import give_user
from tests.appclient import AppApiClient, create_app, make_user, ok_data
from tests.cloud_storage_support import SMALL
from tests.device.support import sdk_device
from tests.helpers import poll, provision


def decode_hls(url: str) -> list[int]:
    """Open the playlist URL with FFmpeg's HLS demuxer and read every picture's clock."""
    clocks: list[int] = []
    with av.open(url, timeout=10) as container:
        for frame in container.decode(video=0):
            value = read_clock(frame)
            assert value is not None, "every picture carries its capture time"
            clocks.append(value)
    return clocks


def jpeg_clock(data: bytes) -> int | None:
    with av.open(io.BytesIO(data)) as container:
        return read_clock(next(container.decode(video=0)))


async def test_event_clip_from_camera_to_app_playback(
    server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient
) -> None:
    assert server.endpoints is not None
    cam = await provision(admin, "camera", "camera", "front-door")
    creds = await create_app(admin, cam.product_id)
    user_id, token = await make_user(server, creds, "owner")
    await give_user(server, user_id, cam)
    app = AppApiClient(appclient, creds)
    dev = {"ProductId": cam.product_id, "DeviceName": cam.device_name}

    async def call(action: str, **params: Any) -> dict[str, Any]:
        return ok_data(await app.tokenapi(token, action, **params))

    failures: list[UploadResult] = []
    async with sdk_device(server, cam) as device:
        assert await device.wait_online(10)
        source = LiveSource(SMALL)
        uploader = CloudStorageUploader(
            DeviceInfo(cam.product_id, cam.device_name, cam.secret),
            server.endpoints.http_url,
            source,
            on_result=lambda r: None if r.ok else failures.append(r),
        )
        await uploader.start()
        await poll(lambda: _value(uploader.last_keyframe_ms), lambda v: v is not None)
        started = time.perf_counter()
        event_start = await uploader.event_start(0, 1, {"motion": "porch"})
        # ~3 s of event: three GOPs uploaded after the pre-roll one.
        await poll(lambda: _value(uploader.stats.segments), lambda n: n >= 3)
        event_end = await uploader.event_stop(0, 1)
        rec = await server.devices.get(cam.product_id, cam.device_name)

        async def covered() -> bool:
            segs = await server.cs_query.segments(rec, 0, event_start, event_end, 100)
            return bool(segs) and segs[-1].end_ms >= event_end

        await poll(covered, bool)
        available_after_stop_s = time.perf_counter() - started
        await uploader.aclose()
        await source.aclose()
    assert failures == []
    assert event_end - event_start >= 2500

    # -- the app's side ------------------------------------------------------------------
    events = await call("IotVideoDescribeCloudStorageEvents", **dev)
    [event] = events["Events"]
    assert event["StartTime"] == event_start // 1000
    assert event["EndTime"] == math.ceil(event_end / 1000)
    assert (event["EventId"], event["UploadStatus"]) == ("1", "Finished")
    assert event["Data"] == '{"motion":"porch"}'
    assert events["Listover"] is True and events["ListOver"] is True and events["Total"] == 1

    today = datetime.fromtimestamp(event_start / 1000, tz=UTC).date().isoformat()
    assert (await call("IotVideoDescribeCloudStorageDate", **dev))["Data"] == [today]
    timeline = (await call("IotVideoDescribeCloudStorageTime", **dev, Date=today))["Data"]
    [span] = timeline["TimeList"]
    assert span["StartTime"] <= event["StartTime"] and span["EndTime"] >= event["EndTime"]

    thumb = await call("IotVideoDescribeCloudStorageThumbnail", **dev, Thumbnail=event["Thumbnail"])
    picture = await appclient.get(thumb["ThumbnailURL"])
    assert picture.status_code == 200
    picture_ms = await asyncio.to_thread(jpeg_clock, picture.content)
    assert picture_ms is not None and event_start - 1100 <= picture_ms <= event_start

    window = f"?starttime_epoch={event['StartTime']}&endtime_epoch={event['EndTime']}"
    signed = await call(
        "IotVideoGenerateSignedVideoURL",
        ProductId=cam.product_id,
        VideoURL=events["VideoURL"] + window,
        ExpireTime=int(time.time()) + 300,
    )
    playlist = await appclient.get(signed["SignedVideoURL"])
    assert playlist.status_code == 200 and "#EXT-X-ENDLIST" in playlist.text

    clocks = await asyncio.to_thread(decode_hls, signed["SignedVideoURL"])
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)
    assert len(clocks) >= 30  # ≥ 3 s at 10 fps
    assert clocks[0] <= event_start and clocks[-1] >= event_end - 100
    inside = [c for c in clocks if event_start <= c <= event_end]
    assert len(inside) >= (event_end - event_start) // 100 - 1  # no frame of the event missing
    print(
        f"\ncloud storage journey: event {event_end - event_start} ms, "
        f"{len(clocks)} frames decoded over HLS, {len(inside)} inside the event, "
        f"clip available {available_after_stop_s:.2f} s after event start"
    )


async def _value(value: Any) -> Any:
    return value

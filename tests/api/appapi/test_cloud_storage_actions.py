"""The six cloud-storage Actions (spec §2.6) over real HTTP, field by field, on data a
device uploaded through the real upload API: event list and paging, thumbnail, dates, day
timeline, signed video URL, image-stream data — and every action refusing another user's
(or an unknown) device with ``InvalidParameterValue.NoPermission``."""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import av
import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.store.schema_app import DeviceShare
from tests.api.test_cloud_storage_http import upload_all
from tests.appclient import AppApiClient, create_app, error_code, make_user, ok_data
from tests.cloud_storage_support import Clip, device_request, make_clip
from tests.helpers import Provisioned, provision

NO_PERMISSION = "InvalidParameterValue.NoPermission"
BAD_VALUE = "InvalidParameterValue"


@dataclass
class Setup:
    server: Ivcloud
    http: httpx.AsyncClient
    client: AppApiClient
    cam: Provisioned
    owner_id: str
    owner: str
    eve: str
    eve_id: str
    eve_cam: Provisioned
    clip: Clip
    uploaded: dict[str, Any]

    @property
    def dev(self) -> dict[str, str]:
        return {"ProductId": self.cam.product_id, "DeviceName": self.cam.device_name}

    async def call(self, action: str, token: str | None = None, **params: Any) -> dict[str, Any]:
        return await self.client.tokenapi(token or self.owner, action, **params)


async def family_with(server: Ivcloud, user_id: str, dev: Provisioned) -> None:
    user = await server.users.get(user_id)
    family_id = await server.families.create_family(user, "home")
    rec = await server.devices.get(dev.product_id, dev.device_name)
    await server.families.bind_device(user, family_id, "0", rec)


@pytest.fixture
async def setup(server: Ivcloud, admin: httpx.AsyncClient, appclient: httpx.AsyncClient) -> Setup:
    cam = await provision(admin, "camera", "camera", "cam-1")
    resp = await admin.post(f"/products/{cam.product_id}/devices", json={"DeviceName": "cam-2"})
    eve_cam = Provisioned(cam.product_id, "cam-2", resp.json()["DeviceSecret"])
    creds = await create_app(admin, cam.product_id)
    owner_id, owner = await make_user(server, creds, "owner")
    eve_id, eve = await make_user(server, creds, "eve")
    await family_with(server, owner_id, cam)
    await family_with(server, eve_id, eve_cam)
    clip = make_clip((int(time.time()) - 300) * 1000, 2)
    uploaded = await upload_all(appclient, cam, clip)
    client = AppApiClient(appclient, creds)
    return Setup(
        server, appclient, client, cam, owner_id, owner, eve, eve_id, eve_cam, clip, uploaded
    )


def exp() -> int:
    return int(time.time()) + 60


async def test_events_answer_every_documented_field(setup: Setup) -> None:
    s = setup
    data = ok_data(await s.call("IotVideoDescribeCloudStorageEvents", **s.dev))
    assert set(data) == {
        "RequestId",
        "Events",
        "Context",
        "Listover",
        "ListOver",
        "Total",
        "VideoURL",
    }
    assert (data["Context"], data["Listover"], data["ListOver"], data["Total"]) == (
        "",
        True,
        True,
        1,
    )
    assert data["VideoURL"] == (
        f"{s.server.base_url}/api/cs/v1/{s.cam.product_id}/{s.cam.device_name}/timeshift.m3u8"
    )
    [event] = data["Events"]
    start = s.uploaded["start"]
    assert event == {
        "StartTime": start // 1000,
        "EndTime": -(-(start + 1500) // 1000),
        "Thumbnail": event["Thumbnail"],
        "EventId": "1",
        "UploadStatus": "Finished",
        "Data": '{"zone":"door"}',
    }
    assert isinstance(event["Thumbnail"], str) and event["Thumbnail"].endswith(".jpg")
    by_id = ok_data(
        await s.call(
            "IotVideoDescribeCloudStorageEvents",
            DeviceId=f"{s.cam.product_id}/{s.cam.device_name}",
            StartTime=start // 1000 - 10,
            EndTime=start // 1000 + 10,
            EventId="1",
            ChannelId=0,
        )
    )
    assert by_id["Events"] == [event]
    none = ok_data(await s.call("IotVideoDescribeCloudStorageEvents", **s.dev, EventId="2", Size=5))
    assert (none["Events"], none["Listover"], none["Total"]) == ([], True, 0)


async def test_event_paging_with_context(setup: Setup) -> None:
    s = setup
    base = (int(time.time()) - 200) * 1000
    for i in range(12):
        doc = {
            "channel": 0,
            "event_id": 1 + i % 16,
            "start_ms": base + i * 1000,
            "end_ms": base + i * 1000,
        }
        resp = await device_request(
            s.http, s.cam, "POST", "events", None, json.dumps(doc).encode(), expires=exp()
        )
        assert resp.status_code == 200, resp.text
    pages: list[dict[str, Any]] = []
    context = ""
    while True:
        data = ok_data(
            await s.call("IotVideoDescribeCloudStorageEvents", **s.dev, Size=5, Context=context)
        )
        pages.append(data)
        if data["Listover"]:
            break
        context = data["Context"]
    assert [len(p["Events"]) for p in pages] == [5, 5, 3]
    assert [p["Listover"] for p in pages] == [False, False, True]
    assert [p["ListOver"] for p in pages] == [False, False, True]
    assert all(p["Total"] == 13 for p in pages) and pages[-1]["Context"] == ""
    starts = [e["StartTime"] for p in pages for e in p["Events"]]
    assert starts == sorted(starts, reverse=True) and len(starts) == 13
    for bad in (
        {"Context": "garbage!"},
        {"Size": 0},
        {"Size": 101},
        {"EventId": "x"},
        {"StartTime": 10, "EndTime": 5},
    ):
        doc = await s.call("IotVideoDescribeCloudStorageEvents", **s.dev, **bad)
        assert error_code(doc).startswith("InvalidParameter"), bad


async def test_thumbnail_url_serves_a_decodable_jpeg(setup: Setup) -> None:
    s = setup
    [event] = ok_data(await s.call("IotVideoDescribeCloudStorageEvents", **s.dev))["Events"]
    data = ok_data(
        await s.call("IotVideoDescribeCloudStorageThumbnail", **s.dev, Thumbnail=event["Thumbnail"])
    )
    assert set(data) == {"RequestId", "ThumbnailURL"}
    resp = await s.http.get(data["ThumbnailURL"])
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"

    def decode() -> tuple[int, int]:
        with av.open(io.BytesIO(resp.content)) as container:
            frame = next(container.decode(video=0))
            return frame.width, frame.height

    assert await asyncio.to_thread(decode) == (320, 240)
    unknown = await s.call("IotVideoDescribeCloudStorageThumbnail", **s.dev, Thumbnail="x.jpg")
    assert error_code(unknown) == BAD_VALUE
    missing = await s.call("IotVideoDescribeCloudStorageThumbnail", **s.dev)
    assert error_code(missing) == "ErrorRequiredParamNotFound"


async def test_dates_and_day_timeline(setup: Setup) -> None:
    s = setup
    day = datetime.fromtimestamp(s.clip.segments[0].start_ms / 1000, tz=UTC).date().isoformat()
    dates = ok_data(await s.call("IotVideoDescribeCloudStorageDate", **s.dev))
    assert dates["Data"] == [day]
    data = ok_data(await s.call("IotVideoDescribeCloudStorageTime", **s.dev, Date=day))
    assert set(data) == {"RequestId", "Data"}
    assert set(data["Data"]) == {"VideoURL", "TimeList"}
    assert data["Data"]["VideoURL"].endswith("/timeshift.m3u8")
    first, last = s.clip.segments[0].start_ms, s.clip.segments[-1].end_ms
    assert data["Data"]["TimeList"] == [{"StartTime": first // 1000, "EndTime": last // 1000}]
    narrowed = ok_data(
        await s.call(
            "IotVideoDescribeCloudStorageTime",
            **s.dev,
            Date=day,
            StartTime=first // 1000 + 1,
            EndTime=last // 1000,
        )
    )
    assert narrowed["Data"]["TimeList"] == [
        {"StartTime": first // 1000 + 1, "EndTime": last // 1000}
    ]
    empty = ok_data(await s.call("IotVideoDescribeCloudStorageTime", **s.dev, Date="2020-01-05"))
    assert empty["Data"]["TimeList"] == []
    for bad in ("2026-02-30", "yesterday"):
        assert (
            error_code(await s.call("IotVideoDescribeCloudStorageTime", **s.dev, Date=bad))
            == BAD_VALUE
        )


async def test_signed_video_url_plays(setup: Setup) -> None:
    s = setup
    video_url = ok_data(await s.call("IotVideoDescribeCloudStorageEvents", **s.dev))["VideoURL"]
    first, last = s.clip.segments[0].start_ms // 1000, s.clip.segments[-1].end_ms // 1000
    url = f"{video_url}?starttime_epoch={first}&endtime_epoch={last}"
    data = ok_data(
        await s.call(
            "IotVideoGenerateSignedVideoURL",
            ProductId=s.cam.product_id,
            VideoURL=url,
            ExpireTime=exp(),
        )
    )
    assert set(data) == {"RequestId", "SignedVideoURL"}
    signed = data["SignedVideoURL"]
    assert signed.startswith(url + "&expires=")
    resp = await s.http.get(signed)
    assert resp.status_code == 200 and resp.text.startswith("#EXTM3U")
    assert resp.text.count("#EXTINF:") == 2
    now = int(time.time())
    for params, code in [
        ({"VideoURL": url, "ExpireTime": now - 1}, BAD_VALUE),
        ({"VideoURL": url, "ExpireTime": now + 8 * 86400}, BAD_VALUE),
        ({"VideoURL": video_url, "ExpireTime": exp()}, BAD_VALUE),
        ({"VideoURL": url + "&x=1", "ExpireTime": exp()}, BAD_VALUE),
        ({"VideoURL": url, "ExpireTime": exp(), "ProductId": "OTHERPID01"}, BAD_VALUE),
        ({"VideoURL": url, "ExpireTime": exp(), "DeviceName": "cam-2"}, BAD_VALUE),
        (
            {
                "VideoURL": url.replace(
                    f"endtime_epoch={last}", f"endtime_epoch={first + 8 * 86400}"
                ),
                "ExpireTime": exp(),
            },
            BAD_VALUE,
        ),
        ({"VideoURL": url}, "ErrorRequiredParamNotFound"),
    ]:
        assert error_code(await s.call("IotVideoGenerateSignedVideoURL", **params)) == code, params


async def test_stream_data_for_video_and_picture_events(setup: Setup) -> None:
    s = setup
    start = s.uploaded["start"]
    data = ok_data(
        await s.call("IotVideoDescribeCloudStorageStreamData", **s.dev, StartTime=start // 1000)
    )
    assert set(data) == {"RequestId", "VideoStream", "AudioStream"}
    assert data["AudioStream"] == ""
    resp = await s.http.get(data["VideoStream"])
    assert resp.status_code == 200 and "#EXT-X-MAP" in resp.text
    at = (int(time.time()) - 100) * 1000
    doc = {"channel": 0, "event_id": 3, "start_ms": at, "end_ms": at, "video": False}
    await device_request(
        s.http, s.cam, "POST", "events", None, json.dumps(doc).encode(), expires=exp()
    )
    query = {"channel": 0, "event_id": 3, "start_ms": at}
    await device_request(s.http, s.cam, "PUT", "thumbnails", query, s.clip.jpeg(), expires=exp())
    picture = ok_data(
        await s.call("IotVideoDescribeCloudStorageStreamData", **s.dev, StartTime=at // 1000)
    )
    resp = await s.http.get(picture["VideoStream"])
    assert resp.status_code == 200 and resp.content == s.clip.jpeg()
    nothing = await s.call("IotVideoDescribeCloudStorageStreamData", **s.dev, StartTime=1000)
    assert error_code(nothing) == BAD_VALUE


def all_actions(s: Setup, dev: dict[str, str], video_url: str) -> dict[str, dict[str, Any]]:
    return {
        "IotVideoDescribeCloudStorageEvents": dev,
        "IotVideoDescribeCloudStorageThumbnail": {**dev, "Thumbnail": "x.jpg"},
        "IotVideoDescribeCloudStorageDate": dev,
        "IotVideoDescribeCloudStorageTime": {**dev, "Date": "2026-11-28"},
        "IotVideoGenerateSignedVideoURL": {"VideoURL": video_url, "ExpireTime": exp()},
        "IotVideoDescribeCloudStorageStreamData": {**dev, "StartTime": s.uploaded["start"] // 1000},
    }


async def test_another_users_or_unknown_device_is_no_permission(setup: Setup) -> None:
    s = setup
    owner_url = (
        f"{s.server.base_url}/api/cs/v1/{s.cam.product_id}/{s.cam.device_name}/timeshift.m3u8"
        "?starttime_epoch=1&endtime_epoch=2"
    )
    for dev, url in (
        (s.dev, owner_url),
        (
            {"ProductId": s.cam.product_id, "DeviceName": "ghost"},
            owner_url.replace("cam-1", "ghost"),
        ),
        (
            {"ProductId": "NOSUCHPID1", "DeviceName": "cam-1"},
            owner_url.replace(s.cam.product_id, "NOSUCHPID1"),
        ),
    ):
        for action, params in all_actions(s, dev, url).items():
            assert error_code(await s.call(action, s.eve, **params)) == NO_PERMISSION, action
    mine = {"ProductId": s.eve_cam.product_id, "DeviceName": s.eve_cam.device_name}
    assert (
        ok_data(await s.call("IotVideoDescribeCloudStorageEvents", s.eve, **mine))["Events"] == []
    )


async def test_a_share_is_enough_to_watch(setup: Setup) -> None:
    s = setup
    """Viewing clips needs only ``Access.SHARED``: a share recipient gets every action."""
    rec = await s.server.devices.get(s.cam.product_id, s.cam.device_name)
    async with s.server.sessions.begin() as db:
        db.add(
            DeviceShare(device_id=rec.id, user_id=s.eve_id, from_user_id=s.owner_id, created_ms=1)
        )
    data = ok_data(await s.call("IotVideoDescribeCloudStorageEvents", s.eve, **s.dev))
    assert len(data["Events"]) == 1
    thumb = data["Events"][0]["Thumbnail"]
    url = f"{data['VideoURL']}?starttime_epoch=1&endtime_epoch=2"
    params = all_actions(s, s.dev, url)
    params["IotVideoDescribeCloudStorageThumbnail"]["Thumbnail"] = thumb
    for action, p in params.items():
        ok_data(await s.call(action, s.eve, **p))

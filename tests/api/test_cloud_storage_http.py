"""The device upload API and the signed playback URLs over real HTTP against a real server:
a device uploads a clip and it plays back byte for byte; unsigned, forged, stale or
other-device requests are 401; bad bodies are 4xx and store nothing; replays are no-ops;
tampered or expired playback URLs are 403."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.cloud_storage_support import Clip, counts, device_request, make_clip, signed_headers
from tests.helpers import Provisioned, provision
from tests.media.hub_support import running


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    """Small upload limits so oversize bodies are cheap to send."""
    limits = {
        "cloud_storage_max_segment_bytes": 64 * 1024,
        "cloud_storage_max_thumbnail_bytes": 16 * 1024,
    }
    async with running(tmp_path / "data", **limits) as instance:
        yield instance


#: Two cameras of one product: the one under test and another (whose key must not work).
Devices = tuple[Provisioned, Provisioned]


@pytest.fixture
async def devices(admin: httpx.AsyncClient) -> Devices:
    cam = await provision(admin, "camera", "camera", "cam-1")
    resp = await admin.post(f"/products/{cam.product_id}/devices", json={"DeviceName": "cam-2"})
    assert resp.status_code == 201
    return cam, Provisioned(cam.product_id, "cam-2", resp.json()["DeviceSecret"])


@pytest.fixture
def clip() -> Clip:
    """Two seconds of clip, recorded two minutes ago (on a whole second)."""
    return make_clip((int(time.time()) - 120) * 1000, 2)


def exp() -> int:
    return int(time.time()) + 60


async def state(server: Ivcloud) -> tuple[int, ...]:
    return await counts(server.sessions, server.settings.objects_dir)


async def upload_all(http: httpx.AsyncClient, dev: Provisioned, clip: Clip) -> dict[str, Any]:
    resp = await device_request(http, dev, "PUT", "init", {"channel": 0}, clip.init, expires=exp())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"sha256": clip.init_sha, "created": True}
    ids = []
    for seg in clip.segments:
        query = {
            "channel": 0,
            "start_ms": seg.start_ms,
            "end_ms": seg.end_ms,
            "init": clip.init_sha,
        }
        resp = await device_request(http, dev, "PUT", "segments", query, seg.data, expires=exp())
        assert resp.status_code == 200, resp.text
        assert resp.json()["created"] is True
        ids.append(resp.json()["id"])
    start = clip.segments[0].start_ms + 300
    event = {"channel": 0, "event_id": 1, "start_ms": start, "data": {"zone": "door"}}
    resp = await device_request(http, dev, "POST", "events", None, _json(event), expires=exp())
    assert resp.status_code == 200 and resp.json() == {"created": True}, resp.text
    thumb = {"channel": 0, "event_id": 1, "start_ms": start}
    resp = await device_request(http, dev, "PUT", "thumbnails", thumb, clip.jpeg(), expires=exp())
    assert resp.status_code == 200 and resp.json() == {"created": True}, resp.text
    stop = {**thumb, "end_ms": start + 1500}
    resp = await device_request(http, dev, "POST", "events/stop", None, _json(stop), expires=exp())
    assert resp.status_code == 200 and resp.json() == {}, resp.text
    return {"segments": ids, "start": start}


def _json(doc: dict[str, Any]) -> bytes:
    import json

    return json.dumps(doc).encode()


async def test_clip_uploads_and_plays_back_byte_for_byte(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices, clip: Clip
) -> None:
    cam, _ = devices
    await upload_all(appclient, cam, clip)
    assert await state(server) == (1, 2, 1, 1, 4)
    first, last = clip.segments[0].start_ms // 1000, clip.segments[-1].end_ms // 1000 + 1
    url = server.cs_urls.sign_playlist(cam.product_id, cam.device_name, first, last, exp())
    resp = await appclient.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    lines = resp.text.splitlines()
    assert "#EXT-X-ENDLIST" in lines and "#EXT-X-PLAYLIST-TYPE:VOD" in lines
    assert [ln for ln in lines if ln.startswith("#EXTINF")] == ["#EXTINF:1.000,"] * 2
    map_uri = next(ln for ln in lines if ln.startswith("#EXT-X-MAP"))[len('#EXT-X-MAP:URI="') : -1]
    base = httpx.URL(str(appclient.base_url)).join(url)
    init = await appclient.get(str(base.join(map_uri)))
    assert init.status_code == 200 and init.content == clip.init
    seg_uris = [ln for ln in lines if ln and not ln.startswith("#")]
    bodies = [(await appclient.get(str(base.join(u)))).content for u in seg_uris]
    assert bodies == [s.data for s in clip.segments]
    rec = await server.devices.find(cam.product_id, cam.device_name)
    assert rec is not None
    page = await server.cs_query.events_page(rec, 0, 2**50, size=5)
    thumb_path = f"/api/cs/v1/{cam.product_id}/{cam.device_name}/thumb/{page.events[0].id}.jpg"
    thumb = await appclient.get(server.cs_urls.sign(thumb_path, exp()))
    assert thumb.status_code == 200 and thumb.content == clip.jpeg()
    assert thumb.headers["content-type"] == "image/jpeg"


async def test_replays_are_no_ops(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices, clip: Clip
) -> None:
    cam, _ = devices
    seg = clip.segments[0]
    await device_request(appclient, cam, "PUT", "init", {"channel": 0}, clip.init, expires=exp())
    target = (
        f"/api/device/v1/cs/segments?channel=0&start_ms={seg.start_ms}&end_ms={seg.end_ms}"
        f"&init={clip.init_sha}"
    )
    headers = signed_headers(cam, "PUT", target, seg.data, exp())
    first = await appclient.put(target, content=seg.data, headers=headers)
    replay = await appclient.put(target, content=seg.data, headers=headers)
    assert first.json()["created"] is True
    assert replay.status_code == 200 and replay.json() == {
        "id": first.json()["id"],
        "created": False,
    }
    assert await state(server) == (1, 1, 0, 0, 2)


async def test_only_the_device_itself_may_upload(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices, clip: Clip
) -> None:
    cam, other = devices
    target = "/api/device/v1/cs/init?channel=0"
    body = clip.init
    impostor = Provisioned(cam.product_id, cam.device_name, other.secret)  # other's key, cam's ids
    cases: dict[str, dict[str, str]] = {
        "no header": {},
        "other scheme": {"Authorization": "Bearer x"},
        "another device's name": signed_headers(impostor, "PUT", target, body, exp()),
        "unknown device": signed_headers(
            Provisioned(cam.product_id, "ghost", cam.secret), "PUT", target, body, exp()
        ),
        "expired": signed_headers(cam, "PUT", target, body, int(time.time()) - 3600),
        "too far ahead": signed_headers(cam, "PUT", target, body, int(time.time()) + 3600),
        "other query": signed_headers(cam, "PUT", target.replace("=0", "=1"), body, exp()),
        "other body": signed_headers(cam, "PUT", target, body + b"x", exp()),
        "other method": signed_headers(cam, "POST", target, body, exp()),
    }
    for name, headers in cases.items():
        resp = await appclient.put(target, content=body, headers=headers)
        assert resp.status_code == 401, name
        assert resp.json()["error"]["code"] == "AuthFailure", name
    assert await state(server) == (0, 0, 0, 0, 0)
    ok = await appclient.put(
        target, content=body, headers=signed_headers(cam, "PUT", target, body, exp())
    )
    assert ok.status_code == 200


async def test_bad_uploads_are_refused_and_store_nothing(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices, clip: Clip
) -> None:
    cam, _ = devices
    await upload_all(appclient, cam, clip)
    before = await state(server)
    seg = clip.segments[0]
    later = clip.segments[1].end_ms + 10_000
    segq = {"channel": 0, "start_ms": later, "end_ms": later + 1000, "init": clip.init_sha}
    jpeg = clip.jpeg()
    evq = {"channel": 0, "event_id": 2, "start_ms": later}
    ev1 = {"channel": 0, "event_id": 1, "start_ms": seg.start_ms + 300}
    cases: list[tuple[str, str, str, dict[str, object] | None, bytes, int, str]] = [
        ("fmp4 garbage", "PUT", "segments", segq, b"\x00\x01" * 50, 400, "InvalidParameterValue"),
        ("fmp4 truncated", "PUT", "segments", segq, seg.data[:-100], 400, "InvalidParameterValue"),
        ("init garbage", "PUT", "init", {"channel": 0}, b"not mp4", 400, "InvalidParameterValue"),
        ("init as segment", "PUT", "init", {"channel": 0}, seg.data, 400, "InvalidParameterValue"),
        (
            "backwards",
            "PUT",
            "segments",
            {**segq, "end_ms": later - 1},
            seg.data,
            400,
            "InvalidParameterValue",
        ),
        (
            "duration lie",
            "PUT",
            "segments",
            {**segq, "end_ms": later + 9000},
            seg.data,
            400,
            "InvalidParameterValue",
        ),
        (
            "ancient",
            "PUT",
            "segments",
            {**segq, "start_ms": 1000, "end_ms": 2000},
            seg.data,
            400,
            "InvalidParameterValue",
        ),
        (
            "missing start",
            "PUT",
            "segments",
            {"channel": 0, "end_ms": 1, "init": clip.init_sha},
            seg.data,
            400,
            "InvalidParameter",
        ),
        (
            "not a number",
            "PUT",
            "segments",
            {**segq, "start_ms": "soon"},
            seg.data,
            400,
            "InvalidParameter",
        ),
        (
            "bad init ref",
            "PUT",
            "segments",
            {**segq, "init": "xyz"},
            seg.data,
            400,
            "InvalidParameter",
        ),
        (
            "oversize segment",
            "PUT",
            "segments",
            segq,
            seg.data + b"\0" * 65536,
            413,
            "RequestSizeLimitExceeded",
        ),
        ("png thumbnail", "PUT", "thumbnails", ev1, b"\x89PNG\r\n", 400, "InvalidParameterValue"),
        (
            "second thumbnail",
            "PUT",
            "thumbnails",
            ev1,
            jpeg[:-2] + b"\0\xff\xd9",
            409,
            "ResourceInUse",
        ),
        (
            "oversize thumbnail",
            "PUT",
            "thumbnails",
            ev1,
            jpeg + b"\0" * 16384,
            413,
            "RequestSizeLimitExceeded",
        ),
        ("thumbnail no event", "PUT", "thumbnails", evq, jpeg, 404, "ResourceNotFound"),
        ("event bad json", "POST", "events", None, b"{", 400, "InvalidParameter"),
        ("event not object", "POST", "events", None, b"[1]", 400, "InvalidParameter"),
        (
            "event id 0",
            "POST",
            "events",
            None,
            _json({**evq, "event_id": 0}),
            400,
            "InvalidParameterValue",
        ),
        (
            "event data list",
            "POST",
            "events",
            None,
            _json({**evq, "data": [1]}),
            400,
            "InvalidParameter",
        ),
        (
            "event video str",
            "POST",
            "events",
            None,
            _json({**evq, "video": "no"}),
            400,
            "InvalidParameter",
        ),
        (
            "event future",
            "POST",
            "events",
            None,
            _json({**evq, "start_ms": later + 3_600_000}),
            400,
            "InvalidParameterValue",
        ),
        (
            "stop unknown",
            "POST",
            "events/stop",
            None,
            _json({**evq, "end_ms": later}),
            404,
            "ResourceNotFound",
        ),
        (
            "stop before start",
            "POST",
            "events/stop",
            None,
            _json({**evq, "event_id": 1, "start_ms": seg.start_ms + 300, "end_ms": 5}),
            400,
            "InvalidParameterValue",
        ),
    ]
    for name, method, path, query, body, status, code in cases:
        resp = await device_request(appclient, cam, method, path, query, body, expires=exp())
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["error"]["code"] == code, (name, resp.text)
        assert await state(server) == before, name


async def test_oversize_bodies_are_cut_off_before_buffering(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices
) -> None:
    """A chunked body (no Content-Length, so the size is unknown up front) is refused once
    it passes the limit; the server stops buffering there."""
    cam, _ = devices
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 8192
            yield b"\0" * 8192

    target = "/api/device/v1/cs/thumbnails?channel=0&event_id=1&start_ms=1"
    headers = signed_headers(cam, "PUT", target, b"", exp())
    try:
        resp = await appclient.put(target, content=chunks(), headers=headers)
    except httpx.HTTPError:  # the server may close before the client finished sending
        resp = None
    if resp is not None:
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "RequestSizeLimitExceeded"
    assert sent > 16 * 1024
    assert await state(server) == (0, 0, 0, 0, 0)


async def test_playback_urls_are_signed_per_device_window_and_object(
    server: Ivcloud, appclient: httpx.AsyncClient, devices: Devices, clip: Clip
) -> None:
    cam, other = devices
    ids = (await upload_all(appclient, cam, clip))["segments"]
    urls = server.cs_urls
    first, last = clip.segments[0].start_ms // 1000, clip.segments[-1].end_ms // 1000 + 1
    good = urls.sign_playlist(cam.product_id, cam.device_name, first, last, exp())
    assert (await appclient.get(good)).status_code == 200
    device_path = urls.device_path(cam.product_id, cam.device_name)
    seg_url = urls.sign(f"{device_path}/seg/{ids[0]}.mp4", exp())
    assert (await appclient.get(seg_url)).status_code == 200
    forbidden = [
        good.replace(f"starttime_epoch={first}", f"starttime_epoch={first - 3600}"),
        good.replace(f"endtime_epoch={last}", f"endtime_epoch={last + 1}"),
        good.replace(cam.device_name, other.device_name),
        good.split("&expires=")[0],
        urls.sign_playlist(cam.product_id, cam.device_name, first, last, int(time.time()) - 1),
        seg_url.replace(f"/seg/{ids[0]}.mp4", f"/seg/{ids[1]}.mp4"),
        seg_url.replace(cam.device_name, other.device_name),
        seg_url.split("?")[0],
        urls.sign(f"{device_path}/seg/{ids[0]}.mp4", int(time.time()) - 1),
        urls.sign(f"{device_path}/thumb/1.jpg", exp()).replace("thumb/1", "thumb/2"),
        urls.sign(f"{device_path}/init/{clip.init_sha}.mp4", exp()).replace(
            cam.device_name, other.device_name
        ),
    ]
    for url in forbidden:
        resp = await appclient.get(url)
        assert resp.status_code == 403, url
        assert resp.json()["error"]["code"] == "UnauthorizedOperation"
    other_path = urls.device_path(other.product_id, other.device_name)
    missing = [
        urls.sign(f"{other_path}/seg/{ids[0]}.mp4", exp()),  # validly signed, not its segment
        urls.sign(f"{device_path}/seg/999999.mp4", exp()),
        urls.sign(f"{device_path}/init/{'0' * 64}.mp4", exp()),
        urls.sign_playlist(cam.product_id, cam.device_name, 1000, 2000, exp()),
    ]
    for url in missing:
        assert (await appclient.get(url)).status_code == 404, url

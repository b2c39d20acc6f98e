"""The hub's HTTP/WebSocket edge over real sockets: minting stream URLs through the App API,
per-user authorization of every URL, and the clear errors a viewer or a publisher gets
(offline device, device that never pushes or refuses, bad signatures, a second publisher,
a broken stream). Devices here are raw MQTT clients answering ``$video`` by hand, and the
publisher a plain WebSocket client sending real FLV, so every byte on the wire is visible."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ivcloud.api import media as media_api
from ivcloud.app import Ivcloud
from ivcloud.protocol.stream_urls import StreamKey
from tests.appclient import error_code, make_user
from tests.helpers import Provisioned, poll, provision
from tests.media.hub_support import (
    Live,
    Recording,
    decode_clocks,
    live_setup,
    raw_video_device,
    record,
    running,
)


@pytest.fixture
async def hub_server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    async with running(tmp_path / "data", stream_publisher_wait_s=1.5, stream_linger_s=0.1) as s:
        yield s


@pytest.fixture
async def live(hub_server: Ivcloud) -> AsyncIterator[Live]:
    async with live_setup(hub_server) as setup:
        yield setup


@pytest.fixture(scope="module")
def rec() -> Recording:
    return asyncio.run(record(2.5))


def replace_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    pairs = [p.split("=", 1) for p in parts.query.split("&")]
    query = "&".join(f"{k}={changes.pop(k, v)}" for k, v in pairs)
    return urlunsplit(parts._replace(query=query))


async def get_status(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.get(url)
        return resp.status_code, resp.json()


async def ws_refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    return info.value.response.status_code


async def ws_close(url: str) -> tuple[int, str]:
    """Connect as a viewer and return the close code and reason the hub ends with."""
    async with connect(url, compression=None) as ws:
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


# -- minting -------------------------------------------------------------------------------


async def test_describe_stream_urls(live: Live) -> None:
    before = int(time.time())
    urls = await live.urls(Channel=1, Quality="high", ExpireSeconds=600)
    assert set(urls) == {"RequestId", "FlvUrl", "WsFlvUrl", "WsMp4Url", "ExpireTime"}
    assert before + 600 <= urls["ExpireTime"] <= int(time.time()) + 600
    flv = urlsplit(urls["FlvUrl"])
    assert flv.scheme == "http" and flv.path.endswith(f"/{live.device.device_name}.flv")
    assert urls["WsFlvUrl"] == "ws" + urls["FlvUrl"][len("http") :]
    assert urlsplit(urls["WsMp4Url"]).path.endswith(".mp4")
    assert f"uid={live.user_id}" in flv.query and "channel=1&quality=high" in flv.query
    default = await live.urls()
    assert "channel=0&quality=standard" in default["FlvUrl"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Quality": "ultra"}, "InvalidParameterValue"),
        ({"Channel": 65}, "InvalidParameterValue"),
        ({"Channel": "x"}, "InvalidParameter"),
        ({"ExpireSeconds": 10}, "InvalidParameterValue"),
        ({"ExpireSeconds": 86401}, "InvalidParameterValue"),
    ],
)
async def test_describe_stream_urls_bad_params(
    live: Live, params: dict[str, Any], code: str
) -> None:
    doc = await live.api.tokenapi(
        live.token, "IvcloudDescribeStreamUrls", DeviceId=live.device_id, **params
    )
    assert error_code(doc) == code


async def test_another_users_device_is_refused(hub_server: Ivcloud, live: Live) -> None:
    """A user of the same app with no access, an unknown device: NoPermission; a URL of the
    stranger's own device moved onto the owner's camera: 403."""
    other_id, other_token = await make_user(hub_server, live.creds, "stranger")
    doc = await live.api.tokenapi(other_token, "IvcloudDescribeStreamUrls", DeviceId=live.device_id)
    assert error_code(doc) == "InvalidParameterValue.NoPermission"
    doc = await live.api.tokenapi(
        live.token, "IvcloudDescribeStreamUrls", DeviceId=f"{live.device.product_id}/nope"
    )
    assert error_code(doc) == "InvalidParameterValue.NoPermission"
    # The stranger signs for a device of theirs and swaps in the owner's camera's name.
    async with live_setup(hub_server, "cam02") as theirs:
        mine = await theirs.urls()
    for key in ("FlvUrl", "WsFlvUrl", "WsMp4Url"):
        forged = mine[key].replace(
            f"{theirs.device.product_id}/cam02", f"{live.device.product_id}/cam01"
        )
        if key == "FlvUrl":
            assert (await get_status(forged))[0] == 403
        else:
            assert await ws_refused_status(forged) == 403
    # A URL signed by the service for a user without access is refused when opened.
    stream = StreamKey(live.device.product_id, live.device.device_name)
    urls = hub_server.streams.viewer_urls(other_id, stream, 600)
    status, body = await get_status(urls.flv_url)
    assert status == 403 and body["error"]["code"] == "UnauthorizedOperation"


@pytest.mark.parametrize(
    "change",
    [
        {"uid": "someone-else"},
        {"channel": "1"},
        {"quality": "super"},
        {"expires": "99999999999"},
        {"sign": "0" * 64},
    ],
)
async def test_tampered_urls_are_403(live: Live, change: dict[str, str]) -> None:
    urls = await live.urls()
    status, body = await get_status(replace_query(urls["FlvUrl"], **change))
    assert status == 403 and body["error"]["code"] == "UnauthorizedOperation"
    assert await ws_refused_status(replace_query(urls["WsFlvUrl"], **change)) == 403
    assert await ws_refused_status(replace_query(urls["WsMp4Url"], **change)) == 403


async def test_unsigned_and_expired_urls_are_403(hub_server: Ivcloud, live: Live) -> None:
    urls = await live.urls()
    assert (await get_status(urls["FlvUrl"].split("?")[0]))[0] == 403
    stream = StreamKey(live.device.product_id, live.device.device_name)
    expired = hub_server.streams.viewer_urls(live.user_id, stream, -1)
    status, body = await get_status(expired.flv_url)
    assert status == 403 and "expired" in body["error"]["message"]
    assert await ws_refused_status(expired.ws_mp4_url) == 403
    # An mp4 signature does not open the flv path.
    mp4_query = urlsplit(urls["WsMp4Url"]).query
    assert (await get_status(urls["FlvUrl"].split("?")[0] + "?" + mp4_query))[0] == 403


async def test_access_is_checked_again_when_a_url_is_opened(
    hub_server: Ivcloud, live: Live
) -> None:
    urls = await live.urls()
    rec = await hub_server.devices.find(live.device.product_id, live.device.device_name)
    assert rec is not None
    await hub_server.families.unbind_device(rec)  # the user loses the camera
    assert (await get_status(urls["FlvUrl"]))[0] == 403
    assert await ws_refused_status(urls["WsFlvUrl"]) == 403


# -- devices that cannot stream --------------------------------------------------------------


async def test_offline_device_is_409_and_ws_close_4409(live: Live) -> None:
    urls = await live.urls()
    status, body = await get_status(urls["FlvUrl"])
    assert status == 409 and body["error"]["code"] == "FailedOperation.DeviceOffline"
    code, reason = await ws_close(urls["WsMp4Url"])
    assert code == 4409 and "offline" in reason


async def test_device_without_video_signalling_is_treated_as_offline(
    hub_server: Ivcloud, live: Live
) -> None:
    from tests.rawdevice import device_for

    urls = await live.urls()
    async with device_for(hub_server, live.device):  # subscribes $thing topics only
        status, body = await get_status(urls["FlvUrl"])
    assert status == 409 and "video signalling" in body["error"]["message"]


async def test_device_that_never_pushes_times_out(hub_server: Ivcloud, live: Live) -> None:
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        viewer = asyncio.create_task(get_status(urls["FlvUrl"]))
        request = await device.video_request()
        assert request["method"] == "stream_push_start"
        params = request["params"]
        assert (params["channel"], params["quality"]) == (0, "standard")
        assert params["url"].startswith("ws://") and "/media/v1/publish/" in params["url"]
        await device.video_reply(request, 0)  # says yes, never connects
        status, body = await viewer
        assert status == 504 and body["error"]["code"] == "FailedOperation.DeviceTimeout"
        ws_viewer = asyncio.create_task(ws_close(urls["WsFlvUrl"]))
        await device.video_reply(await device.video_request(), 0)  # asked again
        assert (await ws_viewer)[0] == 4504


async def test_device_refusing_to_push_is_503(hub_server: Ivcloud, live: Live) -> None:
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        viewer = asyncio.create_task(get_status(urls["FlvUrl"]))
        await device.video_reply(await device.video_request(), 500, "camera busy")
        status, body = await viewer
    assert status == 503 and "camera busy" in body["error"]["message"]


# -- the publish endpoint ---------------------------------------------------------------------


async def read_flv(url: str) -> tuple[int, str, bytes]:
    """An HTTP-FLV viewer: status, content type and everything until the response ends."""
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as resp:
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
        return resp.status_code, resp.headers.get("content-type", ""), bytes(body)


async def test_publisher_edge_cases_and_viewers_ending_cleanly(
    hub_server: Ivcloud, live: Live, rec: Recording
) -> None:
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        viewer = asyncio.create_task(read_flv(urls["FlvUrl"]))
        request = await device.video_request()
        publish_url = request["params"]["url"]
        async with connect(publish_url, compression=None) as publisher:
            await device.video_reply(request, 0)
            for chunk in rec.chunks[:12]:
                await publisher.send(chunk)
            # A second publisher for the same stream is refused; the first keeps going.
            async with connect(publish_url, compression=None) as second:
                with pytest.raises(ConnectionClosed) as info:
                    await second.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4409
            for chunk in rec.chunks[12:]:
                await publisher.send(chunk)
            await poll(
                lambda: _stats(hub_server), lambda s: s.bytes_in >= len(rec.data), deadline_s=10
            )
            # Garbage from the publisher: it is dropped (4400), the viewer's response ends.
            await publisher.send(b"\x00" * 64)
            with pytest.raises(ConnectionClosed) as info:
                await publisher.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4400
        status, content_type, data = await asyncio.wait_for(viewer, 10)
    assert (status, content_type) == (200, "video/x-flv")
    clocks = decode_clocks(data, "flv")
    assert clocks[0] == rec.keyframe_clocks[0] and len(clocks) >= 20


async def test_publisher_needs_a_valid_url_and_a_request(hub_server: Ivcloud, live: Live) -> None:
    key = StreamKey(live.device.product_id, live.device.device_name)
    url = hub_server.streams.publish_url(key)
    # Nobody asked for this stream: refused after the handshake, with the reason.
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4404, "nobody asked for this stream")
    assert await ws_refused_status(url.split("?")[0]) == 403
    assert await ws_refused_status(replace_query(url, quality="high")) == 403
    other = hub_server.streams.publish_url(StreamKey(live.device.product_id, "cam99"))
    forged = other.replace("/cam99?", f"/{live.device.device_name}?")
    assert await ws_refused_status(forged) == 403


async def test_text_from_a_publisher_is_refused(hub_server: Ivcloud, live: Live) -> None:
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        viewer = asyncio.create_task(read_flv(urls["FlvUrl"]))
        request = await device.video_request()
        async with connect(request["params"]["url"]) as publisher:
            await device.video_reply(request, 0)
            await publisher.send("hello")
            with pytest.raises(ConnectionClosed) as info:
                await publisher.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4400
        # The viewer, waiting for a first keyframe that never came, ends cleanly.
        assert await asyncio.wait_for(viewer, 10) == (200, "video/x-flv", b"")


async def _stats(server: Ivcloud) -> Any:
    return server.hub.stats()


async def test_unlinked_provisioned_device_cannot_be_minted(
    hub_server: Ivcloud, live: Live
) -> None:
    async with httpx.AsyncClient(
        base_url=hub_server.endpoints.http_url + "/api/console/v1",  # type: ignore[union-attr]
        headers={"Authorization": f"Bearer {hub_server.admin_token}"},
    ) as admin:
        foreign: Provisioned = await provision(admin, "camera", "camera", "other")
    doc = await live.api.tokenapi(
        live.token,
        "IvcloudDescribeStreamUrls",
        ProductId=foreign.product_id,
        DeviceName=foreign.device_name,
    )
    assert error_code(doc) == "InvalidParameterValue.NoPermission"


async def test_viewers_per_stream_are_capped(tmp_path: Path, rec: Recording) -> None:
    async with (
        running(tmp_path / "data", stream_max_viewers=1, stream_linger_s=0.1) as server,
        live_setup(server) as setup,
        raw_video_device(server, setup.device) as device,
    ):
        urls = await setup.urls()
        first = asyncio.create_task(read_flv(urls["FlvUrl"]))
        request = await device.video_request()
        async with connect(request["params"]["url"], compression=None) as publisher:
            await device.video_reply(request, 0)
            await publisher.send(rec.chunks[0])
            await poll(lambda: _stats(server), lambda s: s.viewers == 1)
            status, body = await get_status(urls["FlvUrl"])
            assert status == 503 and "1 viewers already" in body["error"]["message"]
            assert (await ws_close(urls["WsMp4Url"]))[0] == 4503
        assert (await asyncio.wait_for(first, 10))[0] == 200


async def test_head_checks_a_url_without_starting_a_stream(hub_server: Ivcloud, live: Live) -> None:
    urls = await live.urls()
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.head(urls["FlvUrl"])
        assert (resp.status_code, resp.headers["content-type"]) == (200, "video/x-flv")
        assert resp.content == b""
        assert (await http.head(replace_query(urls["FlvUrl"], uid="x"))).status_code == 403
        assert (await http.post(urls["FlvUrl"])).status_code == 405
    assert hub_server.hub.stats().streams == 0


async def test_a_silent_publisher_is_dropped(
    hub_server: Ivcloud, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_api, "PUBLISH_IDLE_S", 0.3)
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        viewer = asyncio.create_task(ws_close(urls["WsFlvUrl"]))
        request = await device.video_request()
        async with connect(request["params"]["url"]) as publisher:
            await device.video_reply(request, 0)
            with pytest.raises(ConnectionClosed) as info:
                await publisher.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 4408
        assert await asyncio.wait_for(viewer, 10) == (4410, "no data from the publisher")


async def test_signatures_stay_out_of_the_server_log(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    urls = await live.urls()
    sign = dict(p.split("=", 1) for p in urlsplit(urls["WsMp4Url"]).query.split("&"))["sign"]
    assert (await ws_close(urls["WsMp4Url"]))[0] == 4409  # offline: accepted, then closed
    handshakes = [r.getMessage() for r in caplog.records if "WebSocket" in r.getMessage()]
    assert handshakes and all("sign=***" in m for m in handshakes)
    assert sign not in caplog.text

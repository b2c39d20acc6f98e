"""Live view through the stream hub, end to end over real sockets: a real ivcloud, a simulated
camera online over MQTT encoding real H.264/AAC, an app user minting URLs through the App
API, and viewers over HTTP-FLV, WS-FLV and WS-fMP4 whose bytes PyAV decodes.

"20 viewers on one camera through the hub with one upload; a viewer of another user's camera
is refused (tests/api/test_media.py); device disconnect mid-stream ends viewers cleanly" —
plus the last viewer leaving stopping the upload, and a viewer that stops reading neither
stalling the others nor growing the hub's memory."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ivcloud.app import Ivcloud
from ivcloud.media.hub import HubStats
from ivcloud.protocol.av import FlvReader, flv_header
from tests.helpers import poll
from tests.media.hub_support import (
    Live,
    camera,
    check_clocks,
    decode_clocks,
    live_setup,
    now_ms,
    raw_video_device,
    record,
    running,
)

BACKLOG = 64 * 1024


@pytest.fixture
async def hub_server(tmp_path: Path) -> AsyncIterator[Ivcloud]:
    async with running(
        tmp_path / "data",
        stream_linger_s=0.2,
        stream_publisher_wait_s=10,
        stream_viewer_backlog_bytes=BACKLOG,
        stream_gop_cache_bytes=BACKLOG,
        http_send_buffer_bytes=32 * 1024,
    ) as server:
        yield server


@pytest.fixture
async def live(hub_server: Ivcloud) -> AsyncIterator[Live]:
    async with live_setup(hub_server) as setup:
        yield setup


async def http_flv(url: str, min_bytes: int) -> bytes:
    """Read an HTTP-FLV response until ``min_bytes`` arrived (or it ended)."""
    out = bytearray()
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "video/x-flv"
        async for chunk in resp.aiter_bytes():
            out += chunk
            if len(out) >= min_bytes:
                break
    return bytes(out)


async def ws_messages(url: str, min_bytes: int) -> list[bytes | str]:
    messages: list[bytes | str] = []
    size = 0
    async with connect(url, compression=None) as ws:
        while size < min_bytes:
            message = await asyncio.wait_for(ws.recv(), 10)
            messages.append(message)
            size += len(message)
    return messages


def fmp4_bytes(messages: list[bytes | str]) -> bytes:
    """The WS-fMP4 wire format: a JSON text frame, then the init segment and fragments."""
    assert isinstance(messages[0], str) and '"type":"init"' in messages[0]
    assert "mp4a.40.2" in messages[0]
    assert all(isinstance(m, bytes) for m in messages[1:])
    return b"".join(m for m in messages[1:] if isinstance(m, bytes))


def ws_flv_bytes(messages: list[bytes | str]) -> bytes:
    assert all(isinstance(m, bytes) for m in messages)
    return b"".join(m for m in messages if isinstance(m, bytes))


async def test_live_view_over_http_flv_ws_flv_and_ws_fmp4(hub_server: Ivcloud, live: Live) -> None:
    async with camera(hub_server, live.device) as cam:
        urls = await live.urls()
        since = now_ms()
        flv = await http_flv(urls["FlvUrl"], 40_000)
        assert flv.startswith(flv_header(has_audio=True, has_video=True))
        tags = FlvReader().feed(flv)
        video = [t for t in tags if t.tag_type == 9 and not t.is_video_sequence_header]
        assert tags[0].is_video_sequence_header and video[0].is_video_keyframe
        check_clocks(decode_clocks(flv, "flv"), since_ms=since, until_ms=now_ms())
        # While the upload runs, the other two formats join it.
        ws_flv, ws_mp4 = await asyncio.gather(
            ws_messages(urls["WsFlvUrl"], 40_000), ws_messages(urls["WsMp4Url"], 40_000)
        )
        check_clocks(decode_clocks(ws_flv_bytes(ws_flv), "flv"), since_ms=since, until_ms=now_ms())
        check_clocks(decode_clocks(fmp4_bytes(ws_mp4), "mp4"), since_ms=since, until_ms=now_ms())
        assert len(cam.pushers.history) == 1  # one upload for the three viewers


async def test_twenty_viewers_one_upload_and_the_last_one_leaving_stops_it(
    hub_server: Ivcloud, live: Live
) -> None:
    async with camera(hub_server, live.device) as cam:
        urls = await live.urls()
        since = now_ms()
        jobs = [http_flv(urls["FlvUrl"], 60_000) for _ in range(8)]
        jobs += [ws_messages(urls["WsFlvUrl"], 60_000) for _ in range(6)]
        jobs += [ws_messages(urls["WsMp4Url"], 60_000) for _ in range(6)]
        peak = 0

        async def watch_viewers() -> None:
            nonlocal peak
            while True:
                peak = max(peak, hub_server.hub.stats().viewers)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch_viewers())
        try:
            results = await asyncio.gather(*jobs)
        finally:
            watcher.cancel()
        until = now_ms()
        assert peak == 20
        for result in results[:8]:
            assert isinstance(result, bytes)
            check_clocks(decode_clocks(result, "flv"), since_ms=since, until_ms=until)
        for result in results[8:14]:
            assert isinstance(result, list)
            check_clocks(decode_clocks(ws_flv_bytes(result), "flv"), since_ms=since, until_ms=until)
        for result in results[14:]:
            assert isinstance(result, list)
            check_clocks(decode_clocks(fmp4_bytes(result), "mp4"), since_ms=since, until_ms=until)
        stats = hub_server.hub.stats()
        assert stats.publishes == 1 and len(cam.pushers.history) == 1  # one upload
        # All left: after the linger the device is told to stop and its pusher closes.
        pusher = cam.pushers.history[0]
        await asyncio.wait_for(pusher.done.wait(), 10)
        assert cam.pushers.active == {}
        await poll(lambda: _stats(hub_server), lambda s: s.streams == 0 and s.publishers == 0)
        # A new viewer gets a fresh upload.
        assert decode_clocks(await http_flv(urls["FlvUrl"], 20_000), "flv")
        assert len(cam.pushers.history) == 2


async def test_device_disconnect_mid_stream_ends_viewers_cleanly(
    hub_server: Ivcloud, live: Live
) -> None:
    async with camera(hub_server, live.device) as cam:
        urls = await live.urls()

        async def http_until_end() -> bytes:
            return await http_flv(urls["FlvUrl"], 1 << 30)

        async def ws_until_close(url: str) -> tuple[int, str, int]:
            size = 0
            async with connect(url, compression=None) as ws:
                try:
                    while True:
                        size += len(await ws.recv())
                except ConnectionClosed as exc:
                    assert exc.rcvd is not None
                    return exc.rcvd.code, exc.rcvd.reason, size
            raise AssertionError("unreachable")

        viewers = [
            asyncio.create_task(http_until_end()),
            asyncio.create_task(ws_until_close(urls["WsFlvUrl"])),
            asyncio.create_task(ws_until_close(urls["WsMp4Url"])),
        ]
        await poll(lambda: _stats(hub_server), lambda s: s.viewers == 3 and s.bytes_in > 30_000)
        pusher = cam.pushers.history[0]
        client_id = live.device.product_id + live.device.device_name
        assert await hub_server.gateway.disconnect(client_id, "test: device lost")
        flv, ws_flv, ws_mp4 = await asyncio.wait_for(asyncio.gather(*viewers), 10)
        assert decode_clocks(flv, "flv")  # what arrived before the end is intact
        assert ws_flv[:2] == ws_mp4[:2] == (4410, "device offline")
        assert ws_flv[2] > 0 and ws_mp4[2] > 0
        await asyncio.wait_for(pusher.done.wait(), 10)
        assert pusher.close_code == 4410
        assert hub_server.hub.stats().streams == 0


async def test_a_viewer_that_stops_reading_does_not_stall_the_others(
    hub_server: Ivcloud, live: Live
) -> None:
    """A paced publisher (a raw device pushing a recording at ~8x real time) feeds three
    viewers; one has a tiny receive buffer and never reads. It is skipped to keyframes,
    the others get every frame, and the hub's backlog stays within its limit."""
    rec = await record(20.0, bitrate=300_000)
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        fast = [asyncio.create_task(http_flv(urls["FlvUrl"], len(rec.data) * 9 // 10))]
        request = await device.video_request()
        async with connect(request["params"]["url"], compression=None) as publisher:
            await device.video_reply(request, 0)
            await poll(lambda: _stats(hub_server), lambda s: s.viewers == 1)
            await publisher.send(rec.chunks[0])  # header, configs and the first keyframe
            fast.append(asyncio.create_task(ws_messages(urls["WsFlvUrl"], len(rec.data) * 8 // 10)))
            slow = await slow_viewer(urls["FlvUrl"])
            await poll(lambda: _stats(hub_server), lambda s: s.viewers == 3)
            worst = 0
            for n, chunk in enumerate(rec.chunks[1:]):
                await publisher.send(chunk)
                if n % 8 == 0:
                    await asyncio.sleep(0.01)  # ~8x real time
                    worst = max(worst, hub_server.hub.stats().max_queued_bytes)
            http_data, ws_data = await asyncio.wait_for(asyncio.gather(*fast), 20)
            # The slow viewer (still connected) was skipped to keyframes; nobody else was.
            (stuck,) = hub_server.hub.viewer_sessions()
            assert stuck.viewer.lag_events >= 1
            assert hub_server.hub.stats().lag_events == stuck.viewer.lag_events
        slow.close()
    biggest = max(len(c) for c in rec.chunks)
    assert worst <= BACKLOG + biggest, (worst, BACKLOG)
    frames = sum(1 for f in rec.frames if f.__class__.__name__ == "EncodedVideo")
    http_clocks = decode_clocks(http_data, "flv")
    ws_clocks = decode_clocks(ws_flv_bytes(ws_data), "flv")
    assert len(http_clocks) >= frames * 8 // 10 and http_clocks == sorted(http_clocks)
    assert len(ws_clocks) >= frames * 7 // 10 and ws_clocks == sorted(ws_clocks)


async def test_a_stalled_http_flv_viewer_reads_again_and_resumes_on_a_keyframe(
    hub_server: Ivcloud, live: Live
) -> None:
    """The HTTP-FLV writer runs inside the fan-out; a write the client does not take is
    finished later. A viewer that stops reading is skipped to a keyframe meanwhile; when it
    reads again it gets the rest: whole tags, the sequence headers again before the keyframe
    it resumes on, decodable to the end of the stream, then the end of the response."""
    rec = await record(20.0, bitrate=300_000)
    urls = await live.urls()
    async with raw_video_device(hub_server, live.device) as device:
        sock = await slow_viewer(urls["FlvUrl"])
        request = await device.video_request()
        async with connect(request["params"]["url"], compression=None) as publisher:
            await device.video_reply(request, 0)
            await poll(lambda: _stats(hub_server), lambda s: s.viewers == 1)
            (session,) = hub_server.hub.viewer_sessions()
            chunks = iter(rec.chunks)
            for chunk in chunks:  # until the unread backlog overflowed once
                await publisher.send(chunk)
                await asyncio.sleep(0)
                if session.viewer.lag_events:
                    break
            assert session.viewer.lag_events == 1
            reader = asyncio.create_task(read_to_end(sock))
            for n, chunk in enumerate(chunks):
                await publisher.send(chunk)
                if n % 8 == 0:
                    await asyncio.sleep(0.01)
        body = dechunk(await asyncio.wait_for(reader, 20))  # the publisher left: it ended
    sock.close()
    tags = FlvReader().feed(body)  # raises on a cut tag
    assert sum(1 for t in tags if t.is_video_sequence_header) == 2  # start, and the resume
    resume = next(i for i, t in enumerate(tags) if i > 0 and t.is_video_sequence_header)
    after = [t for t in tags[resume:] if t.tag_type == 9 and not t.is_video_sequence_header]
    assert after[0].is_video_keyframe
    clocks = decode_clocks(body, "flv")
    assert clocks == sorted(clocks) and len(clocks) > len(after) // 2
    assert hub_server.hub.stats().viewers == 0


async def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or ends a chunked response."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    while not data.endswith(b"\r\n0\r\n\r\n"):
        piece = await loop.sock_recv(sock, 1 << 16)
        if not piece:
            break
        data += piece
    return bytes(data)


def dechunk(response: bytes) -> bytes:
    """The body of a complete chunked HTTP response."""
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(body)
        body += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


async def slow_viewer(url: str) -> socket.socket:
    """An HTTP-FLV request from a socket with a tiny receive buffer that is never read."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (parts.hostname, parts.port))
    request = f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    return sock


async def _stats(server: Ivcloud) -> HubStats:
    return server.hub.stats()

"""The XP2P client's local HTTP proxy and the P2P/hub race, over real sockets: a real ivcloud
whose simulated camera pushes real H.264/AAC to the hub, a real aiortc tunnel to a test
camera (its cloud signalling hop done in-process: tests/client/xp2p_support.py), and
players that are FFmpeg (PyAV opening the proxy URL) or plain HTTP clients.

Proves: a player decodes live video through the proxy from the hub alone and from P2P
alone; while the tunnel is still connecting the hub wins the race, then new requests move
to P2P while the running one stays on the hub; a failing path loses to the other;
playback and download over P2P (503 + XP2P −1010 without it); a player hanging up stops
the stream at the device / leaves the hub; stop_service ends responses cleanly and kills
the URL; bad requests get clear errors; the request-line parser never fails otherwise."""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.app import Ivcloud
from ivcloud.client.xp2p_errors import Xp2pCloudError
from ivcloud.client.xp2p_proxy import BadHead, parse_head
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.p2p_channel import DEFAULT_WINDOW
from tests import p2p_support
from tests.client import xp2p_support
from tests.client.xp2p_support import (
    BIG_FILE,
    INFO,
    LIVE,
    decode_flv,
    http_get,
    recording,
    stop_while_watching,
    watch_live,
    xp2p_client,
)
from tests.media.hub_support import Live, camera
from tests.p2p_support import eventually, pattern_bytes

# fixtures, used by name
loopback_ice = p2p_support.loopback_ice
hub_server, live = xp2p_support.hub_server, xp2p_support.live
pytestmark = pytest.mark.usefixtures("loopback_ice")


async def test_hub_alone_serves_a_player_and_hanging_up_leaves_the_hub(
    hub_server: Ivcloud, live: Live
) -> None:
    async with (
        camera(hub_server, live.device),
        xp2p_client(hub_server, live) as (client, _, _),
    ):
        info = await client.start_service(live.device_id, INFO, paths=("hub",))
        base = client.delegate_http_flv(live.device_id)
        assert base == info.url and base.startswith("http://127.0.0.1:")
        assert base.endswith(f"/{live.device_id}/")
        await watch_live(base + LIVE, 12)
        assert client.chosen_path(live.device_id) == "hub"
        # FFmpeg hung up: the proxy closed its hub viewer.
        await eventually(lambda: hub_server.hub.stats().viewers == 0)
        resp, body = await http_get(base + LIVE, 20_000)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "video/x-flv"
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.headers["x-xp2p-path"] == "hub"
        assert body.startswith(b"FLV\x01")
        await eventually(lambda: hub_server.hub.stats().viewers == 0)


async def test_p2p_alone_serves_a_player_and_hanging_up_stops_the_device_stream(
    hub_server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(hub_server, live) as (client, _, cam):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        url = client.delegate_http_flv(live.device_id) + LIVE
        await watch_live(url, 12)
        assert client.chosen_path(live.device_id) == "direct"
        # The player left: the device's stream was cancelled and its camera subscription
        # released (the tunnel carries no media tracks, so nothing else subscribes).
        await eventually(lambda: cam.streams_closed == 1 and cam.feed.subscribers == 0)
        resp, _ = await http_get(url, 1000)
        assert resp.headers["x-xp2p-path"] == "direct"
        assert hub_server.hub.stats().publishes == 0  # the hub was never involved


async def test_the_hub_wins_while_p2p_connects_then_new_requests_move_to_p2p(
    hub_server: Ivcloud, live: Live
) -> None:
    events: list[tuple[str, str]] = []
    async with (
        camera(hub_server, live.device),
        xp2p_client(
            hub_server, live, on_event=lambda _id, ev, detail: events.append((ev, detail))
        ) as (client, cloud, cam),
    ):
        cloud.gate.clear()  # the device's answer is held back: the tunnel stays "detecting"
        await client.start_service(live.device_id, INFO)
        assert client.chosen_path(live.device_id) is None
        url = client.delegate_http_flv(live.device_id) + LIVE
        first_bytes = bytearray()
        switched = asyncio.Event()

        async def first_player() -> str:
            async with (
                httpx.AsyncClient(timeout=30) as http,
                http.stream("GET", url) as resp,
            ):
                async for chunk in resp.aiter_raw():
                    first_bytes.extend(chunk)
                    if switched.is_set() and len(first_bytes) > 60_000:
                        break
                return resp.headers["x-xp2p-path"]

        player = asyncio.create_task(first_player())
        await eventually(lambda: len(first_bytes) > 10_000)
        assert client.chosen_path(live.device_id) == "hub"
        assert cam.streams_closed == 0 and not cloud.handlers  # P2P never got to stream
        cloud.gate.set()
        assert await client.wait_p2p(live.device_id) == "direct"
        assert client.chosen_path(live.device_id) == "direct"
        switched.set()
        resp, body = await http_get(url, 20_000)
        assert resp.headers["x-xp2p-path"] == "direct"
        assert decode_flv(body)
        # The first player stayed on the hub the whole time and kept receiving.
        assert await player == "hub"
        assert all(c is not None for c in decode_flv(bytes(first_bytes)))
        assert ("path", "hub") in events and events[-1] == ("path", "direct")
        assert ("detect_ready", "direct") in events


async def test_a_failing_path_loses_the_race_to_the_other(hub_server: Ivcloud, live: Live) -> None:
    # No camera online: the hub answers 409 (device offline) and P2P serves the player.
    async with xp2p_client(hub_server, live) as (client, _, _):
        await client.start_service(live.device_id, INFO)
        resp, body = await http_get(client.delegate_http_flv(live.device_id) + LIVE, 20_000)
        assert resp.status_code == 200 and resp.headers["x-xp2p-path"] == "direct"
        assert decode_flv(body)
    # P2P refused by the cloud and the hub offline: the hub's status reaches the player.
    async with xp2p_client(hub_server, live) as (client, cloud, _):
        cloud.refuse = Xp2pCloudError(codes.XP2P_ERR_REQUEST_FAIL, "refused", api_code="x")
        await client.start_service(live.device_id, INFO)
        resp, body = await http_get(client.delegate_http_flv(live.device_id) + LIVE, 1)
        assert resp.status_code == 409
        assert resp.headers["x-xp2p-error"] == str(codes.XP2P_ERR_REQUEST_FAIL)
        assert json.loads(body)["code"] == codes.XP2P_ERR_REQUEST_FAIL


async def test_a_device_refusing_a_p2p_viewer_sends_the_player_to_the_hub(
    hub_server: Ivcloud, live: Live
) -> None:
    async with (
        camera(hub_server, live.device),
        xp2p_client(hub_server, live) as (client, cloud, _),
    ):
        await client.start_service(live.device_id, INFO)
        await client.wait_p2p(live.device_id)
        cloud.handlers[0].refuse_live = 405  # the camera's P2P viewer limit
        resp, body = await http_get(client.delegate_http_flv(live.device_id) + LIVE, 20_000)
        assert resp.status_code == 200 and resp.headers["x-xp2p-path"] == "hub"
        assert decode_flv(body)
        await client.stop_service(live.device_id)
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        await client.wait_p2p(live.device_id)
        cloud.handlers[1].refuse_live = 405
        resp, body = await http_get(client.delegate_http_flv(live.device_id) + LIVE, 1)
        assert resp.status_code == 503 and resp.headers["x-xp2p-error"] == "-1006"
        assert "405" in json.loads(body)["message"]


async def test_playback_and_download_over_p2p_and_503_without_it(
    hub_server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(hub_server, live) as (client, _, _):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        base = client.delegate_http_flv(live.device_id) + "ipc.flv?"
        playback = "action=playback&channel=0&start_time=1767225600&end_time=1767225606"
        resp, body = await http_get(base + playback, 10**9)
        assert resp.status_code == 200 and resp.headers["content-type"] == "video/x-flv"
        assert body == await recording()  # the device's bytes, unchanged, to the end
        resp, body = await http_get(
            base + "action=download&channel=0&file_name=a.flv&offset=7", 10**9
        )
        assert resp.headers["content-type"] == "application/octet-stream"
        assert body == pattern_bytes(100_000)[7:]
    async with xp2p_client(hub_server, live) as (client, cloud, _):
        await client.start_service(live.device_id, INFO, paths=("hub",))
        base = client.delegate_http_flv(live.device_id) + "ipc.flv?"
        resp, body = await http_get(base + playback, 10**6)
        assert resp.status_code == 503
        assert resp.headers["x-xp2p-error"] == "-1010"
        assert json.loads(body) == {
            "code": -1010,
            "name": "XP2P_ERR_DETECT_NOTREADY",
            "message": "p2p detect is not ready, state:3",
        }
        await client.stop_service(live.device_id)
        cloud.refuse = Xp2pCloudError(codes.XP2P_ERR_REQUEST_FAIL, "refused", api_code="x")
        await client.start_service(live.device_id, INFO)
        resp, body = await http_get(
            client.delegate_http_flv(live.device_id) + "ipc.flv?" + playback, 10**6
        )
        assert resp.status_code == 503
        assert json.loads(body)["message"] == "p2p detect is not ready, state:2"


async def test_stop_service_ends_the_players_response_and_kills_the_url(
    hub_server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(hub_server, live) as (client, _, cam):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        url = client.delegate_http_flv(live.device_id) + LIVE
        await stop_while_watching(client, live.device_id, url)
        await eventually(lambda: cam.streams_closed == 1)
        resp, _ = await http_get(url, 1)
        assert resp.status_code == 404


async def test_bad_requests_get_clear_errors_and_the_proxy_listens_on_loopback_only(
    hub_server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(hub_server, live) as (client, _, cam):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        base = client.delegate_http_flv(live.device_id)
        token = base.split("/")[3]
        resp, body = await http_get(base + "ipc.flv?action=live&quality=ultra", 1)
        assert resp.status_code == 400 and resp.headers["x-xp2p-error"] == "-1000"
        assert "quality" in json.loads(body)["message"]
        resp, _ = await http_get(base + "ipc.flv?action=playback&start_time=1", 1)
        assert resp.status_code == 400
        other = base.replace(token, "A" * len(token))
        assert (await http_get(other + LIVE, 1))[0].status_code == 404
        assert (await http_get(base.replace(live.device_id, "P/other") + LIVE, 1))[
            0
        ].status_code == 404
        assert (await http_get(base + "voice?channel=0", 1))[0].status_code == 404
        async with httpx.AsyncClient() as http:
            assert (await http.post(base + LIVE)).status_code == 405
            head = await http.head(base + LIVE)
            assert head.status_code == 200 and head.content == b""
        assert not cam.feed.subscribers  # none of this opened a stream
        port = int(base.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
        with socket.socket() as probe:  # not on other interfaces
            assert probe.connect_ex((_non_loopback_address(), port)) != 0
        resp, _ = await http_get(base + LIVE, 1000)  # and it still serves
        assert resp.status_code == 200


async def test_a_player_that_stops_reading_stops_the_device(
    hub_server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(hub_server, live) as (client, cloud, _):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        await client.wait_p2p(live.device_id)
        url = urlsplit(client.delegate_http_flv(live.device_id))
        target = f"{url.path}ipc.flv?action=download&channel=0&file_name=big.bin&offset=0"
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", url.port or 80))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # The player reads nothing: the device stops at its window instead of the client
        # buffering the 4 MiB file.
        device = cloud.devices[0].channel
        assert device is not None
        await eventually(lambda: device.stats.credit_waits >= 1)
        assert device.stats.bytes_sent < 1024 * 1024
        assert device.stats.max_outstanding <= DEFAULT_WINDOW
        # Reading resumes it; every byte arrives, in order.
        raw = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert dechunk(body) == pattern_bytes(BIG_FILE)
        assert device.stats.max_outstanding <= DEFAULT_WINDOW  # over the whole transfer


def dechunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end], 16)
        if size == 0:
            assert body[end:] == b"\r\n\r\n"
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def _non_loopback_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent; this picks the outbound address
        address: str = s.getsockname()[0]
    assert not address.startswith("127."), "this test needs a non-loopback interface"
    return address


@given(st.binary(max_size=300))
def test_parse_head_takes_any_bytes(head: bytes) -> None:
    try:
        method, path, _query, version = parse_head(head)
    except BadHead as exc:
        assert exc.status in (400, 405)
    else:
        assert method in ("GET", "HEAD") and path.startswith("/")
        assert version in ("HTTP/1.0", "HTTP/1.1")


_SAFE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@given(st.sampled_from(["GET", "HEAD"]), _SAFE, _SAFE.filter(lambda q: "#" not in q))
def test_parse_head_round_trips_a_request_line(method: str, path: str, query: str) -> None:
    path = "/" + path.replace("?", "")
    line = f"{method} {path}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert parse_head(line) == (method, path, query, "HTTP/1.1")

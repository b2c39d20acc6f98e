"""The live-view benchmark's probes: one viewer start measured from the app's first request
to the first decoded picture, and glass-to-glass latency over a steady stream — through the
hub's HTTP-FLV (decoded here with PyAV), over P2P (``AppPeer``, aiortc decodes) and in
headless Chromium (``/web/live.html``, the player's own stats).

Every clock used for a latency is this machine's wall clock: the camera burns
``time.time()`` at capture into each picture (``ivcloud.media.clockcode``), the viewer reads
it back with ``read_clock`` right after decoding and subtracts it from its own
``time.time()``. Durations of a start use ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import quote

import av
import httpx

from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.av import FlvReader

PLAYER_READY_JS = "() => window.ivplayer && window.ivplayer.stats.firstFrameAt > 0"

#: Emulates the fix docs/live-video.md prescribes ("set currentTime to buffered.start(0)
#: after the first append") and ``web/live.js`` lacks: after each append, a play position
#: before the buffered range jumps to its start. Without it the shipped player never
#: presents a frame when the stream's first decode time is not ~0 (bench report).
SEEK_FIX_JS = """
(() => {
  const append = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function (data) {
    if (!this.__benchSeek) {
      this.__benchSeek = true;
      this.addEventListener("updateend", () => {
        const v = document.getElementById("video");
        const b = this.buffered;
        if (v && b.length && v.currentTime < b.start(0)) v.currentTime = b.start(0);
      });
    }
    return append.call(this, data);
  };
})();
"""


class AppApiFailed(RuntimeError):
    pass


async def app_api(
    http: httpx.AsyncClient, token: str, action: str, **params: Any
) -> dict[str, Any]:
    body = {"Action": action, "RequestId": "bench", "AccessToken": token, **params}
    resp = await http.post("/api/exploreropen/tokenapi", json=body)
    doc: dict[str, Any] = resp.json()
    if resp.status_code != 200 or doc.get("code") != 0:
        raise AppApiFailed(f"{action}: HTTP {resp.status_code} {doc}")
    data: dict[str, Any] = doc["data"]
    return data


def now_ms() -> float:
    return time.time() * 1000


class FlvPictures:
    """FLV bytes in any cuts → decoded pictures, as a player would: the AVC sequence header
    configures an FFmpeg H.264 decoder (one thread: frame threading would hold pictures
    back), every AVC NALU tag is decoded as it completes."""

    def __init__(self) -> None:
        self.reader = FlvReader()
        self.ctx: Any = None
        self.config = b""

    def feed(self, data: bytes) -> list[av.VideoFrame]:
        frames: list[av.VideoFrame] = []
        for tag in self.reader.feed(data):
            if tag.is_video_sequence_header:
                config = bytes(tag.payload)
                if config != self.config:
                    ctx = av.CodecContext.create("h264", "r")
                    ctx.extradata = config
                    ctx.thread_count = 1
                    self.ctx, self.config = ctx, config
            elif tag.tag_type == 9 and tag.packet_type == 1 and self.ctx is not None:
                frames += self.ctx.decode(av.Packet(bytes(tag.payload)))
        return frames


async def hub_flv_start(http: httpx.AsyncClient, token: str, device_id: str) -> dict[str, Any]:
    """One HTTP-FLV start: ``IvcloudDescribeStreamUrls`` → ``GET FlvUrl`` → response head →
    first byte → first decoded picture. Times in ms from the App API request; ``fresh``: the
    picture was captured after the request (the device started a new push for us) rather
    than taken from the hub's GOP cache."""
    w0 = now_ms()
    t0 = time.perf_counter()
    urls = await app_api(http, token, "IvcloudDescribeStreamUrls", DeviceId=device_id)
    t_url = time.perf_counter()
    out: dict[str, Any] = {}
    async with http.stream("GET", urls["FlvUrl"], timeout=30) as resp:
        t_head = time.perf_counter()
        if resp.status_code != 200:
            raise AppApiFailed(f"FlvUrl: HTTP {resp.status_code}")
        pictures = FlvPictures()
        t_byte = None
        async for chunk in resp.aiter_raw():
            if t_byte is None:
                t_byte = time.perf_counter()
            frames = pictures.feed(chunk)
            if frames:
                t_frame = time.perf_counter()
                wall = now_ms()
                captured = read_clock(frames[0])
                out = {
                    "url_ms": (t_url - t0) * 1000,
                    "head_ms": (t_head - t0) * 1000,
                    "first_byte_ms": (t_byte - t0) * 1000,
                    "ttff_ms": (t_frame - t0) * 1000,
                    "ttff_from_get_ms": (t_frame - t_url) * 1000,
                    "captured_age_ms": None if captured is None else wall - captured,
                    "fresh": captured is not None and captured >= w0,
                }
                break
    if not out:
        raise AppApiFailed("stream ended before a picture")
    return out


async def hub_flv_glass(
    http: httpx.AsyncClient, token: str, device_id: str, seconds: float
) -> dict[str, Any]:
    """Glass-to-glass over HTTP-FLV: every picture decoded during ``seconds`` after the
    first: decode wall time − burnt-in capture time."""
    urls = await app_api(http, token, "IvcloudDescribeStreamUrls", DeviceId=device_id)
    latencies: list[float] = []
    unreadable = 0
    async with http.stream("GET", urls["FlvUrl"], timeout=30) as resp:
        pictures = FlvPictures()
        end: float | None = None
        async for chunk in resp.aiter_raw():
            for frame in pictures.feed(chunk):
                wall = now_ms()
                if end is None:
                    end = time.monotonic() + seconds
                captured = read_clock(frame)
                if captured is None:
                    unreadable += 1
                else:
                    latencies.append(wall - captured)
            if end is not None and time.monotonic() >= end:
                break
    return {"latencies": latencies, "unreadable": unreadable}


class FlvKeeper:
    """A background HTTP-FLV viewer that only reads (keeps the upload and GOP cache warm)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url
        self.bytes = 0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self.http.stream("GET", self.url, timeout=30) as resp:
            async for chunk in resp.aiter_raw():
                self.bytes += len(chunk)

    async def __aenter__(self) -> FlvKeeper:
        self.task = asyncio.create_task(self._run())
        while self.bytes == 0:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# -- P2P ----------------------------------------------------------------------------------


async def p2p_start(
    http: httpx.AsyncClient, token: str, device_id: str, glass_seconds: float = 0.0
) -> dict[str, Any]:
    """One P2P start: ``IvcloudDescribeP2PParams`` → ``AppPeer`` offer → ``IvcloudP2PConnect``
    → answer → first decoded video frame from ``video_track``; then, with ``glass_seconds``,
    glass-to-glass over the following frames; then ``IvcloudP2PClose`` and close."""
    from ivcloud.client.p2p import AppPeer

    w0 = now_ms()
    t0 = time.perf_counter()
    params = await app_api(http, token, "IvcloudDescribeP2PParams", DeviceId=device_id)
    t_params = time.perf_counter()
    peer = AppPeer(params.get("IceServers", []), audio=False)
    session = ""
    try:
        offer = await peer.offer()
        t_offer = time.perf_counter()
        answer = await app_api(http, token, "IvcloudP2PConnect", DeviceId=device_id, Offer=offer)
        session = answer["SessionId"]
        t_answer = time.perf_counter()
        await peer.answer(answer["Answer"])
        track = peer.video_track
        assert track is not None
        frame = await asyncio.wait_for(track.recv(), 20)
        t_frame = time.perf_counter()
        wall = now_ms()
        captured = read_clock(frame)  # type: ignore[arg-type]
        out: dict[str, Any] = {
            "params_ms": (t_params - t0) * 1000,
            "offer_ms": (t_offer - t0) * 1000,
            "answer_ms": (t_answer - t0) * 1000,
            "ttff_ms": (t_frame - t0) * 1000,
            "captured_age_ms": None if captured is None else wall - captured,
            "fresh": captured is not None and captured >= w0,
            "path": peer.selected_path(),
        }
        if glass_seconds:
            latencies: list[float] = []
            unreadable = 0
            end = time.monotonic() + glass_seconds
            while time.monotonic() < end:
                frame = await asyncio.wait_for(track.recv(), 10)
                wall = now_ms()
                captured = read_clock(frame)  # type: ignore[arg-type]
                if captured is None:
                    unreadable += 1
                else:
                    latencies.append(wall - captured)
            out["latencies"], out["unreadable"] = latencies, unreadable
        return out
    finally:
        if session:
            with contextlib.suppress(Exception):
                await app_api(http, token, "IvcloudP2PClose", DeviceId=device_id, SessionId=session)
        await peer.close()


# -- headless Chromium --------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


async def browser_start(
    browser: Any,
    http: httpx.AsyncClient,
    http_url: str,
    token: str,
    device_id: str,
    *,
    seek_fix: bool = False,
    timeout_ms: int = 20_000,
) -> dict[str, Any]:
    """One start in a fresh page: mint URLs, open ``/web/live.html?ws=<WsMp4Url>``, wait for
    the player's first presented frame (``seek_fix``: with :data:`SEEK_FIX_JS`).
    ``player_ms`` = the player's own figure (its ``start()`` → first
    ``requestVideoFrameCallback``); ``page_ms`` = navigation start → that frame (page and
    module load included); ``ttff_ms`` = App API request → that frame."""
    t0 = time.perf_counter()
    urls = await app_api(http, token, "IvcloudDescribeStreamUrls", DeviceId=device_id)
    t_url = time.perf_counter()
    page = await browser.new_page(viewport={"width": 800, "height": 600})
    if seek_fix:
        await page.add_init_script(SEEK_FIX_JS)
    try:
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        await page.goto(f"{http_url}/web/live.html?ws={quote(urls['WsMp4Url'])}")
        try:
            await page.wait_for_function(PLAYER_READY_JS, timeout=timeout_ms, polling=10)
        except Exception as exc:
            status = await page.evaluate(
                "() => [document.getElementById('status').textContent,"
                " window.ivplayer && {...window.ivplayer.stats}]"
            )
            raise AppApiFailed(f"no frame presented: {status} {console[-5:]}") from exc
        t_seen = time.perf_counter()
        stats = await page.evaluate("() => ({...window.ivplayer.stats})")
    finally:
        await page.close()
    if stats.get("error"):
        raise AppApiFailed(f"player error: {stats['error']}")
    player = stats["firstFrameAt"] - stats["startedAt"]
    return {
        "url_ms": (t_url - t0) * 1000,
        "player_ms": player,
        "player_ws_open_ms": stats["openedAt"] - stats["startedAt"],
        "player_first_fragment_ms": stats["firstFragmentAt"] - stats["startedAt"],
        "page_ms": stats["firstFrameAt"],
        # performance.now() counts from navigation start; add the App API call before it.
        "ttff_ms": (t_url - t0) * 1000 + stats["firstFrameAt"],
        "observed_ms": (t_seen - t0) * 1000,
    }

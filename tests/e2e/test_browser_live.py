"""Live view in a real browser: headless Chromium (Debian's, driven by Playwright) opens
ivcloud's MSE player page on a WS-fMP4 URL minted through the App API, and plays the
simulated camera's real H.264 — checked by reading the camera's burnt-in capture clock off
a screenshot of the playing video element."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import av
import pytest
from playwright.async_api import Browser, async_playwright

from ivcloud.app import Ivcloud
from ivcloud.media.clockcode import read_clock
from tests.media.hub_support import camera, live_setup

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine notes say: no sandbox as root, no GPU, and nothing that phones home.
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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


def clock_in_png(png: bytes) -> int | None:
    with av.open(io.BytesIO(png), format="png_pipe") as container:
        frame = next(container.decode(video=0))
    return read_clock(frame.reformat(format="yuv420p"))


async def test_browser_plays_the_camera_through_the_hub(server: Ivcloud, browser: Browser) -> None:
    assert server.endpoints is not None
    async with live_setup(server) as live, camera(server, live.device):
        urls = await live.urls()
        page = await browser.new_page(viewport={"width": 800, "height": 600})
        page_url = f"{server.endpoints.http_url}/web/live.html"
        player = f"{page_url}?size=native&ws={quote(urls['WsMp4Url'])}"
        await page.goto(player)
        # Playing: a first frame presented and the play position moving.
        await page.wait_for_function(
            "() => window.ivplayer && window.ivplayer.stats.firstFrameAt > 0"
            " && document.getElementById('video').currentTime > 0.5",
            timeout=30_000,
        )
        stats = await page.evaluate("() => ({...window.ivplayer.stats})")
        assert stats["error"] == "" and stats["fragments"] > 0
        assert stats["codecs"].startswith("avc1.42")
        ttff_ms = stats["firstFrameAt"] - stats["startedAt"]
        print(f"browser time to first frame: {ttff_ms:.0f} ms")
        size = await page.evaluate(
            "() => [document.getElementById('video').videoWidth,"
            " document.getElementById('video').videoHeight]"
        )
        assert size == [320, 240]
        # The picture on screen is the camera's: its burnt-in clock is recent.
        clocks = []
        for _ in range(3):
            shot = await page.locator("video").screenshot()
            seen = clock_in_png(shot)
            if seen is not None:
                clocks.append((seen, int(time.time() * 1000)))
        assert clocks, "no readable clock in the rendered video"
        for captured, shown in clocks:
            assert 0 <= shown - captured < 10_000, (captured, shown)
        # A second viewer joins a stream whose timestamps are far from zero: it plays too.
        second = await browser.new_page()
        await second.goto(player)
        await second.wait_for_function(
            "() => window.ivplayer && window.ivplayer.stats.firstFrameAt > 0"
            " && document.getElementById('video').currentTime > 0.5",
            timeout=30_000,
        )
        await second.close()
    await page.close()

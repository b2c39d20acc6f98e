"""Live-view benchmark (issue §7, DESIGN §5): time to first decoded frame and glass-to-glass
latency, via the hub and via P2P, on loopback, with a real camera simulator.

    .venv/bin/python bench/live_view.py                     # 50 starts per path, 20 in Chromium
    .venv/bin/python bench/live_view.py --wait-quiet 120 --tag quiet

Set-up: ``ivcloud serve`` (subprocess, free ports, STUN on a free port,
``stream_linger_s`` 0 so that closing the last viewer ends the upload at once and every
"cold" start really asks the device to push), the SDK's camera simulator as its own process
(``ivcloud sim camera``: 640x360@15, GOP 1 s, AAC — the product default) and one app user
who owns the camera; this process is the app.

Phases (each start measured from the app's first App API request; details in
``live_probe``):

a. ``hub-cold`` — ``IvcloudDescribeStreamUrls`` → ``GET FlvUrl`` (no upload running: the
   cloud sends ``stream_push_start``, the device opens its publish WebSocket with a fresh
   keyframe) → first picture decoded with PyAV here. One unmeasured start first.
b. ``hub-warm`` — the same while a background viewer keeps the upload running: the hub
   answers from its GOP cache.
c. ``p2p`` — ``IvcloudDescribeP2PParams`` → ``AppPeer`` offer → ``IvcloudP2PConnect`` →
   answer → first frame from ``AppPeer.video_track``; then ``IvcloudP2PClose``.
d. ``browser-cold`` / ``browser-warm`` — headless Chromium (Debian's, via Playwright) opens
   ``/web/live.html`` on the WS-fMP4 URL in a new page; the player's own stats.
e. ``glass`` — glass-to-glass over a steady ``--glass-seconds`` (hub HTTP-FLV and P2P):
   decode wall time − the capture time burnt into each picture.

CPU (utime+stime, % of one core) of the server, the camera and this process per phase, and
of the rest of the machine (the box is shared). Prints Markdown tables, writes
``bench/results/live_view-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from device_pipeline import machine_info
from launch import RESULTS_DIR, write_results
from live_probe import (
    CHROMIUM_ARGS,
    AppApiFailed,
    FlvKeeper,
    app_api,
    browser_start,
    hub_flv_glass,
    hub_flv_start,
    p2p_start,
)
from live_setup import Camera, IvcloudServe, camera_sim, cpu_row, percentiles, provision, quiet_wait
from procstat import Sampler

BENCH_DIR = Path(__file__).resolve().parent
LABELS = ["server", "camera", "client"]
TARGET = {"ttff_p50_ms": 300.0, "browser_ttff_p50_ms": 1000.0, "glass_p50_ms": 200.0}
P2P_FILES = ("src/ivcloud/api/appapi/actions/p2p.py", "src/ivcloud/device/av/p2p_agent.py")


class Run:
    def __init__(
        self, args: argparse.Namespace, server: IvcloudServe, cam: Camera, sampler: Sampler
    ) -> None:
        self.args = args
        self.server = server
        self.cam = cam
        self.sampler = sampler
        self.phases: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []

    async def starts(
        self,
        name: str,
        count: int,
        probe: Callable[[], Awaitable[dict[str, Any]]],
        gap: float,
        warmup: int = 1,
    ) -> None:
        """``warmup`` unmeasured starts, then ``count`` measured ones, ``gap`` s apart."""
        if self.args.wait_quiet:
            print(f"  box busy {quiet_wait(self.args.wait_quiet)} % before {name}")
        first: list[dict[str, Any]] = []
        for _ in range(warmup):
            try:
                first.append(await probe())
            except (AppApiFailed, httpx.HTTPError, TimeoutError, AssertionError) as exc:
                first.append({"failure": f"{type(exc).__name__}: {exc}"[:300]})
            await asyncio.sleep(gap)
        samples: list[dict[str, Any]] = []
        failures: list[str] = []
        t0 = time.monotonic()
        for i in range(count):
            try:
                samples.append(await probe())
            except (AppApiFailed, httpx.HTTPError, TimeoutError, AssertionError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
            # Random jitter: a gap that is a whole number of frame intervals would land every
            # start at the same phase of the camera's capture clock.
            await asyncio.sleep(gap + random.uniform(0, 0.1))
            if (i + 1) % 10 == 0:
                done = [s["ttff_ms"] for s in samples]
                print(f"  {name}: {i + 1}/{count}, p50 so far {percentiles(done).get('p50')} ms")
        t1 = time.monotonic()
        keys = [k for k in (samples[0] if samples else {}) if k.endswith("_ms")]
        self.phases[name] = {
            "starts": len(samples),
            "failures": failures,
            "warmup": first,
            **{k: percentiles([s[k] for s in samples if s.get(k) is not None]) for k in keys},
            "fresh": sum(1 for s in samples if s.get("fresh"))
            if "fresh" in keys_all(samples)
            else None,
            "paths": sorted({str(s.get("path")) for s in samples if "path" in s}),
            "cpu": cpu_row(self.sampler, LABELS, t0, t1),
            "samples": samples,
        }

    async def glass(self, name: str, probe: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        if self.args.wait_quiet:
            print(f"  box busy {quiet_wait(self.args.wait_quiet)} % before {name}")
        t0 = time.monotonic()
        result = await probe()
        t1 = time.monotonic()
        self.phases[name] = {
            "latency_ms": percentiles(result["latencies"]),
            "unreadable": result["unreadable"],
            "cpu": cpu_row(self.sampler, LABELS, t0, t1),
        }

    async def go(self) -> None:
        args, cam = self.args, self.cam
        async with httpx.AsyncClient(base_url=self.server.http_url, timeout=30) as http:
            tok, dev = cam.token, cam.device_id

            async def hub() -> dict[str, Any]:
                return await hub_flv_start(http, tok, dev)

            if "hub" in args.only:
                await self.starts("hub-cold", args.starts, hub, args.cold_gap, warmup=2)
                urls = await app_api(http, tok, "IvcloudDescribeStreamUrls", DeviceId=dev)
                async with FlvKeeper(http, urls["FlvUrl"]):
                    await asyncio.sleep(1.5)
                    await self.starts("hub-warm", args.starts, hub, args.warm_gap)
                await asyncio.sleep(args.cold_gap)
                await self.glass(
                    "glass-hub-flv",
                    lambda: hub_flv_glass(http, tok, dev, args.glass_seconds),
                )
            if "p2p" in args.only:
                await self.run_p2p(http)
            if "browser" in args.only:
                await self.run_browser(http)

    async def run_p2p(self, http: httpx.AsyncClient) -> None:
        args, tok, dev = self.args, self.cam.token, self.cam.device_id
        missing = [f for f in P2P_FILES if not (BENCH_DIR.parent / f).exists()]
        if missing:
            self.notes.append(f"P2P skipped: {', '.join(missing)} not in the tree")
            print(f"  {self.notes[-1]}")
            return
        try:
            await app_api(http, tok, "IvcloudDescribeP2PParams", DeviceId=dev)
        except AppApiFailed as exc:
            self.notes.append(f"P2P skipped: {exc}")
            print(f"  {self.notes[-1]}")
            return

        async def p2p() -> dict[str, Any]:
            return await p2p_start(http, tok, dev)

        await self.starts("p2p", args.starts, p2p, args.cold_gap)
        await asyncio.sleep(args.cold_gap)
        await self.glass("glass-p2p", lambda: p2p_start(http, tok, dev, args.glass_seconds))

    async def run_browser(self, http: httpx.AsyncClient) -> None:
        from playwright.async_api import async_playwright

        args, tok, dev = self.args, self.cam.token, self.cam.device_id
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                url = self.server.http_url
                # The shipped player first: does it present a frame at all?
                try:
                    shipped = await browser_start(browser, http, url, tok, dev, timeout_ms=8000)
                    ms = shipped["player_ms"]
                    self.notes.append(f"shipped player: first frame after {ms:.0f} ms")
                except AppApiFailed as exc:
                    self.notes.append(f"shipped player presented no frame in 8 s: {exc}"[:600])
                print(f"  {self.notes[-1][:200]}")
                await asyncio.sleep(args.cold_gap)
                fix = args.player_seek_fix == "on"

                async def page() -> dict[str, Any]:
                    return await browser_start(browser, http, url, tok, dev, seek_fix=fix)

                n = args.browser_starts
                await self.starts("browser-cold", n, page, args.cold_gap, warmup=2)
                urls = await app_api(http, tok, "IvcloudDescribeStreamUrls", DeviceId=dev)
                async with FlvKeeper(http, urls["FlvUrl"]):
                    await asyncio.sleep(1.5)
                    await self.starts("browser-warm", n, page, args.warm_gap)
            finally:
                await browser.close()


def keys_all(samples: list[dict[str, Any]]) -> set[str]:
    return {k for s in samples for k in s}


def fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:,.0f}" if isinstance(v, float) and v >= 100 else str(v))


def tables(phases: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| path | starts | TTFF p50 | p95 | p99 | max (ms) | breakdown p50 (ms) | fresh keyframe |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    parts = {
        "hub": [("url_ms", "URL"), ("head_ms", "HTTP head"), ("first_byte_ms", "1st byte")],
        "p2p": [("params_ms", "params"), ("offer_ms", "offer"), ("answer_ms", "answer")],
        "browser": [
            ("url_ms", "URL"),
            ("player_ws_open_ms", "WS open"),
            ("player_first_fragment_ms", "1st fragment"),
            ("player_ms", "player"),
        ],
    }
    for name, ph in phases.items():
        if "ttff_ms" not in ph:
            continue
        t = ph["ttff_ms"]
        kind = name.split("-")[0]
        brk = ", ".join(f"{label} {ph.get(k, {}).get('p50')}" for k, label in parts.get(kind, []))
        if ph.get("paths"):
            brk += f"; path {'/'.join(ph['paths'])}"
        lines.append(
            f"| {name} | {ph['starts']} | **{t.get('p50')}** | {t.get('p95')} | {t.get('p99')} "
            f"| {t.get('max')} | {brk} | {fmt(ph.get('fresh'))} |"
        )
    lines += [
        "",
        "| glass-to-glass | frames | p50 | p95 | p99 | max (ms) | unreadable |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ph in phases.items():
        if "latency_ms" in ph:
            t = ph["latency_ms"]
            lines.append(
                f"| {name} | {t.get('n')} | **{t.get('p50')}** | {t.get('p95')} | {t.get('p99')} "
                f"| {t.get('max')} | {ph['unreadable']} |"
            )
    lines += [
        "",
        "| phase | seconds | server CPU % | camera CPU % | client CPU % | other procs CPU % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ph in phases.items():
        c = ph["cpu"]
        lines.append(
            f"| {name} | {c['seconds']} | {fmt(c.get('server_cpu_pct'))} | "
            f"{fmt(c.get('camera_cpu_pct'))} | {fmt(c.get('client_cpu_pct'))} | "
            f"{fmt(c.get('other_cpu_pct'))} |"
        )
    return "\n".join(lines)


def verdicts(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def p50(name: str, key: str) -> float | None:
        value = phases.get(name, {}).get(key, {}).get("p50")
        return float(value) if value is not None else None

    out: dict[str, Any] = {}
    for name, key, target in (
        ("hub-cold", "ttff_ms", TARGET["ttff_p50_ms"]),
        ("hub-warm", "ttff_ms", TARGET["ttff_p50_ms"]),
        ("p2p", "ttff_ms", TARGET["ttff_p50_ms"]),
        ("browser-cold", "ttff_ms", TARGET["browser_ttff_p50_ms"]),
        ("browser-warm", "ttff_ms", TARGET["browser_ttff_p50_ms"]),
        ("glass-hub-flv", "latency_ms", TARGET["glass_p50_ms"]),
        ("glass-p2p", "latency_ms", TARGET["glass_p50_ms"]),
    ):
        value = p50(name, key)
        if value is not None:
            out[name] = {"p50": value, "target": target, "met": value < target}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="ivcloud live-view benchmark")
    ap.add_argument("--starts", type=int, default=50, help="starts per path (hub, P2P)")
    ap.add_argument("--browser-starts", type=int, default=20)
    ap.add_argument("--glass-seconds", type=float, default=20.0)
    ap.add_argument(
        "--cold-gap", type=float, default=1.0, help="pause after a cold start (s, + 0–0.1 s)"
    )
    ap.add_argument("--warm-gap", type=float, default=0.2)
    ap.add_argument("--only", default="hub,p2p,browser", help="subset of hub,p2p,browser")
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="≤ S s for a quiet box per phase")
    ap.add_argument(
        "--camera-record",
        choices=("default", "on", "off"),
        default="default",
        help="the simulated camera's SD recording: default = `ivcloud sim camera` as shipped; "
        "on = the encoder always runs; off = it runs only while someone watches",
    )
    ap.add_argument(
        "--player-seek-fix",
        choices=("on", "off"),
        default="on",
        help="browser phases with live_probe.SEEK_FIX_JS (the missing seek to the buffered "
        "start; the shipped player is tried once without it either way)",
    )
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info()
    load = machine["load_average_before"]
    print(f"machine: {machine['nproc']} × {machine['cpu_model']}, load {load}")
    work = Path(tempfile.mkdtemp(prefix="ivcloud-live-"))
    sampler = Sampler(interval=0.25)
    server = camera = None
    run: Run | None = None
    try:
        cam = asyncio.run(provision(work / "data"))
        server = IvcloudServe(work / "data", stream_linger_s=0, stun_port=0).start()
        camera = camera_sim(server, cam, work, record=args.camera_record).start()
        server.wait_devices(1)
        sampler.watch("server", server.pid)
        sampler.watch("camera", camera.pid)
        sampler.watch("client", os.getpid())
        sampler.start()
        run = Run(args, server, cam, sampler)
        asyncio.run(run.go())
    finally:
        sampler.stop()
        tails = {}
        for proc in (camera, server):
            if proc is not None:
                proc.stop()
                tails[proc.name] = proc.log_tail(20)
        if args.keep_data:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    phases = run.phases if run else {}
    table = tables(phases)
    verdict = verdicts(phases)
    print()
    print(table)
    print()
    for name, v in verdict.items():
        print(
            f"{name}: p50 {v['p50']} ms vs target < {v['target']:.0f} ms → "
            f"{'met' if v['met'] else 'NOT met'}"
        )
    for note in run.notes if run else []:
        print(f"note: {note}")
    out = {
        "command": " ".join([".venv/bin/python", "bench/live_view.py", *sys.argv[1:]]),
        "started_utc": stamp,
        "machine": machine,
        "params": vars(args),
        "phases": phases,
        "verdict": verdict,
        "notes": run.notes if run else [],
        "table": table,
        "log_tails": tails,
    }
    write_results(f"live_view-{stamp}" + (f"-{args.tag}" if args.tag else ""), out)


if __name__ == "__main__":
    main()

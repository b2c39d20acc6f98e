"""Hub fan-out benchmark (issue §7, DESIGN §5: "hub fan-out CPU per viewer no worse than
node-media-server's in the same run"): one 2 Mbit/s H.264 + AAC stream to 1 / 10 / 100
viewers, through ivcloud's stream hub and through node-media-server, same recording, same
viewer code, same run. ``--proto`` picks the viewers: ``http-flv`` (default), ``ws-flv``
(both servers, WebSocket) or ``ws-mp4`` (ivcloud's WS-fMP4 only: NMS has no fMP4, so the
figures are absolute, no ratio).

    .venv/bin/python bench/hub_fanout.py                       # 1, 10, 100 viewers, 20 s each
    .venv/bin/python bench/hub_fanout.py --viewers 1,10,100 --seconds 20 --wait-quiet 120
    .venv/bin/python bench/hub_fanout.py --proto ws-flv

Steps (all bounded in time):

1. the recording: 1280x720@25, 2 Mbit/s, GOP 1 s, AAC 16 kHz, 30 s, made once with the
   project's ``LiveSource`` (fake clock) and cached in ``bench/results/`` (``fanout_media``);
2. ivcloud: provision a camera + app user in-process, ``ivcloud serve`` (subprocess, free
   ports, ``stream_linger_s`` 300 so the upload survives between windows), a publisher
   process that is a real device over MQTT answering ``stream_push_start`` by replaying the
   recording into the signed publish WebSocket (``fanout_publisher.py ivcloud``); the viewer
   URL (``FlvUrl``, ``WsFlvUrl`` or ``WsMp4Url``) is minted with ``IvcloudDescribeStreamUrls``;
3. (not for ``ws-mp4``) node-media-server 4.4.3 (``bench/nms``, ``npm ci`` first) on free
   ports, a publisher process replaying the same recording over WS-FLV (``fanout_publisher.py
   nms``); its viewers open ``http://`` or ``ws://…/live/bench.flv`` (same port, NMS 4);
4. for each viewer count: ``fanout_viewers.py`` (own process) against ivcloud, then against
   NMS: connect, wait for a keyframe, warm up, measure ``--seconds``; server CPU
   (utime+stime, all threads) and RSS from /proc over exactly that window, with the viewer
   process, the publisher and the rest of the machine;
5. a window with no viewer (upload only) for each server, the ingest baseline;
6. print Markdown tables and write ``bench/results/hub_fanout-<UTC>-<proto>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_pipeline import machine_info
from fanout_media import Tape, recording
from fanout_report import tables
from fanout_ws import ws_table
from launch import RESULTS_DIR, write_results
from live_setup import (
    Camera,
    IvcloudServe,
    Proc,
    cpu_row,
    cpu_split,
    free_port,
    provision,
    quiet_wait,
)
from procstat import Sampler

BENCH_DIR = Path(__file__).resolve().parent
NMS_DIR = BENCH_DIR / "nms"
#: Every process of the run; "other procs" is the machine minus all of them.
ALL_LABELS = ["ivcloud", "nms", "pub-ivcloud", "pub-nms", "viewers"]
NODE = shutil.which("node") or "/usr/bin/node"
PROTOS = ("http-flv", "ws-flv", "ws-mp4")
#: Which ``IvcloudDescribeStreamUrls`` field each viewer kind opens.
IVCLOUD_URL_FIELD = {"http-flv": "FlvUrl", "ws-flv": "WsFlvUrl", "ws-mp4": "WsMp4Url"}


def app_api(http_url: str, token: str, action: str, **params: Any) -> dict[str, Any]:
    body = json.dumps({"Action": action, "RequestId": "bench", "AccessToken": token, **params})
    req = urllib.request.Request(  # noqa: S310 - loopback
        http_url + "/api/exploreropen/tokenapi",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        doc: dict[str, Any] = json.loads(resp.read())
    if doc.get("code") != 0:
        raise RuntimeError(f"{action} failed: {doc}")
    data: dict[str, Any] = doc["data"]
    return data


def node_version() -> str:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            [NODE, "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()
    except OSError:
        return ""


def start_nms(work: Path) -> tuple[Proc, int]:
    if not (NMS_DIR / "node_modules" / "node-media-server").exists():
        raise SystemExit("node-media-server missing: run `npm ci --prefix bench/nms` first")
    http_port, rtmp_port = free_port(), free_port()
    data = work / "nms"
    data.mkdir()
    proc = Proc(
        "nms",
        [
            NODE,
            str(NMS_DIR / "run.js"),
            "--http-port",
            str(http_port),
            "--rtmp-port",
            str(rtmp_port),
            "--data",
            str(data),
        ],
        work / "nms.log",
    ).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError("node-media-server exited:\n" + proc.log_tail())
        if '"ready":true' in proc.log_path.read_text(errors="replace"):
            return proc, http_port
        time.sleep(0.1)
    raise RuntimeError("node-media-server did not start:\n" + proc.log_tail())


def start_publisher(work: Path, label: str, rec: Path, epoch_ms: int, mode: list[str]) -> Proc:
    argv = [sys.executable, str(BENCH_DIR / "fanout_publisher.py"), "--recording", str(rec)]
    argv += ["--epoch-ms", str(epoch_ms), *mode]
    proc = Proc(f"pub-{label}", argv, work / f"publisher-{label}.log").start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"publisher {label} exited:\n" + proc.log_tail())
        if '"event": "ready"' in proc.log_path.read_text(errors="replace"):
            return proc
        time.sleep(0.1)
    raise RuntimeError(f"publisher {label} not ready:\n" + proc.log_tail())


def run_viewers(
    work: Path,
    label: str,
    url: str,
    n: int,
    args: argparse.Namespace,
    epoch_ms: int,
    sampler: Sampler,
    on_window: Any = None,
    split_pid: int = 0,
) -> dict[str, Any]:
    out = work / f"viewers-{label}-{n}.json"
    argv = [sys.executable, str(BENCH_DIR / "fanout_viewers.py"), "--url", url]
    argv += ["--proto", args.proto]
    argv += ["--viewers", str(n), "--warmup", str(args.warmup), "--seconds", str(args.seconds)]
    argv += ["--epoch-ms", str(epoch_ms), "--fps", "25", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)  # noqa: S603 - fixed argv
    sampler.watch("viewers", proc.pid)
    timeout = 15 + args.warmup + args.seconds + 60
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    assert proc.stdout is not None
    split0 = split1 = None
    for line in proc.stdout:
        sys.stdout.write(f"    {label} {n}: {line.decode(errors='replace')}")
        if b'"window_start"' in line:
            split0 = cpu_split(split_pid) if split_pid else None
            if on_window is not None:
                on_window()
        elif b'"window_end"' in line:
            split1 = cpu_split(split_pid) if split_pid else None
    proc.wait()
    killer.cancel()
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"viewers ({label}, {n}) failed: exit {proc.returncode}")
    result: dict[str, Any] = json.loads(out.read_text())
    if split0 and split1:
        seconds = result["window"]["seconds"]
        result["server_user_pct"] = round(100 * (split1[0] - split0[0]) / seconds, 1)
        result["server_system_pct"] = round(100 * (split1[1] - split0[1]) / seconds, 1)
    return result


def measure(
    label: str, n: int, result: dict[str, Any], sampler: Sampler, server_label: str
) -> dict[str, Any]:
    w = result["window"]
    row = cpu_row(sampler, ALL_LABELS, w["start"], w["end"])
    server_cpu = row.get(f"{server_label}_cpu_pct")
    summary = {k: v for k, v in result.items() if k != "per_viewer"}
    return {
        "server": label,
        "viewers": n,
        **row,
        "server_cpu_pct": server_cpu,
        "server_rss_mib": row.get(f"{server_label}_rss_mib"),
        "cpu_pct_per_viewer": round(server_cpu / n, 2) if server_cpu is not None and n else None,
        **summary,
    }


def profile_ivcloud(
    work: Path,
    server: IvcloudServe,
    url: str,
    args: argparse.Namespace,
    epoch_ms: int,
    sampler: Sampler,
    stamp: str,
) -> None:
    """An extra ivcloud window with the largest viewer count under ``py-spy record`` (raw
    collapsed stacks to ``bench/results/``; summarize with ``pyspy_summary.py --busy``). Not
    part of the table: sampling perturbs the server."""
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("  py-spy not installed (.venv/bin/pip install py-spy); no profile")
        return
    n = max(int(x) for x in args.viewers.split(","))
    out = RESULTS_DIR / f"hub_fanout-{stamp}-{args.proto}-pyspy-ivcloud-{n}.txt"
    spies: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        argv = [exe, "record", "-p", str(server.pid), "-d", str(int(args.profile)), "-r", "100"]
        argv += ["--format", "raw", "-o", str(out), "--nonblocking"]
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # noqa: S603

    run_viewers(work, "ivcloud", url, n, args, epoch_ms, sampler, on_window=start)
    for spy in spies:
        spy.wait(60)
    print(f"  profile: {out.relative_to(BENCH_DIR.parent)}")


def idle_window(label: str, server_label: str, seconds: float, sampler: Sampler) -> dict[str, Any]:
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    row = cpu_row(sampler, ALL_LABELS[:-1], t0, t1)
    return {
        "server": label,
        "viewers": 0,
        **row,
        "server_cpu_pct": row.get(f"{server_label}_cpu_pct"),
        "server_rss_mib": row.get(f"{server_label}_rss_mib"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="ivcloud hub vs node-media-server fan-out")
    ap.add_argument(
        "--proto",
        choices=PROTOS,
        default="http-flv",
        help="viewer kind (ws-mp4: ivcloud only, NMS has no fMP4)",
    )
    ap.add_argument("--viewers", default="1,10,100", help="comma-separated viewer counts")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per step")
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--wait-quiet", type=float, default=0.0, help="wait ≤ S s for a quiet box")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--bitrate", type=int, default=2_000_000)
    ap.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the measured windows, one more ivcloud window (largest count) under "
        "py-spy record for SECONDS (≤ --seconds)",
    )
    ap.add_argument(
        "--server-uvloop",
        action="store_true",
        help="experiment: ivcloud under bench/serve_uvloop.py (uvloop event loop)",
    )
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    counts = [int(x) for x in args.viewers.split(",") if x]
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = machine_info()
    machine["node"] = node_version()
    load = machine["load_average_before"]
    print(f"machine: {machine['nproc']} × {machine['cpu_model']}, load {load}")
    servers = ["ivcloud"] if args.proto == "ws-mp4" else ["ivcloud", "nms"]
    print(f"proto: {args.proto}, servers: {', '.join(servers)}")
    rec = recording(
        RESULTS_DIR, width=args.width, height=args.height, fps=args.fps, bitrate=args.bitrate
    )
    tape = Tape.load(rec)
    print(f"recording: {rec.name} {tape.describe()}")
    work = Path(tempfile.mkdtemp(prefix="ivcloud-fanout-"))
    procs: list[Proc] = []
    sampler = Sampler(interval=0.25)
    rows: list[dict[str, Any]] = []
    try:
        cam: Camera = asyncio.run(provision(work / "data"))
        wrapper = "serve_uvloop.py" if args.server_uvloop else ""
        server = IvcloudServe(
            work / "data", wrapper=wrapper, stream_linger_s=300, stun_port="off"
        ).start()
        procs.append(server)
        pids = {"ivcloud": server.pid}
        if "nms" in servers:
            nms, nms_port = start_nms(work)
            procs.append(nms)
            pids["nms"] = nms.pid
        epoch_ms = int(time.time() * 1000)
        pub_ivc = start_publisher(
            work,
            "ivcloud",
            rec,
            epoch_ms,
            [
                "ivcloud",
                "--mqtt-port",
                str(server.mqtt_port),
                "--product",
                cam.product_id,
                "--device",
                cam.device_name,
                "--secret",
                cam.secret,
            ],
        )
        procs.append(pub_ivc)
        server.wait_devices(1)
        watched = [("ivcloud", server), ("pub-ivcloud", pub_ivc)]
        ivc_urls = app_api(
            server.http_url, cam.token, "IvcloudDescribeStreamUrls", DeviceId=cam.device_id
        )
        urls = {"ivcloud": ivc_urls[IVCLOUD_URL_FIELD[args.proto]]}
        if "nms" in servers:
            pub_nms = start_publisher(
                work,
                "nms",
                rec,
                epoch_ms,
                ["nms", "--url", f"ws://127.0.0.1:{nms_port}/live/bench.flv"],
            )
            procs.append(pub_nms)
            watched += [("nms", nms), ("pub-nms", pub_nms)]
            # NMS 4 serves HTTP-FLV and WS-FLV of a stream at the same path and port.
            scheme = "ws" if args.proto == "ws-flv" else "http"
            urls["nms"] = f"{scheme}://127.0.0.1:{nms_port}/live/bench.flv"
        for label, proc in watched:
            sampler.watch(label, proc.pid)
        sampler.start()
        for n in counts:
            for label in servers:
                if args.wait_quiet:
                    busy = quiet_wait(args.wait_quiet)
                    print(f"  box busy {busy} % before {label} × {n}")
                result = run_viewers(
                    work, label, urls[label], n, args, epoch_ms, sampler, split_pid=pids[label]
                )
                row = measure(label, n, result, sampler, label)
                rows.append(row)
                print(
                    f"  {label:8s} {n:4d} {args.proto} viewers: server {row['server_cpu_pct']} % "
                    f"CPU, {row['server_rss_mib']} MiB, min {row['kbit_s_min']} kbit/s, "
                    f"gaps {row['gaps']}, resyncs {row['resyncs']}, errors {len(row['errors'])}, "
                    f"other {row['other_cpu_pct']} %"
                )
        for label in servers:
            rows.append(idle_window(label, label, args.idle_seconds, sampler))
        if args.profile:
            profile_ivcloud(work, server, urls["ivcloud"], args, epoch_ms, sampler, stamp)
    finally:
        sampler.stop()
        for proc in reversed(procs):
            proc.stop()
        logs = {p.name: p.log_tail(15) for p in procs}
        if args.keep_data:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = f"proto: {args.proto}\n\n" + tables(rows, counts)
    if args.proto != "http-flv":
        table += "\n\n" + ws_table(rows)
    print()
    print(table)
    out = {
        "command": " ".join([".venv/bin/python", "bench/hub_fanout.py", *sys.argv[1:]]),
        "proto": args.proto,
        "servers": servers,
        "started_utc": stamp,
        "machine": machine,
        "params": vars(args),
        "recording": {"file": rec.name, **tape.describe()},
        "nms_version": "4.4.3",
        "rows": rows,
        "table": table,
        "log_tails": logs,
    }
    write_results(f"hub_fanout-{stamp}-{args.proto}" + (f"-{args.tag}" if args.tag else ""), out)


if __name__ == "__main__":
    main()

"""Device pipeline benchmark: N simulated devices reporting to a real ``ivcloud serve``, and the
same publishers against the machine's Mosquitto as the raw-broker reference.

    .venv/bin/python bench/device_pipeline.py --devices 1000 --rate 5000 --seconds 20

Steps (all bounded in time):

1. provision a temp data dir in-process with ivcloud's own services: one ``lock`` product with
   the standard ``lock-video`` thing model, then N devices bulk-inserted into ``devices``;
2. start ``ivcloud serve`` as a subprocess (free ports, ``IVCLOUD_LOG_LEVEL=warning``) and
   wait for ``<data-dir>/server.json``;
3. run ``bench/loadgen.py`` in its own process: connect phase (``--concurrency`` in flight),
   then ``--rate`` report messages/s for ``--seconds`` spread over all devices, matching each
   ``report_reply`` by clientToken; then a bounded drain;
4. sample the server's RSS and CPU from /proc throughout, stop it (SIGTERM: the writer
   commits what is queued) and check in the database that every acknowledged report was
   stored (per device: history rows ≥ code-0 replies);
5. repeat 3 against Mosquitto on 127.0.0.1:1883 (client ``bench-{i}`` publishes to
   ``bench/{i}/reply``, to which it is subscribed: a broker round trip) — routing only, where
   ivcloud authenticates, validates, stores and replies;
6. print a table and write JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
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

from launch import (
    BENCH_DIR,
    RESULTS_DIR,
    OnEvent,
    PySpy,
    StrictServe,
    bench_instance,
    run_with_events,
    write_results,
)
from procstat import Sampler, find_pid_by_comm, load_average, read_status_kib
from sqlalchemy import insert

from ivcloud.protocol.credentials import generate_device_secret
from ivcloud.store.schema import Device

GIT = shutil.which("git")
PARAMS_PER_REPORT = 2  # battery_percentage + lock_motor_state → 2 history rows per report
TARGET = {"devices": 10_000, "reports_per_s": 5_000, "p99_ms": 50.0}


def raise_nofile() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- 1. provisioning ------------------------------------------------------------------------


async def provision(data_dir: Path, count: int) -> dict[str, Any]:
    async with bench_instance(data_dir) as instance:
        product = await instance.products.create("bench lock", "lock", "wifi")
        pid = product.product_id
        await instance.products.import_standard_model(pid, "lock-video")
        now = instance.clock.now_ms()
        devices = [(f"dev{i:05d}", generate_device_secret()) for i in range(count)]
        rows = [
            {
                "product_id": pid,
                "device_name": name,
                "secret": secret,
                "created_ms": now,
                "online": False,
            }
            for name, secret in devices
        ]
        async with instance.engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                await conn.execute(insert(Device), rows[i : i + 5000])
    return {"product_id": pid, "devices": devices}


# -- 3. load generator ----------------------------------------------------------------------


def run_loadgen(
    spec: dict[str, Any],
    work: Path,
    label: str,
    on_event: OnEvent | None = None,
) -> dict[str, Any] | None:
    timeout = spec["connect_deadline"] + spec.get("settle", 1.0) + spec["seconds"]
    timeout += spec["drain"] + 60
    return run_with_events("loadgen.py", spec, work, label, timeout, on_event)


class Profiler(PySpy):
    """Optional py-spy recording of the server, started a delay after a load-generator
    event (the phase to profile)."""

    def __init__(self, seconds: int, out: Path, native: bool = False) -> None:
        super().__init__(out, seconds, native)
        self._timer: threading.Timer | None = None

    def schedule(self, pid: int, delay: float) -> None:
        self._timer = threading.Timer(delay, self.start, [pid])
        self._timer.start()

    def wait(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().wait()


class HealthPoller(threading.Thread):
    """Polls ``/healthz`` (writer queue depth) once per ``interval`` seconds."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(name="health-poller", daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:  # noqa: S310 - loopback
                    doc = json.loads(resp.read())
                self.samples.append((time.monotonic(), int(doc.get("writer_queue", 0))))
            except (OSError, ValueError):
                continue

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)


# -- 4. verification ------------------------------------------------------------------------


def verify_stored(
    db_path: Path, devices: list[tuple[str, str]], acked: list[int]
) -> dict[str, Any]:
    """Every code-0 reply must correspond to a committed report (per device)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT d.device_name, h.prop_id, count(*) FROM property_history h "
            "JOIN devices d ON d.id = h.device_id GROUP BY d.device_name, h.prop_id"
        ).fetchall()
        total_rows = con.execute("SELECT count(*) FROM property_history").fetchone()[0]
    finally:
        con.close()
    per_prop: dict[str, dict[str, int]] = {}
    for name, prop, n in rows:
        per_prop.setdefault(name, {})[prop] = n
    lost = 0
    lost_devices = 0
    stored_reports = 0
    for (name, _), ack in zip(devices, acked, strict=True):
        counts = per_prop.get(name, {})
        stored = min(counts.get("battery_percentage", 0), counts.get("lock_motor_state", 0))
        stored_reports += stored
        if ack > stored:
            lost += ack - stored
            lost_devices += 1
    acked_total = sum(acked)
    return {
        "history_rows": total_rows,
        "stored_reports": stored_reports,
        "acked_reports": acked_total,
        "acked_but_not_stored": lost,
        "devices_with_loss": lost_devices,
        "stored_without_ok_reply": stored_reports - acked_total + lost,
        "ok": lost == 0 and total_rows == stored_reports * PARAMS_PER_REPORT,
    }


# -- orchestration --------------------------------------------------------------------------


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "rate": args.rate,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "connect_deadline": args.connect_deadline,
        "drain": args.drain,
        "settle": 1.0,
        "tick": 0.002,
        "warmup": not args.no_warmup,
        "warmup_drain": args.warmup_drain,
    }


def phase_metrics(
    sampler: Sampler, label: str, result: dict[str, Any], client_label: str
) -> dict[str, Any]:
    c0, c1 = result["connect"]["started_mono"], result["connect"]["ended_mono"]
    r0, r1 = result["report"]["t0_mono"], result["report"]["drain_end_mono"]
    s1 = result["report"]["send_end_mono"]
    server_connect = sampler.window(label, c0, c1)
    server_report = sampler.window(label, r0, s1)
    server_all = sampler.window(label, c0, r1)
    client_report = sampler.window(client_label, r0, s1)
    machine = sampler.machine_window(r0, s1)
    other = None
    if machine.get("busy_pct") is not None and server_report and client_report:
        other = round(machine["busy_pct"] - server_report["cpu_pct"] - client_report["cpu_pct"], 1)
    return {
        "server_connect": server_connect,
        "server_report": server_report,
        "server_whole_run": server_all,
        "client_report": client_report,
        "machine_busy_pct_report": machine.get("busy_pct"),
        "other_processes_cpu_pct_report": other,
    }


def run_ivcloud(args: argparse.Namespace, work: Path, tag: str) -> dict[str, Any]:
    data_dir = work / "ivcloud-data"
    t = time.monotonic()
    print(f"[ivcloud] provisioning 1 product + {args.devices} devices in {data_dir} …")
    fleet = asyncio.run(provision(data_dir, args.devices))
    provision_s = time.monotonic() - t
    print(f"[ivcloud] provisioned in {provision_s:.1f}s; starting server")
    # --gcstats: under serve_gcstats.py (same CLI), which only times garbage collections
    server = StrictServe(data_dir, "serve_gcstats.py" if args.gcstats else "").start()
    print(f"[ivcloud] server pid {server.pid} mqtt 127.0.0.1:{server.mqtt_port}")
    sampler = Sampler(args.sample_interval)
    sampler.watch("server", server.pid)
    sampler.start()
    health = HealthPoller(server.http_url + "/healthz", 1.0)
    health.start()
    profiler: Profiler | None = None
    if args.profile:
        profile_out = RESULTS_DIR / f"{tag}-pyspy-{args.profile_phase}.txt"
        profiler = Profiler(args.profile, profile_out, native=args.profile_native)

    # When to start py-spy, per --profile-phase: (event, delay in seconds).
    profile_at = {"connect": ("connect_start", 0.5), "warmup": ("connected", 0.0)}.get(
        args.profile_phase, ("report_start", 2.0)
    )

    def on_event(name: str, payload: Any) -> None:
        if profiler is not None and name == profile_at[0]:
            profiler.schedule(server.pid, profile_at[1])
        if name == "started":
            sampler.watch("client", payload)
        elif name == "report_start" and args.gc_freeze_at_report:
            os.kill(server.pid, signal.SIGUSR1)  # our own child, under serve_gcstats.py
        elif name == "connected":
            print(f"[ivcloud] connect phase: {payload.get('summary')}")
        elif name == "warmup_done":
            print(f"[ivcloud] warm-up (one report per device): {payload.get('summary')}")

    spec = base_spec(args)
    spec.update(
        target="ivcloud",
        port=server.mqtt_port,
        product_id=fleet["product_id"],
        devices=fleet["devices"],
    )
    print(f"[ivcloud] load: {args.devices} devices, {args.rate} msg/s for {args.seconds}s")
    try:
        result = run_loadgen(spec, work, "ivcloud", on_event)
    finally:
        if profiler is not None:
            profiler.wait()
        rss_hwm = read_status_kib(server.pid, "VmHWM")
        health.stop()
        stop_s = server.stop()
        sampler.stop()
    if result is None:
        raise RuntimeError("ivcloud load generator failed\n" + server.log_tail())
    metrics = phase_metrics(sampler, "server", result, "client")
    metrics["server_timeline"] = sampler.timeline("server", result["connect"]["started_mono"])
    metrics["server_rss_mib_hwm"] = round(rss_hwm / 1024, 1) if rss_hwm else None
    metrics["server_stop_seconds"] = round(stop_s, 2)
    r0, r1 = result["report"]["t0_mono"], result["report"]["send_end_mono"]
    queue = [d for t, d in health.samples if r0 <= t <= r1]
    metrics["writer_queue_report"] = {
        "max": max(queue) if queue else None,
        "mean": round(sum(queue) / len(queue), 1) if queue else None,
        "samples": queue,
    }
    acked = result.pop("acked_by_device")
    verify = verify_stored(data_dir / "ivcloud.db", fleet["devices"], acked)
    result.update(metrics)
    result["provision_seconds"] = round(provision_s, 2)
    result["stored_check"] = verify
    result["server_log_tail"] = server.log_tail(20)
    if profiler is not None:
        result["profile_file"] = str(profiler.out)
    gc_file = data_dir / "gcstats.json"
    if args.gcstats and gc_file.exists():
        gcs = json.loads(gc_file.read_text())
        in_window = [p for p in gcs["gen2_pauses"] if r0 <= p["t_mono"] <= r1]
        result["server_gc"] = {
            "by_generation_whole_run": gcs["by_generation"],
            "gen2_in_report_window": {
                "count": len(in_window),
                "max_ms": max((p["ms"] for p in in_window), default=None),
                "total_ms": round(sum(p["ms"] for p in in_window), 1),
                "at_s": [round(p["t_mono"] - r0, 2) for p in in_window],
                "ms": [p["ms"] for p in in_window],
            },
            "longest": gcs["longest"][:10],
            "thresholds": gcs["thresholds"],
            "freezes": gcs["freezes"],
        }
    return result


def mosquitto_reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def run_mosquitto(args: argparse.Namespace, work: Path) -> dict[str, Any] | None:
    if not mosquitto_reachable(args.mosquitto_port):
        print(f"[mosquitto] nothing listening on 127.0.0.1:{args.mosquitto_port}; skipped")
        return None
    broker_pid = find_pid_by_comm("mosquitto")
    sampler = Sampler(args.sample_interval)
    if broker_pid is not None:
        sampler.watch("broker", broker_pid)
    sampler.start()

    def on_event(name: str, payload: Any) -> None:
        if name == "started":
            sampler.watch("client", payload)
        elif name == "connected":
            print(f"[mosquitto] connect phase: {payload.get('summary')}")
        elif name == "warmup_done":
            print(f"[mosquitto] warm-up (one report per device): {payload.get('summary')}")

    spec = base_spec(args)
    spec.update(target="mosquitto", port=args.mosquitto_port, count=args.devices)
    print(f"[mosquitto] load: {args.devices} devices, {args.rate} msg/s for {args.seconds}s")
    try:
        result = run_loadgen(spec, work, "mosquitto", on_event)
    finally:
        sampler.stop()
    if result is None:
        return None
    result.update(phase_metrics(sampler, "broker", result, "client"))
    result["broker_pid"] = broker_pid
    return result


# -- reporting ------------------------------------------------------------------------------


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


ROWS: list[tuple[str, tuple[str, ...], bool | None]] = [
    # (label, path, higher_is_better for the ratio column; None = no ratio)
    ("devices connected", ("connect", "connected"), None),
    ("connect phase (s)", ("connect", "seconds"), None),
    ("connects/s", ("connect", "connects_per_s"), True),
    ("connect p99 (ms)", ("connect", "connect_ms_p99"), None),
    ("warm-up p50 (ms)", ("warmup", "latency_ms", "p50"), None),
    ("warm-up p99 (ms)", ("warmup", "latency_ms", "p99"), None),
    ("offered msg/s", ("offered_rate",), None),
    ("sent", ("sent",), None),
    ("acked (code 0)", ("acked_ok",), None),
    ("acked/s in window", ("acked_per_s_window",), True),
    ("acked/s incl. drain", ("acked_per_s_overall",), None),
    ("non-zero codes", ("non_zero_codes",), None),
    ("missing replies", ("missing_replies",), None),
    ("latency p50 (ms)", ("latency_ms", "p50"), False),
    ("latency p95 (ms)", ("latency_ms", "p95"), False),
    ("latency p99 (ms)", ("latency_ms", "p99"), False),
    ("latency max (ms)", ("latency_ms", "max"), False),
    ("server CPU % connect", ("server_connect", "cpu_pct"), None),
    ("server CPU % report", ("server_report", "cpu_pct"), None),
    ("server RSS peak (MiB)", ("server_whole_run", "rss_mib_peak"), None),
    ("server RSS end (MiB)", ("server_whole_run", "rss_mib_end"), None),
    ("writer queue max (1 Hz)", ("writer_queue_report", "max"), None),
    ("client CPU % report", ("client_report", "cpu_pct"), None),
    ("machine busy % (of 200)", ("machine_busy_pct_report",), None),
    ("other procs CPU %", ("other_processes_cpu_pct_report",), None),
    ("client send lag p99 (ms)", ("report", "send_lag_ms_p99"), None),
]


def summarize(ivc: dict[str, Any], mq: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    lines = [f"{'':26} {'ivcloud':>14} {'mosquitto':>14} {'ivc/mosq':>9}"]
    for label, path, _better in ROWS:
        a = _get(ivc, *path)
        b = _get(mq, *path) if mq else None
        ratio = ""
        if _better is not None and isinstance(a, int | float) and isinstance(b, int | float) and b:
            ratio = f"{a / b:.2f}"
        lines.append(f"{label:26} {_fmt(a):>14} {_fmt(b):>14} {ratio:>9}")
    sc = ivc.get("stored_check", {})
    lines.append(
        f"stored check: {sc.get('stored_reports')} reports stored "
        f"({sc.get('history_rows')} history rows), {sc.get('acked_reports')} acknowledged, "
        f"{sc.get('acked_but_not_stored')} acknowledged but not stored -> "
        f"{'OK' if sc.get('ok') else 'FAIL'}"
    )
    ratios: dict[str, Any] = {}
    if mq:
        tp_a, tp_b = ivc.get("acked_per_s_window"), mq.get("acked_per_s_window")
        p99_a, p99_b = _get(ivc, "latency_ms", "p99"), _get(mq, "latency_ms", "p99")
        if tp_a and tp_b:
            ratios["throughput_ivcloud_over_mosquitto"] = round(tp_a / tp_b, 3)
        if p99_a and p99_b:
            ratios["p99_ivcloud_over_mosquitto"] = round(p99_a / p99_b, 2)
        if ivc.get("connect", {}).get("connects_per_s") and mq.get("connect", {}).get(
            "connects_per_s"
        ):
            ratios["connect_rate_ivcloud_over_mosquitto"] = round(
                ivc["connect"]["connects_per_s"] / mq["connect"]["connects_per_s"], 3
            )
        lines.append("ratios: " + ", ".join(f"{k}={v}" for k, v in ratios.items()))
    p99 = _get(ivc, "latency_ms", "p99")
    # Replies still in flight when the window closes are not counted in it, so an offered
    # 5,000/s measures a hair under 5,000: allow 1 % for that edge, require nothing missing.
    meets = (
        ivc["connect"]["connected"] >= TARGET["devices"]
        and ivc.get("offered_rate", 0) >= TARGET["reports_per_s"]
        and ivc.get("acked_per_s_window", 0) >= 0.99 * TARGET["reports_per_s"]
        and ivc.get("missing_replies", 1) == 0
        and ivc.get("non_zero_codes", 1) == 0
        and p99 is not None
        and p99 < TARGET["p99_ms"]
        and bool(sc.get("ok"))
    )
    lines.append(
        f"target (>= {TARGET['devices']:,} devices, >= {TARGET['reports_per_s']:,} acked "
        f"reports/s (1 % window-edge tolerance, no missing replies), p99 < "
        f"{TARGET['p99_ms']:.0f} ms, nothing acked lost): "
        f"{'MET' if meets else 'NOT MET'} by this run"
    )
    return "\n".join(lines), {"ratios": ratios, "target_met": meets}


def source_state() -> dict[str, Any]:
    """Which server code was measured: HEAD and uncommitted changes under src/ (read-only)."""
    root = BENCH_DIR.parent
    if GIT is None:
        return {}

    def git(*argv: str) -> str:
        try:
            return subprocess.run(  # noqa: S603
                [GIT, *argv],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "src_changes": git("status", "--porcelain", "--", "src").splitlines(),
    }


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mosq = subprocess.run(
            ["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, timeout=5
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        mosq = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "mosquitto": mosq,
        "load_average_before": load_average(),
        "mem_total_mib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="ivcloud device pipeline benchmark")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0, help="offered report msgs/s (fleet)")
    ap.add_argument("--seconds", type=float, default=20.0, help="report phase duration")
    ap.add_argument("--concurrency", type=int, default=200, help="connects in flight")
    ap.add_argument("--connect-deadline", type=float, default=180.0)
    ap.add_argument("--drain", type=float, default=10.0, help="max wait for late replies (s)")
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the one-report-per-device warm-up before the measured phase",
    )
    ap.add_argument(
        "--warmup-drain",
        type=float,
        default=60.0,
        help="max wait for the warm-up's replies before the measured phase (s)",
    )
    ap.add_argument("--mosquitto-port", type=int, default=1883)
    ap.add_argument("--skip-mosquitto", action="store_true")
    ap.add_argument("--skip-ivcloud", action="store_true")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy record the server for SECONDS during the report phase "
        "(perturbs the figures: for diagnosis, not headline runs)",
    )
    ap.add_argument("--profile-phase", choices=("report", "connect", "warmup"), default="report")
    ap.add_argument("--profile-native", action="store_true")
    ap.add_argument(
        "--gcstats",
        action="store_true",
        help="run the server under bench/serve_gcstats.py to time its GC pauses",
    )
    ap.add_argument(
        "--gc-freeze-at-report",
        action="store_true",
        help="with --gcstats: gc.freeze() in the server when the measured phase starts",
    )
    ap.add_argument("--sample-interval", type=float, default=0.25)
    ap.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    ap.add_argument("--tag", default="", help="suffix for the result file name")
    args = ap.parse_args()
    if args.devices < 1 or args.rate <= 0 or args.seconds <= 0:
        ap.error("devices, rate and seconds must be positive")
    if args.gc_freeze_at_report:
        args.gcstats = True
    if args.mosquitto_port != 1883 and not args.skip_mosquitto:
        print("note: Mosquitto reference on a non-default port", file=sys.stderr)

    nofile = raise_nofile()
    if nofile < args.devices + 100:
        ap.error(f"RLIMIT_NOFILE {nofile} is too low for {args.devices} devices")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = f"device_pipeline-{args.devices}d-{int(args.rate)}r-{int(args.seconds)}s-{stamp}"
    if args.tag:
        tag += f"-{args.tag}"
    machine = machine_info()
    source = source_state()  # before the run: the code that is about to be measured
    print(
        f"machine: {machine['nproc']} × {machine['cpu_model']}, Python {machine['python']}, "
        f"load average {machine['load_average_before']}"
    )
    work = Path(tempfile.mkdtemp(prefix="ivcloud-bench-"))
    ivc: dict[str, Any] = {}
    mq: dict[str, Any] | None = None
    try:
        if not args.skip_ivcloud:
            ivc = run_ivcloud(args, work, tag)
        if not args.skip_mosquitto:
            mq = run_mosquitto(args, work)
    finally:
        if args.keep_data:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {
        "argv": sys.argv,
        "command": " ".join([".venv/bin/python", "bench/device_pipeline.py", *sys.argv[1:]]),
        "started_utc": stamp,
        "machine": machine,
        "source": source,
        "params": {k: v for k, v in vars(args).items()},
        "ivcloud": ivc or None,
        "mosquitto": mq,
    }
    if ivc:
        table, verdict = summarize(ivc, mq)
        out.update(verdict)
        print()
        print(table)
    elif mq:
        print(json.dumps({k: mq[k] for k in ("connect", "acked_per_s_window", "latency_ms")}))
    write_results(tag, out)


if __name__ == "__main__":
    main()

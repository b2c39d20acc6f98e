"""App API benchmark (DESIGN §5: "p99 < 20 ms for list/control actions at 1k concurrent users;
≥ 50 % of a bare Starlette endpoint's throughput"), with a bare Starlette endpoint measured by
the same load generator in the same run.

    .venv/bin/python bench/app_api.py                 # 1,000 users, 200-device family
    .venv/bin/python bench/app_api.py --profile 10    # + py-spy phases after the measured ones

Steps (all bounded in time):

1. provision a temp data dir in-process with ivcloud's own services: one ``lock`` product with
   the standard ``lock-video`` model, one app linked to it, N users (``users.create`` +
   ``issue_token``; tokens to ``users.json`` for the load generator), each owning a family
   (``create_family``); user 0's family gets 200 devices (``devices.create`` +
   ``families.bind_device``) and every other user joins it as a member
   (``families.invite`` link token + ``families.join``) — the family every list reads and
   whose devices every control targets;
2. start the bare reference (``bench/app_bare_server.py``: one Starlette route, same uvicorn
   settings as ivcloud) and run ``bench/app_loadgen.py`` (own process) against it;
3. start ``ivcloud serve`` (subprocess, free ports, ``IVCLOUD_LOG_LEVEL=warning``) and run the
   load generator: ``AppGetFamilyDeviceList`` and ``AppControlDeviceData``, closed loop then
   paced; then optional profiling phases with ``py-spy record`` on the server;
4. the bare reference again (brackets the ivcloud run: the box is shared);
5. stop the server, check in SQLite that every code-0 control stored a pending row;
6. print tables (Markdown for docs/benchmarks.md) and write JSON to ``bench/results/``.

The control target devices are not connected: ``AppControlDeviceData`` authenticates,
authorizes (family membership), validates against the thing model, stores the control as
pending (a SQLite commit) and attempts the downlink publish (not connected → queued for the
device's next ``get_status``) — what the App API does for an offline lock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_pipeline import machine_info, raise_nofile, source_state
from launch import (
    BENCH_DIR,
    RESULTS_DIR,
    OnEvent,
    Proc,
    PySpy,
    StrictServe,
    bench_instance,
    quiet_wait,
    run_with_events,
    write_results,
)
from procstat import Sampler

TARGET = {"p99_ms": 20.0, "ratio": 0.5, "users": 1000}


# -- 1. provisioning ------------------------------------------------------------------------


async def provision(data_dir: Path, n_users: int, n_devices: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    async with bench_instance(data_dir) as instance:
        t = time.monotonic()
        product = await instance.products.create("bench lock", "lock", "wifi")
        pid = product.product_id
        await instance.products.import_standard_model(pid, "lock-video")
        app = await instance.apps.create("bench app")
        await instance.apps.link_product(app.app_id, pid)
        users = []
        for i in range(n_users):
            user = await instance.users.create(
                app.app_id, nick_name=f"user{i}", email=f"user{i}@bench.invalid"
            )
            token, _ = await instance.users.issue_token(user)
            own = await instance.families.create_family(user, f"home {i}")
            users.append((user, token, own))
        timings["users_tokens_families"] = time.monotonic() - t
        t = time.monotonic()
        owner, _, big = users[0]
        device_ids = []
        for j in range(n_devices):
            rec = await instance.devices.create(pid, f"lock{j:04d}")
            await instance.families.bind_device(owner, big, "0", rec, alias=f"lock {j}")
            device_ids.append(f"{pid}/{rec.device_name}")
        timings["devices_bound"] = time.monotonic() - t
        t = time.monotonic()
        invite, _ = await instance.families.invite(owner, big)
        for user, _, _ in users[1:]:
            await instance.families.join(user, invite)
        timings["members_joined"] = time.monotonic() - t
    doc = {
        "product_id": pid,
        "app_id": app.app_id,
        "family_id": big,
        "device_ids": device_ids,
        "users": [{"user_id": u.user_id, "token": tok, "own_family": fam} for u, tok, fam in users],
    }
    (data_dir / "users.json").write_text(json.dumps(doc))
    return {"timings": {k: round(v, 2) for k, v in timings.items()}, **doc}


# -- 2. servers -----------------------------------------------------------------------------


class BareServer(Proc):
    """``bench/app_bare_server.py`` as a subprocess (its own session; SIGTERM to stop)."""

    def __init__(self, work: Path, nodelay: bool = False) -> None:
        argv = [sys.executable, str(BENCH_DIR / "app_bare_server.py")]
        argv += ["--port-file", str(work / "bare.json"), *(["--nodelay"] if nodelay else [])]
        super().__init__("bare server", argv, work / "bare.log")
        self.work = work
        self.port = 0

    def start(self, timeout: float = 30.0) -> BareServer:
        port_file = self.work / "bare.json"
        port_file.unlink(missing_ok=True)
        super().start()
        info = self.wait_for_json(port_file, timeout)
        self.port = int(info["http_url"].rsplit(":", 1)[1])
        return self


# -- 3. load generator and profiler ----------------------------------------------------------


def run_loadgen(
    spec: dict[str, Any], work: Path, label: str, on_event: OnEvent
) -> dict[str, Any] | None:
    timeout = 120 + sum(
        p.get("warmup", 3) + p["seconds"] + p.get("drain", 30) + 1 for p in spec["phases"]
    )
    return run_with_events("app_loadgen.py", spec, work, label, timeout, on_event)


def measure(
    label: str,
    server_pid: int,
    spec: dict[str, Any],
    work: Path,
    profiles: dict[str, PySpy] | None = None,
) -> list[dict[str, Any]]:
    """Run the load generator against one server; per phase, add server/client CPU."""
    sampler = Sampler(0.25)
    sampler.watch("server", server_pid)
    sampler.start()
    profiles = profiles or {}

    def on_event(name: str, payload: Any) -> None:
        if name == "started":
            sampler.watch("client", payload)
        elif name == "connected":
            print(f"[{label}] {payload['connections']} connections in {payload['seconds']} s")
        elif name == "measure_start" and payload["phase"] in profiles:
            profiles[payload["phase"]].start(server_pid)
        elif name == "phase_done":
            print(f"[{label}] {payload['phase']}: {payload['summary']}")

    try:
        result = run_loadgen(spec, work, label, on_event)
    finally:
        for p in profiles.values():
            p.wait()
        sampler.stop()
    if result is None:
        raise RuntimeError(f"load generator against {label} failed")
    phases: list[dict[str, Any]] = result["phases"]
    for ph in phases:
        m0, m1 = ph["measure_t0_mono"], ph["measure_t1_mono"]
        server = sampler.window("server", m0, m1)
        client = sampler.window("client", m0, m1)
        machine = sampler.machine_window(m0, m1)
        ph["server"] = server
        ph["client"] = client
        ph["machine_busy_pct"] = machine.get("busy_pct")
        if machine.get("busy_pct") is not None and server and client:
            ph["other_procs_cpu_pct"] = round(
                machine["busy_pct"] - server["cpu_pct"] - client["cpu_pct"], 1
            )
        if server.get("cpu_pct"):
            # server CPU-seconds per 1,000 answers: the cost of one request, load-independent
            ph["server_cpu_ms_per_req"] = round(
                10 * server["cpu_pct"] / max(ph["req_per_s"], 1e-9), 3
            )
        if ph["name"] in profiles:
            ph["profile_file"] = str(profiles[ph["name"]].out)
    return phases


# -- 5. verification ------------------------------------------------------------------------


def pending_rows(db_path: Path) -> int:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM pending_controls").fetchone()[0])
    finally:
        con.close()


# -- orchestration --------------------------------------------------------------------------


def paced_phases(args: argparse.Namespace, action: str, ref: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for frac in args.paced_fraction:
        out.append(
            {"name": f"{action}-paced-{frac * 100:g}%", "action": action, "mode": "paced",
             "rate_from": ref, "fraction": frac, "warmup": 2.0, "seconds": args.paced_seconds}
        )  # fmt: skip
    for rate in args.paced_rate:
        out.append(
            {"name": f"{action}-paced-{rate:g}/s", "action": action, "mode": "paced",
             "rate": rate, "warmup": 2.0, "seconds": args.paced_seconds}
        )  # fmt: skip
    return out


def phases_for(args: argparse.Namespace, target: str) -> list[dict[str, Any]]:
    phases = _phases_for(args, target)
    if args.only:
        keep = set(args.only.split(","))
        phases = [p for p in phases if p["name"] in keep]
        names = {p["name"] for p in phases}
        phases = [p for p in phases if not p.get("rate_from") or p["rate_from"] in names]
    return phases


def _phases_for(args: argparse.Namespace, target: str) -> list[dict[str, Any]]:
    s, w = args.seconds, args.warmup
    if target == "bare":
        return [
            {"name": "bare-closed", "action": "bare", "mode": "closed", "warmup": w, "seconds": s},
            *paced_phases(args, "bare", "bare-closed"),
        ]
    out: list[dict[str, Any]] = []
    for action in ("list", "control"):
        out.append(
            {"name": f"{action}-closed", "action": action, "mode": "closed", "warmup": w,
             "seconds": s}
        )  # fmt: skip
    for action in ("list", "control"):
        out += paced_phases(args, action, f"{action}-closed")
    if args.healthz:
        out.append(
            {"name": "healthz-closed", "action": "healthz", "mode": "closed", "warmup": 2.0,
             "seconds": 10.0}
        )  # fmt: skip
    if args.profile:
        for action in ("list", "control"):
            out.append(
                {"name": f"{action}-closed-profiled", "action": action, "mode": "closed",
                 "warmup": 2.0, "seconds": float(args.profile + 2)}
            )  # fmt: skip
    return out


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def by_name(phases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in phases}


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = (
        "| phase | mode | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | server CPU % "
        "| server CPU ms/req | client CPU % | other procs CPU % |"
    )
    lines = [head, "|" + "---|" * 12]
    for label, p in rows:
        lat = p["latency_ms"]
        mode = p["mode"] if p["mode"] == "closed" else f"paced {p['offered_rate']:g}/s"
        errs = sum(p["errors"].values()) + p["full_failed"] + p["abandoned_at_drain"]
        lines.append(
            f"| {label} | {mode} | {fmt(p['req_per_s'])} | {fmt(lat['p50'])} | {fmt(lat['p95'])} "
            f"| {fmt(lat['p99'])} | {fmt(lat['max'])} | {errs} "
            f"| {fmt(p.get('server', {}).get('cpu_pct'))} "
            f"| {fmt(p.get('server_cpu_ms_per_req'), 3)} "
            f"| {fmt(p.get('client', {}).get('cpu_pct'))} | {fmt(p.get('other_procs_cpu_pct'))} |"
        )
    return "\n".join(lines)


def verdict(bare: list[list[dict[str, Any]]], ivc: list[dict[str, Any]]) -> dict[str, Any]:
    """Against DESIGN §5; ``complete`` is False for a partial (``--only``) run."""
    iv = by_name(ivc)
    bare_rps = [by_name(b)["bare-closed"]["req_per_s"] for b in bare if "bare-closed" in by_name(b)]
    bare_mean = sum(bare_rps) / len(bare_rps) if bare_rps else 0.0
    out: dict[str, Any] = {"bare_closed_req_per_s": bare_rps, "bare_closed_mean": bare_mean}
    ok = bool(bare_rps)
    complete = bool(bare_rps)
    for action in ("list", "control"):
        closed = iv.get(f"{action}-closed")
        if closed is None:
            complete = False
            continue
        ratio = closed["req_per_s"] / bare_mean if bare_mean else None
        out[f"{action}_ratio_vs_bare"] = None if ratio is None else round(ratio, 3)
        ok &= ratio is not None and ratio >= TARGET["ratio"]
        out[f"{action}_closed_p99_ms"] = closed["latency_ms"]["p99"]
        paced = [p for p in ivc if p["action"] == action and p["mode"] == "paced"]
        complete &= bool(paced)
        for p in paced:
            p99 = p["latency_ms"]["p99"]
            out[f"{p['name']} p99 ms"] = p99
            out[f"{p['name']} req/s"] = p["offered_rate"]
            ok &= p99 is not None and p99 < TARGET["p99_ms"]
    errors = sum(
        sum(p["errors"].values()) + p["full_failed"] + p["abandoned_at_drain"]
        for p in [*ivc, *(x for b in bare for x in b)]
    )
    out["errors_total"] = errors
    out["complete"] = complete
    out["target_met"] = bool(ok and complete and errors == 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="ivcloud App API benchmark")
    ap.add_argument("--users", type=int, default=1000, help="users = concurrent connections")
    ap.add_argument("--devices", type=int, default=200, help="devices in the shared family")
    ap.add_argument("--list-limit", type=int, default=100, help="Limit of each list request")
    ap.add_argument("--seconds", type=float, default=20.0, help="closed-loop window per phase")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured lead-in per phase")
    ap.add_argument(
        "--paced-fraction",
        type=float,
        action="append",
        default=None,
        help="paced phase at this fraction of the same action's closed-loop req/s "
        "(repeatable; default 0.25 and 0.5)",
    )
    ap.add_argument(
        "--paced-rate",
        type=float,
        action="append",
        default=[],
        help="paced phase at this aggregate req/s (repeatable; none by default)",
    )
    ap.add_argument("--paced-seconds", type=float, default=15.0)
    ap.add_argument("--no-healthz", dest="healthz", action="store_false")
    ap.add_argument("--no-bare-after", dest="bare_after", action="store_false")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="extra closed-loop phases (list, control) after the measured ones, each with "
        "py-spy record -d SECONDS on the server (the headline phases are not profiled)",
    )
    ap.add_argument(
        "--server-nodelay",
        action="store_true",
        help="experiment: TCP_NODELAY on both servers' HTTP connections (ivcloud through "
        "bench/serve_nodelay.py, bare with --nodelay); not the product as shipped",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each server's measurement, wait up to SECONDS for the shared box to be "
        "< 40 %% busy (of 200 %%)",
    )
    ap.add_argument(
        "--gcstats",
        action="store_true",
        help="experiment: run ivcloud under bench/serve_gcstats.py and report full-collection "
        "pauses per phase",
    )
    ap.add_argument(
        "--cached-experiment",
        action="store_true",
        help="experiment: run ivcloud under bench/serve_cached.py (AppService.get and "
        "AccessService.family_role memoized) to estimate what those round trips cost",
    )
    ap.add_argument(
        "--only",
        default="",
        metavar="NAMES",
        help="diagnosis: run only these phases (comma-separated names, e.g. "
        "bare-closed,list-closed); the verdict then needs the phases it reads",
    )
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    wrappers = [
        w
        for flag, w in (
            (args.server_nodelay, "serve_nodelay.py"),
            (args.gcstats, "serve_gcstats.py"),
            (args.cached_experiment, "serve_cached.py"),
        )
        if flag
    ]
    if len(wrappers) > 1:
        ap.error("--server-nodelay, --gcstats and --cached-experiment are exclusive")
    wrapper = wrappers[0] if wrappers else ""
    if args.paced_fraction is None:
        args.paced_fraction = [0.25, 0.5]
    nofile = raise_nofile()
    if nofile < args.users + 200:
        ap.error(f"RLIMIT_NOFILE {nofile} is too low for {args.users} connections")
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = f"app_api-{args.users}u-{args.devices}d-{stamp}"
    tag += f"-{wrapper.removeprefix('serve_').removesuffix('.py')}" if wrapper else ""
    tag += f"-{args.tag}" if args.tag else ""
    machine = machine_info()
    source = source_state()
    print(
        f"machine: {machine['nproc']} × {machine['cpu_model']}, Python {machine['python']}, "
        f"load average {machine['load_average_before']}"
    )
    work = Path(tempfile.mkdtemp(prefix="ivcloud-appbench-"))
    data_dir = work / "ivcloud-data"
    wall = time.monotonic()
    try:
        t = time.monotonic()
        print(f"[provision] {args.users} users, {args.devices} devices in {data_dir} …")
        prov = asyncio.run(provision(data_dir, args.users, args.devices))
        provision_s = round(time.monotonic() - t, 1)
        print(f"[provision] done in {provision_s} s {prov['timings']}")
        base = {
            "host": "127.0.0.1",
            "connections": args.users,
            "users_file": str(data_dir / "users.json"),
            "list_limit": args.list_limit,
        }

        def run_bare(label: str) -> list[dict[str, Any]]:
            if args.wait_quiet:
                quiet_wait(args.wait_quiet, say=True)
            bare = BareServer(work, nodelay=args.server_nodelay)
            bare.start()
            try:
                spec = {**base, "port": bare.port, "phases": phases_for(args, "bare")}
                return measure(label, bare.pid, spec, work)
            finally:
                bare.stop()

        has_bare = bool(phases_for(args, "bare"))
        bare_runs = [run_bare("bare")] if has_bare else []

        if args.wait_quiet:
            quiet_wait(args.wait_quiet, say=True)
        server = StrictServe(data_dir, wrapper).start()
        port = int(server.http_url.rsplit(":", 1)[1])
        print(f"[ivcloud] server pid {server.pid} {server.http_url}")
        profiles: dict[str, PySpy] = {}
        if args.profile:
            for action in ("list", "control"):
                name = f"{action}-closed-profiled"
                profiles[name] = PySpy(RESULTS_DIR / f"{tag}-pyspy-{action}.txt", args.profile)
        try:
            spec = {**base, "port": port, "phases": phases_for(args, "ivcloud")}
            ivc = measure("ivcloud", server.pid, spec, work, profiles)
        finally:
            server.stop()
        log_tail = server.log_tail(30)
        gc_file = data_dir / "gcstats.json"
        if args.gcstats and gc_file.exists():
            gcs = json.loads(gc_file.read_text())
            for ph in ivc:
                m0, m1 = ph["measure_t0_mono"], ph["measure_t1_mono"]
                inside = [g for g in gcs["gen2_pauses"] if m0 <= g["t_mono"] <= m1]
                ph["gc_gen2"] = {
                    "count": len(inside),
                    "total_ms": round(sum(g["ms"] for g in inside), 1),
                    "max_ms": max((g["ms"] for g in inside), default=None),
                    "share_of_window_pct": round(
                        100 * sum(g["ms"] for g in inside) / 1000 / ph["seconds"], 1
                    ),
                }
                print(f"[gcstats] {ph['name']}: full collections {ph['gc_gen2']}")
            gc_whole = {"by_generation_whole_run": gcs["by_generation"]}
            print(f"[gcstats] whole run: {gcs['by_generation']}")
        else:
            gc_whole = None
        rows = pending_rows(data_dir / "ivcloud.db")
        ok_controls = sum(p["ok_total"] for p in ivc if p["action"] == "control")
        stored = {
            "pending_rows": rows,
            "control_code0_answers": ok_controls,
            "ok": rows >= ok_controls,
        }
        if args.bare_after and has_bare:
            bare_runs.append(run_bare("bare-after"))
    finally:
        if args.keep_data:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    v = verdict(bare_runs, ivc)
    rows_md: list[tuple[str, dict[str, Any]]] = []
    for i, b in enumerate(bare_runs):
        suffix = " (after)" if i else ""
        rows_md += [(p["name"] + suffix, p) for p in b]
    rows_md += [(p["name"], p) for p in ivc]
    md = table(rows_md)
    print()
    print(md)
    print(
        f"\nbare closed-loop req/s: {v['bare_closed_req_per_s']} (mean {v['bare_closed_mean']:.0f})"
        f"; ratio ivcloud/bare: list {v.get('list_ratio_vs_bare')}, control "
        f"{v.get('control_ratio_vs_bare')} (bar ≥ {TARGET['ratio']})"
    )
    for p in ivc:
        if p["mode"] == "paced":
            print(
                f"{p['name']}: {p['offered_rate']:g} req/s offered over {args.users} users, "
                f"p99 {p['latency_ms']['p99']} ms (bar < {TARGET['p99_ms']:.0f} ms)"
            )
    print(
        f"stored check: {stored['pending_rows']} pending_controls rows for "
        f"{stored['control_code0_answers']} code-0 control answers -> "
        f"{'OK' if stored['ok'] else 'FAIL'}"
    )
    print(f"errors (non-200, code≠0, failed full checks, abandoned): {v['errors_total']}")
    if v["complete"]:
        print(f"target {'MET' if v['target_met'] else 'NOT MET'} by this run")
    else:
        print("partial run (--only): no verdict")
    for name, spy in profiles.items():
        if spy.out.exists():
            print(f"profile {name}: {spy.out.relative_to(BENCH_DIR.parent)}")
    out = {
        "command": " ".join([".venv/bin/python", "bench/app_api.py", *sys.argv[1:]]),
        "started_utc": stamp,
        "wall_seconds": round(time.monotonic() - wall, 1),
        "machine": machine,
        "source": source,
        "params": vars(args),
        "provision": {"seconds": provision_s, "timings": prov["timings"]},
        "bare": bare_runs,
        "ivcloud": ivc,
        "stored_check": stored,
        "server_gc": gc_whole,
        "verdict": v,
        "markdown": md,
        "server_log_tail": log_tail,
    }
    write_results(tag, out)
    print(f"({out['wall_seconds']} s)")


if __name__ == "__main__":
    main()

"""HTTP load generator for ``bench/app_api.py``: N keep-alive connections, one per user, each
sending that user's App API requests (its own AccessToken), phase after phase.

    .venv/bin/python bench/app_loadgen.py --spec SPEC.json --out RESULT.json

Runs in its own process (uvloop when installed).  The client is a minimal HTTP/1.1 keep-alive
client on ``asyncio.Protocol`` (one request in flight per connection, ``Content-Length``
framing; no pipelining, no chunked bodies), so the client costs a few µs per request, not
httpx's ~100 µs.  Every answer is checked: HTTP 200 and a body starting ``{"code":0,`` (the
compact JSON ivcloud renders for ``appapi.ok``; a spaced rendering is accepted too); the first
answer of every connection in each measured window is also parsed in full and checked field
by field.

Phase modes:

* ``closed``: every connection sends its next request as soon as the previous answer is in
  (no think time). Throughput = answers completed in the window / window; latency = answer
  arrival − write, for answers completed in the window. With N connections and no think time,
  latency ≈ N / throughput (Little's law) — it measures saturation, not responsiveness.
* ``paced``: an aggregate ``rate`` (or ``fraction`` × the req/s of the earlier phase
  ``rate_from``) spread evenly over the N connections (each user sends every N / rate
  seconds, users staggered). Latency is measured from the *scheduled* send time (no
  coordinated omission: a request delayed by a slow previous answer counts its wait). A
  connection that would sit idle longer than ``idle_guard`` (4 s; uvicorn closes idle
  keep-alive connections after 5 s) is reopened shortly *before* its scheduled send, outside
  the measured latency (counted as ``refreshed``), as an app's HTTP client would.

Stdout: one JSON event per line (``connected``, ``measure_start``, ``phase_done``) for the
orchestrator, which cuts its /proc samples with the ``*_mono`` timestamps (CLOCK_MONOTONIC,
shared by both processes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

HOST = "127.0.0.1"
OK_PREFIX = b'{"code":0,'
#: The same test for a server that renders with spaces (not what Starlette/ivcloud do).
OK_RE = re.compile(rb'\A\s*\{\s*"code"\s*:\s*0\s*[,}]')


def emit(event: str, **payload: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **payload}) + "\n")
    sys.stdout.flush()


class HttpConn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body_start = -1
        self.need = -1
        self.status = 0
        self.lost = False
        self.last_done = time.monotonic()  # last answer (or connect): keep-alive idle guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            try:
                self.status = int(head[9:12])
                i = head.index(b"\r\ncontent-length:")
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17 : j if j >= 0 else len(head)])
            except ValueError:
                self._fail("unparsable response head")
                return
            self.body_start = end + 4
            self.need = self.body_start + length
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.body_start : self.need])
            del self.buf[: self.need]
            self.need = -1
            w = self.waiter
            self.waiter = None
            if w is not None and not w.done():
                w.set_result((self.status, body))

    def _fail(self, why: str) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.transport.write(raw)
        return fut


def http_post(path: str, port: int, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def http_get(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {k: None for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")}
    v = sorted(values)
    n = len(v)

    def q(p: float) -> float:
        return round(v[min(n - 1, int(p * n))], 3)

    return {
        "p50": q(0.50),
        "p90": q(0.90),
        "p95": q(0.95),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round(v[-1], 3),
        "mean": round(sum(v) / n, 3),
    }


class Target:
    """Request bytes per (action, user) and the full check of an answer."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.port = int(spec["port"])
        self.path = spec.get("path", "/api/exploreropen/tokenapi")
        users = json.loads(Path(spec["users_file"]).read_text())
        self.tokens: list[str] = [u["token"] for u in users["users"]]
        self.family_id: str = users["family_id"]
        self.device_ids: list[str] = users["device_ids"]
        self.list_limit = int(spec.get("list_limit", 100))
        self.n = min(int(spec["connections"]), len(self.tokens))
        self._cache: dict[str, list[list[bytes]]] = {}

    def list_body(self, i: int, k: int) -> bytes:
        total = len(self.device_ids)
        pages = max(1, -(-total // self.list_limit))
        return json.dumps(
            {
                "Action": "AppGetFamilyDeviceList",
                "RequestId": f"bench-{i}-{k}",
                "AccessToken": self.tokens[i],
                "FamilyId": self.family_id,
                "Offset": (k % pages) * self.list_limit,
                "Limit": self.list_limit,
            },
            separators=(",", ":"),
        ).encode()

    def control_body(self, i: int, k: int) -> bytes:
        return json.dumps(
            {
                "Action": "AppControlDeviceData",
                "RequestId": f"bench-{i}-{k}",
                "AccessToken": self.tokens[i],
                "DeviceId": self.device_ids[i % len(self.device_ids)],
                "Data": json.dumps({"child_lock_state": k % 2}, separators=(",", ":")),
            },
            separators=(",", ":"),
        ).encode()

    def requests(self, action: str) -> list[list[bytes]]:
        """Two variants per user (list: page 0 / page 1; control: value 0 / 1), alternated."""
        if action in self._cache:
            return self._cache[action]
        out: list[list[bytes]] = []
        for i in range(self.n):
            if action == "list":
                out.append([http_post(self.path, self.port, self.list_body(i, k)) for k in (0, 1)])
            elif action == "control":
                out.append(
                    [http_post(self.path, self.port, self.control_body(i, k)) for k in (0, 1)]
                )
            elif action == "bare":
                # The list request's bytes (same size and parsing work for the transport).
                raw = http_post(self.path, self.port, self.list_body(i, 0))
                out.append([raw, raw])
            elif action == "healthz":
                raw = http_get("/healthz", self.port)
                out.append([raw, raw])
            else:
                raise ValueError(f"unknown action {action}")
        self._cache[action] = out
        return out

    def check_full(self, action: str, body: bytes) -> str | None:
        """None when the answer is right in full; else why not."""
        try:
            doc = json.loads(body)
        except ValueError:
            return "not JSON"
        if action == "healthz":
            return None if doc.get("status") == "ok" else f"healthz {doc!r:.200}"
        if doc.get("code") != 0 or doc.get("msg") != "":
            return f"code {doc.get('code')!r} msg {doc.get('msg')!r}"
        data = doc.get("data")
        if not isinstance(data, dict) or "RequestId" not in data:
            return "no data.RequestId"
        if action == "list":
            total = len(self.device_ids)
            items = data.get("DeviceList")
            if data.get("Total") != total:
                return f"Total {data.get('Total')!r} != {total}"
            if not isinstance(items, list) or len(items) != min(self.list_limit, total):
                return f"DeviceList has {len(items) if isinstance(items, list) else '?'} items"
            if not all(isinstance(d, dict) and d.get("DeviceId") for d in items):
                return "DeviceList item without DeviceId"
        return None


class Phase:
    def __init__(self, cfg: dict[str, Any], n: int) -> None:
        self.cfg = cfg
        self.name: str = cfg["name"]
        self.action: str = cfg["action"]
        self.mode: str = cfg.get("mode", "closed")
        self.rate: float = float(cfg.get("rate", 0))
        self.warmup: float = float(cfg.get("warmup", 3.0))
        self.seconds: float = float(cfg["seconds"])
        self.drain: float = float(cfg.get("drain", 30.0))
        self.n = n
        self.lat_ms: list[float] = []
        self.completed_in_window = 0
        self.ok_total = 0  # code-0 answers over the whole phase (warm-up, window, drain)
        self.sent_total = 0
        self.errors = Counter[str]()
        self.error_samples: list[str] = []
        self.full_checked = 0
        self.full_failed = 0
        self.per_second: Counter[int] = Counter()
        self.sched_lag_ms: list[float] = []
        self.reconnects = 0
        self.refreshed = 0
        self.abandoned = 0
        self.idle_guard: float = float(cfg.get("idle_guard", 4.0))


async def open_conn(port: int) -> HttpConn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(HttpConn, HOST, port)
    return proto


async def connect_all(port: int, n: int, concurrency: int = 100) -> list[HttpConn]:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> HttpConn:
        async with sem:
            for attempt in range(20):
                try:
                    return await asyncio.wait_for(open_conn(port), 10)
                except (OSError, TimeoutError):
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise ConnectionError("could not connect")

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def run_phase(target: Target, conns: list[HttpConn], phase: Phase) -> dict[str, Any]:
    reqs = target.requests(phase.action)
    n = phase.n
    t_start = time.monotonic() + 0.2
    m0 = t_start + phase.warmup
    m1 = m0 + phase.seconds
    stop_at = m1
    period = n / phase.rate if phase.mode == "paced" else 0.0
    checked_user = [False] * n

    async def user(i: int) -> None:
        conn = conns[i]
        variants = reqs[i]
        k = i & 1
        sched = t_start + (i / n) * period if period else t_start
        if not period:
            await asyncio.sleep(max(0.0, t_start - time.monotonic()))
        while True:
            now = time.monotonic()
            if period:
                if sched >= stop_at:
                    return
                if sched > now:
                    if sched - conn.last_done > phase.idle_guard:
                        await asyncio.sleep(max(0.0, sched - 0.3 - now))
                        if conn.transport is not None:
                            conn.transport.close()
                        conns[i] = conn = await open_conn(target.port)
                        phase.refreshed += 1
                        now = time.monotonic()
                    if sched > now:
                        await asyncio.sleep(sched - now)
                    now = time.monotonic()
                if m0 <= sched < m1:
                    phase.sched_lag_ms.append((now - sched) * 1000)
                t_ref = sched
            else:
                if now >= stop_at:
                    return
                t_ref = now
            if conn.lost:
                conns[i] = conn = await open_conn(target.port)
                phase.reconnects += 1
            t_write = time.monotonic()
            if not period:
                t_ref = t_write
            phase.sent_total += 1
            try:
                status, body = await conn.request(variants[k])
            except ConnectionError as exc:
                phase.errors["connection"] += 1
                if len(phase.error_samples) < 5:
                    phase.error_samples.append(str(exc))
                conns[i] = conn = await open_conn(target.port)
                phase.reconnects += 1
                k ^= 1
                sched += period
                continue
            t_done = time.monotonic()
            conn.last_done = t_done
            good = status == 200 and (
                phase.action == "healthz"
                or body.startswith(OK_PREFIX)
                or OK_RE.match(body) is not None
            )
            if good:
                phase.ok_total += 1
            else:
                phase.errors[f"http {status}" if status != 200 else "code != 0"] += 1
                if len(phase.error_samples) < 5:
                    phase.error_samples.append(body[:300].decode(errors="replace"))
            in_window = (m0 <= sched < m1) if period else (m0 <= t_done < m1)
            if in_window:
                phase.lat_ms.append((t_done - t_ref) * 1000)
                if m0 <= t_done < m1:
                    phase.completed_in_window += 1
                    phase.per_second[int(t_done - m0)] += 1
                if not checked_user[i]:
                    checked_user[i] = True
                    phase.full_checked += 1
                    why = target.check_full(phase.action, body)
                    if why is not None:
                        phase.full_failed += 1
                        if len(phase.error_samples) < 5:
                            phase.error_samples.append(f"full check: {why}")
            elif period and m0 <= t_done < m1:
                # paced: answers landing in the window count for throughput whatever their
                # schedule (the warm-up's stragglers), so req/s is comparable with closed mode
                phase.completed_in_window += 1
                phase.per_second[int(t_done - m0)] += 1
            k ^= 1
            sched += period

    emit("phase_start", phase=phase.name, t_start_mono=t_start)

    async def announce() -> None:
        await asyncio.sleep(max(0.0, m0 - time.monotonic()))
        emit("measure_start", phase=phase.name, t_mono=m0, seconds=phase.seconds)

    ann = asyncio.create_task(announce())
    tasks = [asyncio.create_task(user(i)) for i in range(n)]
    await asyncio.sleep(max(0.0, m1 - time.monotonic()))
    done, pending = await asyncio.wait(tasks, timeout=phase.drain + (m1 - time.monotonic()))
    for t in pending:
        t.cancel()
    phase.abandoned = len(pending)
    with contextlib.suppress(Exception):
        await ann
    for t in done:
        if t.exception() is not None:
            phase.errors["task " + type(t.exception()).__name__] += 1
    # A connection whose answer was abandoned would deliver it to the next phase, and one
    # idle for a while (its user stopped early while others drained) may be closed by the
    # server's keep-alive timeout just as the next phase writes to it: reopen both kinds.
    stale = []
    for i, c in enumerate(conns):
        busy = c.waiter is not None and not c.waiter.done()
        if busy or c.lost or time.monotonic() - c.last_done > 2.0:
            if c.transport is not None:
                c.transport.abort()
            stale.append(i)
    for i, c in zip(stale, await connect_all(target.port, len(stale)), strict=True):
        conns[i] = c
    window = phase.seconds
    lat = percentiles(phase.lat_ms)
    per_s = [phase.per_second.get(s, 0) for s in range(int(window))]
    res = {
        "name": phase.name,
        "fraction_of": [phase.cfg.get("rate_from"), phase.cfg.get("fraction")]
        if phase.cfg.get("rate_from")
        else None,
        "action": phase.action,
        "mode": phase.mode,
        "offered_rate": phase.rate if period else None,
        "connections": n,
        "warmup_s": phase.warmup,
        "seconds": window,
        "measure_t0_mono": m0,
        "measure_t1_mono": m1,
        "completed_in_window": phase.completed_in_window,
        "req_per_s": round(phase.completed_in_window / window, 1),
        "req_per_s_each_second": per_s,
        "latency_ms": lat,
        "latency_samples": len(phase.lat_ms),
        "sent_total": phase.sent_total,
        "ok_total": phase.ok_total,
        "errors": dict(phase.errors),
        "error_samples": phase.error_samples,
        "full_checked": phase.full_checked,
        "full_failed": phase.full_failed,
        "reconnects": phase.reconnects,
        "refreshed_idle": phase.refreshed,
        "abandoned_at_drain": phase.abandoned,
        "reopened_after_phase": len(stale),
    }
    if period:
        res["schedule_lag_ms"] = percentiles(phase.sched_lag_ms)
    return res


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    target = Target(spec)
    t = time.monotonic()
    conns = await connect_all(target.port, target.n)
    emit("connected", connections=len(conns), seconds=round(time.monotonic() - t, 2))
    for action in {p["action"] for p in spec["phases"]}:
        target.requests(action)  # build request bytes before any clock starts
    results: list[dict[str, Any]] = []
    for cfg in spec["phases"]:
        if cfg.get("rate_from"):
            ref = next(r for r in results if r["name"] == cfg["rate_from"])
            cfg = {**cfg, "rate": round(float(cfg["fraction"]) * ref["req_per_s"], 1)}
        phase = Phase(cfg, target.n)
        res = await run_phase(target, conns, phase)
        results.append(res)
        emit(
            "phase_done",
            phase=phase.name,
            summary={
                "req_per_s": res["req_per_s"],
                "p50": res["latency_ms"]["p50"],
                "p99": res["latency_ms"]["p99"],
                "errors": res["errors"],
                "full_failed": res["full_failed"],
            },
        )
        gap = float(cfg.get("gap_after", 0.0))
        if gap:
            await asyncio.sleep(gap)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return {"phases": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    if spec.get("host", HOST) != HOST:
        sys.exit("app_loadgen only dials 127.0.0.1")
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runner: Any = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    result = runner(run(spec))
    result["uvloop"] = runner is not asyncio.run
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()

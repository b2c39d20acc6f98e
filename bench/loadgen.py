"""Load generator for ``bench/device_pipeline.py``: N simulated devices in ONE process.

Runs as its own process (``python bench/loadgen.py --spec spec.json --out result.json``), so
its CPU is not the server's.  asyncio ``Protocol``s on raw sockets and ivcloud's sans-IO MQTT
codec; no MQTT client library.  Everything is bounded: a connect phase with a deadline, a
report phase of exactly ``seconds``, a drain of at most ``drain`` seconds, then every
connection is closed and the process exits.  Only 127.0.0.1 is ever dialled.

Targets:

* ``ivcloud``: each device CONNECTs with real key-mode credentials, SUBSCRIBEs
  ``$thing/down/property/{P}/{D}``, publishes ``report`` messages on
  ``$thing/up/property/{P}/{D}`` and waits for the matching ``report_reply`` (by clientToken);
* ``mosquitto``: anonymous client ``bench-{i}`` SUBSCRIBEs ``bench/{i}/reply`` and publishes the
  same payload to that same topic, so the broker echoes it back (a pure routing round trip).

Offered load is open-loop: message ``k`` is due at ``t0 + k / rate`` and goes to device
``k mod N``; writes never wait for replies (asyncio buffers them if the socket is full), so a
slow server shows up as latency and missing replies, not as a politely slower client.
Latency is measured from the moment the PUBLISH was written to the reply's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

from ivcloud.protocol.credentials import make_username, sign_password
from ivcloud.protocol.mqtt import (
    Connack,
    Connect,
    PacketReader,
    Publish,
    Suback,
    Subscribe,
    encode,
    encode_publish,
)
from ivcloud.protocol.mqtt.encode import DISCONNECT_BYTES

HOST = "127.0.0.1"
KEEPALIVE = 240  # the C SDK default; no PINGREQ needed within a bounded run


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(slots=True)
class Stats:
    sent: int = 0
    not_sent: int = 0  # due for a device that was not connected
    replies: int = 0
    ok: int = 0
    bad_code: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    unmatched: int = 0
    latencies_us: list[int] = field(default_factory=list)
    latencies_by_s: list[list[int]] = field(default_factory=list)  # by send second
    # per-second buckets relative to t0 of the report phase
    sent_per_s: list[int] = field(default_factory=list)
    ok_per_s: list[int] = field(default_factory=list)
    t0_ns: int = 0
    window_end_ns: int = 0
    ok_in_window: int = 0
    first_reply_ns: int = 0
    last_reply_ns: int = 0
    dropped_conns: int = 0

    def bucket(self, series: list[int], t_ns: int) -> None:
        i = (t_ns - self.t0_ns) // 1_000_000_000
        if i < 0:
            return
        while len(series) <= i:
            series.append(0)
        series[i] += 1


class DeviceConn(asyncio.Protocol):
    """One simulated device."""

    def __init__(self, index: int, stats: Stats, reply_topic: str) -> None:
        self.index = index
        self.stats = stats
        self.reply_topic = reply_topic
        self.reader = PacketReader(1 << 20)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.suback: asyncio.Future[tuple[int, ...]] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        # token → (send time, the Stats of the phase that sent it): a late warm-up reply is
        # counted as the warm-up's, never as the measured phase's.
        self.pending: dict[str, tuple[int, Stats]] = {}
        self.online = False
        self.seq = 0
        self.acked = 0  # code-0 replies (per device; checked against stored history)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.reader.feed(data)
        except Exception:
            self.stats.unmatched += 1
            if self.transport is not None:
                self.transport.abort()
            return
        for p in packets:
            if isinstance(p, Publish):
                self._on_reply(p.payload)
            elif isinstance(p, Connack):
                if not self.connack.done():
                    self.connack.set_result(p.return_code)
            elif isinstance(p, Suback) and not self.suback.done():
                self.suback.set_result(p.return_codes)

    def _on_reply(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        try:
            msg = json.loads(payload)
            token = msg["clientToken"]
        except (ValueError, KeyError, TypeError):
            self.stats.unmatched += 1
            return
        entry = self.pending.pop(token, None)
        if entry is None:
            self.stats.unmatched += 1
            return
        sent_ns, st = entry
        st.replies += 1
        code = msg.get("code", 0)
        if code == 0:
            st.ok += 1
            self.acked += 1
            lat = (now - sent_ns) // 1000
            st.latencies_us.append(lat)
            sec = (sent_ns - st.t0_ns) // 1_000_000_000
            if sec >= 0:
                by_s = st.latencies_by_s
                while len(by_s) <= sec:
                    by_s.append([])
                by_s[sec].append(lat)
            st.bucket(st.ok_per_s, now)
            if now <= st.window_end_ns:
                st.ok_in_window += 1
            if not st.first_reply_ns:
                st.first_reply_ns = now
            st.last_reply_ns = now
        else:
            st.bad_code += 1
            key = str(code)
            st.codes[key] = st.codes.get(key, 0) + 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.online:
            self.stats.dropped_conns += 1
        self.online = False
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(slots=True)
class DeviceSpec:
    client_id: str
    username: str | None
    password: bytes | None
    up_topic: bytes
    down_filter: str


def build_specs(spec: dict[str, Any]) -> list[DeviceSpec]:
    """Client ids, credentials and topics for every device, computed before timing starts."""
    out: list[DeviceSpec] = []
    if spec["target"] == "ivcloud":
        pid = spec["product_id"]
        now = int(time.time())
        for i, (name, secret) in enumerate(spec["devices"]):
            user = make_username(pid, name, now=now, ttl=86_400, connid=f"b{i % 10000:04d}")
            out.append(
                DeviceSpec(
                    client_id=pid + name,
                    username=user,
                    password=sign_password(secret, user).encode(),
                    up_topic=f"$thing/up/property/{pid}/{name}".encode(),
                    down_filter=f"$thing/down/property/{pid}/{name}",
                )
            )
    else:
        for i in range(spec["count"]):
            topic = f"bench/{i}/reply"
            out.append(DeviceSpec(f"bench-{i}", None, None, topic.encode(), topic))
    return out


async def connect_one(
    loop: asyncio.AbstractEventLoop,
    index: int,
    dev: DeviceSpec,
    port: int,
    stats: Stats,
    limit_s: float,
) -> tuple[DeviceConn | None, float, str]:
    """CONNECT, wait CONNACK, SUBSCRIBE, wait SUBACK. Returns (conn, seconds, error)."""
    start = time.monotonic()
    conn: DeviceConn | None = None
    try:
        async with asyncio.timeout(limit_s):
            _, proto = await loop.create_connection(
                lambda: DeviceConn(index, stats, dev.down_filter), HOST, port
            )
            conn = proto
            assert conn.transport is not None
            conn.transport.write(
                encode(
                    Connect(
                        client_id=dev.client_id,
                        keepalive=KEEPALIVE,
                        username=dev.username,
                        password=dev.password,
                    )
                )
            )
            code = await conn.connack
            if code != 0:
                conn.transport.close()
                return None, time.monotonic() - start, f"connack {code}"
            conn.transport.write(encode(Subscribe(1, ((dev.down_filter, 0),))))
            codes = await conn.suback
            if codes != (0,):
                conn.transport.close()
                return None, time.monotonic() - start, f"suback {codes}"
    except TimeoutError:
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        return None, time.monotonic() - start, "timeout"
    except OSError as exc:
        return None, time.monotonic() - start, f"{type(exc).__name__}: {exc.strerror or exc}"
    except ConnectionError as exc:
        return None, time.monotonic() - start, str(exc)
    conn.online = True
    return conn, time.monotonic() - start, ""


async def connect_phase(
    specs: list[DeviceSpec], port: int, stats: Stats, concurrency: int, deadline_s: float
) -> tuple[list[DeviceConn | None], dict[str, Any]]:
    loop = asyncio.get_running_loop()
    conns: list[DeviceConn | None] = [None] * len(specs)
    times: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0
    start = time.monotonic()
    end_by = start + deadline_s

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(specs):
            i = next_index
            next_index += 1
            remaining = end_by - time.monotonic()
            if remaining <= 0:
                errors["connect phase deadline"] = errors.get("connect phase deadline", 0) + 1
                continue
            conn, took, err = await connect_one(
                loop, i, specs[i], port, stats, min(30.0, remaining)
            )
            if conn is None:
                errors[err] = errors.get(err, 0) + 1
            else:
                conns[i] = conn
                times.append(took)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(specs)))))
    elapsed = time.monotonic() - start
    times.sort()
    ok = len(times)
    return conns, {
        "started_mono": start,
        "ended_mono": start + elapsed,
        "seconds": round(elapsed, 3),
        "connected": ok,
        "failed": len(specs) - ok,
        "errors": errors,
        "connects_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "concurrency": concurrency,
        "connect_ms_p50": round(_pct(times, 50) * 1000, 2) if times else None,
        "connect_ms_p99": round(_pct(times, 99) * 1000, 2) if times else None,
        "connect_ms_max": round(times[-1] * 1000, 2) if times else None,
    }


def _pct(sorted_values: list[float] | list[int], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


async def report_phase(
    conns: list[DeviceConn | None],
    specs: list[DeviceSpec],
    stats: Stats,
    rate: float,
    total: int,
    drain_s: float,
    tick_s: float,
) -> dict[str, Any]:
    """Send ``total`` reports at ``rate``/s round-robin over the devices, then drain."""
    n = len(conns)
    seconds = total / rate
    for c in conns:
        if c is not None:
            c.stats = stats
    topics = [s.up_topic for s in specs]
    lags: list[float] = []
    t0 = time.monotonic_ns() + 50_000_000  # start on a fresh tick, 50 ms from now
    stats.t0_ns = t0
    stats.window_end_ns = t0 + int(seconds * 1e9)
    ns_per_msg = 1e9 / rate
    k = 0
    await asyncio.sleep(0.05)
    while k < total:
        now = time.monotonic_ns()
        due = min(total, int((now - t0) / ns_per_msg) + 1)
        if due > k:
            lags.append((now - (t0 + k * ns_per_msg)) / 1e6)
        while k < due:
            i = k % n
            conn = conns[i]
            k += 1
            if conn is None or not conn.online or conn.transport is None:
                stats.not_sent += 1
                continue
            seq = conn.seq = conn.seq + 1
            sent = time.monotonic_ns()
            token = f"{seq}-{sent}"
            payload = (
                f'{{"method":"report","clientToken":"{token}","params":'
                f'{{"battery_percentage":{seq % 101},"lock_motor_state":{seq & 1}}}}}'
            ).encode()
            conn.pending[token] = (sent, stats)
            conn.transport.write(encode_publish(topics[i], payload))
            stats.sent += 1
            stats.bucket(stats.sent_per_s, sent)
        await asyncio.sleep(tick_s)
    send_end = time.monotonic_ns()
    # Drain: wait for outstanding replies, bounded.
    drain_deadline = time.monotonic() + drain_s
    while time.monotonic() < drain_deadline:
        if not any(
            st is stats for c in conns if c is not None and c.online for _, st in c.pending.values()
        ):
            break
        await asyncio.sleep(0.05)
    drain_end = time.monotonic_ns()
    lags.sort()
    return {
        "t0_mono": t0 / 1e9,
        "send_end_mono": send_end / 1e9,
        "drain_end_mono": drain_end / 1e9,
        "offered_total": total,
        "send_seconds": round((send_end - t0) / 1e9, 3),
        "drain_seconds": round((drain_end - send_end) / 1e9, 3),
        "send_lag_ms_p50": round(_pct(lags, 50), 2) if lags else None,
        "send_lag_ms_p99": round(_pct(lags, 99), 2) if lags else None,
        "send_lag_ms_max": round(lags[-1], 2) if lags else None,
    }


async def close_all(conns: list[DeviceConn | None]) -> None:
    live = [c for c in conns if c is not None and c.transport is not None]
    for c in live:
        c.online = False
        assert c.transport is not None
        if not c.transport.is_closing():
            c.transport.write(DISCONNECT_BYTES)
            c.transport.close()
    if live:
        await asyncio.wait([c.closed for c in live], timeout=10)
    for c in live:
        if not c.closed.done() and c.transport is not None:
            c.transport.abort()


def emit(event: str, **fields: Any) -> None:
    """A progress line for the orchestrator (stdout is a pipe it reads)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def stats_summary(
    stats: Stats, report: dict[str, Any], conns: list[DeviceConn | None]
) -> dict[str, Any]:
    lat = sorted(stats.latencies_us)
    window = report["send_seconds"] or 1.0
    span = (report["drain_end_mono"] - report["t0_mono"]) or 1.0
    return {
        "sent": stats.sent,
        "not_sent": stats.not_sent,
        "replies": stats.replies,
        "acked_ok": stats.ok,
        "non_zero_codes": stats.bad_code,
        "codes": stats.codes,
        "unmatched": stats.unmatched,
        "missing_replies": sum(
            1 for c in conns if c is not None for _, st in c.pending.values() if st is stats
        ),
        "acked_in_window": stats.ok_in_window,
        "acked_per_s_window": round(stats.ok_in_window / window, 1),
        "acked_per_s_overall": round(stats.ok / span, 1),
        "latency_ms": {
            "p50": round(_pct(lat, 50) / 1000, 3) if lat else None,
            "p95": round(_pct(lat, 95) / 1000, 3) if lat else None,
            "p99": round(_pct(lat, 99) / 1000, 3) if lat else None,
            "p999": round(_pct(lat, 99.9) / 1000, 3) if lat else None,
            "max": round(lat[-1] / 1000, 3) if lat else None,
            "mean": round(sum(lat) / len(lat) / 1000, 3) if lat else None,
        },
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    nofile = raise_nofile()
    specs = build_specs(spec)
    stats = Stats()
    cpu_start = cpu_seconds()
    wall_start = time.monotonic()
    emit("connect_start")
    conns, connect = await connect_phase(
        specs, spec["port"], stats, spec["concurrency"], spec["connect_deadline"]
    )
    cpu_connect = cpu_seconds()
    emit(
        "connected",
        summary=f"{connect['connected']}/{len(specs)} in {connect['seconds']}s "
        f"({connect['connects_per_s']}/s), errors {connect['errors'] or 'none'}",
    )
    tick = spec.get("tick", 0.002)
    warmup: dict[str, Any] | None = None
    if spec.get("warmup", True):
        # One report per device, at the offered rate, measured apart: the first report after
        # a (re)connect exercises cold caches on the server, which is a different figure
        # from the sustained rate the run is about.
        wstats = Stats()
        wreport = await report_phase(
            conns, specs, wstats, spec["rate"], len(conns), spec.get("warmup_drain", 60.0), tick
        )
        warmup = {**wreport, **stats_summary(wstats, wreport, conns)}
        warmup["acked_per_s_by_second"] = wstats.ok_per_s
        emit(
            "warmup_done",
            summary=f"{warmup['acked_ok']}/{len(conns)} acked, p99 "
            f"{warmup['latency_ms']['p99']} ms",
        )
    await asyncio.sleep(spec.get("settle", 1.0))
    # 10k connections are a lot of objects for the cyclic GC to walk on every full collection;
    # nothing made from here on needs collecting within a bounded run.
    gc.collect()
    gc.freeze()
    cpu_report_start = cpu_seconds()
    emit("report_start")
    report = await report_phase(
        conns, specs, stats, spec["rate"], int(spec["rate"] * spec["seconds"]), spec["drain"], tick
    )
    cpu_report_end = cpu_seconds()
    summary = stats_summary(stats, report, conns)
    # Snapshot per-device acks before closing (server-side verification uses them).
    acked = [c.acked if c is not None else 0 for c in conns]
    connected_at_end = sum(1 for c in conns if c is not None and c.online)
    await close_all(conns)
    report_span = (report["drain_end_mono"] - report["t0_mono"]) or 1.0
    result: dict[str, Any] = {
        "target": spec["target"],
        "pid": os.getpid(),
        "nofile": nofile,
        "loop": type(asyncio.get_running_loop()).__module__,
        "devices": len(specs),
        "connect": connect,
        "warmup": warmup,
        "report": report,
        "connected_at_end": connected_at_end,
        "dropped_connections": stats.dropped_conns,
        "offered_rate": spec["rate"],
        **summary,
        "latency_ms_by_send_second": [
            {
                "p50": round(_pct(v, 50) / 1000, 2),
                "p99": round(_pct(v, 99) / 1000, 2),
                "max": round(v[-1] / 1000, 2),
            }
            if v
            else None
            for v in (sorted(x) for x in stats.latencies_by_s)
        ],
        "sent_per_s": stats.sent_per_s,
        "acked_per_s": stats.ok_per_s,
        "client_cpu": {
            "connect_s": round(cpu_connect - cpu_start, 2),
            "report_s": round(cpu_report_end - cpu_report_start, 2),
            "report_pct": round(100 * (cpu_report_end - cpu_report_start) / report_span, 1),
        },
        "wall_seconds": round(time.monotonic() - wall_start, 2),
    }
    if spec["target"] == "ivcloud":
        result["acked_by_device"] = acked
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="JSON run spec written by device_pipeline")
    ap.add_argument("--out", required=True, help="where to write the JSON result")
    ap.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    args = ap.parse_args()
    with open(args.spec) as fh:
        spec = json.load(fh)
    if spec.get("host", HOST) != HOST:
        sys.exit("loadgen only dials 127.0.0.1")
    runner: Any = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    result = runner(run(spec))
    with open(args.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()

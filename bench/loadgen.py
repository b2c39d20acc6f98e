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
from typing import Any

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
        self.pending: dict[str, int] = {}
        self.online = False
        self.seq = 0
        self.acked = 0  # code-0 replies (per device; checked against stored history)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

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
        st = self.stats
        try:
            msg = json.loads(payload)
            token = msg["clientToken"]
        except (ValueError, KeyError, TypeError):
            st.unmatched += 1
            return
        sent_ns = self.pending.pop(token, None)
        if sent_ns is None:
            st.unmatched += 1
            return
        st.replies += 1
        code = msg.get("code", 0)
        if code == 0:
            st.ok += 1
            self.acked += 1
            st.latencies_us.append((now - sent_ns) // 1000)
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
    timeout: float,
) -> tuple[DeviceConn | None, float, str]:
    """CONNECT, wait CONNACK, SUBSCRIBE, wait SUBACK. Returns (conn, seconds, error)."""
    start = time.monotonic()
    conn: DeviceConn | None = None
    try:
        async with asyncio.timeout(timeout):
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
    seconds: float,
    drain_s: float,
    tick_s: float,
) -> dict[str, Any]:
    n = len(conns)
    total = int(rate * seconds)
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
                '{"method":"report","clientToken":"%s","params":'
                '{"battery_percentage":%d,"lock_motor_state":%d}}' % (token, seq % 101, seq & 1)
            ).encode()
            conn.pending[token] = sent
            conn.transport.write(encode_publish(topics[i], payload))
            stats.sent += 1
            stats.bucket(stats.sent_per_s, sent)
        await asyncio.sleep(tick_s)
    send_end = time.monotonic_ns()
    # Drain: wait for outstanding replies, bounded.
    drain_deadline = time.monotonic() + drain_s
    while time.monotonic() < drain_deadline:
        if not any(c.pending for c in conns if c is not None and c.online):
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


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    nofile = raise_nofile()
    specs = build_specs(spec)
    stats = Stats()
    # 10k connections allocate a lot of small objects; the cyclic GC walking them all would
    # add pauses to the client's own latency. Nothing here makes reference cycles we need
    # collected within a bounded run.
    gc.collect()
    gc.freeze()
    cpu_start = cpu_seconds()
    wall_start = time.monotonic()
    conns, connect = await connect_phase(
        specs, spec["port"], stats, spec["concurrency"], spec["connect_deadline"]
    )
    cpu_connect = cpu_seconds()
    await asyncio.sleep(spec.get("settle", 1.0))
    cpu_report_start = cpu_seconds()
    report = await report_phase(
        conns,
        specs,
        stats,
        spec["rate"],
        spec["seconds"],
        spec["drain"],
        spec.get("tick", 0.002),
    )
    cpu_report_end = cpu_seconds()
    missing = sum(len(c.pending) for c in conns if c is not None)
    # Snapshot per-device acks before closing (server-side verification uses them).
    acked = [c.acked if c is not None else 0 for c in conns]
    connected_at_end = sum(1 for c in conns if c is not None and c.online)
    await close_all(conns)
    lat = sorted(stats.latencies_us)
    window = spec["seconds"]
    report_span = (report["drain_end_mono"] - report["t0_mono"]) or 1.0
    result: dict[str, Any] = {
        "target": spec["target"],
        "pid": os.getpid(),
        "nofile": nofile,
        "loop": type(asyncio.get_running_loop()).__module__,
        "devices": len(specs),
        "connect": connect,
        "report": report,
        "connected_at_end": connected_at_end,
        "dropped_connections": stats.dropped_conns,
        "offered_rate": spec["rate"],
        "sent": stats.sent,
        "not_sent": stats.not_sent,
        "replies": stats.replies,
        "acked_ok": stats.ok,
        "non_zero_codes": stats.bad_code,
        "codes": stats.codes,
        "unmatched": stats.unmatched,
        "missing_replies": missing,
        "acked_in_window": stats.ok_in_window,
        "acked_per_s_window": round(stats.ok_in_window / window, 1),
        "acked_per_s_overall": round(stats.ok / report_span, 1),
        "latency_ms": {
            "p50": round(_pct(lat, 50) / 1000, 3) if lat else None,
            "p95": round(_pct(lat, 95) / 1000, 3) if lat else None,
            "p99": round(_pct(lat, 99) / 1000, 3) if lat else None,
            "p999": round(_pct(lat, 99.9) / 1000, 3) if lat else None,
            "max": round(lat[-1] / 1000, 3) if lat else None,
            "mean": round(sum(lat) / len(lat) / 1000, 3) if lat else None,
        },
        "sent_per_s": stats.sent_per_s,
        "acked_per_s": stats.ok_per_s,
        "client_cpu": {
            "connect_s": round(cpu_connect - cpu_start, 2),
            "report_s": round(cpu_report_end - cpu_report_start, 2),
            "report_pct": round(
                100 * (cpu_report_end - cpu_report_start) / report_span, 1
            ),
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

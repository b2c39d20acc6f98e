"""Viewer load of the hub fan-out benchmark: N HTTP-FLV viewers of one URL, in their own
process, the same code against ivcloud and node-media-server.

    fanout_viewers.py --url http://127.0.0.1:P/live/bench.flv --viewers 100 \
        --warmup 4 --seconds 20 --epoch-ms E --out result.json

Each viewer is an ``asyncio.Protocol`` on a raw socket (no HTTP library: the reader must
cost little next to the servers on 2 cores): one ``GET``, the status line and headers, the
chunked transfer coding undone, then FLV tag headers walked — every tag's
PreviousTagSize checked, so a viewer knows it got whole tags of a whole stream. Per viewer
it counts bytes and tags inside the measured window, video frames, keyframes, sequence
headers re-sent mid-stream (ivcloud's hub re-sends them when it skips a lagging viewer to
the next keyframe), video timestamp gaps over 3 frame intervals (frames that never
arrived), and per video tag the delivery delay: arrival wall time − the tag's due time
(the publisher stamps tags with ``due − epoch_ms``; same clock, same machine).

Phases (printed as JSON lines with CLOCK_MONOTONIC times so the orchestrator can cut its
/proc samples): connect all, wait until every viewer has a keyframe (≤ 15 s), warm up,
measure ``--seconds``, close all. Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import time
from typing import Any
from urllib.parse import urlsplit

_TAG = struct.Struct(">IIHB")  # type+size, timestamp (24+8), stream id
_U32 = struct.Struct(">I")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class Viewer(asyncio.Protocol):
    def __init__(self, request: bytes, epoch_ms: int, frame_ms: float) -> None:
        self.request = request
        self.epoch_ms = epoch_ms
        self.gap_ms = 3 * frame_ms
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.head = bytearray()
        self.status = 0
        self.chunked = False
        self.in_body = False
        self.raw = bytearray()  # body bytes still chunk-encoded
        self.chunk_left = 0  # bytes of the current chunk's data still to read
        self.flv = bytearray()
        self.flv_header = False
        self.error = ""
        self.closed = asyncio.get_running_loop().create_future()
        self.keyframe = asyncio.get_running_loop().create_future()
        # counters
        self.measuring = False
        self.bytes_total = 0
        self.bytes_window = 0
        self.tags_window = 0
        self.video_window = 0
        self.keyframes = 0
        self.seq_headers = 0
        self.resyncs = 0
        self.gaps = 0
        self.last_video_ts: int | None = None
        self.delays: list[float] = []

    # -- transport --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.error:
            self.error = f"connection lost: {exc}"
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.keyframe.done():
            self.keyframe.set_result(False)

    def data_received(self, data: bytes) -> None:
        try:
            self._receive(data)
        except ValueError as exc:
            self.fail(str(exc))

    def fail(self, message: str) -> None:
        if not self.error:
            self.error = message
        if self.transport is not None:
            self.transport.close()

    # -- HTTP -------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        self.bytes_total += len(data)
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 16384:
                    raise ValueError("response head too long")
                return
            head = bytes(self.head[:end]).decode("latin-1").split("\r\n")
            rest = bytes(self.head[end + 4 :])
            self.head.clear()
            self.status = int(head[0].split()[1])
            if self.status != 200:
                raise ValueError(f"HTTP {self.status}")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])
            }
            self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            self.in_body = True
            data = rest
        if self.chunked:
            self._dechunk(data)
        else:
            self._feed_flv(data)

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        pos = 0
        n = len(raw)
        while pos < n:
            if self.chunk_left > 0:
                take = min(self.chunk_left, n - pos)
                self._feed_flv(raw[pos : pos + take])
                pos += take
                self.chunk_left -= take
                if self.chunk_left == 0:
                    self.chunk_left = -2  # the CRLF after the data
                continue
            if self.chunk_left == -2:
                if n - pos < 2:
                    break
                if raw[pos : pos + 2] != b"\r\n":
                    raise ValueError("bad chunk terminator")
                pos += 2
                self.chunk_left = 0
                continue
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > 64:
                    raise ValueError("bad chunk size line")
                break
            size = int(bytes(raw[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                raise ValueError("stream ended (last chunk)")
            self.chunk_left = size
        del raw[:pos]

    # -- FLV --------------------------------------------------------------------------------

    def _feed_flv(self, data: bytes | bytearray) -> None:
        buf = self.flv
        buf += data
        pos = 0
        n = len(buf)
        if not self.flv_header:
            if n < 13:
                return
            if bytes(buf[:3]) != b"FLV":
                raise ValueError("not FLV")
            pos = _U32.unpack_from(buf, 5)[0] + 4
            self.flv_header = True
        now_ms = time.time() * 1000
        while n - pos >= 11:
            kind_size, ts_field, _, _ = _TAG.unpack_from(buf, pos)
            size = kind_size & 0xFFFFFF
            total = size + 15
            if n - pos < total:
                break
            if _U32.unpack_from(buf, pos + total - 4)[0] != size + 11:
                raise ValueError("PreviousTagSize mismatch: not a whole tag")
            self._tag(
                kind_size >> 24,
                (ts_field >> 8) | ((ts_field & 0xFF) << 24),
                buf,
                pos,
                total,
                now_ms,
            )
            pos += total
        del buf[:pos]

    def _tag(self, kind: int, ts: int, buf: bytearray, pos: int, total: int, now_ms: float) -> None:
        if self.measuring:
            self.bytes_window += total
            self.tags_window += 1
        if kind != 9:
            return
        flags, packet_type = buf[pos + 11], buf[pos + 12]
        if packet_type == 0:  # AVC sequence header
            self.seq_headers += 1
            if self.keyframes:  # re-sent mid-stream: the server skipped us to a keyframe
                self.resyncs += 1
            return
        if flags >> 4 == 1:
            self.keyframes += 1
            if not self.keyframe.done():
                self.keyframe.set_result(True)
        if self.measuring:
            self.video_window += 1
            self.delays.append(now_ms - (self.epoch_ms + ts))
            if self.last_video_ts is not None and ts - self.last_video_ts > self.gap_ms:
                self.gaps += 1
        self.last_video_ts = ts


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    target = url.path + (f"?{url.query}" if url.query else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ivcloud-bench\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    viewers: list[Viewer] = []
    t_open = time.monotonic()
    emit("connecting", viewers=args.viewers)

    async def open_one() -> None:
        viewer = Viewer(request, args.epoch_ms, 1000 / args.fps)
        viewers.append(viewer)
        try:
            await loop.create_connection(lambda: viewer, host, port)
        except OSError as exc:
            viewer.error = f"connect: {exc}"
            viewer.keyframe.set_result(False)

    for i in range(0, args.viewers, 50):  # no SYN storm: 50 at a time
        await asyncio.gather(*(open_one() for _ in range(min(50, args.viewers - i))))
    await asyncio.wait([asyncio.ensure_future(v.keyframe) for v in viewers], timeout=15)
    t_ready = time.monotonic()
    started = sum(1 for v in viewers if v.keyframe.done() and v.keyframe.result())
    emit("ready", started=started, seconds=round(t_ready - t_open, 2))
    await asyncio.sleep(args.warmup)
    for v in viewers:
        v.measuring = True
    t0 = time.monotonic()
    emit("window_start")
    await asyncio.sleep(args.seconds)
    for v in viewers:
        v.measuring = False
    t1 = time.monotonic()
    emit("window_end")
    for v in viewers:
        if v.transport is not None:
            v.transport.close()
    await asyncio.wait([v.closed for v in viewers], timeout=10)
    window = t1 - t0
    per_viewer = [
        {
            "kbit_s": round(v.bytes_window * 8 / window / 1000, 1),
            "video_fps": round(v.video_window / window, 2),
            "gaps": v.gaps,
            "resyncs": v.resyncs,
            "delay_p50_ms": pct(v.delays, 0.5),
            "delay_p99_ms": pct(v.delays, 0.99),
            "error": v.error,
        }
        for v in viewers
    ]
    rates = [p["kbit_s"] for p in per_viewer]
    delays = [d for v in viewers for d in v.delays]
    return {
        "viewers": args.viewers,
        "started": started,
        "connect_to_keyframe_s": round(t_ready - t_open, 3),
        "window": {"start": t0, "end": t1, "seconds": round(window, 3)},
        "kbit_s_min": min(rates) if rates else None,
        "kbit_s_median": statistics.median(rates) if rates else None,
        "kbit_s_max": max(rates) if rates else None,
        "video_fps_min": min(p["video_fps"] for p in per_viewer) if per_viewer else None,
        "gaps": sum(v.gaps for v in viewers),
        "resyncs": sum(v.resyncs for v in viewers),
        "viewers_with_gaps": sum(1 for v in viewers if v.gaps or v.resyncs),
        "errors": [v.error for v in viewers if v.error],
        "delay_ms": {
            "p50": pct(delays, 0.5),
            "p95": pct(delays, 0.95),
            "p99": pct(delays, 0.99),
            "max": round(max(delays), 1) if delays else None,
        },
        "per_viewer": per_viewer,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--viewers", type=int, required=True)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--epoch-ms", type=int, required=True)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args))
    with open(args.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()

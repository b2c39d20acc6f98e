"""Viewer load of the hub fan-out benchmark: N viewers of one URL, in their own process, the
same code against ivcloud and node-media-server.

    fanout_viewers.py --url http://127.0.0.1:P/live/bench.flv --viewers 100 \
        --warmup 4 --seconds 20 --epoch-ms E --out result.json [--proto http-flv]

``--proto`` picks the viewer kind: ``http-flv`` (here), ``ws-flv`` and ``ws-mp4``
(``fanout_ws.py``, over the minimal client of ``ws_client.py``). Each viewer is an
``asyncio.Protocol`` on a raw socket (no HTTP or WebSocket library: the reader must cost
little next to the servers on 2 cores). The HTTP-FLV viewer sends one ``GET``, reads the
status line and headers, undoes the chunked transfer coding, then feeds the body to the FLV
walker of ``fanout_flv.py`` (WS-FLV feeds it message payloads): every tag's
PreviousTagSize checked, so a viewer knows it got whole tags of a whole stream. Per viewer
it counts bytes and tags inside the measured window, video frames, keyframes, sequence
headers re-sent mid-stream (ivcloud's hub re-sends them when it skips a lagging viewer to
the next keyframe), video timestamp gaps over 3 frame intervals (frames that never
arrived), and per video tag the delivery delay: arrival wall time − the tag's due time
(the publisher stamps tags with ``due − epoch_ms``; same clock, same machine). WebSocket
viewers also count messages (and, for fMP4, fragments).

Phases (printed as JSON lines with CLOCK_MONOTONIC times so the orchestrator can cut its
/proc samples): connect all, wait until every viewer has a keyframe (≤ 15 s), warm up,
measure ``--seconds``, close all. Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fanout_flv import FlvWalker, ViewerBase, pct
from fanout_ws import WsFlvViewer, WsMp4Viewer

PROTOS = ("http-flv", "ws-flv", "ws-mp4")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class HttpFlvViewer(FlvWalker):
    def __init__(self, host: str, port: int, target: str, epoch_ms: int, frame_ms: float) -> None:
        super().__init__(epoch_ms, frame_ms)
        self.request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ivcloud-bench\r\n"
            "Accept: */*\r\n\r\n"
        ).encode()
        self.head = bytearray()
        self.status = 0
        self.chunked = False
        self.in_body = False
        self.raw = bytearray()  # body bytes still chunk-encoded
        self.chunk_left = 0  # bytes of the current chunk's data still to read

    # -- transport --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self._receive(data)
        except ValueError as exc:
            self.fail(str(exc))

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
            self.feed_flv(data)

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        pos = 0
        n = len(raw)
        while pos < n:
            if self.chunk_left > 0:
                take = min(self.chunk_left, n - pos)
                self.feed_flv(raw[pos : pos + take])
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


ViewerFactory = Callable[[str, int, str, int, float], ViewerBase]
VIEWERS: dict[str, ViewerFactory] = {
    "http-flv": HttpFlvViewer,
    "ws-flv": WsFlvViewer,
    "ws-mp4": WsMp4Viewer,
}


def extra_stats(per_viewer: list[dict[str, Any]]) -> dict[str, Any]:
    """Min / median of the per-protocol rates (messages, fragments) the viewers report."""
    out: dict[str, Any] = {}
    for key in ("msgs_s", "fragments_s"):
        values = [p[key] for p in per_viewer if key in p]
        if values:
            out[f"{key}_min"] = min(values)
            out[f"{key}_median"] = statistics.median(values)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    default_port = 443 if url.scheme in ("https", "wss") else 80
    host, port = url.hostname or "127.0.0.1", url.port or default_port
    target = url.path + (f"?{url.query}" if url.query else "")
    make = VIEWERS[args.proto]
    loop = asyncio.get_running_loop()
    viewers: list[ViewerBase] = []
    t_open = time.monotonic()
    emit("connecting", viewers=args.viewers, proto=args.proto)

    async def open_one() -> None:
        viewer = make(host, port, target, args.epoch_ms, 1000 / args.fps)
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
        v.stop()
    await asyncio.wait([v.closed for v in viewers], timeout=10)
    window = t1 - t0
    per_viewer = [v.summary(window) for v in viewers]
    rates = [p["kbit_s"] for p in per_viewer]
    delays = [d for v in viewers for d in v.delays]
    return {
        "proto": args.proto,
        "viewers": args.viewers,
        "started": started,
        "connect_to_keyframe_s": round(t_ready - t_open, 3),
        "window": {"start": t0, "end": t1, "seconds": round(window, 3)},
        "kbit_s_min": min(rates) if rates else None,
        "kbit_s_median": statistics.median(rates) if rates else None,
        "kbit_s_max": max(rates) if rates else None,
        "video_fps_min": min(p["video_fps"] for p in per_viewer) if per_viewer else None,
        **extra_stats(per_viewer),
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
    ap.add_argument("--proto", choices=PROTOS, default="http-flv")
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

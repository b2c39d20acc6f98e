"""Publisher process of the hub fan-out benchmark: replays the recording (``fanout_media``)
in real time into ivcloud's hub or into node-media-server, over a WebSocket either way.

    fanout_publisher.py --recording R --epoch-ms E nms --url ws://127.0.0.1:P/live/bench.flv
    fanout_publisher.py --recording R --epoch-ms E ivcloud --mqtt-port M --product P \
        --device D --secret S

* ``nms``: a WS-FLV publisher (subprotocol ``publisher``, NMS v4's WebSocket push), started
  at once.
* ``ivcloud``: a real device — the SDK's camera simulator online over MQTT — whose
  ``stream_push_start`` handler opens the signed publish URL the cloud sends and replays the
  recording into it (what ``device/av/pusher.py`` does with a live encoder); the push runs
  until ``stream_push_stop`` or the hub closes it. Demand-driven, as in production: nothing
  is pushed until the first viewer asks.

Both send one WebSocket message per FLV tag with the WebSocket options of the device
pusher (no compression). Prints JSON lines (``ready``, ``push_started``, ``push_ended``)
and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_media import Replayer, Tape
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from ivcloud.device import CameraSimulator
from ivcloud.device.video_link import VideoResult
from ivcloud.logs import configure
from ivcloud.protocol import video_signal as vs


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def replay_into(ws: ClientConnection, tape: Tape, epoch_ms: int, label: str) -> None:
    replayer = Replayer(tape, epoch_ms)
    emit("push_started", target=label)
    try:
        await replayer.run(ws.send)
    except ConnectionClosed:
        pass
    finally:
        emit(
            "push_ended",
            target=label,
            sent_bytes=replayer.sent_bytes,
            sent_tags=replayer.sent_tags,
            late_max_ms=round(replayer.late_max_ms, 1),
            close_code=ws.close_code,
        )


async def open_ws(url: str, subprotocols: list[Subprotocol] | None = None) -> ClientConnection:
    return await connect(
        url, open_timeout=5, compression=None, max_size=1 << 20, subprotocols=subprotocols
    )


async def run_nms(args: argparse.Namespace, tape: Tape, stop: asyncio.Event) -> None:
    ws = await open_ws(args.url, [Subprotocol("publisher")])
    emit("ready", target="nms")
    task = asyncio.create_task(replay_into(ws, tape, args.epoch_ms, "nms"))
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await ws.close()


async def run_ivcloud(args: argparse.Namespace, tape: Tape, stop: asyncio.Event) -> None:
    sim = CameraSimulator(
        host=args.mqtt_host,
        port=args.mqtt_port,
        product_id=args.product,
        device_name=args.device,
        secret=args.secret,
        reconnect_first=0.1,
    )
    pushes: dict[tuple[int, str], tuple[ClientConnection, asyncio.Task[None]]] = {}

    async def end(key: tuple[int, str]) -> None:
        old = pushes.pop(key, None)
        if old is not None:
            ws, task = old
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ws.close()

    async def on_start(msg: vs.SignalMessage) -> VideoResult:
        req = vs.parse_push_start(msg)
        key = (req.channel, req.quality)
        await end(key)
        try:
            ws = await open_ws(req.url)
        except Exception as exc:  # reported to the cloud, as the device pusher does
            return VideoResult(vs.FAILED, f"push connection failed: {exc}"[:200])
        task = asyncio.create_task(replay_into(ws, tape, args.epoch_ms, "ivcloud"))
        pushes[key] = (ws, task)
        return VideoResult(vs.OK, "pushing")

    async def on_stop(msg: vs.SignalMessage) -> VideoResult:
        req = vs.parse_push_stop(msg)
        await end((req.channel, req.quality))
        return VideoResult(vs.OK, "stopped")

    # Replace the simulator's encoder-backed pusher with the recording's replay.
    sim.device.on_video(vs.PUSH_START, on_start)
    sim.device.on_video(vs.PUSH_STOP, on_stop)
    if not await sim.start(wait_online=20):
        raise SystemExit("device did not come online")
    emit("ready", target="ivcloud")
    await stop.wait()
    for key in list(pushes):
        await end(key)
    await sim.stop()


async def main_async(args: argparse.Namespace) -> None:
    configure("warning")
    tape = Tape.load(Path(args.recording))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.mode == "nms":
        await run_nms(args, tape, stop)
    else:
        await run_ivcloud(args, tape, stop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recording", required=True)
    ap.add_argument("--epoch-ms", type=int, required=True)
    sub = ap.add_subparsers(dest="mode", required=True)
    nms = sub.add_parser("nms")
    nms.add_argument("--url", required=True)
    ivc = sub.add_parser("ivcloud")
    ivc.add_argument("--mqtt-host", default="127.0.0.1")
    ivc.add_argument("--mqtt-port", type=int, required=True)
    ivc.add_argument("--product", required=True)
    ivc.add_argument("--device", required=True)
    ivc.add_argument("--secret", required=True)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()

"""The camera simulator of ``live_view.py`` with SD recording chosen explicitly — what
``ivcloud sim camera`` runs (the CLI has no switch for it):

    live_camera.py --product P --device D --secret S --port M [--host H] --record on|off

Recording on: the camera encodes all the time (a viewer joins a running encoder, which
is asked for a keyframe); off: it encodes only while someone watches, so a hub "cold" start
also starts the encoder. The SD card goes to a temporary directory. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from ivcloud.device.simulators import run_simulator
from ivcloud.logs import configure


async def main_async(args: argparse.Namespace) -> None:
    configure("info")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_simulator(
        "camera",
        host=args.host,
        port=args.port,
        product_id=args.product,
        device_name=args.device,
        secret=args.secret,
        stop=stop,
        record=args.record == "on",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--product", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", choices=("on", "off"), required=True)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()

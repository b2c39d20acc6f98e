"""Run ``ivcloud serve`` on uvloop instead of the stock asyncio loop (bench experiment only).

    .venv/bin/python bench/serve_uvloop.py serve --data-dir D ...   # same arguments as ivcloud

Why: in the hub fan-out profile (docs/benchmarks.md, "Live view"), about half of the server's
busy time is ``_SelectorSocketTransport.write`` — one ``send()`` per FLV tag per viewer
through the pure-Python transport. uvloop's transports do the same write in C. This wrapper
installs uvloop's event loop policy, so the unchanged CLI's ``asyncio.run`` gets a uvloop
loop; nothing in ``src/`` changes.
"""

from __future__ import annotations

import asyncio
import sys


def main() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from ivcloud.cli import main as ivcloud_main

    sys.argv = ["ivcloud", *sys.argv[1:]]
    ivcloud_main()


if __name__ == "__main__":
    main()

"""The bare-Starlette reference for ``bench/app_api.py``: one route, a small JSON answer, served
exactly the way ``ivcloud serve`` serves its HTTP app.

    .venv/bin/python bench/app_bare_server.py --port-file /tmp/port [--host 127.0.0.1] [--nodelay]

Same uvicorn settings as :meth:`ivcloud.app.Ivcloud.start` (``uvicorn.Config(app,
log_config=None, access_log=False, lifespan="off", ws="websockets-sansio")``, served with
``Server.serve(sockets=[sock])`` inside ``asyncio.run``: the stock asyncio loop, httptools
parser, the same ``listen(1024)`` socket).  The route is the App API's path and method; it
reads the request body (as every App API request does) and answers a constant
``{"code":0,"msg":"","data":{"RequestId":"bare"}}``: no JSON parsing, no routing table,
no database — the floor any framework-level App API endpoint stands on."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BODY = {"code": 0, "msg": "", "data": {"RequestId": "bare"}}


async def tokenapi(request: Request) -> Response:
    await request.body()
    return JSONResponse(BODY)


def build_app() -> Starlette:
    return Starlette(routes=[Route("/api/exploreropen/tokenapi", tokenapi, methods=["POST"])])


def bind_socket(host: str, port: int, nodelay: bool = False) -> socket.socket:
    """As ``ivcloud.app.bind_socket`` (protocol 0: the stock asyncio loop then leaves Nagle on
    for accepted connections); ``nodelay`` creates it with IPPROTO_TCP, so asyncio sets
    TCP_NODELAY on them (the ``--server-nodelay`` experiment, see serve_nodelay.py)."""
    proto = socket.IPPROTO_TCP if nodelay else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def main(host: str, port: int, port_file: Path, nodelay: bool) -> None:
    sock = bind_socket(host, port, nodelay)
    config = uvicorn.Config(
        build_app(), log_config=None, access_log=False, lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.01)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"http_url": f"http://{host}:{sock.getsockname()[1]}"}))
    tmp.replace(port_file)
    await task


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="bare Starlette reference server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", type=Path, required=True)
    ap.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on accepted sockets")
    args = ap.parse_args()
    asyncio.run(main(args.host, args.port, args.port_file, args.nodelay))

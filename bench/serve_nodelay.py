"""Run ``ivcloud serve`` with TCP_NODELAY on its HTTP connections (bench experiment only).

    .venv/bin/python bench/serve_nodelay.py serve --data-dir D ...   # same arguments as ivcloud

Why: ``ivcloud.app.bind_socket`` creates the HTTP listener as ``socket.socket(family,
SOCK_STREAM)`` — protocol number 0.  Accepted sockets inherit ``proto == 0``, and the stock
asyncio loop only sets ``TCP_NODELAY`` on sockets whose ``proto == IPPROTO_TCP``
(``asyncio.base_events._set_nodelay``), so ivcloud's HTTP connections run with Nagle's
algorithm on.  uvicorn's httptools protocol writes a response's head and body in two
``transport.write`` calls; with Nagle, the body waits for the client's (delayed, up to 40 ms)
ACK of the head whenever the client talks back-to-back on a keep-alive connection.

This wrapper replaces ``ivcloud.app.bind_socket`` with the same function creating the socket
with ``IPPROTO_TCP`` (so asyncio sets TCP_NODELAY on every accepted connection), then runs
the unchanged CLI.  Nothing in ``src/`` changes.
"""

from __future__ import annotations

import socket
import sys


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def main() -> None:
    import ivcloud.app

    ivcloud.app.bind_socket = bind_socket  # looked up as a module global by Ivcloud.start
    from ivcloud.cli import main as ivcloud_main

    sys.argv = ["ivcloud", *sys.argv[1:]]
    ivcloud_main()


if __name__ == "__main__":
    main()

"""The XP2P client's local HTTP proxy: what ``delegate_http_flv`` hands to a player.

Tencent's app SDKs serve a device's streams to the app's own player over a local HTTP
server, so any player that opens a URL (ffplay, VLC, a browser, PyAV) shows P2P video
unchanged. This is that server:

    GET http://127.0.0.1:<port>/<token>/<ProductId>/<DeviceName>/ipc.flv?action=live&channel=0&quality=high
    GET …/ipc.flv?action=playback&channel=0&start_time=<unix s>&end_time=<unix s>
    GET …/ipc.flv?action=download&channel=0&file_name=<name>&offset=<bytes>

- ``200``, ``Transfer-Encoding: chunked`` (a plain body until close for HTTP/1.0 players),
  ``Content-Type: video/x-flv`` (``application/octet-stream`` for downloads),
  ``X-XP2P-Path: direct|turn|hub`` naming the path that serves it. Live goes over P2P or
  the hub (the service's race); playback and download only over P2P.
- Failures before the body: an HTTP status with the XP2P code in ``X-XP2P-Error`` and the
  body ``{"code":-1010,"name":"XP2P_ERR_DETECT_NOTREADY","message":"p2p detect is not
  ready, state:2"}`` (503 without the tunnel; 400 a bad query; 404 an unknown path; the
  device's or hub's refusal as :mod:`~ivcloud.client.xp2p_upstream` maps it).
- The player disconnecting stops the stream at its source (the device's P2P stream is
  cancelled, the hub viewer leaves); ``stop_service`` ends the service's responses with
  the terminating chunk; a source failing mid-stream aborts the connection (no
  terminating chunk: the player sees a truncated body, not a clean end).
- Only ``127.0.0.1``, a random port, and a random 128-bit token per started service in the
  path: another local user cannot guess a URL, and a stopped service's URLs are dead.
  Tokens and URLs are never logged.

A player that reads slowly slows the source down instead of growing memory: the socket's
write buffer is small and the next chunk is read only once it drained (the P2P stream's
flow control then stops the device; the hub skips the viewer to the next keyframe).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import socket
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import structlog

from ivcloud.client.xp2p_errors import (
    Xp2pError,
    Xp2pParamError,
    Xp2pProxyError,
    Xp2pServiceStateError,
    logged,
    seed_line,
)
from ivcloud.client.xp2p_upstream import Upstream
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.xp2p import parse_request
from ivcloud.protocol.xp2p_types import (
    DownloadRequest,
    LiveRequest,
    PlaybackRequest,
    Xp2pRequestError,
)

__all__ = ["BadHead", "LocalProxy", "ProxyTarget", "parse_head"]

log = structlog.get_logger("ivcloud.client.xp2p")

HEAD_LIMIT = 8 * 1024  # request line + headers
HEAD_TIMEOUT_S = 10.0
WRITE_HIGH_WATER = 64 * 1024  # asyncio's buffer per player before drain() waits
SEND_BUFFER = 64 * 1024  # the kernel's (which doubles it)
FINAL_DRAIN_S = 2.0
MAX_CONNECTIONS = 256
_STOPPED = Xp2pServiceStateError(codes.XP2P_ERR_SERVICE_NOTRUN, "the service was stopped")


class BadHead(Exception):
    """A request head the proxy does not serve; ``status`` 400 or 405."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> tuple[str, str, str, str]:
    """The request line of an HTTP/1.x request head → (method, path, query, version).
    Only ``GET``/``HEAD`` of an origin-form target; :class:`BadHead` (only) otherwise.
    Header fields are not needed and not read."""
    line = head.split(b"\r\n", 1)[0]
    if not line.isascii() or any(b < 0x20 or b == 0x7F for b in line):
        raise BadHead(400, "the request line must be printable ASCII")
    parts = line.decode("ascii").split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadHead(400, "not an HTTP/1.x request line")
    method, target, version = parts
    if method not in ("GET", "HEAD"):
        raise BadHead(405, "only GET and HEAD")
    if not target.startswith("/"):
        raise BadHead(400, "the target must be a path")
    path, _, query = target.partition("?")
    return method, path, query.partition("#")[0], version


class ProxyTarget(Protocol):
    """What the proxy needs of a started service."""

    device_id: str

    async def open_live(self, text: str, channel: int, quality: str) -> Upstream: ...

    async def open_p2p(self, text: str) -> Upstream: ...


@dataclass
class _Route:
    target: ProxyTarget
    resource: str  # "<quoted device id>/ipc.flv"
    stops: set[asyncio.Event] = field(default_factory=set)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)


class LocalProxy:
    """One local HTTP server for all of a client's services (each has its own token)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._routes: dict[str, _Route] = {}
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (idempotent); −1002 ``proxy listen failed!`` when it cannot."""
        if self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=HEAD_LIMIT
            )
        except OSError as exc:
            raise logged(
                Xp2pProxyError(
                    codes.XP2P_ERR_PROXY_INIT,
                    f"{seed_line(codes.XP2P_ERR_PROXY_INIT, 1)} ({exc.strerror})",
                )
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("xp2p proxy listening", host=self.host, port=self.port)

    def add(self, target: ProxyTarget) -> str:
        """Route a service; its base URL (``…/<token>/<device id>/``)."""
        token = secrets.token_urlsafe(16)
        device = quote(target.device_id, safe="/")
        self._routes[token] = _Route(target, f"{device}/ipc.flv")
        return f"http://{self.host}:{self.port}/{token}/{device}/"

    async def remove(self, base_url: str) -> None:
        """Unroute a service and end its open responses (cleanly, terminating chunk)."""
        token = urlsplit(base_url).path.split("/")[1]
        route = self._routes.pop(token, None)
        if route is None:
            return
        for stop in route.stops:
            stop.set()
        if route.handlers:
            await asyncio.wait(route.handlers, timeout=5.0)

    async def close(self) -> None:
        for token in list(self._routes):
            await self.remove(f"/{token}/")
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    # -- one connection ----------------------------------------------------------------------

    def _route(self, path: str) -> _Route | None:
        token, _, resource = path.lstrip("/").partition("/")
        for known, route in self._routes.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return route if resource == route.resource else None
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # else loopback autotuning lets a stalled player hold megabytes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except TimeoutError:
            pass  # a client that never finished its request
        except Exception:
            log.exception("xp2p proxy request failed")  # a bug: never the player's fault
            writer.transport.abort()
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        try:
            method, path, query, version = parse_head(head)
        except BadHead as exc:
            await _reply_error(writer, exc.status, None, str(exc))
            return
        route = self._route(path)
        if route is None:
            await _reply_error(writer, 404, None, "no such service or resource")
            return
        text = f"ipc.flv?{query}"
        try:
            request = parse_request(text)
            if not isinstance(request, LiveRequest | PlaybackRequest | DownloadRequest):
                raise Xp2pRequestError("not a stream request")
        except Xp2pRequestError as exc:
            error = logged(
                Xp2pParamError(codes.XP2P_ERR_INIT_PRM, f"bad stream request: {exc}"),
                device_id=route.target.device_id,
            )
            await _reply_error(writer, 400, error, error.message)
            return
        kind = "application/octet-stream" if isinstance(request, DownloadRequest) else "video/x-flv"
        if method == "HEAD":
            await _reply_head(writer, 200, [("Content-Type", kind)])
            return
        handler = asyncio.current_task()
        assert handler is not None
        route.handlers.add(handler)
        try:
            if isinstance(request, LiveRequest):
                upstream_call = route.target.open_live(text, request.channel, request.quality)
            else:
                upstream_call = route.target.open_p2p(text)
            await self._relay(reader, writer, route, upstream_call, kind, version)
        finally:
            route.handlers.discard(handler)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        route: _Route,
        upstream_call: Coroutine[Any, Any, Upstream],
        kind: str,
        version: str,
    ) -> None:
        stop = asyncio.Event()
        route.stops.add(stop)
        gone = asyncio.create_task(_until_eof(reader))
        stopped = asyncio.create_task(stop.wait())
        opening = asyncio.create_task(upstream_call)
        upstream: Upstream | None = None
        try:
            await asyncio.wait({opening, gone, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():  # the player left or the service stopped first
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
                if not gone.done():
                    await _reply_error(writer, 404, _STOPPED, _STOPPED.message)
                return
            try:
                upstream = opening.result()
            except Xp2pError as exc:
                await _reply_error(writer, exc.http_status, exc, exc.message)
                return
            chunked = version == "HTTP/1.1"
            headers = [("Content-Type", kind), ("X-XP2P-Path", upstream.path)]
            if chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            await _reply_head(writer, 200, headers)
            pump = asyncio.create_task(_pump(upstream, writer, chunked))
            await asyncio.wait({pump, gone, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done() and not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                return
            if not pump.done():  # stop_service: end the body cleanly
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                clean = True
            else:
                clean = pump.exception() is None
            if clean and chunked:
                writer.write(b"0\r\n\r\n")
                try:  # a player that stopped reading does not hold stop_service up
                    await asyncio.wait_for(writer.drain(), FINAL_DRAIN_S)
                except TimeoutError:
                    clean = False
            if not clean:
                writer.transport.abort()
        finally:
            route.stops.discard(stop)
            for task in (gone, stopped):
                task.cancel()
            if upstream is not None:
                await upstream.aclose()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Returns when the player closes its side (anything it sends meanwhile is dropped)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass


async def _pump(upstream: Upstream, writer: asyncio.StreamWriter, chunked: bool) -> None:
    async for chunk in upstream.chunks():
        if not chunk:
            continue
        if chunked:
            writer.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            writer.write(chunk)
        await writer.drain()


async def _reply_head(
    writer: asyncio.StreamWriter, status: int, headers: Sequence[tuple[str, str]]
) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += ["Cache-Control: no-store", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1"))
    await writer.drain()


async def _reply_error(
    writer: asyncio.StreamWriter, status: int, error: Xp2pError | None, message: str
) -> None:
    doc = error.to_json() if error is not None else {"code": None, "message": message}
    body = json.dumps(doc, ensure_ascii=False).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if error is not None:
        headers.append(("X-XP2P-Error", str(error.code)))
    await _reply_head(writer, status, headers)
    writer.write(body)
    await writer.drain()

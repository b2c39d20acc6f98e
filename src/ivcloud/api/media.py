"""Media endpoints of the stream hub (plain Starlette routes: long-lived streaming responses
have no use for FastAPI's request/response machinery).

* ``WS  /media/v1/publish/{P}/{D}?channel&quality&expires&sign`` — a device pushes FLV
  (binary messages) to the URL it got in ``stream_push_start``.
* ``GET /media/v1/live/{P}/{D}.flv?channel&quality&uid&expires&sign`` — HTTP-FLV (chunked).
* ``WS  /media/v1/live/{P}/{D}.flv?…`` — WS-FLV: binary messages of whole FLV tags (one or more).
* ``WS  /media/v1/live/{P}/{D}.mp4?…`` — WS-fMP4: a JSON ``init`` text message, the init
  segment, then fragments (binary).

Every URL is signed (viewer URLs per user, minted by ``IvcloudDescribeStreamUrls``); a
missing, tampered or expired signature is 403 (a WebSocket handshake is refused with 403).
Viewer access is checked again when a URL is opened, so a user who lost the device since
the URL was minted is refused too. Errors map once, here: HTTP status / WebSocket close
codes of docs/live-video.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from starlette.datastructures import QueryParams
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ivcloud.api.direct_writer import HTTP_END, DirectWriter, http_body, websocket_message
from ivcloud.media.hub import (
    CLOSE_BAD_STREAM,
    CLOSE_DEVICE_OFFLINE,
    CLOSE_PUBLISHER_IDLE,
    CLOSE_TIMEOUT,
    CLOSE_UNAVAILABLE,
    HubError,
    PublisherSession,
    ViewerKind,
    ViewerSession,
)
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.protocol.signing import BadSignedUrl
from ivcloud.protocol.stream_urls import LIVE_PREFIX, PUBLISH_PREFIX, StreamKey
from ivcloud.services.access import Access
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, DeviceTimeout, ServiceError

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud

log = structlog.get_logger("ivcloud.api.media")

_LIVE = re.compile("^" + re.escape(LIVE_PREFIX) + r"/([^/]+)/([^/]+)\.(flv|mp4)$")
_CLOSE_REASON_MAX = 120  # a close frame's reason is at most 123 bytes
#: A publisher silent this long is dropped (its viewers end).
PUBLISH_IDLE_S = 15.0
_CLOSE_TIMEOUT_S = 2.0


_FLV_HEADERS = [
    (b"content-type", b"video/x-flv"),
    (b"cache-control", b"no-store"),
    (b"access-control-allow-origin", b"*"),
]


class Denied(Exception):
    """Unsigned, tampered, expired, or the user may not see the device (403)."""


def _status_of(exc: Exception) -> tuple[int, int, str]:
    """(HTTP status, WebSocket close code, error code) of an open_viewer failure."""
    if isinstance(exc, DeviceOffline):
        return 409, CLOSE_DEVICE_OFFLINE, "FailedOperation.DeviceOffline"
    if isinstance(exc, DeviceTimeout):
        return 504, CLOSE_TIMEOUT, "FailedOperation.DeviceTimeout"
    if isinstance(exc, HubError):
        return 503, exc.code, "FailedOperation"
    return 503, CLOSE_UNAVAILABLE, "FailedOperation"


def _json_error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def _http_reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"access-control-allow-origin", b"*"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _race(*tasks: asyncio.Task[Any]) -> None:
    """Wait until the first of ``tasks`` finishes; cancel and reap the others (also when
    the caller itself is cancelled)."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.create_task(coro)


def _outcome(task: asyncio.Task[Any]) -> tuple[Any, BaseException | None]:
    """``(result, exception)`` of a finished task; a cancelled one is ``(None, None)``."""
    if task.cancelled():
        return None, None
    exc = task.exception()
    return (None, exc) if exc is not None else (task.result(), None)


class _RedactSignatures(logging.Filter):
    """uvicorn logs every WebSocket handshake with its query string ("WebSocket <path?query>
    [accepted]"); a stream URL's ``sign`` is a credential, so it is masked there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "sign=" in a for a in record.args
        ):
            record.args = tuple(
                _SIGN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


_SIGN = re.compile(r"((?:^|[?&])sign=)[^&\s]*")
_REDACT = _RedactSignatures()


class MediaEndpoints:
    def __init__(self, instance: Ivcloud) -> None:
        self._instance = instance
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _REDACT not in uvicorn_log.filters:
            uvicorn_log.addFilter(_REDACT)

    def routes(self) -> list[BaseRoute]:
        """The publisher's WebSocket route (viewers are served by :meth:`edge`)."""
        return [WebSocketRoute(PUBLISH_PREFIX + "/{product_id}/{device_name}", self.publish)]

    # -- authorization ----------------------------------------------------------------------

    async def authorize(
        self, path_params: dict[str, Any], fmt: ViewerKind, query: QueryParams
    ) -> tuple[DeviceRecord, StreamKey]:
        instance = self._instance
        pid, dn = str(path_params["product_id"]), str(path_params["device_name"])
        try:
            key, uid = instance.streams.verify_viewer(pid, dn, fmt, query)
            user = await instance.users.get(uid)
            rec = await instance.access.require_device(user, pid, dn, Access.SHARED)
        except (BadSignedUrl, ServiceError) as exc:
            raise Denied(str(exc) if isinstance(exc, BadSignedUrl) else "no access") from None
        return rec, key

    # -- HTTP-FLV ---------------------------------------------------------------------------

    def edge(self, fallback: ASGIApp) -> ASGIApp:
        """Viewer URLs (``GET``/``HEAD …/{D}.flv``, WebSocket ``…/{D}.flv`` and ``.mp4``)
        straight to their handlers, everything else to ``fallback``. Viewers bypass
        Starlette's routing and middleware on purpose: their writes (one per viewer per
        video frame, see :mod:`ivcloud.api.direct_writer`) go to the server's own ``send``,
        not through every middleware's ``send`` wrapper."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            kind = scope["type"]
            matched = _LIVE.match(scope["path"]) if kind in ("http", "websocket") else None
            if matched is None or (kind == "http" and matched[3] != "flv"):
                await fallback(scope, receive, send)
                return
            params = {"product_id": matched[1], "device_name": matched[2]}
            scope = {**scope, "path_params": params}
            if kind == "websocket":
                fmt: ViewerKind = "flv" if matched[3] == "flv" else "mp4"
                await self.ws_viewer(WebSocket(scope, receive, send), fmt, send)
            elif scope["method"] in ("GET", "HEAD"):
                await self.http_flv(scope, receive, send)
            else:
                await _http_reply(
                    send, 405, _json_error("UnsupportedOperation", "GET or HEAD only")
                )

        return app

    async def http_flv(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            rec, key = await self.authorize(
                scope["path_params"], "flv", QueryParams(scope["query_string"])
            )
        except Denied as exc:
            await _http_reply(send, 403, _json_error("UnauthorizedOperation", str(exc)))
            return
        if scope["method"] == "HEAD":  # the URL is good; do not start a stream for it
            await send({"type": "http.response.start", "status": 200, "headers": _FLV_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        hub = self._instance.hub
        opener, gone = _task(hub.open_viewer(rec, key, "flv")), _task(_wait_disconnect(receive))
        await _race(opener, gone)
        session, error = _outcome(opener)
        if error is not None:
            if not isinstance(error, ServiceError | HubError):
                raise error
            status, _, code = _status_of(error)
            await _http_reply(send, status, _json_error(code, str(error)))
            return
        if not isinstance(session, ViewerSession):
            return  # the client left while the device was being asked
        if gone.done() and not gone.cancelled():
            hub.close_viewer(session)
            return
        writer = DirectWriter(session, send, http_body, HTTP_END)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _FLV_HEADERS})
            writer.start()
            await _race(
                _task(writer.finished.wait()),
                _task(_wait_disconnect(receive)),
                _task(session.aborted.wait()),
            )
        finally:
            writer.close()
            hub.close_viewer(session)

    # -- WebSocket viewers ------------------------------------------------------------------

    async def ws_viewer(self, ws: WebSocket, fmt: ViewerKind, send: Send) -> None:
        """A WebSocket viewer; ``send`` is the server's own, for :class:`DirectWriter`."""
        try:
            rec, key = await self.authorize(ws.path_params, fmt, ws.query_params)
        except Denied:
            await ws.close(1008)  # before accept: the handshake is refused with HTTP 403
            return
        await ws.accept()
        hub = self._instance.hub
        opener, gone = _task(hub.open_viewer(rec, key, fmt)), _task(_ws_closed(ws))
        await _race(opener, gone)
        session, error = _outcome(opener)
        if error is not None:
            if not isinstance(error, ServiceError | HubError):
                raise error
            _, close_code, _ = _status_of(error)
            await _close(ws, close_code, str(error))
            return
        if not isinstance(session, ViewerSession):
            return  # the client left while the device was being asked
        if gone.done() and not gone.cancelled():
            hub.close_viewer(session)
            return
        writer = DirectWriter(session, send, websocket_message, None)
        try:
            writer.start()
            await _race(
                _task(writer.finished.wait()),
                _task(_ws_closed(ws)),
                _task(session.aborted.wait()),
            )
        finally:
            writer.close()
            hub.close_viewer(session)
        viewer = session.viewer
        if viewer.ended and not session.aborted.is_set():
            await _close(ws, viewer.end_code, viewer.end_reason)

    # -- publisher --------------------------------------------------------------------------

    async def publish(self, ws: WebSocket) -> None:
        instance = self._instance
        pid, dn = str(ws.path_params["product_id"]), str(ws.path_params["device_name"])
        try:
            key = instance.streams.verify_publisher(pid, dn, ws.query_params)
        except BadSignedUrl as exc:
            log.info("publish_refused", product_id=pid, device_name=dn, error=str(exc))
            await ws.close(1008)  # handshake refused with HTTP 403
            return
        await ws.accept()
        try:
            session = instance.hub.open_publisher(key)
        except HubError as exc:
            await _close(ws, exc.code, str(exc))
            return
        code, reason = CLOSE_BAD_STREAM, ""
        try:
            pump = _task(self._pump(ws, session))
            await _race(pump, _task(session.ended.wait()))
            outcome, _ = _outcome(pump)
            if isinstance(outcome, tuple):
                code, reason = outcome
        finally:
            instance.hub.close_publisher(session, reason or "publisher disconnected")
        if session.ended.is_set() and not reason:
            code, reason = session.end_code, session.end_reason
        if code:
            await _close(ws, code, reason)

    async def _pump(self, ws: WebSocket, session: PublisherSession) -> tuple[int, str]:
        """Publisher messages → hub, until the socket closes (0), sends something that is
        not FLV (4400) or nothing at all for ``PUBLISH_IDLE_S`` (4408: a live camera sends
        frames many times a second; a silent one would keep its viewers waiting)."""
        hub = self._instance.hub
        while True:
            try:
                async with asyncio.timeout(PUBLISH_IDLE_S):
                    message = await ws.receive()
            except TimeoutError:
                return CLOSE_PUBLISHER_IDLE, "no data from the publisher"
            if message["type"] == "websocket.disconnect":
                return 0, "publisher disconnected"
            data = message.get("bytes")
            if data is None:
                return CLOSE_BAD_STREAM, "binary FLV messages only"
            try:
                hub.publish(session, data)
            except MediaFormatError as exc:
                log.info("publish_bad_stream", stream=str(session.key), error=str(exc))
                return CLOSE_BAD_STREAM, f"bad FLV: {exc}"


async def _ws_closed(ws: WebSocket) -> None:
    """Read (and ignore) what a viewer sends until it closes."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """Close if the socket still takes a frame, bounded: a peer that stopped reading
    cannot take the close frame either."""
    text = reason.encode()[:_CLOSE_REASON_MAX].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, text), _CLOSE_TIMEOUT_S)

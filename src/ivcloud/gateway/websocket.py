"""MQTT over WebSocket (path ``/mqtt``, subprotocol ``mqtt``) on the same session logic.

WebSocket is a message stream, not a byte stream, and ``websockets`` sends asynchronously,
so this adapter gives the session a synchronous :class:`~ivcloud.gateway.session.Link`: writes
go to a queue drained by one writer task per connection.  Reading applies backpressure by not
taking the next frame until the session has finished the previous one's handlers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

if TYPE_CHECKING:
    from ivcloud.gateway.server import MqttGateway
    from ivcloud.gateway.session import Session

WS_PATH = "/mqtt"
# "mqtt" is what MQTT 3.1.1 clients offer; Eclipse Paho (Java/JS) offers "mqttv3.1" for 3.1.
_SUBPROTOCOLS = (Subprotocol("mqtt"), Subprotocol("mqttv3.1"))


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    for proto in _SUBPROTOCOLS:
        if proto in offered:
            return proto
    if offered:
        raise NegotiationError("MQTT subprotocol required")
    return None  # some embedded clients send no Sec-WebSocket-Protocol at all: tolerate


def _process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] != WS_PATH:
        return connection.respond(404, "Not Found\n")
    return None


class _WsLink:
    __slots__ = ("_buffered", "_closed", "_gw", "_out", "_wake", "session", "ws")

    def __init__(self, ws: ServerConnection, gateway: MqttGateway) -> None:
        self.ws = ws
        self._gw = gateway
        self._out: deque[bytes] = deque()
        self._buffered = 0
        self._wake = asyncio.Event()
        self._closed = False
        self.session: Session | None = None

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._out.append(data)
        self._buffered += len(data)
        self._wake.set()
        session = self.session
        if self._buffered > self._gw.write_buffer_limit and session and not session.congested:
            session.set_congested(True)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def abort(self) -> None:
        self._closed = True
        self._out.clear()
        self.ws.transport.abort()

    def pause_reading(self) -> None:
        """Nothing to do: the reading loop awaits the session before taking a new frame."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""

    async def run_writer(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._out:
                    data = self._out.popleft()
                    self._buffered -= len(data)
                    await ws.send(data)
                    session = self.session
                    low_water = self._gw.write_buffer_limit // 2
                    if session and session.congested and self._buffered < low_water:
                        session.set_congested(False)
                if self._closed:
                    break
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            await ws.close()


async def _serve_connection(gateway: MqttGateway, ws: ServerConnection) -> None:
    link = _WsLink(ws, gateway)
    addr = ws.remote_address
    peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
    session = link.session = gateway.open_session(link, peer, "ws")
    writer = asyncio.get_running_loop().create_task(link.run_writer())
    try:
        async for message in ws:
            if isinstance(message, str):
                session.log.warning("gateway.protocol_violation", error="text WebSocket frame")
                session.close("protocol violation")
                break
            session.feed(message)
            busy = session.busy_task
            if busy is not None:
                await asyncio.wait((busy,))
            if session.closing:
                break
    except ConnectionClosed:
        pass
    finally:
        session.close(session.close_reason or "connection lost")
        await writer
        session.connection_lost()


async def serve_websocket(gateway: MqttGateway, host: str, port: int) -> Server:
    async def handler(ws: ServerConnection) -> None:
        await _serve_connection(gateway, ws)

    return await serve(
        handler,
        host,
        port,
        subprotocols=list(_SUBPROTOCOLS),
        select_subprotocol=_select_subprotocol,
        process_request=_process_request,
        compression=None,  # MQTT payloads are small JSON; deflate state costs ~64 KiB/conn
        ping_interval=None,  # MQTT keep-alive already covers liveness
        max_size=gateway.max_packet_size + 8,
        open_timeout=gateway.connect_timeout,
        reuse_address=True,
    )


__all__ = ["WS_PATH", "serve_websocket"]

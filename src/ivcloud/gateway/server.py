"""The device-facing MQTT server: listeners, the ClientId registry and delivery.

Built on asyncio ``Protocol``/``Transport`` rather than streams: a ``data_received`` callback
decodes and handles packets without a reader task per connection, which matters at 10k
connections (no idle coroutine frames) and per message (no stream buffer copy, no future per
read).  Everything per-connection lives in :class:`~ivcloud.gateway.session.Session`.

Delivery (:meth:`MqttGateway.publish`) is a dict lookup by ClientId plus a lookup in that
session's subscriptions, so its cost does not depend on how many devices are connected.
A gateway sub-device (spec §6.2) is reached through its gateway's connection
(:class:`~ivcloud.gateway.subdevices.SubDeviceRoutes`, one more lookup for those only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, cast

import structlog

from ivcloud.gateway.contracts import DeviceHandler, DeviceIdentity
from ivcloud.gateway.session import Link, Session
from ivcloud.gateway.subdevices import SubDeviceRoutes
from ivcloud.protocol.mqtt.reader import PacketReader

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger
    from websockets.asyncio.server import Server as WsServer

__all__ = ["MqttGateway"]

_STOP_GRACE: Final = 2.0  # seconds a closing connection may take to flush before abort


class _TcpLink(asyncio.Protocol):
    """asyncio protocol for one TCP connection; also the session's :class:`Link`."""

    __slots__ = ("_gw", "session", "transport")

    def __init__(self, gateway: MqttGateway) -> None:
        self._gw = gateway
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._gw.write_buffer_limit)
        self.session = self._gw.open_session(self, _peer(transport), "tcp")

    def data_received(self, data: bytes) -> None:
        assert self.session is not None
        self.session.feed(data)

    def eof_received(self) -> bool:
        return False  # half-open MQTT connections are useless: close both ways

    def connection_lost(self, exc: Exception | None) -> None:
        session, self.session = self.session, None
        if session is not None:
            # Dropping our reference breaks the link <-> session cycle, so a closed
            # connection is freed by reference counting (the process may gc.freeze()).
            session.connection_lost()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.set_congested(True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.set_congested(False)

    # Link
    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    def abort(self) -> None:
        assert self.transport is not None
        self.transport.abort()

    def pause_reading(self) -> None:
        assert self.transport is not None
        if self.transport.is_reading():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing() and not self.transport.is_reading():
            self.transport.resume_reading()


def _peer(transport: asyncio.BaseTransport) -> str:
    addr = transport.get_extra_info("peername")
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


class MqttGateway:
    """MQTT 3.1/3.1.1 device gateway; implements :class:`~ivcloud.gateway.contracts.DeviceLink`.

    ``write_buffer_limit`` is the per-connection outgoing buffer above which the gateway stops
    reading from that device and refuses deliveries to it (``publish`` returns ``False``);
    ``inflight_window`` bounds unacknowledged QoS 1 deliveries per device, with up to
    ``max_queued`` more held back until PUBACKs arrive.
    """

    def __init__(
        self,
        handler: DeviceHandler,
        *,
        max_packet_size: int = 256 * 1024,
        log: FilteringBoundLogger | None = None,
        connect_timeout: float = 10.0,
        write_buffer_limit: int = 256 * 1024,
        inflight_window: int = 16,
        max_queued: int = 256,
        routes: SubDeviceRoutes | None = None,
    ) -> None:
        self.handler = handler
        self.max_packet_size = max_packet_size
        self.log: FilteringBoundLogger = log or structlog.get_logger("ivcloud.gateway")
        self.connect_timeout = connect_timeout
        self.write_buffer_limit = write_buffer_limit
        self.inflight_window = inflight_window
        self.max_queued = max_queued
        self._sessions: dict[str, Session] = {}  # online sessions by ClientId
        self.routes = routes if routes is not None else SubDeviceRoutes()
        self.routes.use_sessions(self._sessions)
        self._all: set[Session] = set()  # every open connection, online or not
        self._offline: dict[str, asyncio.Task[None]] = {}  # pending on_offline by ClientId
        self._offline_tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._ws_server: WsServer | None = None
        self._port = 0
        self._ws_port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str, port: int, ws_port: int | None = None) -> None:
        """Listen for MQTT over TCP on ``port`` and, if given, over WebSocket (``/mqtt``) on
        ``ws_port``; 0 picks a free port (read it back from :attr:`port`/:attr:`ws_port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpLink(self), host, port, backlog=4096, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        if ws_port is not None:
            from ivcloud.gateway.websocket import serve_websocket

            self._ws_server = await serve_websocket(self, host, ws_port)
            self._ws_port = self._ws_server.sockets[0].getsockname()[1]
        self.log.info("gateway.listening", host=host, port=self._port, ws_port=self._ws_port)

    async def stop(self) -> None:
        """Stop listening, close every connection and wait until ``on_offline`` has been
        called for each device that was online."""
        if self._server is not None:
            self._server.close()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=False)
        sessions = list(self._all)
        for session in sessions:
            session.close("server stopping")
        await asyncio.gather(*(session.wait_lost(_STOP_GRACE) for session in sessions))
        while self._offline_tasks:
            await asyncio.gather(*self._offline_tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._ws_server is not None:
            await self._ws_server.wait_closed()
            self._ws_server = None
        self.log.info("gateway.stopped")

    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_port(self) -> int | None:
        return self._ws_port

    @property
    def connected_count(self) -> int:
        """Devices online (CONNACK 0 sent and not yet gone)."""
        return len(self._sessions)

    # -- DeviceLink --------------------------------------------------------------------------

    def is_connected(self, client_id: str) -> bool:
        return client_id in self._sessions or self.routes.session_for(client_id) is not None

    async def publish(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        return self.publish_nowait(client_id, topic, payload, qos)

    def publish_nowait(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Synchronous :meth:`publish`, for fan-out loops that should not await per device.

        ``True`` means written to the connection, or (QoS 1 with a full in-flight window)
        queued behind it; ``False``: not connected, not subscribed, or the device is not
        keeping up with its outgoing buffer."""
        if qos not in (0, 1):
            raise ValueError(f"QoS must be 0 or 1, got {qos}")
        session = self._sessions.get(client_id) or self.routes.session_for(client_id)
        if session is None:
            return False
        return session.deliver(topic, payload, qos)

    async def disconnect(self, client_id: str, reason: str = "disconnected by server") -> bool:
        """Close a device's connection (deleted device, reset secret) and wait until its
        ``on_offline`` has run; ``False`` if it was not connected."""
        session = self._sessions.get(client_id)
        if session is None:
            return False
        session.log.info("gateway.kick", reason=reason)
        session.close(reason)
        await session.wait_lost(_STOP_GRACE)
        await self.offline_done(client_id)
        return True

    # -- called by sessions ----------------------------------------------------------------

    def new_reader(self) -> PacketReader:
        return PacketReader(self.max_packet_size)

    def open_session(self, link: Link, peer: str, transport: str) -> Session:
        session = Session(self, link, peer, self.log.bind(peer=peer, transport=transport))
        self._all.add(session)
        return session

    def register(self, session: Session) -> None:
        """Make ``session`` the one for its ClientId, closing an older one without
        ``on_offline``: the device is still online, through the new connection."""
        old = self._sessions.get(session.client_id)
        self._sessions[session.client_id] = session
        if old is not None and old is not session:
            old.replaced = True
            old.log.info("gateway.replaced", new_peer=session.peer)
            old.close("replaced by a new connection")
            subs = self.routes.drop_gateway(session.client_id)
            if subs:  # the new connection must bring them online again
                self._track_offline(session.client_id, self._subs_offline(subs))

    async def offline_done(self, client_id: str) -> None:
        """Wait for a previous connection's ``on_offline`` so that the handler never sees it
        after the new connection's ``on_online``."""
        task = self._offline.get(client_id)
        if task is not None:
            await asyncio.wait((task,))

    def session_lost(self, session: Session) -> None:
        self._all.discard(session)
        identity = session.identity
        if identity is None or self._sessions.get(session.client_id) is not session:
            return  # never online, or replaced
        del self._sessions[session.client_id]
        session.log.info("gateway.offline", reason=session.close_reason)
        subs = self.routes.drop_gateway(session.client_id)
        self._track_offline(session.client_id, self._notify_offline(session, subs))

    def _track_offline(self, client_id: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as the ClientId's pending offline work (after any earlier one), so
        the next connection's ``on_online`` waits for it (:meth:`offline_done`)."""
        previous = self._offline.get(client_id)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait((previous,))
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._offline[client_id] = task
        self._offline_tasks.add(task)
        task.add_done_callback(self._offline_tasks.discard)
        task.add_done_callback(lambda t: self._offline_finished(client_id, t))

    def _offline_finished(self, client_id: str, task: asyncio.Task[None]) -> None:
        if self._offline.get(client_id) is task:
            del self._offline[client_id]

    async def _subs_offline(self, subs: list[DeviceIdentity]) -> None:
        """``on_offline`` for sub-devices whose gateway connection ended, unless they came
        back meanwhile (connected themselves, or routed again)."""
        for sub in subs:
            cid = sub.client_id
            if cid in self._sessions or self.routes.gateway_of(cid) is not None:
                continue
            try:
                await self.handler.on_offline(sub, "gateway offline")
            except Exception:
                self.log.exception("gateway.on_offline_failed", client_id=cid)

    async def _notify_offline(self, session: Session, subs: list[DeviceIdentity]) -> None:
        identity = session.identity
        assert identity is not None
        try:
            busy = session.busy_task
            if busy is not None:
                # Let an in-progress on_message/on_online finish first: offline comes last.
                await asyncio.wait((busy,))
            await self._subs_offline(subs)
            if self.routes.gateway_of(identity.client_id) is None:  # else still online via one
                await self.handler.on_offline(identity, session.close_reason)
        except Exception:
            session.log.exception("gateway.on_offline_failed")

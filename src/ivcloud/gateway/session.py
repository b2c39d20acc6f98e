"""One device connection's MQTT state machine, independent of the byte transport.

The same :class:`Session` runs behind plain TCP and behind WebSocket; the transport is a
:class:`Link`.  Packets that need no ``await`` (PINGREQ, SUBSCRIBE, PUBACK, a denied PUBLISH …)
are handled synchronously inside ``feed``; the first packet that does (CONNECT →
``authenticate``, an allowed PUBLISH → ``on_message``) starts one task that works through it
and everything queued behind it in order.  While that task runs, further packets queue, and
past a small backlog the link stops reading: a slow handler slows the device down instead of
growing memory, and a QoS 1 PUBACK is only written after the handler has returned.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

from ivcloud.gateway.contracts import ConnectRefused, DeviceIdentity
from ivcloud.gateway.outbound import Outbound
from ivcloud.protocol.errors import MalformedPacket, UnsupportedProtocolLevel
from ivcloud.protocol.mqtt.encode import PINGRESP_BYTES, encode_connack, encode_remaining_length
from ivcloud.protocol.mqtt.packets import (
    CONNACK_BAD_PROTOCOL,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_SERVER_UNAVAILABLE,
    SUBACK_FAILURE,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Puback,
    Publish,
    Subscribe,
    Unsubscribe,
)
from ivcloud.protocol.topics import may_publish, may_subscribe

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from ivcloud.gateway.server import MqttGateway

#: Packets queued behind a running handler before the link stops reading.
BACKLOG_LIMIT: Final = 16
_ACL_CACHE_LIMIT: Final = 64
_NEW, _CONNECTING, _ONLINE = 0, 1, 2


class Link(Protocol):
    """The transport under a session (TCP transport or WebSocket connection)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class Session:
    __slots__ = (
        "_acl",
        "_closing",
        "_gw",
        "_identity",
        "_keepalive",
        "_last_rx",
        "_loop",
        "_lost",
        "_paused",
        "_pending",
        "_task",
        "_timer",
        "client_id",
        "close_reason",
        "congested",
        "link",
        "log",
        "out",
        "peer",
        "reader",
        "replaced",
        "state",
    )

    def __init__(self, gateway: MqttGateway, link: Link, peer: str, log: FilteringBoundLogger):
        self._gw = gateway
        self._loop = asyncio.get_running_loop()
        self.link = link
        self.peer = peer
        self.log = log
        self.reader = gateway.new_reader()
        self.state = _NEW
        self.client_id = ""
        self._identity: DeviceIdentity | None = None
        self.close_reason = ""
        self.replaced = False
        self.congested = False
        self._closing = False
        self._paused = False
        self._pending: deque[Packet] = deque()
        self._task: asyncio.Task[None] | None = None
        self._last_rx = self._loop.time()
        self._keepalive = 0.0
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            gateway.connect_timeout, self._connect_timeout
        )
        self._acl: dict[str, bool] = {}
        self.out = Outbound(link.write, gateway.inflight_window, gateway.max_queued)
        self._lost: asyncio.Future[None] = self._loop.create_future()

    @property
    def identity(self) -> DeviceIdentity | None:
        return self._identity

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def busy_task(self) -> asyncio.Task[None] | None:
        return self._task

    async def wait_lost(self, grace: float) -> None:
        """Wait until the transport is gone; abort it if flushing takes longer than
        ``grace`` (a peer that stopped reading must not hold a shutdown hostage)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), grace)
        except TimeoutError:
            self.link.abort()
            await self._lost

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_rx = self._loop.time()
        try:
            packets = self.reader.feed(data)
        except UnsupportedProtocolLevel as exc:
            self.log.info("gateway.unsupported_protocol", level=exc.level)
            if self.state == _NEW:
                self.link.write(encode_connack(CONNACK_BAD_PROTOCOL))
            self.close("unsupported protocol level")
            return
        except MalformedPacket as exc:
            self.log.warning(
                "gateway.malformed_packet", error=str(exc), error_type=type(exc).__name__
            )
            self.close("malformed packet")
            return
        if not packets:
            return
        if self._task is not None:
            self._pending.extend(packets)
            self._update_reading()
            return
        for i, packet in enumerate(packets):
            coro = self._handle(packet)
            if coro is not None:
                self._pending.extend(packets[i + 1 :])
                self._task = self._loop.create_task(self._drain(coro))
                self._update_reading()
                return
            if self._closing:
                return

    def _handle(self, packet: Packet) -> Coroutine[Any, Any, None] | None:
        """Handle one packet synchronously, or return the coroutine that will."""
        if isinstance(packet, Publish):
            return self._on_publish(packet)
        if self.state != _ONLINE:
            if isinstance(packet, Connect) and self.state == _NEW:
                return self._on_connect(packet)
            self._violation(f"{type(packet).__name__} before CONNECT")
        elif isinstance(packet, Pingreq):
            self.link.write(PINGRESP_BYTES)
        elif isinstance(packet, Puback):
            self.out.acked(packet.packet_id)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, Disconnect):
            self.close("disconnect")
        else:
            self._violation(f"unexpected {type(packet).__name__} from a client")
        return None

    async def _drain(self, first: Coroutine[Any, Any, None]) -> None:
        try:
            await first
            pending = self._pending
            while pending and not self._closing:
                coro = self._handle(pending.popleft())
                if coro is not None:
                    await coro
                if self._paused and len(pending) < BACKLOG_LIMIT // 2:
                    self._update_reading()
        except Exception:
            self.log.exception("gateway.session_error")
            self.close("internal error")
        finally:
            self._task = None
            self._update_reading()

    def _violation(self, what: str) -> None:
        self.log.warning("gateway.protocol_violation", error=what)
        self.close("protocol violation")

    # -- CONNECT -------------------------------------------------------------------------

    def _on_connect(self, packet: Connect) -> Coroutine[Any, Any, None]:
        self.state = _CONNECTING
        self._cancel_timer()
        self.client_id = packet.client_id
        self.log = self.log.bind(client_id=packet.client_id)
        return self._connect(packet)

    async def _connect(self, packet: Connect) -> None:
        log = self.log
        if packet.will_topic is not None:
            log.info("gateway.will_ignored", will_topic=packet.will_topic)
        handler = self._gw.handler
        try:
            identity = await handler.authenticate(
                packet.client_id, packet.username, packet.password
            )
        except ConnectRefused as exc:
            code = exc.code if 1 <= exc.code <= 5 else CONNACK_SERVER_UNAVAILABLE
            self._refuse(code, exc.reason)
            return
        except Exception:
            log.exception("gateway.authenticate_failed")
            self._refuse(CONNACK_SERVER_UNAVAILABLE, "authenticate raised")
            return
        if self._closing:
            return
        if identity.client_id != packet.client_id:
            self._refuse(CONNACK_IDENTIFIER_REJECTED, "client id is not the authenticated device")
            return
        self._identity = identity
        self.state = _ONLINE
        self._gw.register(self)
        self.link.write(encode_connack(0))
        self._keepalive = packet.keepalive * 1.5
        if self._keepalive:
            self._timer = self._loop.call_later(self._keepalive, self._check_keepalive)
        log.info(
            "gateway.online",
            peer=self.peer,
            protocol_level=packet.protocol_level,
            keepalive=packet.keepalive,
            clean_session=packet.clean_session,
        )
        await self._gw.offline_done(self.client_id)
        try:
            await handler.on_online(identity, self.peer)
        except Exception:
            log.exception("gateway.on_online_failed")

    def _refuse(self, code: int, reason: str) -> None:
        self.log.info("gateway.connect_refused", code=code, reason=reason)
        if not self._closing:
            self.link.write(encode_connack(code))
        self.close("connect refused")

    # -- PUBLISH (device → cloud) ----------------------------------------------------------

    def _on_publish(self, packet: Publish) -> Coroutine[Any, Any, None] | None:
        identity = self._identity
        if identity is None:
            self._violation("PUBLISH before CONNACK")
            return None
        topic = packet.topic
        allowed = self._acl.get(topic)
        if allowed is None:
            allowed = may_publish(identity.product_id, identity.device_name, topic)
            if len(self._acl) >= _ACL_CACHE_LIMIT:
                self._acl.clear()
            self._acl[topic] = allowed
        if not allowed:
            # Not its own topic: maybe one of its online sub-devices' (gateway/subdevices.py).
            sub = self._gw.routes.publisher(identity.client_id, topic)
            if sub is not None:
                return self._publish_up(sub, packet)
            self.log.warning("gateway.publish_denied", topic=topic, qos=packet.qos)
            return None
        return self._publish_up(identity, packet)

    async def _publish_up(self, identity: DeviceIdentity, packet: Publish) -> None:
        try:
            await self._gw.handler.on_message(identity, packet.topic, packet.payload)
        except Exception:
            # No PUBACK: the message was not taken over, so it must not look delivered.
            self.log.exception("gateway.on_message_failed", topic=packet.topic)
            return
        if packet.qos and not self._closing:
            pid = packet.packet_id or 0
            self.link.write(b"\x40\x02" + pid.to_bytes(2, "big"))

    # -- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------

    def _on_subscribe(self, packet: Subscribe) -> None:
        identity = self._identity
        assert identity is not None
        codes = bytearray()
        for topic_filter, qos in packet.topics:
            if may_subscribe(
                identity.product_id, identity.device_name, topic_filter
            ) or self._gw.routes.subscribe(identity.client_id, topic_filter):
                granted = 1 if qos else 0
                self.out.subscribe(topic_filter, granted)
                codes.append(granted)
            else:
                self.log.warning("gateway.subscribe_denied", topic_filter=topic_filter, qos=qos)
                codes.append(SUBACK_FAILURE)
        body = packet.packet_id.to_bytes(2, "big") + codes
        self.link.write(b"\x90" + encode_remaining_length(len(body)) + body)

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        for topic_filter in packet.topics:
            self.out.unsubscribe(topic_filter)
        self.link.write(b"\xb0\x02" + packet.packet_id.to_bytes(2, "big"))

    # -- delivery (cloud → device) ---------------------------------------------------------

    def deliver(self, topic: str, payload: bytes, qos: int) -> bool:
        """Write a PUBLISH if the device subscribed to ``topic``, at min(qos, granted)."""
        out = self.out
        granted = out.granted(topic)
        if granted < 0 or self._closing or self.congested:
            return False
        return out.send(topic, payload, qos if qos < granted else granted)

    # -- flow control, timers, closing -----------------------------------------------------

    def set_congested(self, congested: bool) -> None:
        """Called by the link when its outgoing buffer crosses the high/low water marks."""
        self.congested = congested
        self._update_reading()

    def _update_reading(self) -> None:
        want_pause = self.congested or (
            self._task is not None and len(self._pending) >= BACKLOG_LIMIT
        )
        if want_pause != self._paused and not self._closing:
            self._paused = want_pause
            if want_pause:
                self.link.pause_reading()
            else:
                self.link.resume_reading()

    def _connect_timeout(self) -> None:
        self._timer = None
        if self.state == _NEW:
            self.log.info("gateway.connect_timeout", peer=self.peer)
            self.close("no CONNECT in time")

    def _check_keepalive(self) -> None:
        self._timer = None
        if self._closing:
            return
        limit = self._keepalive
        idle = self._loop.time() - self._last_rx
        # While a handler runs, reading is (or may be) paused on our side, so silence is ours,
        # not the device's.  A device that stopped reading (congested) gets no such grace.
        if idle >= limit and self._task is None:
            self.log.info("gateway.keepalive_expired", idle=round(idle, 3))
            self.close("keepalive timeout")
            return
        delay = limit - idle if idle < limit else limit
        self._timer = self._loop.call_later(delay, self._check_keepalive)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self, reason: str) -> None:
        """Close gracefully (buffered output, e.g. a refusing CONNACK, is still sent)."""
        if self._closing:
            return
        self._closing = True
        self.close_reason = reason
        self._cancel_timer()
        self._pending.clear()
        self.out.clear()
        self.link.close()

    def connection_lost(self) -> None:
        """Called by the link once the transport is gone, whoever closed it."""
        if not self._closing:
            self._closing = True
            self.close_reason = "connection lost"
        self._cancel_timer()
        self._pending.clear()
        if not self._lost.done():
            self._lost.set_result(None)
        self._gw.session_lost(self)

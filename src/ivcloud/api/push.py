"""The App API long connection (app-api.md §3): WebSocket push of device changes.

Fan-out (DESIGN §2 "Hot paths"): one synchronous bus listener looks the device up in an
index ``"PID/DN" → connections``, encodes the ``DeviceChange`` frame once and offers the
same text to each subscriber's bounded queue; one sender task per connection writes its
queue to the socket.  The listener never awaits, so nothing a client does can slow the
report path or the other clients: a connection whose queue is full is dropped (close 1013,
"try again later"; the SDK reconnects after 2 s and re-subscribes).

Because the listener runs inside the publisher (the writer's commit callback, before the
device's ``report_reply`` is sent), a push is queued before the device hears its reply.

Authorization: ``ActivePush`` carries the AccessToken; only devices the user may see
(:meth:`AccessService.visible_devices`) are subscribed, re-checked on every ActivePush and
heartbeat.  A heartbeat with a token that is no longer valid empties the subscription."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ivcloud.bus.events import (
    BusEvent,
    ControlRequested,
    DeviceBindingChanged,
    DeviceEventPosted,
    DeviceOnline,
    DeviceReported,
    EntityRemoved,
)
from ivcloud.protocol import push, thing
from ivcloud.protocol.appapi_errors import INVALID_ACCESS_TOKEN, INVALID_ACTION
from ivcloud.services.access import AccessService
from ivcloud.services.ports import Clock
from ivcloud.services.users import UserInfo, UserService, token_hash

log = structlog.get_logger("ivcloud.push")

PATHS = ("/ws/explorer", "/iotstudio_v2_weapp_1")
#: Close code for a dropped slow consumer (RFC 6455 1013 "Try Again Later").
CLOSE_SLOW = 1013
_BAD_TOKEN = "AccessToken is missing, invalid or expired"  # noqa: S105 - a message


class _Listenable(Protocol):
    def listen(self, prefix: str, fn: Callable[[BusEvent], None]) -> None: ...


class PushConnection:
    """One WebSocket: who is on it, what it subscribed, and its bounded send queue."""

    def __init__(self, ws: WebSocket, queue_size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.user: UserInfo | None = None
        #: SHA-256 of the AccessToken the subscription was made with.
        self.token_hash: str | None = None
        self.devices: frozenset[str] = frozenset()
        self.overflowed = False
        self.sender: asyncio.Task[None] | None = None

    def offer(self, text: str) -> bool:
        """Queue a frame without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True


class PushHub:
    """Connections, their subscriptions, and the bus → WebSocket fan-out."""

    def __init__(
        self,
        bus: _Listenable,
        users: UserService,
        access: AccessService,
        clock: Clock,
        *,
        queue_size: int = 512,
        close_timeout_s: float = 5.0,
    ) -> None:
        self._users = users
        self._access = access
        self._clock = clock
        #: Frames a connection may have waiting; read when a connection opens.
        self.queue_size = queue_size
        self.close_timeout_s = close_timeout_s
        self._by_device: dict[str, set[PushConnection]] = {}
        self.connections: set[PushConnection] = set()
        #: Connections dropped because they could not keep up.
        self.dropped = 0
        #: Frames put on connection queues since start.
        self.pushed = 0
        bus.listen("device.", self._on_event)
        users.revocation_listeners.append(self._on_revoked)
        #: Runs a tokenapi call and returns the answer's ``data`` (set by the HTTP app).
        self.tunnel: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None

    def routes(self) -> list[WebSocketRoute]:
        return [WebSocketRoute(path, self.endpoint) for path in PATHS]

    def subscribers(self, device_id: str) -> int:
        return len(self._by_device.get(device_id, ()))

    # -- connection lifecycle -------------------------------------------------------------

    async def endpoint(self, ws: WebSocket) -> None:
        """Serve one client: the handshake has no credentials (they come in ActivePush),
        the query string (``uin``, ``cId``) is ignored."""
        await ws.accept()
        conn = PushConnection(ws, self.queue_size)
        self.connections.add(conn)
        conn.sender = asyncio.create_task(self._send_loop(conn))
        reader = asyncio.create_task(self._read_loop(conn))
        try:
            await asyncio.wait({reader, conn.sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unsubscribe(conn)
            self.connections.discard(conn)
            for task in (reader, conn.sender):
                task.cancel()
            for task in (reader, conn.sender):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if conn.overflowed:
                await self._close_slow(conn)

    async def _close_slow(self, conn: PushConnection) -> None:
        """Send close 1013 if the socket accepts it in time: a client that never reads
        cannot take the close frame either, and waiting for it must stay bounded."""
        try:
            await asyncio.wait_for(conn.ws.close(CLOSE_SLOW, "too slow"), self.close_timeout_s)
        except (TimeoutError, RuntimeError, OSError):
            log.info("push_close_timeout")
        except Exception:  # the client may be gone in any way; nothing left to do
            log.debug("push_close_failed", exc_info=True)

    async def _send_loop(self, conn: PushConnection) -> None:
        queue, ws = conn.queue, conn.ws
        while True:
            text = await queue.get()
            await ws.send_text(text)

    async def _read_loop(self, conn: PushConnection) -> None:
        while True:
            try:
                message = await conn.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None:
                continue
            reply = await self._handle(conn, data)
            if reply is not None and not conn.offer(reply):
                self._drop(conn)
                return

    def _drop(self, conn: PushConnection) -> None:
        """Give up on a connection that cannot keep up: it stops receiving at once (the
        index forgets it) and the sender is cancelled; ``endpoint`` closes it."""
        if conn.overflowed:
            return
        conn.overflowed = True
        self.dropped += 1
        self._unsubscribe(conn)
        if conn.sender is not None:
            conn.sender.cancel()
        log.info(
            "push_slow_consumer_dropped",
            user_id=conn.user.user_id if conn.user else None,
            queued=conn.queue.qsize(),
        )

    # -- subscriptions ----------------------------------------------------------------------

    def _subscribe(self, conn: PushConnection, device_ids: frozenset[str]) -> None:
        for key in conn.devices - device_ids:
            self._forget(conn, key)
        for key in device_ids - conn.devices:
            self._by_device.setdefault(key, set()).add(conn)
        conn.devices = device_ids

    def _unsubscribe(self, conn: PushConnection) -> None:
        for key in conn.devices:
            self._forget(conn, key)
        conn.devices = frozenset()

    def _forget(self, conn: PushConnection, key: str) -> None:
        conns = self._by_device.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_device[key]

    async def _visible(self, user: UserInfo) -> set[str]:
        return {f"{r.product_id}/{r.device_name}" for r in await self._access.visible_devices(user)}

    # -- client frames ----------------------------------------------------------------------

    async def _handle(self, conn: PushConnection, data: str | bytes) -> str | None:
        try:
            frame = push.parse_frame(data)
        except push.FrameError as exc:
            return push.server_error(exc.req_id, str(exc))
        try:
            if frame.action == push.ACTIVE_PUSH:
                return await self._active_push(conn, frame)
            if frame.action == push.YUN_API:
                if frame.yun_action == push.HEARTBEAT:
                    return await self._heartbeat(conn, frame)
                return await self._tunnel(frame)
            if frame.action == push.HELLO:
                return push.hello_ok(frame.req_id)
            return push.api_error(
                frame.req_id, INVALID_ACTION, f"action {frame.action[:64]!r} is not supported"
            )
        except Exception:
            log.exception("push_frame_failed", action=frame.action)
            return push.server_error(frame.req_id)

    async def _tunnel(self, frame: push.ClientFrame) -> str:
        """``YunApi`` with any other action runs it as a tokenapi call (the SDK's
        ``sendWebsocketMessage``); the App API answer's ``data`` becomes ``data.Response``."""
        if self.tunnel is None or not frame.yun_action:
            return push.api_error(
                frame.req_id,
                INVALID_ACTION,
                f"YunApi action {frame.yun_action[:64]!r} is not supported",
                frame.request_id(),
            )
        body = {
            **frame.action_params,
            "Action": frame.yun_action,
            "AccessToken": frame.access_token(),
            "RequestId": frame.request_id(),
        }
        return push.reply(frame.req_id, {"Response": await self.tunnel(body)})

    async def _user(self, conn: PushConnection, frame: push.ClientFrame) -> UserInfo | None:
        """The frame's user; None (and nothing subscribed any more) for a bad token."""
        token = frame.access_token()
        user = await self._users.authenticate(token) if token else None
        if user is None:
            conn.user = None
            conn.token_hash = None
            self._unsubscribe(conn)
        else:
            conn.token_hash = token_hash(token)
        return user

    def _on_revoked(self, key: str | None, user_id: str) -> None:
        """A token was revoked (logout, password change): what it subscribed stops now."""
        for conn in list(self.connections):
            user = conn.user
            if user is not None and user.user_id == user_id and key in (None, conn.token_hash):
                conn.user = None
                conn.token_hash = None
                self._unsubscribe(conn)

    async def _active_push(self, conn: PushConnection, frame: push.ClientFrame) -> str:
        """Replace the subscription with the requested devices the user may see."""
        user = await self._user(conn, frame)
        if user is None:
            return push.api_error(
                frame.req_id, INVALID_ACCESS_TOKEN, _BAD_TOKEN, frame.request_id(), deviceIds=[]
            )
        visible = await self._visible(user)
        accepted = [d for d in frame.device_ids() if d in visible]
        if conn.overflowed:  # dropped while the check ran
            return push.active_push_ok(frame.req_id, [])
        conn.user = user
        self._subscribe(conn, frozenset(accepted))
        return push.active_push_ok(frame.req_id, accepted)

    async def _heartbeat(self, conn: PushConnection, frame: push.ClientFrame) -> str:
        """Keep listening while the token is valid; re-check what the user may still see."""
        user = await self._user(conn, frame)
        if user is None:
            return push.api_error(
                frame.req_id, INVALID_ACCESS_TOKEN, _BAD_TOKEN, frame.request_id()
            )
        if conn.devices:
            visible = await self._visible(user)
            if not conn.overflowed:
                self._subscribe(conn, conn.devices & visible)
        conn.user = user
        return push.heartbeat_ok(frame.req_id, frame.request_id())

    # -- bus → clients ----------------------------------------------------------------------

    def _on_event(self, event: BusEvent) -> None:
        """Bus listener (runs inside the publisher): must not raise and must not block."""
        if isinstance(event, EntityRemoved):  # not a device event: nothing to push
            return
        try:
            key = f"{event.product_id}/{event.device_name}"
            conns = self._by_device.get(key)
            if not conns:
                return
            text = self._frame(event, key)
            if text is None:
                return
            for conn in list(conns):
                if conn.offer(text):
                    self.pushed += 1
                else:
                    self._drop(conn)
        except Exception:
            log.exception("push_fanout_failed", topic=event.topic)

    def _frame(self, event: BusEvent, key: str) -> str | None:
        assert not isinstance(event, EntityRemoved)
        pid, dn = event.product_id, event.device_name
        if isinstance(event, DeviceReported):
            payload = event.payload or push.report_payload(
                event.client_token, event.params, event.ts_ms
            )
            return push.device_change(
                device_id=key,
                type_="Property",
                sub_type="Report",
                topic=thing.thing_topic("up", "property", pid, dn),
                payload=payload,
                ts_ms=event.ts_ms,
            )
        if isinstance(event, ControlRequested):
            return push.device_change(
                device_id=key,
                type_="Property",
                sub_type="Push",
                topic=thing.thing_topic("down", "property", pid, dn),
                payload=thing.control_message(event.client_token, event.params),
                ts_ms=self._clock.now_ms(),
            )
        if isinstance(event, DeviceEventPosted):
            return push.device_change(
                device_id=key,
                type_="Event",
                sub_type="Report",
                topic=thing.thing_topic("up", "event", pid, dn),
                payload=push.event_payload(
                    event.client_token, event.event_id, event.event_type, event.params, event.ts_ms
                ),
                ts_ms=event.ts_ms,
            )
        if isinstance(event, DeviceOnline):
            return push.device_change(
                device_id=key,
                type_="StatusChange",
                sub_type="Online" if event.online else "Offline",
                topic=f"$state/update/{pid}/{dn}",
                payload=push.status_payload(pid, dn, event.online, event.ts_ms),
                ts_ms=event.ts_ms,
            )
        if isinstance(event, DeviceBindingChanged):
            return push.device_change(
                device_id=key,
                type_="StatusChange",
                sub_type="Bind" if event.bound else "Unbind",
                topic=f"$state/update/{pid}/{dn}",
                payload=push.binding_payload(pid, dn, event.bound, event.family_id, event.ts_ms),
                ts_ms=event.ts_ms,
            )
        return None

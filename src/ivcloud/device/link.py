"""The device's MQTT connection: sign in, subscribe, read, reconnect with back-off.

One long-lived task owns the connection. Credentials are re-signed on every attempt because
the username carries an expiry: a device that has been offline for longer than the TTL must
not keep retrying with a username the broker will refuse as expired. Incoming messages are
handed to a plain (non-async) callback so the reader never waits on application code — the
SDK's request/reply helpers wait for replies that this same reader delivers."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiomqtt
import structlog

from ivcloud.device.types import BrokerAddress, DeviceInfo, backoff_delay, reraise_lost_cancel
from ivcloud.protocol.credentials import (
    DEFAULT_SDKAPPID,
    Algorithm,
    generate_connid,
    make_username,
    sign_password,
)

log = structlog.get_logger("ivcloud.device")

MessageHandler = Callable[[str, bytes], None]
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]
DisconnectedHook = Callable[[bool], Coroutine[Any, Any, None]]


class MqttLink:
    """A self-healing MQTT session for one device.

    ``on_connected`` runs as its own task after the subscriptions are in place (so it can
    send requests and await their replies); it is cancelled if the link drops.
    ``on_disconnected(final)`` runs after a session that had been up ends; ``final`` is true
    when the link is being stopped."""

    def __init__(
        self,
        info: DeviceInfo,
        address: BrokerAddress,
        subscriptions: Sequence[tuple[str, int]],
        on_message: MessageHandler,
        *,
        on_connected: ConnectedHook | None = None,
        on_disconnected: DisconnectedHook | None = None,
        keepalive: int = 240,
        algorithm: Algorithm = "hmacsha256",
        sdkappid: str = DEFAULT_SDKAPPID,
        credential_ttl: int = 3600,
        command_timeout: float = 10.0,
        reconnect_first: float = 1.0,
        reconnect_cap: float = 60.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._info = info
        self._address = address
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._keepalive = keepalive
        self._algorithm: Algorithm = algorithm
        self._sdkappid = sdkappid
        self._ttl = credential_ttl
        self._command_timeout = command_timeout
        self._first = reconnect_first
        self._cap = reconnect_cap
        self._tls = tls_context
        if address.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connect_count = 0
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt-{self._info.client_id}")

    async def stop(self) -> None:
        """Disconnect cleanly (DISCONNECT packet) and stop reconnecting."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float | None) -> bool:
        if self._connected.is_set():
            return True
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Send if connected; ``False`` (nothing sent) otherwise. No offline queue on
        purpose: a stale report replayed minutes later would overwrite fresher state."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        try:
            await client.publish(topic, payload, qos=qos, timeout=self._command_timeout)
        except aiomqtt.MqttError as exc:
            log.info("device_publish_failed", client_id=self._info.client_id, error=str(exc))
            return False
        reraise_lost_cancel()
        return True

    # -- the connection task --------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        info = self._info
        username = make_username(
            info.product_id,
            info.device_name,
            now=int(time.time()),
            ttl=self._ttl,
            sdkappid=self._sdkappid,
            connid=generate_connid(),
        )
        password = sign_password(info.device_secret, username, self._algorithm)
        addr = self._address
        return aiomqtt.Client(
            addr.host,
            addr.port,
            username=username,
            password=password,
            identifier=info.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            transport=addr.transport,
            keepalive=self._keepalive,
            timeout=self._command_timeout,
            tls_context=self._tls,
            websocket_path=addr.ws_path if addr.transport == "websockets" else None,
        )

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            was_up = False
            try:
                async with self._make_client() as client:
                    for topic, qos in self._subscriptions:
                        await client.subscribe(topic, qos=qos, timeout=self._command_timeout)
                    self._client = client
                    self._connected.set()
                    was_up = True
                    attempt = 0
                    self.connect_count += 1
                    self.last_error = None
                    log.info("device_connected", client_id=self._info.client_id)
                    await self._read(client)
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = str(exc)
                log.info("device_link_error", client_id=self._info.client_id, error=str(exc))
            finally:
                self._client = None
                self._connected.clear()
                if was_up and self._on_disconnected is not None:
                    await self._on_disconnected(self._stopping.is_set())
            if self._stopping.is_set():
                return
            delay = backoff_delay(attempt, first=self._first, cap=self._cap)
            attempt += 1
            log.info("device_reconnect_wait", client_id=self._info.client_id, delay=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _read(self, client: aiomqtt.Client) -> None:
        hook = asyncio.create_task(self._on_connected()) if self._on_connected else None
        try:
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, str):
                    payload = payload.encode()
                elif not isinstance(payload, bytes | bytearray):
                    payload = b""
                try:
                    self._on_message(message.topic.value, bytes(payload))
                except Exception:  # a bad handler must not kill the connection
                    log.exception("device_message_handler_failed", topic=message.topic.value)
        finally:
            if hook is not None and not hook.done():
                hook.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hook

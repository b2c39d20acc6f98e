"""The MQTT gateway over real sockets, with real clients (paho-mqtt, aiomqtt) on TCP and
WebSocket, and raw bytes where a client library would hide what is on the wire.

The handler is a small fake defined here: it is the seam the gateway is built against.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
import websockets
from paho.mqtt.enums import CallbackAPIVersion

from ivcloud.gateway.contracts import ConnectRefused, DeviceIdentity
from ivcloud.gateway.server import MqttGateway
from ivcloud.protocol.mqtt import (
    Connack,
    Connect,
    Packet,
    PacketReader,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode,
    encode_puback,
    encode_publish,
)

P = "ABCDEFGHIJ"
GOOD = "secret"
MAX_PACKET = 4096


def up(d: str, kind: str = "property") -> str:
    return f"$thing/up/{kind}/{P}/{d}"


def down(d: str, kind: str = "property") -> str:
    return f"$thing/down/{kind}/{P}/{d}"


class FakeHandler:
    """Accepts password ``secret``; username ``not-authorized`` → 5, ``impostor`` → an
    identity that is not the ClientId.  Records every call; ``gate`` holds back on_message
    for topics ending in ``/slow``."""

    def __init__(self) -> None:
        self.online: list[tuple[DeviceIdentity, str]] = []
        self.offline: list[tuple[DeviceIdentity, str]] = []
        self.messages: list[tuple[DeviceIdentity, str, bytes]] = []
        self.in_slow_handler = asyncio.Event()
        self.gate = asyncio.Event()
        self._changed = asyncio.Event()

    def _record(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], wait_s: float = 5.0) -> None:
        async with asyncio.timeout(wait_s):
            while not predicate():
                await self._changed.wait()

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None
    ) -> DeviceIdentity:
        if username == "not-authorized":
            raise ConnectRefused(5, "device disabled")
        if password != GOOD.encode():
            raise ConnectRefused(4, "bad password")
        if username == "impostor":
            return DeviceIdentity(P, "someone-else")
        return DeviceIdentity(client_id[:10], client_id[10:])

    async def on_online(self, device: DeviceIdentity, peer: str) -> None:
        self.online.append((device, peer))
        self._record()

    async def on_offline(self, device: DeviceIdentity, reason: str) -> None:
        self.offline.append((device, reason))
        self._record()

    async def on_message(self, device: DeviceIdentity, topic: str, payload: bytes) -> None:
        if topic.endswith("/slow"):
            self.in_slow_handler.set()
            await self.gate.wait()
        self.messages.append((device, topic, payload))
        self._record()


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler()


@pytest.fixture
async def gateway(handler: FakeHandler) -> AsyncIterator[MqttGateway]:
    gw = MqttGateway(handler, max_packet_size=MAX_PACKET)
    await gw.start("127.0.0.1", 0, ws_port=0)
    try:
        yield gw
    finally:
        await gw.stop()


# -- paho in its own thread, bridged to asyncio ------------------------------------------


class PahoDevice:
    def __init__(
        self,
        device_name: str,
        *,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
        transport: str = "tcp",
        username: str = "user",
        password: str = GOOD,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=P + device_name,
            protocol=protocol,
            transport=transport,  # type: ignore[arg-type]
            reconnect_on_failure=False,
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        self.client.username_pw_set(username, password)
        self.connack: asyncio.Future[str] = self.loop.create_future()
        self.messages: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self._acks: dict[int, Any] = {}
        self._ack_waiters: dict[int, asyncio.Future[Any]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # paho thread → asyncio loop
    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(
            lambda: self.connack.done() or self.connack.set_result(rc.getName())
        )

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.loop.call_soon_threadsafe(self.messages.put_nowait, msg)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(self.disconnected.set)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid, [c.value for c in codes])

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid, True)

    def _acked(self, mid: int, value: Any) -> None:
        self._acks[mid] = value
        waiter = self._ack_waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    async def _ack(self, mid: int, wait_s: float = 5.0) -> Any:
        if mid in self._acks:
            return self._acks[mid]
        waiter = self._ack_waiters[mid] = self.loop.create_future()
        return await asyncio.wait_for(waiter, wait_s)

    def acked(self, mid: int) -> bool:
        return mid in self._acks

    async def connect(self, port: int, keepalive: int = 60) -> str:
        await asyncio.to_thread(self.client.connect, "127.0.0.1", port, keepalive)
        self.client.loop_start()
        return await asyncio.wait_for(self.connack, 5)

    async def subscribe(self, *subs: tuple[str, int]) -> list[int]:
        _rc, mid = self.client.subscribe(list(subs))
        assert mid is not None
        codes: list[int] = await self._ack(mid)
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> int:
        return self.client.publish(topic, payload, qos).mid

    async def wait_published(self, mid: int) -> None:
        await self._ack(mid)

    async def next_message(self, wait_s: float = 5.0) -> mqtt.MQTTMessage:
        return await asyncio.wait_for(self.messages.get(), wait_s)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def paho() -> Iterator[Callable[..., PahoDevice]]:
    made: list[PahoDevice] = []

    def make(device_name: str, **kw: Any) -> PahoDevice:
        dev = PahoDevice(device_name, **kw)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


# -- raw MQTT over asyncio streams -------------------------------------------------------


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = PacketReader(1 << 20)
        self.queue: list[Packet] = []

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, data: bytes | Packet) -> None:
        self.writer.write(data if isinstance(data, bytes) else encode(data))

    async def read(self, wait_s: float = 5.0) -> Packet:
        while not self.queue:
            chunk = await asyncio.wait_for(self.reader.read(65536), wait_s)
            assert chunk, "connection closed"
            self.queue += self.parser.feed(chunk)
        return self.queue.pop(0)

    async def closed_by_server(self, wait_s: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        try:
            async with asyncio.timeout(wait_s):
                while await self.reader.read(65536):
                    pass
        except ConnectionResetError:
            pass
        return True

    async def connect(self, device_name: str, keepalive: int = 60, **kw: Any) -> int:
        fields: dict[str, Any] = {"username": "user", "password": GOOD.encode()} | kw
        self.send(Connect(client_id=P + device_name, keepalive=keepalive, **fields))
        connack = await self.read()
        assert isinstance(connack, Connack)
        return connack.return_code

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def raw(gateway: MqttGateway) -> AsyncIterator[Callable[[], Any]]:
    opened: list[Raw] = []

    async def make() -> Raw:
        conn = await Raw.open(gateway.port)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


# -- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv31, mqtt.MQTTv311], ids=["3.1", "3.1.1"])
async def test_paho_round_trip(
    gateway: MqttGateway,
    handler: FakeHandler,
    paho: Callable[..., PahoDevice],
    transport: str,
    protocol: mqtt.MQTTProtocolVersion,
) -> None:
    dev = paho("cam1", protocol=protocol, transport=transport)
    port = gateway.ws_port if transport == "websockets" else gateway.port
    assert port
    assert await dev.connect(port) == "Success"
    await handler.wait_for(lambda: len(handler.online) == 1)
    identity, peer = handler.online[0]
    assert identity == DeviceIdentity(P, "cam1")
    assert peer.startswith("127.0.0.1:")
    assert gateway.is_connected(P + "cam1") and gateway.connected_count == 1

    # QoS 2 requested is granted as QoS 1 (Tencent's limit).
    assert await dev.subscribe((down("cam1"), 1), (down("cam1", "action"), 2)) == [1, 1]

    dev.publish(up("cam1"), b"q0", qos=0)
    mid = dev.publish(up("cam1", "event"), b"q1", qos=1)
    await dev.wait_published(mid)  # PUBACK arrived …
    assert [m[1:] for m in handler.messages] == [(up("cam1"), b"q0"), (up("cam1", "event"), b"q1")]

    assert await gateway.publish(P + "cam1", down("cam1"), b"c0", qos=0)
    assert await gateway.publish(P + "cam1", down("cam1", "action"), b"c1", qos=1)
    m0, m1 = await dev.next_message(), await dev.next_message()
    assert (m0.topic, m0.payload, m0.qos) == (down("cam1"), b"c0", 0)
    assert (m1.topic, m1.payload, m1.qos) == (down("cam1", "action"), b"c1", 1)

    dev.close()
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.offline == [(identity, "disconnect")]
    assert not gateway.is_connected(P + "cam1")


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
@pytest.mark.parametrize(
    "protocol", [aiomqtt.ProtocolVersion.V31, aiomqtt.ProtocolVersion.V311], ids=["3.1", "3.1.1"]
)
async def test_aiomqtt_round_trip(
    gateway: MqttGateway,
    handler: FakeHandler,
    transport: str,
    protocol: aiomqtt.ProtocolVersion,
) -> None:
    ws = transport == "websockets"
    async with aiomqtt.Client(
        "127.0.0.1",
        gateway.ws_port if ws else gateway.port,
        identifier=P + "lock1",
        username="u",
        password=GOOD,
        protocol=protocol,
        transport=transport,  # type: ignore[arg-type]
        websocket_path="/mqtt" if ws else None,
    ) as client:
        await client.subscribe(f"{P}/lock1/#", qos=1)
        await client.publish(up("lock1"), b'{"method":"report"}', qos=1)
        assert handler.messages[-1][1:] == (up("lock1"), b'{"method":"report"}')
        # Wildcard subscription: delivery goes through the wildcard list, QoS min(1, 1).
        assert gateway.publish_nowait(P + "lock1", f"{P}/lock1/custom/x", b"hi", qos=1)
        assert not gateway.publish_nowait(P + "lock1", down("lock1"), b"nobody subscribed")
        async for message in client.messages:
            assert (str(message.topic), message.payload, message.qos) == (
                f"{P}/lock1/custom/x",
                b"hi",
                1,
            )
            break
    await handler.wait_for(lambda: len(handler.offline) == 1)


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [("user", "wrong", 4), ("not-authorized", GOOD, 5), ("impostor", GOOD, 2)],
)
async def test_connect_refused_codes(
    gateway: MqttGateway,
    handler: FakeHandler,
    raw: Callable[[], Any],
    username: str,
    password: str,
    code: int,
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1", username=username, password=password.encode()) == code
    assert await conn.closed_by_server()
    assert handler.online == [] and gateway.connected_count == 0


@pytest.mark.parametrize(
    ("username", "expected"),
    [("wrong-pw", "Bad user name or password"), ("not-authorized", "Not authorized")],
)
async def test_connect_refused_seen_by_paho(
    gateway: MqttGateway, paho: Callable[..., PahoDevice], username: str, expected: str
) -> None:
    dev = paho("dev1", username=username, password="nope" if username == "wrong-pw" else GOOD)
    assert await dev.connect(gateway.port) == expected
    await asyncio.wait_for(dev.disconnected.wait(), 5)


async def test_client_id_mismatch_seen_by_paho(
    gateway: MqttGateway, paho: Callable[..., PahoDevice]
) -> None:
    dev = paho("dev1", username="impostor")
    assert await dev.connect(gateway.port) == "Client identifier not valid"


async def test_unsupported_protocol_level_gets_connack_1(
    gateway: MqttGateway, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    mqtt5 = bytearray(encode(Connect(client_id=P + "d", username="u", password=b"secret")))
    mqtt5[8] = 5  # protocol level byte: fixed header (2) + "MQTT" string (6)
    conn.send(bytes(mqtt5))
    assert await conn.read() == Connack(1)
    assert await conn.closed_by_server()


async def test_acl_publish_dropped_without_puback(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1") == 0
    conn.send(encode_publish(up("dev2"), b"spoof", 1, 1))  # another device's topic
    conn.send(encode_publish("$thing/up/property/ZZZZZZZZZZ/dev1", b"spoof", 1, 2))
    conn.send(encode_publish(down("dev1"), b"spoof", 1, 3))  # a down-topic
    conn.send(encode_publish(up("dev1"), b"mine", 1, 4))
    # The first answer is the PUBACK for the allowed one: the three others got none.
    assert await conn.read() == Puback(4)
    assert [m[1:] for m in handler.messages] == [(up("dev1"), b"mine")]
    assert gateway.is_connected(P + "dev1")  # dropped, not disconnected


async def test_acl_subscribe_refused_with_0x80(
    gateway: MqttGateway, paho: Callable[..., PahoDevice]
) -> None:
    dev = paho("dev1")
    assert await dev.connect(gateway.port) == "Success"
    codes = await dev.subscribe(
        (down("dev1"), 1), (down("dev2"), 0), ("#", 0), ("$thing/down/#", 1), (f"{P}/+/x", 0)
    )
    assert codes == [1, 0x80, 0x80, 0x80, 0x80]
    assert not await gateway.publish(P + "dev1", down("dev2"), b"x")


async def test_down_qos1_in_flight_window(gateway: MqttGateway, raw: Callable[[], Any]) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1") == 0
    conn.send(Subscribe(1, ((down("dev1"), 1),)))
    assert await conn.read() == Suback(1, (1,))
    window = gateway.inflight_window
    for i in range(window + 5):
        assert await gateway.publish(P + "dev1", down("dev1"), str(i).encode(), qos=1)
    got = [await conn.read() for _ in range(window)]
    assert [p.payload for p in got if isinstance(p, Publish)] == [
        str(i).encode() for i in range(window)
    ]
    # The rest are held until PUBACKs: a PINGREQ now is answered before any of them.
    conn.send(b"\xc0\x00")
    assert isinstance(await conn.read(), Pingresp)
    first = got[0]
    assert isinstance(first, Publish) and first.qos == 1 and first.packet_id
    conn.send(encode_puback(first.packet_id))
    nxt = await conn.read()
    assert isinstance(nxt, Publish) and nxt.payload == str(window).encode()


async def test_down_many_qos1_all_delivered_to_paho(
    gateway: MqttGateway, paho: Callable[..., PahoDevice]
) -> None:
    dev = paho("dev1")
    assert await dev.connect(gateway.port) == "Success"
    await dev.subscribe((down("dev1"), 1))
    n = gateway.inflight_window * 3
    for i in range(n):
        assert gateway.publish_nowait(P + "dev1", down("dev1"), str(i).encode(), qos=1)
    assert [(await dev.next_message()).payload for _ in range(n)] == [
        str(i).encode() for i in range(n)
    ]


async def test_slow_handler_holds_puback_and_later_packets(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1") == 0
    conn.send(encode_publish(f"{P}/dev1/slow", b"1", 1, 7))
    conn.send(b"\xc0\x00")  # PINGREQ behind it
    await asyncio.wait_for(handler.in_slow_handler.wait(), 5)
    assert handler.messages == []
    handler.gate.set()
    # PUBACK strictly after on_message returned, and the PINGREQ only after that.
    assert await conn.read() == Puback(7)
    assert isinstance(await conn.read(), Pingresp)
    assert handler.messages[0][1] == f"{P}/dev1/slow"


async def test_keepalive_expiry(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1", keepalive=1) == 0
    for _ in range(3):  # pings reset the clock: 3 × 0.5 s outlives 1.5 s
        await asyncio.sleep(0.5)
        conn.send(b"\xc0\x00")
        assert isinstance(await conn.read(), Pingresp)
    # Then silence: the server must close within 1.5 × keepalive (timeout is generous).
    assert await conn.closed_by_server(wait_s=5)
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.offline[0][1] == "keepalive timeout"


async def test_keepalive_expiry_paho_event(
    gateway: MqttGateway, handler: FakeHandler, paho: Callable[..., PahoDevice]
) -> None:
    dev = paho("dev1")
    assert await dev.connect(gateway.port, keepalive=1) == "Success"
    dev.client.loop_stop()  # paho stops pinging: the server must drop it
    await handler.wait_for(lambda: len(handler.offline) == 1, wait_s=5)
    assert handler.offline[0][1] == "keepalive timeout"


async def test_same_client_id_replaces_without_offline(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    first: Raw = await raw()
    assert await first.connect("dev1") == 0
    second: Raw = await raw()
    assert await second.connect("dev1") == 0
    assert await first.closed_by_server()
    await handler.wait_for(lambda: len(handler.online) == 2)
    assert gateway.connected_count == 1

    second.send(Subscribe(1, ((down("dev1"), 0),)))
    assert await second.read() == Suback(1, (0,))
    assert await gateway.publish(P + "dev1", down("dev1"), b"to the new one")
    assert await second.read() == Publish(down("dev1"), b"to the new one")

    second.send(b"\xe0\x00")  # DISCONNECT
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.offline == [(DeviceIdentity(P, "dev1"), "disconnect")]


async def test_replacement_with_aiomqtt(gateway: MqttGateway, handler: FakeHandler) -> None:
    kwargs: dict[str, Any] = {"identifier": P + "dev1", "username": "u", "password": GOOD}
    old = aiomqtt.Client("127.0.0.1", gateway.port, **kwargs)
    await old.__aenter__()
    ws_port = gateway.ws_port or 0
    async with aiomqtt.Client(
        "127.0.0.1", ws_port, transport="websockets", websocket_path="/mqtt", **kwargs
    ) as new:
        with pytest.raises(aiomqtt.MqttError):
            async for _ in old.messages:
                pass
        await new.publish(up("dev1"), b"still here", qos=1)
        assert handler.offline == []
    with contextlib.suppress(aiomqtt.MqttError):
        await old.__aexit__(None, None, None)
    await handler.wait_for(lambda: len(handler.offline) == 1)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # reserved packet type
        b"\x30\xff\xff\xff\xff\x01",  # remaining length over 4 bytes
        b"\x34\x05\x00\x01a\x00\x01",  # QoS 2 PUBLISH
        b"\x20\x02\x00\x00",  # CONNACK from a client
        b"\x10\x00",  # second CONNECT, truncated
    ],
)
async def test_malformed_packet_closes_only_that_connection(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any], garbage: bytes
) -> None:
    good: Raw = await raw()
    assert await good.connect("good") == 0
    bad: Raw = await raw()
    assert await bad.connect("bad") == 0
    bad.send(garbage)
    assert await bad.closed_by_server()
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.offline[0][0].device_name == "bad"
    assert handler.offline[0][1] in ("malformed packet", "protocol violation")
    good.send(encode_publish(up("good"), b"ok", 1, 1))
    assert await good.read() == Puback(1)


async def test_garbage_before_connect_closes(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"\xc0\x00", encode_publish(up("x"), b"")):
        conn: Raw = await raw()
        conn.send(data)
        assert await conn.closed_by_server()
    assert handler.online == [] and handler.offline == []


async def test_silent_connection_closed_after_connect_timeout(handler: FakeHandler) -> None:
    gw = MqttGateway(handler, connect_timeout=0.2)
    await gw.start("127.0.0.1", 0)
    conn = await Raw.open(gw.port)
    try:
        assert await conn.closed_by_server(wait_s=5)  # never sent CONNECT
    finally:
        conn.close()
        await gw.stop()


async def test_oversized_packet_closes(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1") == 0
    conn.send(encode_publish(up("dev1"), b"x" * MAX_PACKET))
    assert await conn.closed_by_server()
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.offline[0][1] == "malformed packet"
    assert handler.messages == []


async def test_oversized_packet_over_websocket_closes(
    gateway: MqttGateway, handler: FakeHandler, paho: Callable[..., PahoDevice]
) -> None:
    dev = paho("dev1", transport="websockets")
    assert await dev.connect(gateway.ws_port or 0) == "Success"
    dev.publish(up("dev1"), b"x" * (MAX_PACKET * 2))
    await asyncio.wait_for(dev.disconnected.wait(), 5)
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.messages == []


async def test_will_is_accepted_and_ignored(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    code = await conn.connect("dev1", will_topic=up("dev1"), will_message=b"gone", will_qos=1)
    assert code == 0
    conn.close()  # abrupt: a broker with wills would now publish "gone"
    await handler.wait_for(lambda: len(handler.offline) == 1)
    assert handler.messages == []


async def test_disconnect_kicks_device(
    gateway: MqttGateway, handler: FakeHandler, raw: Callable[[], Any]
) -> None:
    conn: Raw = await raw()
    assert await conn.connect("dev1") == 0
    await handler.wait_for(lambda: len(handler.online) == 1)
    assert await gateway.disconnect(P + "dev1", "device deleted")
    # on_offline has already run when disconnect() returns.
    assert handler.offline == [(DeviceIdentity(P, "dev1"), "device deleted")]
    assert await conn.closed_by_server()
    assert not await gateway.disconnect(P + "dev1")


async def test_publish_api_edges(gateway: MqttGateway) -> None:
    assert not gateway.is_connected(P + "nobody")
    assert not await gateway.publish(P + "nobody", down("nobody"), b"x")
    with pytest.raises(ValueError):
        await gateway.publish(P + "nobody", down("nobody"), b"x", qos=2)


async def test_slow_reader_is_refused_deliveries(handler: FakeHandler) -> None:
    gw = MqttGateway(handler, write_buffer_limit=16 * 1024)
    await gw.start("127.0.0.1", 0)
    conn = await Raw.open(gw.port)
    try:
        assert await conn.connect("dev1") == 0
        conn.send(Subscribe(1, ((down("dev1"), 0),)))
        assert await conn.read() == Suback(1, (0,))
        chunk = b"x" * 60_000
        sent = 0
        while gw.publish_nowait(P + "dev1", down("dev1"), chunk):  # client never reads
            sent += 1
            assert sent < 2000, "outgoing buffer never reported full"
        # Reading again drains the buffer; deliveries are accepted again.
        async with asyncio.timeout(10):
            while not gw.publish_nowait(P + "dev1", down("dev1"), b"small"):
                await conn.reader.read(1 << 20)
    finally:
        conn.close()
        await gw.stop()


async def test_websocket_path_and_subprotocol(gateway: MqttGateway) -> None:
    base = f"ws://127.0.0.1:{gateway.ws_port}"
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(base + "/other", subprotocols=[websockets.Subprotocol("mqtt")])
    assert info.value.response.status_code == 404
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(base + "/mqtt", subprotocols=[websockets.Subprotocol("chat")])
    assert info.value.response.status_code == 400
    async with websockets.connect(
        base + "/mqtt", subprotocols=[websockets.Subprotocol("mqtt")]
    ) as ws:
        assert ws.subprotocol == "mqtt"
        await ws.send(encode(Connect(client_id=P + "w", username="u", password=GOOD.encode())))
        assert PacketReader().feed(await ws.recv(decode=False)) == [Connack(0)]
        await ws.send("text frames are not MQTT")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_stop_closes_everything_and_reports_offline(
    gateway: MqttGateway, handler: FakeHandler, paho: Callable[..., PahoDevice]
) -> None:
    tcp = paho("tcp1")
    ws = paho("ws1", transport="websockets")
    assert await tcp.connect(gateway.port) == "Success"
    assert await ws.connect(gateway.ws_port or 0) == "Success"
    half_open = await Raw.open(gateway.port)  # connected, never sent CONNECT
    await handler.wait_for(lambda: len(handler.online) == 2)

    await gateway.stop()

    assert gateway.connected_count == 0
    assert sorted((d.device_name, r) for d, r in handler.offline) == [
        ("tcp1", "server stopping"),
        ("ws1", "server stopping"),
    ]
    await asyncio.wait_for(tcp.disconnected.wait(), 5)
    await asyncio.wait_for(ws.disconnected.wait(), 5)
    assert await half_open.closed_by_server()
    half_open.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", gateway.port)


def test_runs_on_uvloop() -> None:
    """uvloop's transports are not asyncio.Transport subclasses; the gateway must not care."""
    uvloop = pytest.importorskip("uvloop")  # comes with uvicorn[standard], not pinned itself

    async def scenario() -> None:
        handler = FakeHandler()
        gw = MqttGateway(handler)
        await gw.start("127.0.0.1", 0, ws_port=0)
        try:
            for transport, port in (("tcp", gw.port), ("websockets", gw.ws_port or 0)):
                async with aiomqtt.Client(
                    "127.0.0.1",
                    port,
                    identifier=P + "uv",
                    username="u",
                    password=GOOD,
                    transport=transport,  # type: ignore[arg-type]
                    websocket_path="/mqtt",
                ) as client:
                    await client.subscribe(down("uv"), qos=1)
                    await client.publish(up("uv"), b"x", qos=1)
                    assert gw.publish_nowait(P + "uv", down("uv"), b"y", qos=1)
                    async for message in client.messages:
                        assert message.payload == b"y"
                        break
        finally:
            await gw.stop()
        assert len(handler.messages) == 2

    uvloop.run(scenario())

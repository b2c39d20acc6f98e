"""ivcloud's STUN server over real UDP sockets: aioice's STUN client and ICE agent and aiortc's
RTCPeerConnection get their server-reflexive address from it.  Always on free ports."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aioice
import pytest
from aioice import stun as aioice_stun
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from ivcloud.app import Ivcloud
from ivcloud.media.stun_server import SourceRateLimiter, StunServer
from ivcloud.protocol.stun import BINDING, StunClass, StunMessage, encode, parse
from tests.conftest import make_settings


class StunClient(asyncio.DatagramProtocol):
    """aioice's STUN transactions (retransmissions, response matching) on a plain socket."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, aioice_stun.Transaction] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance: asyncio's selector datagram transport does not subclass it.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = aioice_stun.parse_message(data)  # raises on a bad FINGERPRINT
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None:
            transaction.response_received(message, addr)

    def send_stun(self, message: aioice_stun.Message, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), addr)

    async def binding(self, server: tuple[str, int]) -> aioice_stun.Message:
        request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
        transaction = aioice_stun.Transaction(request, server, self)
        self.transactions[request.transaction_id] = transaction
        try:
            response, _ = await transaction.run()
        finally:
            del self.transactions[request.transaction_id]
        return response


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


async def stun_client(local: str) -> tuple[asyncio.DatagramTransport, StunClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(StunClient, local_addr=(local, 0))
    return transport, client


@pytest.fixture
async def stun_server() -> AsyncIterator[StunServer]:
    server = StunServer()
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice leaves 127.0.0.1 out of its host candidates; pin them to it so the gathering
    is the same on any machine (with or without a network interface)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_aioice_client_gets_its_own_address(stun_server: StunServer) -> None:
    assert stun_server.address is not None and stun_server.address[1] != 3478
    transport, client = await stun_client("127.0.0.1")
    try:
        response = await client.binding(stun_server.address)
        mine = transport.get_extra_info("sockname")
        assert response.message_class == aioice_stun.Class.RESPONSE
        assert response.attributes["XOR-MAPPED-ADDRESS"] == mine
        assert response.attributes["MAPPED-ADDRESS"] == mine
        assert response.attributes["SOFTWARE"] == "ivcloud"
        assert "FINGERPRINT" in response.attributes  # and aioice checked it
    finally:
        transport.close()
    assert stun_server.answered == 1


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_ipv6() -> None:
    server = StunServer()
    await server.start("::1", 0)
    try:
        assert server.address is not None
        transport, client = await stun_client("::1")
        try:
            response = await client.binding(server.address)
            host, port = transport.get_extra_info("sockname")[:2]
            assert response.attributes["XOR-MAPPED-ADDRESS"] == (host, port)
        finally:
            transport.close()
    finally:
        await server.stop()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_dual_stack_reports_ipv4_clients_as_ipv4() -> None:
    server = StunServer()
    await server.start("::", 0)
    try:
        assert server.port is not None
        transport, client = await stun_client("127.0.0.1")
        try:
            response = await client.binding(("127.0.0.1", server.port))
            mine = transport.get_extra_info("sockname")
            # The socket saw ::ffff:127.0.0.1; the client is told its IPv4 address.
            assert response.attributes["XOR-MAPPED-ADDRESS"] == mine
        finally:
            transport.close()
    finally:
        await server.stop()


async def test_non_stun_datagrams_are_ignored(stun_server: StunServer) -> None:
    assert stun_server.address is not None
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    try:
        request = encode(StunMessage(BINDING, StunClass.REQUEST, b"after-junk!!"))
        # (asyncio does not send empty datagrams, so no b"" here)
        for junk in (b"\x80\x60" + bytes(30), b"hello", b"\x16\xfe\xfd" + bytes(40)):
            transport.sendto(junk, stun_server.address)
        transport.sendto(request, stun_server.address)
        data, addr = await asyncio.wait_for(collector.queue.get(), 10)
        # The first (and, loopback being in order, only) answer is the request's.
        assert addr == stun_server.address
        assert parse(data).transaction_id == b"after-junk!!"
        assert stun_server.ignored == 3
    finally:
        transport.close()


async def test_rate_limit_per_source() -> None:
    now = [100.0]
    server = StunServer(rate_limit=3, clock=lambda: now[0])
    await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    try:
        assert server.address is not None

        def request(i: int) -> bytes:
            return encode(StunMessage(BINDING, StunClass.REQUEST, i.to_bytes(12, "big")))

        for i in range(5):
            transport.sendto(request(i), server.address)

        async def received_through(last: int) -> list[int]:
            got: list[int] = []
            while not got or got[-1] != last:
                data, _ = await asyncio.wait_for(collector.queue.get(), 10)
                got.append(int.from_bytes(parse(data).transaction_id, "big"))
            return got

        # A marker from another source address shows when the five have been handled.
        other, other_collector = await loop.create_datagram_endpoint(
            Collector, local_addr=("127.0.0.2", 0)
        )
        try:
            other.sendto(request(99), server.address)
            await asyncio.wait_for(other_collector.queue.get(), 10)
        finally:
            other.close()
        assert (server.answered, server.dropped) == (4, 2)
        now[0] += 1.0  # the next window
        transport.sendto(request(5), server.address)
        assert await received_through(5) == [0, 1, 2, 5]
    finally:
        transport.close()
        await server.stop()


def test_rate_limiter_bounds_its_memory() -> None:
    now = [0.0]
    limiter = SourceRateLimiter(2, clock=lambda: now[0], max_sources=2)
    assert [limiter.allow("a"), limiter.allow("a"), limiter.allow("a")] == [True, True, False]
    assert limiter.allow("b")
    assert not limiter.allow("c")  # table full for this window
    now[0] = 1.5
    assert limiter.allow("c") and limiter.allow("a")


async def test_stop_releases_the_port() -> None:
    server = StunServer()
    await server.start("127.0.0.1", 0)
    port = server.port
    assert port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError):
        sock.bind(("127.0.0.1", port))  # taken: no SO_REUSEADDR sharing
    await server.stop()
    assert server.port is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # free again


async def test_aioice_gathers_a_server_reflexive_candidate(
    stun_server: StunServer, loopback_ice: None
) -> None:
    assert stun_server.address is not None
    conn = aioice.Connection(ice_controlling=True, stun_server=stun_server.address, use_ipv6=False)
    try:
        await conn.gather_candidates()
        by_type = {c.type: c for c in conn.local_candidates}
        host, srflx = by_type["host"], by_type["srflx"]
        # No NAT on loopback: the reflexive address is the host candidate's own.
        assert (srflx.host, srflx.port) == (host.host, host.port)
        assert (srflx.related_address, srflx.related_port) == (host.host, host.port)
    finally:
        await conn.close()


async def test_ivcloud_serves_stun_to_aiortc(server: Ivcloud, loopback_ice: None) -> None:
    """The running instance's STUN listener, announced through its ICE server list, gives
    a browser-like peer (aiortc) a srflx candidate."""
    assert server.endpoints is not None and server.stun.port is not None
    assert server.stun.port != 3478
    stun_url = f"stun:127.0.0.1:{server.stun.port}"
    assert server.endpoints.stun_url == stun_url
    saved = json.loads((server.settings.data_dir / "server.json").read_text())
    assert saved["stun_url"] == stun_url
    ice_servers = server.ice.ice_servers("user-1", now=1_700_000_000)
    assert ice_servers == [{"urls": [stun_url]}]

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers]))
    try:
        pc.createDataChannel("xp2p")
        await pc.setLocalDescription(await pc.createOffer())  # gathers
        candidates = [
            line.split() for line in pc.localDescription.sdp.splitlines() if "candidate:" in line
        ]
        kinds = {c[7] for c in candidates}
        assert {"host", "srflx"} <= kinds
        srflx = next(c for c in candidates if c[7] == "srflx")
        host = next(c for c in candidates if c[7] == "host")
        assert (srflx[4], srflx[5]) == (host[4], host[5])
    finally:
        await pc.close()
    assert server.stun.answered >= 1


async def test_stun_can_be_turned_off(tmp_path: Path) -> None:
    instance = Ivcloud(make_settings(tmp_path / "data", stun_port="off"))
    endpoints = await instance.start()
    try:
        assert instance.stun.port is None
        assert endpoints.stun_url is None
        assert instance.ice.ice_servers("user-1", now=0) == []
    finally:
        await instance.stop()

"""ICE server lists and TURN REST credentials, proven against a real coturn: credentials
minted by IceService allocate a relay (aioice's TURN client, aiortc's ICE agent) and relay
datagrams; wrong or expired ones are refused with 401."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aioice
import pytest
from aioice import stun as aioice_stun
from aioice import turn as aioice_turn
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from ivcloud.app import Ivcloud
from ivcloud.config import Settings, load_settings
from ivcloud.services.errors import InvalidInput
from ivcloud.services.ice import IceService, stun_url, turn_rest_credentials, validate_turn_url
from tests import turn_server
from tests.conftest import make_settings
from tests.turn_server import SECRET, Coturn

coturn = turn_server.coturn  # the fixture, used by name

# -- credentials and the server list (no network) ---------------------------------------


def test_turn_rest_credentials_format() -> None:
    creds = turn_rest_credentials(b"north", "user-7", 1_700_003_600)
    assert creds.username == "1700003600:user-7"
    assert creds.expires_at == 1_700_003_600
    raw = base64.b64decode(creds.credential, validate=True)
    assert raw == hmac.new(b"north", b"1700003600:user-7", hashlib.sha1).digest()
    assert creds.credential not in repr(creds)
    assert turn_rest_credentials(b"south", "user-7", 1_700_003_600).credential != creds.credential


def test_ice_servers_shape() -> None:
    ice = IceService(
        stun_urls=["stun:stun.example.com:3478"],
        turn_urls=["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
        turn_secret=SECRET,
        turn_ttl_seconds=600,
    )
    servers = ice.ice_servers("user-1", now=1_700_000_000)
    assert servers[0] == {"urls": ["stun:stun.example.com:3478"]}
    assert servers[1]["urls"] == [
        "turn:turn.example.com:3478?transport=udp",
        "turns:turn.example.com:5349",
    ]
    assert servers[1]["username"] == "1700000600:user-1"
    assert (
        servers[1]["credential"]
        == turn_rest_credentials(SECRET.encode(), "user-1", 1_700_000_600).credential
    )
    # The browser / aiortc RTCIceServer shape, taken as is.
    for entry in servers:
        assert RTCIceServer(**entry).urls == entry["urls"]
    assert SECRET not in repr(ice)


def test_without_turn_only_stun() -> None:
    ice = IceService(stun_urls=[stun_url("::1", 3478)])
    assert ice.ice_servers("u", now=0) == [{"urls": ["stun:[::1]:3478"]}]
    assert ice.turn_credentials("u", now=0) is None
    assert not ice.turn_enabled


@pytest.mark.parametrize("user_ref", ["", "a:b", "has space", "x" * 129, "é", "tab\t"])
def test_user_ref_is_checked(user_ref: str) -> None:
    ice = IceService(turn_urls=["turn:t.example.com"], turn_secret=SECRET)
    with pytest.raises(InvalidInput):
        ice.ice_servers(user_ref, now=0)


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.com",
        "turn:turn.example.com:3478",
        "turn:192.0.2.1:3478?transport=udp",
        "turn:[2001:db8::1]:3478?transport=tcp",
        "turns:turn.example.com:5349",
    ],
)
def test_turn_urls_accepted(url: str) -> None:
    assert validate_turn_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "stun:turn.example.com",
        "http://turn.example.com",
        "turn:",
        "turn:host:99999",
        "turn:host:3478?transport=sctp",
        "turn://host:3478",
        "turn:user@host",
    ],
)
def test_turn_urls_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a TURN URL"):
        validate_turn_url(url)
    with pytest.raises(ValueError, match="turn_urls"):
        Settings(turn_urls=[url], turn_secret=SECRET)


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(data_dir=tmp_path)
    assert (s.stun_port, s.turn_urls, s.turn_secret, s.turn_ttl_seconds) == (3478, [], None, 3600)
    with pytest.raises(ValueError, match="turn_secret"):
        Settings(turn_urls=["turn:t.example.com"])
    monkeypatch.setenv("IVCLOUD_TURN_URLS", "turn:a.example.com:3478, turns:a.example.com:5349")
    monkeypatch.setenv("IVCLOUD_TURN_SECRET", SECRET)
    monkeypatch.setenv("IVCLOUD_STUN_PORT", "off")
    s = load_settings(None)
    assert s.turn_urls == ["turn:a.example.com:3478", "turns:a.example.com:5349"]
    assert s.stun_port is None
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    monkeypatch.setenv("IVCLOUD_TURN_URLS", '["turn:b.example.com"]')
    assert load_settings(None).turn_urls == ["turn:b.example.com"]
    toml = tmp_path / "ivcloud.toml"
    toml.write_text("stun_port = 0\nturn_ttl_seconds = 30\n")
    with pytest.raises(ValueError, match="turn_ttl_seconds"):
        load_settings(toml)


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.closed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@contextlib.asynccontextmanager
async def turn_allocation(
    coturn: Coturn, username: str, password: str
) -> AsyncIterator[tuple[aioice_turn.TurnTransport, Receiver]]:
    transport, receiver = await aioice_turn.create_turn_endpoint(
        Receiver, server_addr=coturn.address, username=username, password=password
    )
    try:
        yield transport, receiver
    finally:
        transport.close()  # deletes the allocation (Refresh, lifetime 0)
        await asyncio.wait_for(receiver.closed.wait(), 10)


async def test_minted_credentials_allocate_and_relay(coturn: Coturn) -> None:
    ice = IceService(turn_urls=[coturn.url()], turn_secret=SECRET)
    creds = ice.turn_credentials("alice", now=int(time.time()))
    assert creds is not None
    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(
        Receiver, local_addr=("127.0.0.1", 0)
    )
    peer_address = peer_transport.get_extra_info("sockname")
    try:
        async with turn_allocation(coturn, creds.username, creds.credential) as (client, inbox):
            relayed = client.get_extra_info("sockname")
            assert relayed[0] == "127.0.0.1"
            assert coturn.min_port <= relayed[1] <= coturn.max_port
            client.sendto(b"ping via turn", peer_address)  # binds a channel first
            data, source = await asyncio.wait_for(peer.queue.get(), 10)
            assert (data, source) == (b"ping via turn", relayed)
            peer_transport.sendto(b"pong", relayed)
            assert await asyncio.wait_for(inbox.queue.get(), 10) == (b"pong", peer_address)
    finally:
        peer_transport.close()


@pytest.mark.parametrize("case", ["wrong secret", "expired", "tampered username"])
async def test_bad_credentials_are_refused(coturn: Coturn, case: str) -> None:
    now = int(time.time())
    if case == "wrong secret":
        creds = IceService(turn_urls=[coturn.url()], turn_secret="not-the-secret")
        minted = creds.turn_credentials("mallory", now)
        assert minted is not None
        username, password = minted.username, minted.credential
    elif case == "expired":
        ice = IceService(turn_urls=[coturn.url()], turn_secret=SECRET, turn_ttl_seconds=60)
        minted = ice.turn_credentials("alice", now - 120)  # expired a minute ago
        assert minted is not None and minted.expires_at < now
        username, password = minted.username, minted.credential
    else:  # stretching the expiry of a valid credential
        ice = IceService(turn_urls=[coturn.url()], turn_secret=SECRET)
        minted = ice.turn_credentials("alice", now)
        assert minted is not None
        username = f"{minted.expires_at + 86400}:alice"
        password = minted.credential
    with pytest.raises(aioice_stun.TransactionFailed) as info:
        async with turn_allocation(coturn, username, password):
            pass
    assert info.value.response.error_code == 401


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice leaves 127.0.0.1 out of its host candidates; pin them to it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


async def test_aiortc_gathers_srflx_and_relay_from_ivcloud_ice_servers(
    coturn: Coturn, tmp_path: Path, loopback_ice: None
) -> None:
    """A running ivcloud configured with the TURN server: its ICE server list, given as is to
    aiortc, yields host, server-reflexive (ivcloud's STUN) and relayed (coturn) candidates."""
    instance = Ivcloud(
        make_settings(tmp_path / "data", turn_urls=[coturn.url()], turn_secret=SECRET)
    )
    await instance.start()
    try:
        servers = instance.ice.ice_servers("user-42", now=int(time.time()))
        assert [s["urls"][0].split(":")[0] for s in servers] == ["stun", "turn"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**s) for s in servers]))
        try:
            pc.createDataChannel("xp2p")
            await pc.setLocalDescription(await pc.createOffer())
            candidates = [
                line.split()
                for line in pc.localDescription.sdp.splitlines()
                if "candidate:" in line
            ]
            by_type = {c[7]: c for c in candidates}
            assert {"host", "srflx", "relay"} <= set(by_type)
            relay_port = int(by_type["relay"][5])
            assert coturn.min_port <= relay_port <= coturn.max_port
        finally:
            await pc.close()
        assert instance.stun.answered >= 1
    finally:
        await instance.stop()

"""Device authentication, per-device authorization and presence through the real gateway,
with real credentials (spec §1.2/§1.3): each rule is attacked, not just exercised."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.protocol.credentials import make_username, sign_password
from ivcloud.protocol.mqtt import (
    Connack,
    Connect,
    Packet,
    PacketReader,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode,
)
from tests.helpers import Provisioned, provision
from tests.rawdevice import device_for


class RawSocket:
    """A bare TCP connection speaking MQTT through the sans-IO codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = PacketReader(max_packet_size=4096)
        self.received: list[Packet] = []

    async def send(self, *packets: Packet) -> None:
        for packet in packets:
            self._writer.write(encode(packet))
        await self._writer.drain()

    async def until(self, done: Callable[[list[Packet]], bool]) -> list[Packet]:
        while not done(self.received):
            chunk = await asyncio.wait_for(self._reader.read(4096), 5)
            assert chunk, f"connection closed; received {self.received}"
            self.received.extend(self._parser.feed(chunk))
        return self.received


@contextlib.asynccontextmanager
async def raw_socket(server: Ivcloud) -> AsyncIterator[RawSocket]:
    assert server.endpoints is not None
    reader, writer = await asyncio.open_connection(
        server.endpoints.mqtt_host, server.endpoints.mqtt_port
    )
    try:
        yield RawSocket(reader, writer)
    finally:
        writer.close()


async def raw_connect(server: Ivcloud, connect: Connect) -> int:
    """Send one CONNECT; return the CONNACK return code."""
    async with raw_socket(server) as sock:
        await sock.send(connect)
        [connack] = await sock.until(bool)
        assert isinstance(connack, Connack)
        return connack.return_code


def credentials(
    p: Provisioned,
    *,
    secret: str | None = None,
    expiry_offset: int = 3600,
    algorithm: str = "hmacsha256",
    now: int | None = None,
    client_id: str | None = None,
) -> Connect:
    ts = int(time.time()) if now is None else now
    username = make_username(p.product_id, p.device_name, now=ts, ttl=expiry_offset, connid="ab1cd")
    password = sign_password(secret or p.secret, username, algorithm)  # type: ignore[arg-type]
    return Connect(
        client_id=client_id or p.product_id + p.device_name,
        username=username,
        password=password.encode(),
    )


@pytest.fixture
async def lock(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "lock-video", "lock", "lock01")


async def test_valid_credentials_sha256_and_sha1(server: Ivcloud, lock: Provisioned) -> None:
    assert await raw_connect(server, credentials(lock)) == 0
    assert await raw_connect(server, credentials(lock, algorithm="hmacsha1")) == 0


async def test_mqtt_31_protocol_level(server: Ivcloud, lock: Provisioned) -> None:
    c = credentials(lock)
    legacy = Connect(
        protocol_name="MQIsdp",
        protocol_level=3,
        client_id=c.client_id,
        username=c.username,
        password=c.password,
    )
    assert await raw_connect(server, legacy) == 0


async def test_python_sdk_13_digit_expiry_is_accepted(server: Ivcloud, lock: Provisioned) -> None:
    # Python SDK 1.0.0 puts the current time in milliseconds into the expiry field.
    ms = int(time.time() * 1000)
    username = f"{lock.product_id}{lock.device_name};21010406;abcde;{ms}"
    password = sign_password(lock.secret, username, "hmacsha1")
    connect = Connect(
        client_id=lock.product_id + lock.device_name, username=username, password=password.encode()
    )
    assert await raw_connect(server, connect) == 0


async def test_wrong_secret_is_refused_4(server: Ivcloud, lock: Provisioned) -> None:
    assert await raw_connect(server, credentials(lock, secret="AAAAAAAAAAAAAAAAAAAAAA==")) == 4


async def test_expired_credentials_are_refused_5(server: Ivcloud, lock: Provisioned) -> None:
    old = int(time.time()) - 7200
    assert await raw_connect(server, credentials(lock, now=old, expiry_offset=60)) == 5


async def test_unknown_device_is_refused_4(server: Ivcloud, lock: Provisioned) -> None:
    ghost = Provisioned(lock.product_id, "ghost", lock.secret)
    assert await raw_connect(server, credentials(ghost)) == 4


async def test_client_id_mismatch_is_refused(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    resp = await admin.post(f"/products/{lock.product_id}/devices", json={"DeviceName": "other"})
    assert resp.status_code == 201
    # Valid credentials of lock01 presented under another device's ClientId.
    code = await raw_connect(server, credentials(lock, client_id=lock.product_id + "other"))
    assert code == 4


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (None, None),
        ("", b"x"),
        ("a;b;c", b"x;hmacsha1"),
        ("x;1;2;notanumber", b"00;hmacsha1"),
        ("{cid};1;2;9999999999", b"zz;hmacmd5"),
        ("{cid};1;2;9999999999", b"\xff\xfe"),
    ],
)
async def test_malformed_credentials_are_refused_4(
    server: Ivcloud, lock: Provisioned, username: str | None, password: bytes | None
) -> None:
    cid = lock.product_id + lock.device_name
    connect = Connect(
        client_id=cid,
        username=username.format(cid=cid) if username else username,
        password=password,
    )
    assert await raw_connect(server, connect) == 4


async def test_reset_secret_disconnects_and_old_secret_fails(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    resp = await admin.post(f"/products/{lock.product_id}/devices/{lock.device_name}/reset-secret")
    new_secret = resp.json()["DeviceSecret"]
    assert new_secret != lock.secret
    assert await raw_connect(server, credentials(lock)) == 4
    assert await raw_connect(server, credentials(lock, secret=new_secret)) == 0


async def test_device_cannot_touch_another_devices_topics(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    resp = await admin.post(f"/products/{lock.product_id}/devices", json={"DeviceName": "victim"})
    victim = Provisioned(lock.product_id, "victim", resp.json()["DeviceSecret"])
    async with device_for(server, lock) as attacker:
        # Publish a report on the victim's topic: dropped, nothing stored for the victim.
        await attacker.publish(
            f"$thing/up/property/{victim.product_id}/{victim.device_name}",
            {"method": "report", "clientToken": "x", "params": {"battery_percentage": 1}},
            qos=0,
        )
        # The attacker's own session keeps working (and orders after the drop).
        reply = await attacker.request("property", {"method": "get_status", "clientToken": "own"})
        assert reply["code"] == 0
    resp = await admin.get(f"/products/{victim.product_id}/devices/{victim.device_name}")
    assert resp.json()["Properties"] == {}


@pytest.mark.parametrize(
    "topic_filter",
    [
        "$thing/down/property/{p}/victim",
        "$thing/down/property/{p}/+",
        "$thing/#",
        "#",
        "$thing/down/+/{p}/victim",
        "$ota/update/{p}/victim",
        "{p}/victim/data",
    ],
)
async def test_subscribing_to_others_topics_is_refused(
    server: Ivcloud, lock: Provisioned, topic_filter: str
) -> None:
    async with raw_socket(server) as sock:
        await sock.send(
            credentials(lock),
            Subscribe(
                packet_id=7,
                topics=(
                    (topic_filter.format(p=lock.product_id), 1),
                    (f"$thing/down/property/{lock.product_id}/{lock.device_name}", 1),
                ),
            ),
        )
        got = await sock.until(lambda got: any(isinstance(p, Suback) for p in got))
    suback = next(p for p in got if isinstance(p, Suback))
    assert suback.return_codes == (0x80, 1)


async def test_presence_online_and_offline(
    server: Ivcloud, admin: httpx.AsyncClient, lock: Provisioned
) -> None:
    url = f"/products/{lock.product_id}/devices/{lock.device_name}"
    assert (await admin.get(url)).json()["Online"] == 0
    sub = server.bus.subscribe("device.online")
    async with device_for(server, lock):
        event = await asyncio.wait_for(sub.get(), 5)
        assert getattr(event, "online", None) is True
        body = (await admin.get(url)).json()
        assert body["Online"] == 1
        assert body["LastIp"] == "127.0.0.1"
    event = await asyncio.wait_for(sub.get(), 5)
    assert getattr(event, "online", None) is False
    assert (await admin.get(url)).json()["Online"] == 0


async def test_device_publish_to_foreign_topic_with_qos1_gets_no_puback(
    server: Ivcloud, lock: Provisioned
) -> None:
    own = f"$thing/up/property/{lock.product_id}/{lock.device_name}"
    async with raw_socket(server) as sock:
        await sock.send(
            credentials(lock),
            Publish(topic="$thing/up/property/OTHERPRODU/x", payload=b"{}", qos=1, packet_id=5),
            Publish(topic=own, payload=b"{}", qos=1, packet_id=6),
        )
        got = await sock.until(lambda got: any(isinstance(p, Puback) for p in got))
    assert [p.packet_id for p in got if isinstance(p, Puback)] == [6]

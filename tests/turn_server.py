"""Debian's coturn as a test TURN server on free loopback ports, with REST-API
("use-auth-secret") authentication — the credentials ivcloud's IceService mints. Shared by
the ICE tests and the WebRTC peer tests (a fixture module, not a conftest, so each test file
says what it uses: ``from tests.turn_server import coturn``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivcloud.protocol.stun import BINDING, StunClass, StunMessage, encode, parse

__all__ = ["REALM", "SECRET", "Coturn", "coturn"]

SECRET = "test-static-auth-secret"
REALM = "ivcloud.test"


@dataclass
class Coturn:
    port: int
    min_port: int
    max_port: int
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_relay_range(size: int = 16) -> tuple[int, int]:
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(100):
        low = rng.randrange(20000, 60000 - size)
        if all(_udp_free(p) for p in range(low, low + size)):
            return low, low + size - 1
    raise RuntimeError("no free UDP port range for coturn's relays")


async def _answers_stun(address: tuple[str, int]) -> bool:
    """One STUN Binding round trip (coturn answers STUN on its TURN port)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(encode(StunMessage(BINDING, StunClass.REQUEST, os.urandom(12))), address)
        with contextlib.suppress(TimeoutError):
            return parse(await asyncio.wait_for(got, 0.2)).cls is StunClass.SUCCESS
        return False
    finally:
        transport.close()


async def _start_coturn(exe: str, workdir: Path) -> tuple[asyncio.subprocess.Process, Coturn]:
    port = _free_udp_port()
    low, high = _free_relay_range()
    info = Coturn(port=port, min_port=low, max_port=high, log=workdir / "turnserver.log")
    args = [
        "-n",  # no configuration file: nothing from /etc/turnserver.conf
        f"--listening-port={port}",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--min-port={low}",
        f"--max-port={high}",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        f"--realm={REALM}",
        "--no-tcp",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--no-cli",
        "--allow-loopback-peers",  # the test's peer is on 127.0.0.1
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--log-file={info.log}",
        "--simple-log",
        "--no-stdout-log",
    ]
    proc = await asyncio.create_subprocess_exec(
        exe, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return proc, info


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    """Debian's coturn on free ports, REST-API authentication with :data:`SECRET`."""
    exe = shutil.which("turnserver")
    if exe is None:
        pytest.skip("coturn is not installed (apt-get install coturn; .ci/run installs it)")
    for attempt in range(3):  # a port picked as free may be taken before coturn binds it
        workdir = tmp_path / f"coturn{attempt}"
        workdir.mkdir()
        proc, info = await _start_coturn(exe, workdir)
        try:
            deadline = time.monotonic() + 15
            while proc.returncode is None and time.monotonic() < deadline:
                if await _answers_stun(info.address):
                    break
            else:
                log = info.log.read_text() if info.log.exists() else "(no log)"
                if attempt == 2:
                    raise AssertionError(f"coturn did not come up; its log:\n{log[-3000:]}")
                continue
            yield info
            return
        finally:
            await _stop(proc)

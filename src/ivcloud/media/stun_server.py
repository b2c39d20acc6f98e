"""ivcloud's STUN server: an asyncio UDP endpoint around :func:`ivcloud.protocol.stun.answer`.

Phones, browsers and devices ask it for their server-reflexive address while gathering ICE
candidates for a live view (docs/live-video.md).  It keeps no state per client except the
rate limiter's counters, so any number of instances can answer behind one name.

Binding: one UDP socket on ``host:port`` (``port`` 0 = a free port, read back from
:attr:`StunServer.port`).  An IPv6 host of ``::`` is a dual-stack socket where the OS allows
it, so one listener serves IPv4 and IPv6 clients.  No ``SO_REUSEADDR``: on Linux it would let
two UDP sockets share a port silently instead of failing the second bind.

Rate limiting: at most ``rate_limit`` answers per source IP address per one-second window
(0 = unlimited); the rest are dropped unanswered.  A Binding response is about three times the
size of the smallest request, so without a limit the server is a (small) amplifier for
spoofed-source floods.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import cast

import structlog

from ivcloud.protocol.stun import SOFTWARE, answer

__all__ = ["SourceRateLimiter", "StunServer", "bind_udp_socket"]

log = structlog.get_logger("ivcloud.stun")


def bind_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (``::`` is dual-stack)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        if family == socket.AF_INET6 and host == "::":
            with contextlib.suppress(OSError):  # an IPv6-only OS: IPv6 clients only
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class SourceRateLimiter:
    """Counts per source IP in fixed one-second windows.  Memory is bounded: while
    ``max_sources`` addresses are counted in the current window, new ones are refused."""

    __slots__ = ("_clock", "_counts", "_limit", "_max_sources", "_window_start")

    def __init__(
        self,
        per_second: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 100_000,
    ) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self._limit = per_second
        self._clock = clock
        self._max_sources = max_sources
        self._counts: dict[str, int] = {}
        self._window_start = clock()

    def allow(self, source_ip: str) -> bool:
        now = self._clock()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._counts.clear()
        count = self._counts.get(source_ip, 0)
        if count >= self._limit or (count == 0 and len(self._counts) >= self._max_sources):
            return False
        self._counts[source_ip] = count + 1
        return True


class _StunProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_server", "transport")

    def __init__(self, server: StunServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        server = self._server
        host, port = str(addr[0]), int(addr[1])
        if server.limiter is not None and not server.limiter.allow(host):
            server.dropped += 1
            return
        response = answer(data, (host, port), software=server.software)
        if response is None:
            server.ignored += 1
            return
        assert self.transport is not None
        self.transport.sendto(response, addr)
        server.answered += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier answers (the client went away): nothing to do.
        log.debug("stun.error_received", error=str(exc))


class StunServer:
    """``await start(host, port)``, then :attr:`port`; ``await stop()``."""

    def __init__(
        self,
        *,
        rate_limit: int = 0,
        software: str | None = SOFTWARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.software = software
        self.limiter = SourceRateLimiter(rate_limit, clock=clock) if rate_limit > 0 else None
        self.answered = 0
        self.ignored = 0
        self.dropped = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        if self._transport is not None:
            raise RuntimeError("STUN server already started")
        loop = asyncio.get_running_loop()
        sock = bind_udp_socket(host, port)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _StunProtocol(self), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        name = sock.getsockname()
        self._address = (str(name[0]), int(name[1]))
        log.info("stun.listening", host=self._address[0], port=self._address[1])

    async def stop(self) -> None:
        transport, self._transport = self._transport, None
        self._address = None
        if transport is not None:
            transport.close()
            await asyncio.sleep(0)  # let the loop run connection_lost and release the socket

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` while running."""
        return self._address

    @property
    def port(self) -> int | None:
        return None if self._address is None else self._address[1]

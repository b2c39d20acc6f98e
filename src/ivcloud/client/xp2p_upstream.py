"""Streams the local proxy forwards to players, and the race between the two ways of
getting a live one (P2P tunnel, hub).

An :class:`Upstream` is what one player's response is fed from; :func:`prime` reads a new
one up to its first whole FLV tag — the race's finish line, since a tag is the first thing
a player can show — and :func:`first_success` runs the attempts, keeps the first to finish
and cancels (and closes) the others. Errors become XP2P errors (logged) here, so the proxy
only maps them to HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from ivcloud.client.p2p import P2PError, P2PRequestFailed, P2PStreamError, P2PTimeout
from ivcloud.client.xp2p_errors import (
    Xp2pError,
    Xp2pP2PUnavailable,
    Xp2pRequestFailed,
    Xp2pTimeout,
    logged,
    seed_line,
)
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.errors import MediaFormatError

__all__ = ["MAX_TAG", "Path", "Upstream", "first_success", "open_hub", "p2p_failure", "prime"]

Path = Literal["direct", "turn", "hub"]
Closer = Callable[[], Awaitable[None]]
MAX_TAG = 4 * 1024 * 1024  # the hub's own limit for a tag
#: A device's XP2P status for a refused stream → the HTTP status the player gets.
HTTP_FOR_STATUS = {404: 404, 405: 503, 406: 501, 1: 409}
_HUB_STATUSES = (403, 404, 409, 503, 504)  # passed on to the player as they are
_TUNNEL_FAILED = 2  # P2PState.FAILED, the ``state`` of the −1010 line


@dataclass
class Upstream:
    """An open stream: ``first`` was read while racing (the FLV header and at least one
    whole tag; empty when not raced), ``rest`` follows; both are forwarded unchanged."""

    path: Path
    first: bytes
    rest: AsyncIterator[bytes]
    closer: Closer
    _closed: bool = field(default=False, repr=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        async for chunk in self.rest:
            yield chunk

    async def aclose(self) -> None:
        """Stop it at the source (the device's stream is cancelled, the hub viewer leaves)."""
        if not self._closed:
            self._closed = True
            await self.closer()


def p2p_failure(exc: P2PError, device_id: str) -> Xp2pError:
    """A tunnel error as an XP2P error (logged): the device's refusal keeps its status."""
    error: Xp2pError
    if isinstance(exc, P2PRequestFailed):
        error = Xp2pRequestFailed(
            f"the device refused: {exc.status} {exc.message}",
            status=exc.status,
            http_status=HTTP_FOR_STATUS.get(exc.status, 502),
        )
    elif isinstance(exc, P2PStreamError):
        error = Xp2pRequestFailed(f"the device ended the stream: {exc}", status=500)
    elif isinstance(exc, P2PTimeout):
        error = Xp2pTimeout(codes.XP2P_ERR_TIMEOUT, "the device did not answer in time")
    else:  # closed, or aiortc missing
        error = Xp2pP2PUnavailable(
            seed_line(codes.XP2P_ERR_DETECT_NOTREADY, state=str(_TUNNEL_FAILED)),
            state=_TUNNEL_FAILED,
        )
    return logged(error, device_id=device_id)


async def prime(
    path: Path, chunks: AsyncIterator[bytes], closer: Closer, *, timeout_s: float, device_id: str
) -> Upstream:
    """Read ``chunks`` until one whole FLV tag has arrived (closing it on any failure)."""
    reader = FlvReader(max_tag_size=MAX_TAG)
    first = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await anext(chunks)
                first += chunk
                if reader.feed(chunk):
                    return Upstream(path, bytes(first), chunks, closer)
    except BaseException as exc:
        await closer()
        if isinstance(exc, StopAsyncIteration | MediaFormatError | httpx.HTTPError):
            raise logged(
                Xp2pRequestFailed(f"the {path} stream broke before its first tag", status=502),
                device_id=device_id,
            ) from None
        if isinstance(exc, TimeoutError):
            raise logged(
                Xp2pTimeout(codes.XP2P_ERR_TIMEOUT, f"no {path} video within {timeout_s} s"),
                device_id=device_id,
            ) from None
        if isinstance(exc, P2PError):
            raise p2p_failure(exc, device_id) from None
        raise


async def open_hub(
    http: httpx.AsyncClient, url: str, *, timeout_s: float, device_id: str
) -> Upstream:
    """GET the hub's HTTP-FLV URL and prime it; the hub's refusal keeps its HTTP status
    (403 no access, 409 device offline, 503 refused, 504 device did not push)."""
    try:
        response = await http.send(http.build_request("GET", url), stream=True)
    except httpx.HTTPError as exc:
        raise logged(
            Xp2pRequestFailed(f"hub stream failed: {type(exc).__name__}", status=502),
            device_id=device_id,
        ) from None
    if response.status_code != 200:
        body = await response.aread()
        await response.aclose()
        status = response.status_code
        raise logged(
            Xp2pRequestFailed(
                f"hub refused the stream: HTTP {status} {body[:200].decode(errors='replace')}",
                status=status,
                http_status=status if status in _HUB_STATUSES else 502,
            ),
            device_id=device_id,
        )
    return await prime(
        "hub", response.aiter_raw(), response.aclose, timeout_s=timeout_s, device_id=device_id
    )


async def first_success(attempts: dict[asyncio.Task[Upstream], str]) -> Upstream:
    """The first attempt to succeed; the others are cancelled (and closed if they also
    got through). All failing: the hub's error if it ran (its status says most: offline,
    no access), else the tunnel's."""
    pending = set(attempts)
    errors: dict[str, BaseException] = {}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winners = [t for t in done if not t.cancelled() and t.exception() is None]
            for task in done:
                if task not in winners:
                    errors[attempts[task]] = task.exception() or asyncio.CancelledError()
            if winners:
                for extra in winners[1:]:
                    await extra.result().aclose()
                return winners[0].result()
    finally:
        for task in pending:
            task.cancel()
        for late in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(late, Upstream):  # finished just as it was cancelled
                await late.aclose()
    raise errors.get("hub") or next(iter(errors.values()))

"""Hub viewers written from the stream's fan-out itself, not from a task per viewer.

Why: on a fast network a hub viewer costs what its writes cost, and with a writer task per
viewer every video frame meant, per viewer, a future resolved, a task scheduled and run, and
only then the socket write. Node-based relays (node-media-server) write every subscriber from
one loop over them; :class:`DirectWriter` does the same: when the stream offers a viewer an
urgent item, the viewer's ``wake`` drains its backlog into ASGI ``send`` calls right there,
inside the publisher's task. It serves HTTP-FLV (response body chunks) and the WebSocket
viewers (``websocket.send`` messages) alike: only the message an item becomes differs.

uvicorn's ``send`` (for a response body, and for a WebSocket message on either of its
WebSocket implementations) completes without suspending unless the transport is paused by
flow control (the client is not reading fast enough). The writer therefore steps
each ``send`` coroutine by hand: finished at once is the common case; if it suspends, the
coroutine is finished in a task (the same await protocol a Task uses), and that task keeps
draining the backlog until it is empty, while new items just queue (bounded by the viewer's
backlog limit, past which the viewer skips to the next keyframe, as every viewer does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import Any

import structlog
from starlette.types import Message, Send

from ivcloud.media.fanout import Item, coalesce
from ivcloud.media.hub import ViewerSession

log = structlog.get_logger("ivcloud.api.media")


#: The ASGI message one coalesced item becomes.
ToMessage = Callable[[Item], Message]


def http_body(piece: Item) -> Message:
    body = piece.encode() if isinstance(piece, str) else piece
    return {"type": "http.response.body", "body": body, "more_body": True}


#: The end of an HTTP-FLV response (the final empty chunk).
HTTP_END: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def websocket_message(piece: Item) -> Message:
    if isinstance(piece, str):
        return {"type": "websocket.send", "text": piece}
    return {"type": "websocket.send", "bytes": piece}


class DirectWriter:
    """Writes ``session``'s items from wherever they are offered, each coalesced piece as
    ``to_message(piece)``; when the stream has ended and all is written, ``last`` (if any).

    ``finished`` is set then, or when a write failed. :meth:`close` stops writing (the
    viewer left)."""

    def __init__(
        self, session: ViewerSession, send: Send, to_message: ToMessage, last: Message | None
    ) -> None:
        self._session = session
        self._send = send
        self._to_message = to_message
        self._last = last
        self._blocked: asyncio.Task[None] | None = None
        self._closed = False
        self.finished = asyncio.Event()

    def start(self) -> None:
        """Take over the viewer's wake-ups and write what is queued already."""
        self._session.deliver_to(self._wake)
        self._wake()

    def close(self) -> None:
        self._closed = True
        blocked = self._blocked
        if blocked is not None and not blocked.done():
            blocked.cancel()

    # -- writing ----------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._blocked is None and not self._closed:
            self._drain()

    def _drain(self) -> None:
        """Write everything queued; stop at a write that has to wait for the client."""
        viewer = self._session.viewer
        while not self._closed:
            items = self._session.take()
            if not items:
                if viewer.ended:
                    self._write_last()
                return
            messages = [self._to_message(piece) for piece in coalesce(items)]
            for index, message in enumerate(messages):
                if not self._step(message, messages[index + 1 :], last=False):
                    return

    def _write_last(self) -> None:
        if self._last is None or self._step(self._last, [], last=True):
            self.finished.set()

    def _step(self, message: Message, rest: list[Message], *, last: bool) -> bool:
        """Run ``send(message)`` as far as it goes without waiting. True when it completed;
        False when it is waiting for the client (a task finishes it, then writes ``rest``
        and everything queued meanwhile) or failed (the writer is finished)."""
        coro = self._send(message).__await__()
        try:
            yielded = coro.send(None)
        except StopIteration:
            return True
        except Exception as exc:  # the connection broke under the write
            self._fail(exc)
            return False
        self._blocked = asyncio.get_running_loop().create_task(
            self._finish(coro, yielded, rest, last)
        )
        return False

    async def _finish(
        self, coro: Generator[Any, None, None], yielded: Any, rest: list[Message], last: bool
    ) -> None:
        try:
            await _resume(coro, yielded)
            if last:
                self.finished.set()
                return
            for message in rest:
                await self._send(message)
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception as exc:
            self._fail(exc)
            return
        finally:
            self._blocked = None
        self._drain()

    def _fail(self, exc: Exception) -> None:
        log.info("viewer_write_failed", stream=str(self._session.key), error=str(exc))
        self._closed = True
        self.finished.set()


async def _resume(coro: Generator[Any, None, None], yielded: Any) -> None:
    """Finish a coroutine that was started by hand and suspended on ``yielded``: wait for
    what it waits for, then step it on, exactly as a Task would (the coroutine itself sees
    the outcome of what it awaited)."""
    while True:
        if yielded is None:  # a bare yield: give the loop one turn
            await asyncio.sleep(0)
        else:
            # Taken over from the coroutine, as Task does: awaiting a future still marked
            # blocking raises "await wasn't used with future".
            yielded._asyncio_future_blocking = False
            with contextlib.suppress(Exception):
                await yielded
        try:
            yielded = coro.send(None)
        except StopIteration:
            return

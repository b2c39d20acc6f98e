"""The device end of the ``xp2p`` data channel: runs the XP2P request vocabulary through a
request handler and carries its answers, streams and talk uploads (framing and flow control:
:mod:`ivcloud.protocol.p2p_channel`).

Each request runs in its own task, so a slow command never holds up a stream's acks or a
cancel. Memory is bounded per request and per channel whatever the app does:

- a stream is sent only within the app's window (credit) — the app's reader paces it — and
  only while the channel's ``bufferedAmount`` is under ``high_water`` (the network paces
  it); when either blocks, the handler's stream is simply not read, so a live stream's
  frames are dropped upstream by the broadcaster (to the next keyframe), not queued here;
- talk audio waits in a queue of at most ``voice_queue`` messages per upload (the oldest is
  dropped: late talk audio is useless);
- at most ``max_open`` requests are open at once.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.p2p_channel import (
    DEFAULT_WINDOW,
    STATUS_BAD_MESSAGE,
    STATUS_BAD_REQUEST,
    STATUS_BUSY,
    STATUS_FAILED,
    STATUS_ID_IN_USE,
    STATUS_UNAVAILABLE,
    Accepted,
    Ack,
    AnswerMessage,
    Cancel,
    ChannelFrameError,
    CommandAnswer,
    Failed,
    Request,
    RequestHandler,
    RequestRefused,
    SendWindow,
    VoiceSink,
    chunks,
    decode_data,
    decode_request,
    encode_data,
    encode_text,
)

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

__all__ = ["ChannelLimits", "ChannelServer", "ChannelStats"]

log = structlog.get_logger("ivcloud.device.p2p")


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """Bounds of one data channel (device side)."""

    max_open: int = 16
    high_water: int = 1024 * 1024  # stop sending above this bufferedAmount …
    low_water: int = 256 * 1024  # … until it drains to this
    voice_queue: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.low_water < self.high_water:
            raise ValueError("need 0 < low_water < high_water")
        if self.max_open < 1 or self.voice_queue < 1:
            raise ValueError("max_open and voice_queue must be positive")


@dataclass(slots=True)
class ChannelStats:
    """Counters a device can log and tests assert on."""

    requests: int = 0
    commands: int = 0
    streams: int = 0
    voice_uploads: int = 0
    refused: int = 0  # answered with a non-zero status
    bad_messages: int = 0
    bytes_sent: int = 0
    credit_waits: int = 0  # a stream waited for the app's ack
    buffer_waits: int = 0  # a stream waited for bufferedAmount to drain
    max_buffered: int = 0  # highest bufferedAmount right after a send
    max_outstanding: int = 0  # most unacknowledged stream bytes
    voice_frames: int = 0
    voice_dropped: int = 0
    cancelled: int = 0


@dataclass(eq=False)
class _Open:
    """One request in progress."""

    req: Request
    credit: SendWindow
    task: asyncio.Task[None] | None = None
    credit_changed: asyncio.Event = field(default_factory=asyncio.Event)
    voice: deque[bytes] = field(default_factory=deque)
    voice_changed: asyncio.Event = field(default_factory=asyncio.Event)
    voice_end: bool = False


class ChannelServer:
    """Serves one ``xp2p`` channel with ``handler`` (``None``: every request gets 503)."""

    def __init__(
        self,
        channel: RTCDataChannel,
        handler: RequestHandler | None,
        limits: ChannelLimits | None = None,
    ) -> None:
        self._channel = channel
        self._handler = handler
        self.limits = limits or ChannelLimits()
        self.stats = ChannelStats()
        self._open: dict[int, _Open] = {}
        self._drained = asyncio.Event()
        self._closed = asyncio.Event()
        channel.bufferedAmountLowThreshold = self.limits.low_water
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._drained.set)
        channel.on("close", self._on_close)

    @property
    def open_requests(self) -> int:
        return len(self._open)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- incoming ---------------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._on_text(message)
            return
        try:
            frame = decode_data(message)
        except ChannelFrameError as exc:
            self.stats.bad_messages += 1
            self._answer(Failed(exc.id or 0, STATUS_BAD_MESSAGE, str(exc)))
            return
        op = self._open.get(frame.id)
        if op is None or op.voice_end:
            return  # the upload already ended or was refused: nothing to deliver to
        if frame.payload:
            if len(op.voice) >= self.limits.voice_queue:
                op.voice.popleft()
                self.stats.voice_dropped += 1
            op.voice.append(frame.payload)
        op.voice_end = frame.end
        op.voice_changed.set()

    def _on_text(self, text: str) -> None:
        try:
            msg = decode_request(text)
        except ChannelFrameError as exc:
            self.stats.bad_messages += 1
            self._answer(Failed(exc.id or 0, STATUS_BAD_MESSAGE, str(exc)))
            return
        if isinstance(msg, Ack):
            ack_op = self._open.get(msg.id)
            if ack_op is not None:
                try:
                    if ack_op.credit.on_ack(msg.consumed):
                        ack_op.credit_changed.set()
                except ChannelFrameError as exc:
                    self.stats.bad_messages += 1
                    self._answer(Failed(msg.id, STATUS_BAD_MESSAGE, str(exc)))
                    self._cancel(ack_op)
            return
        if isinstance(msg, Cancel):
            cancel_op = self._open.get(msg.id)
            if cancel_op is not None:
                self.stats.cancelled += 1
                self._cancel(cancel_op)
            return
        self._start(msg)

    def _start(self, req: Request) -> None:
        self.stats.requests += 1
        if self._closed.is_set() or self._handler is None:
            self._refuse(req.id, STATUS_UNAVAILABLE, "no request handler on this device")
        elif req.id in self._open:
            self._refuse(req.id, STATUS_ID_IN_USE, f"request {req.id} is still open")
        elif len(self._open) >= self.limits.max_open:
            self._refuse(req.id, STATUS_BUSY, f"more than {self.limits.max_open} open requests")
        else:
            op = _Open(req, SendWindow(req.window or DEFAULT_WINDOW))
            self._open[req.id] = op
            op.task = asyncio.get_running_loop().create_task(self._serve(op, self._handler))

    def _cancel(self, op: _Open) -> None:
        if op.task is not None:
            op.task.cancel()

    def _on_close(self) -> None:
        for op in tuple(self._open.values()):
            self._cancel(op)
        self._drained.set()
        self._closed.set()

    # -- outgoing ---------------------------------------------------------------------------

    def _send(self, data: str | bytes) -> bool:
        if self._channel.readyState != "open":
            return False
        self._channel.send(data)
        self.stats.max_buffered = max(self.stats.max_buffered, self._channel.bufferedAmount)
        return True

    def _answer(self, message: AnswerMessage) -> None:
        self._send(encode_text(message))

    def _refuse(self, msg_id: int, status: int, why: str) -> None:
        self.stats.refused += 1
        self._answer(Failed(msg_id, status, why))

    async def _writable(self) -> None:
        """Wait while the channel holds more than ``high_water`` unsent bytes."""
        while self._channel.bufferedAmount > self.limits.high_water:
            if self._channel.readyState != "open":
                raise ConnectionError("data channel closed")
            self.stats.buffer_waits += 1
            self._drained.clear()
            await self._drained.wait()

    # -- serving one request ----------------------------------------------------------------

    async def _serve(self, op: _Open, handler: RequestHandler) -> None:
        msg_id = op.req.id
        try:
            try:
                reply: Any = await handler(op.req.req)
            except RequestRefused as exc:
                self._refuse(msg_id, exc.status, str(exc))
                return
            except ProtocolError as exc:
                self._refuse(msg_id, STATUS_BAD_REQUEST, str(exc))
                return
            except Exception:
                log.exception("p2p.handler_failed", request_id=msg_id)
                self._refuse(msg_id, STATUS_FAILED, "request failed on the device")
                return
            if isinstance(reply, str):
                self.stats.commands += 1
                self._answer(CommandAnswer(msg_id, reply))
            elif hasattr(reply, "__anext__"):
                self.stats.streams += 1
                self._answer(Accepted(msg_id, "stream"))
                await self._stream(op, reply)
            elif isinstance(reply, VoiceSink):
                self.stats.voice_uploads += 1
                self._answer(Accepted(msg_id, "voice"))
                await self._voice(op, reply)
            else:
                log.error("p2p.bad_reply", request_id=msg_id, reply_type=type(reply).__name__)
                self._refuse(msg_id, STATUS_FAILED, "request failed on the device")
        finally:
            self._open.pop(msg_id, None)

    async def _stream(self, op: _Open, stream: AsyncIterator[bytes]) -> None:
        """Send the stream within the app's credit and the channel's buffer limit; END (or
        END|ERROR) at the end, also after the app's cancel, so the app can forget the id —
        but not when the session is closing: then the app sees the channel close instead of
        a stream that looks complete."""
        msg_id, credit = op.req.id, op.credit
        error = False
        try:
            async for block in stream:
                for chunk in chunks(bytes(block)):
                    while not credit.can_send(len(chunk)):
                        self.stats.credit_waits += 1
                        op.credit_changed.clear()
                        await op.credit_changed.wait()
                    await self._writable()
                    if not self._send(encode_data(msg_id, chunk)):
                        return
                    credit.on_sent(len(chunk))
                    self.stats.bytes_sent += len(chunk)
                    self.stats.max_outstanding = max(self.stats.max_outstanding, credit.outstanding)
        except ConnectionError:
            return
        except Exception:
            log.exception("p2p.stream_failed", request_id=msg_id)
            error = True
        finally:
            await _close_quietly(stream, "aclose")
            if not self._closed.is_set():
                self._send(encode_data(msg_id, b"", end=True, error=error))

    async def _voice(self, op: _Open, sink: VoiceSink) -> None:
        """Deliver talk audio in order until the app's END, a cancel or a sink failure."""
        try:
            while True:
                while not op.voice:
                    if op.voice_end:
                        return
                    op.voice_changed.clear()
                    await op.voice_changed.wait()
                frame = op.voice.popleft()
                result = sink.write(frame)
                if inspect.isawaitable(result):
                    await result
                self.stats.voice_frames += 1
        except Exception:
            log.exception("p2p.voice_failed", request_id=op.req.id)
            self._refuse(op.req.id, STATUS_FAILED, "talk audio failed on the device")
        finally:
            op.voice_end = True
            op.voice.clear()
            await _close_quietly(sink, "close")

    async def close(self) -> None:
        """Cancel every open request (closing their streams and sinks) and wait for them."""
        self._closed.set()
        tasks = [op.task for op in self._open.values() if op.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def _close_quietly(obj: object, name: str) -> None:
    """Call ``obj.<name>()`` (sync or async) if it exists; a failure is logged, not raised:
    cleanup must not mask why a request ended."""
    closer = getattr(obj, name, None)
    if not callable(closer):
        return
    try:
        result = closer()
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("p2p.close_failed", what=type(obj).__name__)

"""The app end of the ``xp2p`` data channel: XP2P requests, FLV streams and talk uploads over
WebRTC (framing: :mod:`ivcloud.protocol.p2p_channel`).

A stream is read with credit-based flow control: the app grants a window and acknowledges
what its reader consumed, so a reader that stops reading stops the device within one window
instead of filling memory — a data channel itself delivers every message at once. Talk
audio is sent only while the channel's ``bufferedAmount`` is under ``high_water``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Self

import structlog

from ivcloud.closing import ClosesOnExit
from ivcloud.protocol.p2p_channel import (
    MAX_CHUNK,
    Accepted,
    Ack,
    AnswerMessage,
    Cancel,
    ChannelFrameError,
    CommandAnswer,
    Failed,
    RecvWindow,
    Request,
    RequestMessage,
    decode_answer,
    decode_data,
    encode_data,
    encode_text,
)

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

__all__ = [
    "ChannelClient",
    "P2PClosed",
    "P2PError",
    "P2PRequestFailed",
    "P2PStream",
    "P2PStreamError",
    "P2PTimeout",
    "VoiceUpload",
]

log = structlog.get_logger("ivcloud.client.p2p")


class P2PError(Exception):
    """Base of the app SDK's P2P errors."""


class P2PTimeout(P2PError):
    """The device did not answer in time."""


class P2PClosed(P2PError):
    """The session or its data channel closed while a request, stream or upload was open."""


class P2PRequestFailed(P2PError):
    """The device refused or failed a request; ``status`` is the channel status (404 bad
    request, 429 too busy, 500 device failure, …, or a handler's own)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class P2PStreamError(P2PError):
    """A stream ended abnormally: the device reported a failure, or broke the framing."""


class P2PStream(ClosesOnExit):
    """An open byte stream (FLV for ``ipc.flv`` requests). Async-iterate it; ``aclose()``
    (or leaving ``async with``) cancels it on the device. ``buffered`` bytes wait for the
    reader; the device never has more than ``window`` bytes unread in flight."""

    def __init__(self, client: ChannelClient, msg_id: int, window: int) -> None:
        self._client = client
        self.id = msg_id
        self.window = window
        self._flow = RecvWindow(window)
        self._chunks: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._ended = False
        self._error: P2PError | None = None
        self.bytes_received = 0

    @property
    def buffered(self) -> int:
        return self._flow.buffered

    @property
    def ended(self) -> bool:
        return self._ended

    def _feed(self, payload: bytes, end: bool, error: bool) -> None:
        if self._ended:
            return
        try:
            self._flow.on_data(len(payload))
        except ChannelFrameError as exc:
            self._fail(P2PStreamError(str(exc)))
            self._client._send(Cancel(self.id))
            return
        if payload:
            self._chunks.append(payload)
            self.bytes_received += len(payload)
        if error:
            self._fail(P2PStreamError("the device ended the stream with an error"))
        elif end:
            self._finish()
        self._ready.set()

    def _fail(self, error: P2PError) -> None:
        if self._error is None:
            self._error = error
        self._finish()

    def _finish(self) -> None:
        self._ended = True
        self._ready.set()
        self._client._streams.pop(self.id, None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        data = self._chunks.popleft()
        ack = self._flow.on_consumed(len(data))
        if ack is not None and not self._ended:
            self._client._send(Ack(self.id, ack))
        return data

    async def aclose(self) -> None:
        """Stop the stream on the device and drop what was not read."""
        if not self._ended:
            self._client._send(Cancel(self.id))
            self._finish()
        self._chunks.clear()


class VoiceUpload(ClosesOnExit):
    """An accepted talk upload: each :meth:`write` is delivered to the device's sink as one
    message (one audio frame, at most ``MAX_CHUNK`` bytes). :meth:`aclose` ends it."""

    def __init__(self, client: ChannelClient, msg_id: int) -> None:
        self._client = client
        self.id = msg_id
        self._ended = False
        self._error: P2PError | None = None
        self.frames_sent = 0

    async def write(self, frame: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._ended:
            raise P2PClosed("the upload is closed")
        if not frame:
            return
        if len(frame) > MAX_CHUNK:
            raise ValueError(f"an audio frame over {MAX_CHUNK} bytes")
        await self._client._writable()
        if self._error is not None:
            raise self._error
        self._client._send_bytes(encode_data(self.id, frame))
        self.frames_sent += 1

    def _fail(self, error: P2PError) -> None:
        self._error = self._error or error
        self._ended = True
        self._client._voices.pop(self.id, None)

    async def aclose(self) -> None:
        if not self._ended:
            self._ended = True
            self._client._voices.pop(self.id, None)
            with contextlib.suppress(P2PClosed):  # a closed session ended it anyway
                self._client._send_bytes(encode_data(self.id, b"", end=True))


class ChannelClient:
    """Requests over one open ``xp2p`` channel. Ids are allocated here, from 1."""

    def __init__(
        self,
        channel: RTCDataChannel,
        *,
        high_water: int = 256 * 1024,
        low_water: int = 64 * 1024,
    ) -> None:
        self._channel = channel
        self._high_water = high_water
        self._next_id = 1
        self._answers: dict[int, asyncio.Future[AnswerMessage]] = {}
        self._streams: dict[int, P2PStream] = {}
        self._voices: dict[int, VoiceUpload] = {}
        self._drained = asyncio.Event()
        self._closed = False
        self.bad_messages = 0
        channel.bufferedAmountLowThreshold = low_water
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self._drained.set)
        channel.on("close", self.close)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- requests ---------------------------------------------------------------------------

    async def request(self, text: str, timeout_s: float) -> str:
        """A command; its reply text."""
        answer = await self._ask(text, None, timeout_s)
        if isinstance(answer, CommandAnswer):
            return answer.body
        self._send(Cancel(answer.id))
        raise P2PRequestFailed(0, f"expected a command answer, got a {answer.kind}")

    async def open_stream(self, text: str, *, window: int, timeout_s: float) -> P2PStream:
        msg_id = self._allocate()
        stream = P2PStream(self, msg_id, window)
        self._streams[msg_id] = stream
        try:
            answer = await self._ask(text, window, timeout_s, msg_id=msg_id)
        except BaseException:
            self._streams.pop(msg_id, None)
            raise
        if not (isinstance(answer, Accepted) and answer.kind == "stream"):
            await stream.aclose()
            raise P2PRequestFailed(0, "the device did not answer with a stream")
        return stream

    async def start_voice(self, text: str, timeout_s: float) -> VoiceUpload:
        answer = await self._ask(text, None, timeout_s)
        if not (isinstance(answer, Accepted) and answer.kind == "voice"):
            self._send(Cancel(answer.id))
            raise P2PRequestFailed(0, "the device did not accept an upload")
        upload = VoiceUpload(self, answer.id)
        self._voices[answer.id] = upload
        return upload

    def _allocate(self) -> int:
        msg_id = self._next_id
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        return msg_id

    async def _ask(
        self, text: str, window: int | None, timeout_s: float, *, msg_id: int | None = None
    ) -> CommandAnswer | Accepted:
        if self._closed:
            raise P2PClosed("the data channel is closed")
        msg_id = msg_id or self._allocate()
        future: asyncio.Future[AnswerMessage] = asyncio.get_running_loop().create_future()
        self._answers[msg_id] = future
        try:
            self._send(Request(msg_id, text, window))
            try:
                answer = await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                self._send(Cancel(msg_id))
                raise P2PTimeout(f"no answer within {timeout_s} s") from None
            except asyncio.CancelledError:
                # Nobody will read what the device starts for this id: tell it to stop
                # (a stream would otherwise keep a viewer slot until the tunnel closes).
                if not self._closed:
                    self._send(Cancel(msg_id))
                raise
        finally:
            self._answers.pop(msg_id, None)
        if isinstance(answer, Failed):
            raise P2PRequestFailed(answer.status, answer.error)
        return answer

    # -- incoming ---------------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        try:
            if isinstance(message, str):
                self._on_answer(decode_answer(message))
            else:
                frame = decode_data(message)
                stream = self._streams.get(frame.id)
                if stream is not None:
                    stream._feed(frame.payload, frame.end, frame.error)
        except ChannelFrameError as exc:
            self.bad_messages += 1
            log.warning("p2p.bad_message", error=str(exc))

    def _on_answer(self, answer: AnswerMessage) -> None:
        future = self._answers.get(answer.id)
        if future is not None and not future.done():
            future.set_result(answer)
            return
        if isinstance(answer, Failed):
            failure = P2PRequestFailed(answer.status, answer.error)
            if answer.id in self._streams:
                self._streams[answer.id]._fail(P2PStreamError(str(failure)))
            elif answer.id in self._voices:
                self._voices[answer.id]._fail(failure)
            else:
                log.info("p2p.device_error", request_id=answer.id, status=answer.status)

    # -- outgoing ---------------------------------------------------------------------------

    def _send(self, message: RequestMessage) -> None:
        if not self._closed and self._channel.readyState == "open":
            self._channel.send(encode_text(message))

    def _send_bytes(self, data: bytes) -> None:
        if self._closed or self._channel.readyState != "open":
            raise P2PClosed("the data channel is closed")
        self._channel.send(data)

    async def _writable(self) -> None:
        while self._channel.bufferedAmount > self._high_water:
            if self._closed:
                raise P2PClosed("the data channel is closed")
            self._drained.clear()
            await self._drained.wait()

    def close(self) -> None:
        """Fail everything open with :class:`P2PClosed` (the channel or session ended)."""
        if self._closed:
            return
        self._closed = True
        self._drained.set()
        for future in self._answers.values():
            if not future.done():
                future.set_exception(P2PClosed("the P2P session closed"))
        for stream in tuple(self._streams.values()):
            stream._fail(P2PClosed("the P2P session closed"))
        for upload in tuple(self._voices.values()):
            upload._fail(P2PClosed("the P2P session closed"))

"""The P2P data channel's framing: XP2P requests, their answers and byte streams over one
ordered, reliable WebRTC data channel (label ``xp2p``), with credit-based flow control.

Why a framing at all: Tencent's XP2P tunnel carries HTTP-like requests (``ipc.flv?…``,
``voice?…``, ``action=inner_define&…``) over a closed transport. ivcloud carries the same
request vocabulary over a WebRTC data channel, which gives messages, not requests: several
requests may be in flight at once (a live stream while a PTZ command is answered), so every
message names the request it belongs to.

- Text messages are JSON objects (commands, answers, control):
  app → device ``{"id":n,"req":"<request>"[,"window":bytes]}``, ``{"id":n,"cancel":true}``,
  ``{"id":n,"ack":<bytes consumed so far>}``;
  device → app ``{"id":n,"status":0,"kind":"command","body":"<reply text>"}``,
  ``{"id":n,"status":0,"kind":"stream"|"voice"}``, ``{"id":n,"status":s,"error":"<why>"}``.
- Binary messages carry stream bytes (device → app: FLV) and talk audio (app → device):
  a 5-byte header — request id (uint32, big-endian) and flags (``END`` = last message of
  this id, ``ERROR`` = ended by a failure) — then up to :data:`MAX_CHUNK` bytes.

Flow control: a data channel delivers every message to the receiving application at once
(neither SCTP in aiortc nor the browser API lets a slow *reader* push back), so the reader
grants a window and acknowledges what it consumed; the sender never has more than the window
unacknowledged (:class:`SendWindow`, :class:`RecvWindow`). The sender additionally waits on
the channel's ``bufferedAmount`` for a slow *network*. Both bound memory on both sides.

Also here, because the device peer and any request handler must agree on it: the handler
contract (:data:`RequestHandler`, :data:`Reply`, :class:`VoiceSink`, :class:`RequestRefused`).
Sans-IO: no sockets, no clock.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

from ivcloud.protocol.errors import ProtocolError
from ivcloud.protocol.jsontext import BadJson, dumps_safe, loads_strict

__all__ = [
    "CHANNEL_LABEL",
    "DEFAULT_WINDOW",
    "FLAG_END",
    "FLAG_ERROR",
    "HEADER_SIZE",
    "MAX_CHUNK",
    "MAX_ID",
    "MAX_REQUEST_CHARS",
    "MAX_TEXT_BYTES",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "STATUS_BAD_MESSAGE",
    "STATUS_BAD_REQUEST",
    "STATUS_BUSY",
    "STATUS_FAILED",
    "STATUS_ID_IN_USE",
    "STATUS_OK",
    "STATUS_UNAVAILABLE",
    "Accepted",
    "Ack",
    "AnswerMessage",
    "Cancel",
    "ChannelFrameError",
    "CommandAnswer",
    "DataFrame",
    "Failed",
    "RecvWindow",
    "Reply",
    "Request",
    "RequestHandler",
    "RequestMessage",
    "RequestRefused",
    "SendWindow",
    "VoiceSink",
    "chunks",
    "decode_answer",
    "decode_data",
    "decode_request",
    "encode_data",
    "encode_text",
]

CHANNEL_LABEL = "xp2p"
HEADER_SIZE = 5
MAX_CHUNK = 16 * 1024  # payload bytes per binary message: what every browser sends and takes
MAX_TEXT_BYTES = 64 * 1024  # a text message longer than this is refused unread
MAX_REQUEST_CHARS = 8 * 1024  # XP2P's user_args is <= 1 KB; the whole request line fits here
MAX_ID = 0xFFFF_FFFF
MIN_WINDOW = MAX_CHUNK
DEFAULT_WINDOW = 256 * 1024
MAX_WINDOW = 16 * 1024 * 1024
FLAG_END = 0x01
FLAG_ERROR = 0x02
_FLAGS = FLAG_END | FLAG_ERROR
_HEADER = struct.Struct(">IB")
_MAX_ACK = (1 << 53) - 1  # exact in every JSON implementation (JS numbers)

# Answer statuses (``Failed.status``); 0 is success. HTTP-like, except 404, which is what
# XP2P's get_device_st uses for "bad request".
STATUS_OK = 0
STATUS_BAD_MESSAGE = 400  # not a valid channel message
STATUS_BAD_REQUEST = 404  # the handler did not understand the request
STATUS_ID_IN_USE = 409  # a request with this id is still open
STATUS_BUSY = 429  # too many open requests on this channel
STATUS_FAILED = 500  # the handler failed
STATUS_UNAVAILABLE = 503  # no handler, or the peer is closing

Kind = Literal["command", "stream", "voice"]


class ChannelFrameError(ProtocolError):
    """A data-channel message that does not follow the framing. ``id`` is the request id
    when it could still be read (so the answer can name it), else ``None``."""

    def __init__(self, message: str, id: int | None = None) -> None:
        super().__init__(message)
        self.id = id


class RequestRefused(Exception):
    """Raised by a request handler to refuse with a status of its choice (e.g. 405 too
    many viewers); any :class:`ProtocolError` from a handler becomes 404, anything else 500."""

    def __init__(self, status: int, message: str) -> None:
        if not 1 <= status <= 0xFFFF:
            raise ValueError("status must be 1..65535")
        super().__init__(message)
        self.status = status


# -- the handler contract ----------------------------------------------------------------


@runtime_checkable
class VoiceSink(Protocol):
    """Where talk audio goes: one ``write`` per binary message the app sent for the
    request, in order. ``write`` may be a coroutine function. When the upload ends the
    device peer calls ``close()`` if the sink has one."""

    def write(self, frame: bytes) -> Awaitable[None] | None: ...


Reply = str | AsyncIterator[bytes] | VoiceSink
"""A handler's answer: a command reply text, a byte stream (closed with ``aclose()`` when
the app cancels), or a sink for an upload."""

RequestHandler = Callable[[str], Awaitable[Reply]]


# -- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    req: str
    window: int | None = None  # the reader's flow-control window for a stream


@dataclass(frozen=True, slots=True)
class Cancel:
    id: int


@dataclass(frozen=True, slots=True)
class Ack:
    id: int
    consumed: int  # total payload bytes of this id consumed so far (cumulative)


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    id: int
    body: str


@dataclass(frozen=True, slots=True)
class Accepted:
    id: int
    kind: Literal["stream", "voice"]


@dataclass(frozen=True, slots=True)
class Failed:
    id: int  # 0 when the failed message had no readable id
    status: int
    error: str


@dataclass(frozen=True, slots=True)
class DataFrame:
    id: int
    payload: bytes
    end: bool = False
    error: bool = False


RequestMessage = Request | Cancel | Ack
AnswerMessage = CommandAnswer | Accepted | Failed


def encode_text(message: RequestMessage | AnswerMessage) -> str:
    """The JSON text of a control message."""
    doc: dict[str, Any]
    match message:
        case Request(id=i, req=req, window=window):
            doc = {"id": i, "req": req}
            if window is not None:
                doc["window"] = window
        case Cancel(id=i):
            doc = {"id": i, "cancel": True}
        case Ack(id=i, consumed=consumed):
            doc = {"id": i, "ack": consumed}
        case CommandAnswer(id=i, body=body):
            doc = {"id": i, "status": STATUS_OK, "kind": "command", "body": body}
        case Accepted(id=i, kind=kind):
            doc = {"id": i, "status": STATUS_OK, "kind": kind}
        case Failed(id=i, status=status, error=error):
            doc = {"id": i, "status": status, "error": error}
    return dumps_safe(doc).decode("utf-8")


def _load(text: str) -> tuple[dict[str, Any], int | None]:
    """The JSON object of a text message and its id if that much is readable."""
    if len(text) > MAX_TEXT_BYTES:
        raise ChannelFrameError(f"text message over {MAX_TEXT_BYTES} characters")
    try:
        doc = loads_strict(text)
    except BadJson as exc:
        raise ChannelFrameError(f"text message: {exc}") from None
    except ValueError:  # json's own int() digit limit
        raise ChannelFrameError("text message is not JSON: a number is too long") from None
    if not isinstance(doc, dict):
        raise ChannelFrameError("text message is not a JSON object")
    raw_id = doc.get("id")
    msg_id = raw_id if _is_int(raw_id) and 1 <= raw_id <= MAX_ID else None
    return doc, msg_id


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_id(doc: dict[str, Any], msg_id: int | None, *, allow_zero: bool = False) -> int:
    if msg_id is not None:
        return msg_id
    if allow_zero and doc.get("id") == 0 and _is_int(doc.get("id")):
        return 0
    raise ChannelFrameError(f'"id" must be an integer 1..{MAX_ID}')


def decode_request(text: str) -> RequestMessage:
    """An app → device text message. Unknown keys are ignored (room to grow)."""
    doc, msg_id = _load(text)
    i = _require_id(doc, msg_id)
    present = [key for key in ("req", "cancel", "ack") if key in doc]
    if len(present) != 1:
        raise ChannelFrameError('exactly one of "req", "cancel", "ack" is required', i)
    key = present[0]
    if key == "cancel":
        if doc["cancel"] is not True:
            raise ChannelFrameError('"cancel" must be true', i)
        return Cancel(i)
    if key == "ack":
        consumed = doc["ack"]
        if not _is_int(consumed) or not 0 <= consumed <= _MAX_ACK:
            raise ChannelFrameError('"ack" must be a non-negative integer', i)
        return Ack(i, consumed)
    req = doc["req"]
    if not isinstance(req, str) or not req or len(req) > MAX_REQUEST_CHARS:
        raise ChannelFrameError(f'"req" must be a string of 1..{MAX_REQUEST_CHARS} characters', i)
    window = doc.get("window")
    if window is not None and (not _is_int(window) or not MIN_WINDOW <= window <= MAX_WINDOW):
        raise ChannelFrameError(f'"window" must be an integer {MIN_WINDOW}..{MAX_WINDOW}', i)
    return Request(i, req, window)


def decode_answer(text: str) -> AnswerMessage:
    """A device → app text message."""
    doc, msg_id = _load(text)
    i = _require_id(doc, msg_id, allow_zero=True)
    status = doc.get("status")
    if not _is_int(status) or not 0 <= status <= 0xFFFF:
        raise ChannelFrameError('"status" must be an integer 0..65535', i or None)
    if status != STATUS_OK:
        error = doc.get("error", "")
        if not isinstance(error, str):
            raise ChannelFrameError('"error" must be a string', i or None)
        return Failed(i, status, error)
    if i == 0:
        raise ChannelFrameError("a successful answer needs a request id")
    kind = doc.get("kind")
    if kind == "command":
        body = doc.get("body")
        if not isinstance(body, str):
            raise ChannelFrameError('a command answer needs a string "body"', i)
        return CommandAnswer(i, body)
    if kind in ("stream", "voice"):
        return Accepted(i, kind)
    raise ChannelFrameError('"kind" must be "command", "stream" or "voice"', i)


def encode_data(msg_id: int, payload: bytes, *, end: bool = False, error: bool = False) -> bytes:
    """A binary message; ``error`` implies ``end``."""
    if not 1 <= msg_id <= MAX_ID:
        raise ValueError(f"id must be 1..{MAX_ID}")
    if len(payload) > MAX_CHUNK:
        raise ValueError(f"payload over {MAX_CHUNK} bytes; split it with chunks()")
    flags = (FLAG_END if end or error else 0) | (FLAG_ERROR if error else 0)
    return _HEADER.pack(msg_id, flags) + payload


def decode_data(message: bytes) -> DataFrame:
    """A binary message, header checked."""
    if len(message) < HEADER_SIZE:
        raise ChannelFrameError("binary message shorter than its header")
    msg_id, flags = _HEADER.unpack_from(message)
    if msg_id == 0:
        raise ChannelFrameError("binary message for id 0")
    if flags & ~_FLAGS:
        raise ChannelFrameError(f"unknown flags 0x{flags:02x}", msg_id)
    if flags & FLAG_ERROR and not flags & FLAG_END:
        raise ChannelFrameError("ERROR without END", msg_id)
    if len(message) - HEADER_SIZE > MAX_CHUNK:
        raise ChannelFrameError(f"binary payload over {MAX_CHUNK} bytes", msg_id)
    return DataFrame(
        msg_id, bytes(message[HEADER_SIZE:]), bool(flags & FLAG_END), bool(flags & FLAG_ERROR)
    )


def chunks(data: bytes, size: int = MAX_CHUNK) -> list[bytes]:
    """``data`` cut into payloads of at most ``size`` bytes (none for empty data)."""
    if size < 1:
        raise ValueError("size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- flow control --------------------------------------------------------------------------


class SendWindow:
    """The sender's credit for one stream: at most ``window`` bytes unacknowledged. One
    payload is always allowed when nothing is outstanding, so a window smaller than a chunk
    still makes progress."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be positive")
        self.window = window
        self.sent = 0
        self.acked = 0

    @property
    def outstanding(self) -> int:
        return self.sent - self.acked

    def can_send(self, size: int) -> bool:
        return self.outstanding == 0 or self.outstanding + size <= self.window

    def on_sent(self, size: int) -> None:
        if not self.can_send(size):
            raise ValueError("send exceeds the window")
        self.sent += size

    def on_ack(self, consumed: int) -> bool:
        """Apply a cumulative ack; ``True`` if it opened the window. An ack for bytes never
        sent is a protocol error; an old (smaller) one changes nothing."""
        if consumed > self.sent:
            raise ChannelFrameError(f"ack {consumed} beyond the {self.sent} bytes sent")
        if consumed <= self.acked:
            return False
        self.acked = consumed
        return True


class RecvWindow:
    """The reader's side: checks the sender keeps within the window and decides when to
    acknowledge — after a quarter of the window was consumed, so acks cost little while the
    reader keeps up, and at once whenever the sender may be blocked (less than one chunk of
    credit left), so a stream never deadlocks on an ack held back."""

    def __init__(self, window: int) -> None:
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise ValueError(f"window must be {MIN_WINDOW}..{MAX_WINDOW}")
        self.window = window
        self.received = 0
        self.consumed = 0
        self.acked = 0

    @property
    def buffered(self) -> int:
        return self.received - self.consumed

    def on_data(self, size: int) -> None:
        """Bytes arrived. More than the window outstanding (unacked) means the sender
        ignored the credit: a protocol error."""
        if self.received + size - self.acked > max(self.window, size):
            raise ChannelFrameError("sender exceeded the flow-control window")
        self.received += size

    def on_consumed(self, size: int) -> int | None:
        """The reader took ``size`` bytes; the cumulative ack to send now, if any."""
        if size < 0 or self.consumed + size > self.received:
            raise ValueError("consumed more than received")
        self.consumed += size
        if self.consumed == self.acked:
            return None
        sender_may_block = self.received - self.acked > self.window - MAX_CHUNK
        if sender_may_block or self.consumed - self.acked >= self.window // 4:
            self.acked = self.consumed
            return self.acked
        return None

"""A minimal RFC 6455 WebSocket client as an ``asyncio.Protocol``, for the fan-out viewers.

Why not a library: the viewer process shares the box's 2 cores with the servers it measures,
so a viewer must cost a few attribute look-ups per message, like the raw HTTP-FLV viewer of
``fanout_viewers.py`` (no per-message task, no queue, no copy beyond the one payload slice).
It does what a viewer needs and nothing more: the opening handshake (``Sec-WebSocket-Accept``
checked), unmasked server frames (a masked one is a protocol error), fragmented messages,
ping → pong, the closing handshake; client frames are masked (RFC 6455 §5.3). No extension
is offered, so any RSV bit set is an error.

Subclasses implement :meth:`ws_open`, :meth:`ws_message` and :meth:`ws_error`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
MAX_MESSAGE = 16 << 20  # a video message is ≤ a few hundred KiB; anything larger is a bug
CLOSE_GRACE_S = 2.0  # after our close frame, wait this long for the server's


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # noqa: S324 - RFC 6455


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 §5.3)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + _U16.pack(n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + _U64.pack(n)
    key = os.urandom(4)
    return head + key + mask(payload, key)


class WsClient(asyncio.Protocol):
    """Handshake, frames and control messages; whole messages go to :meth:`ws_message`."""

    def __init__(self, host: str, port: int, target: str) -> None:
        self.ws_key = base64.b64encode(os.urandom(16))
        self.ws_request = (
            (
                f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ivcloud-bench\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            ).encode()
            + b"Sec-WebSocket-Key: "
            + self.ws_key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.ws_opened = False
        self.ws_closing = False  # our close frame is sent
        self.close_code: int | None = None  # the server's, once received
        self._head = bytearray()
        self._pending: list[bytes] = []  # received bytes not yet a whole frame
        self._pending_len = 0
        self._need = 0  # bytes the partial frame in _pending needs to make progress
        self._frag_op = 0  # opcode of a fragmented message in progress
        self._frags: list[bytes] = []
        self._frags_len = 0

    # -- to implement -----------------------------------------------------------------------

    def ws_open(self) -> None:
        """The handshake succeeded."""

    def ws_message(self, opcode: int, payload: bytes) -> None:
        """A whole text (``OP_TEXT``) or binary message; may raise ``ValueError``."""

    def ws_error(self, message: str) -> None:
        """A protocol violation (the connection is being closed)."""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.ws_request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            if not self.ws_opened:
                data = self._handshake(data)
                if not self.ws_opened:
                    return
            self._frames(data)
        except ValueError as exc:
            self.ws_error(str(exc))
            if self.transport is not None:
                self.transport.close()

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake (or just drop the connection before the upgrade)."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self.ws_opened or self.ws_closing:
            self.transport.close()
            return
        self.ws_closing = True
        self.transport.write(client_frame(OP_CLOSE, _U16.pack(code)))
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self.transport.close)

    # -- handshake --------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 16384:
                raise ValueError("handshake response too long")
            return b""
        lines = bytes(self._head[:end]).decode("latin-1").split("\r\n")
        rest = bytes(self._head[end + 4 :])
        self._head.clear()
        status = lines[0].split()
        if len(status) < 2 or status[1] != "101":
            raise ValueError(f"handshake refused: {lines[0]}")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        if headers.get("sec-websocket-accept", "").encode() != accept_key(self.ws_key):
            raise ValueError("bad Sec-WebSocket-Accept")
        if headers.get("sec-websocket-extensions"):
            raise ValueError("server chose an extension that was not offered")
        self.ws_opened = True
        self.ws_open()
        return rest

    # -- frames -----------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        if self._pending:
            self._pending.append(data)
            self._pending_len += len(data)
            if self._pending_len < self._need:
                return
            data = b"".join(self._pending)
            self._pending.clear()
        pos, n, need = 0, len(data), 0
        while pos < n:
            if n - pos < 2:
                need = 2
                break
            b0, b1 = data[pos], data[pos + 1]
            if b1 & 0x80:
                raise ValueError("masked server frame")
            if b0 & 0x70:
                raise ValueError("RSV bit set without an extension")
            size, head = b1 & 0x7F, 2
            if size == 126:
                if n - pos < 4:
                    need = 4
                    break
                size, head = _U16.unpack_from(data, pos + 2)[0], 4
            elif size == 127:
                if n - pos < 10:
                    need = 10
                    break
                size, head = _U64.unpack_from(data, pos + 2)[0], 10
            if size > MAX_MESSAGE:
                raise ValueError(f"frame of {size} bytes")
            end = pos + head + size
            if end > n:
                need = end - pos
                break
            self._frame(b0 & 0x80, b0 & 0x0F, data[pos + head : end])
            pos = end
        if pos < n:  # keep the partial frame until ``need`` bytes of it are here
            rest = data[pos:]
            self._pending = [rest]
            self._pending_len = len(rest)
            self._need = need
        else:
            self._pending_len = 0

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125:
                raise ValueError("fragmented or oversized control frame")
            self._control(opcode, payload)
            return
        if opcode == OP_CONT:
            if not self._frag_op:
                raise ValueError("continuation frame without a message")
            self._frags.append(payload)
            self._frags_len += len(payload)
            if self._frags_len > MAX_MESSAGE:
                raise ValueError("message too large")
            if fin:
                op, whole = self._frag_op, b"".join(self._frags)
                self._frag_op, self._frags, self._frags_len = 0, [], 0
                self.ws_message(op, whole)
            return
        if opcode not in (OP_TEXT, OP_BINARY):
            raise ValueError(f"reserved opcode {opcode:#x}")
        if self._frag_op:
            raise ValueError("new message inside a fragmented one")
        if fin:
            self.ws_message(opcode, payload)
        else:
            self._frag_op, self._frags, self._frags_len = opcode, [payload], len(payload)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self.ws_closing:
                self.transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
            if not self.ws_closing:  # echo the close, then the server drops TCP
                self.ws_closing = True
                reply = payload[:2] if len(payload) >= 2 else b""
                self.transport.write(client_frame(OP_CLOSE, reply))
                asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self.transport.close)
            else:
                self.transport.close()
        elif opcode != OP_PONG:
            raise ValueError(f"reserved control opcode {opcode:#x}")

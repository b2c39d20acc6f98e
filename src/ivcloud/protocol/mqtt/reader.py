"""Incremental packet reader: bytes in arbitrary chunks → complete packets.

Design points, all about a gateway holding thousands of connections:

* The common case (a chunk holding whole packets, nothing buffered) decodes straight from the
  chunk without copying it into a buffer.
* The packet size limit is checked as soon as the fixed header is complete, before the body is
  buffered, so announcing a huge packet costs the peer its connection, not us memory.
* When a large packet trickles in, the reader remembers how many bytes it still needs and does
  not re-parse (or re-copy) the buffer for every small chunk: total work stays linear.
* After an error the reader stays failed: the stream position is unknown, and the connection
  is going to be closed anyway.
"""

from __future__ import annotations

from ivcloud.protocol.errors import MalformedPacket, PacketTooLarge
from ivcloud.protocol.mqtt.decode import DECODERS, check_first_byte, decode_remaining_length
from ivcloud.protocol.mqtt.packets import Packet


class PacketReader:
    __slots__ = ("_buf", "_failed", "_max", "_need")

    def __init__(self, max_packet_size: int = 256 * 1024) -> None:
        if max_packet_size < 2:
            raise ValueError("max_packet_size must allow at least a 2-byte packet")
        self._max = max_packet_size
        self._buf = bytearray()
        self._need = 0  # buffered bytes required before parsing is worth retrying
        self._failed = False

    @property
    def max_packet_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Packet]:
        """Add bytes; return the packets they complete, in order.

        Raises :class:`MalformedPacket` (or a subclass) at the first invalid packet; packets
        decoded before it in the same call are discarded with the connection.
        """
        if self._failed:
            raise MalformedPacket("reader already failed")
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            data = bytes(buf)
            buf.clear()
        try:
            return self._parse(data)
        except MalformedPacket:
            self._failed = True
            buf.clear()
            raise

    def _parse(self, data: bytes | bytearray) -> list[Packet]:
        packets: list[Packet] = []
        pos = 0
        n = len(data)
        max_size = self._max
        while pos < n:
            first = data[pos]
            check_first_byte(first)
            header = decode_remaining_length(data, pos)
            if header is None:
                self._need = 0
                break
            remaining, start = header
            end = start + remaining
            if end - pos > max_size:
                raise PacketTooLarge(f"packet of {end - pos} bytes exceeds limit {max_size}")
            if end > n:
                self._need = end - pos
                break
            packets.append(DECODERS[first >> 4](first, data, start, end))
            pos = end
        if pos < n:
            self._buf += data[pos:]
        return packets

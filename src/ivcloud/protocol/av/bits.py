"""Shared low-level pieces: the bytes-like alias and an exp-Golomb bit reader."""

from __future__ import annotations

from ivcloud.protocol.errors import MediaFormatError

# What the parsers accept: the hub hands out memoryviews of tag bytes to avoid copies.
BytesLike = bytes | bytearray | memoryview


class BitReader:
    """MSB-first bit reader with exp-Golomb codes; reading past the end raises
    :class:`MediaFormatError` so truncated headers never surface as ``IndexError``."""

    __slots__ = ("_pos", "_size", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._size = len(data) * 8
        self._pos = 0

    def u(self, bits: int) -> int:
        end = self._pos + bits
        if end > self._size:
            raise MediaFormatError("bitstream ends inside a field")
        self._pos = end
        return (self._value >> (self._size - end)) & ((1 << bits) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise MediaFormatError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)

"""ISO BMFF box primitives: writing boxes and walking them.

Writing is plain concatenation (a box is a 32-bit size, a four-character type and its
payload); the reader exists so tests and anything that must vet a segment (e.g. an uploaded
clip) can walk the tree with bounds checked, getting :class:`MediaFormatError` instead of a
crash on a truncated or hostile file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.errors import MediaFormatError

_HEAD = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")

# Boxes whose payload is nothing but child boxes (for :func:`find_boxes`).
CONTAINERS = frozenset(
    (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"mvex", b"moof", b"traf", b"edts")
)


def box(kind: bytes, *payload: BytesLike) -> bytes:
    body = b"".join(payload)
    return _HEAD.pack(8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: BytesLike) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


@dataclass(frozen=True, slots=True)
class Box:
    type: bytes  # four-character code, e.g. b"moof"
    offset: int  # of the box header within the buffer walked
    size: int  # header included
    payload: memoryview

    @property
    def full_box_header(self) -> tuple[int, int]:
        """(version, flags) for full boxes."""
        if len(self.payload) < 4:
            raise MediaFormatError(f"{self.type!r} too short for a full box header")
        word = struct.unpack_from(">I", self.payload)[0]
        return word >> 24, word & 0xFFFFFF

    def children(self, skip: int = 0) -> Iterator[Box]:
        """Boxes inside this one; ``skip`` bytes of fields come first (e.g. 8 for ``stsd``)."""
        return iter_boxes(self.payload[skip:])


def iter_boxes(data: BytesLike) -> Iterator[Box]:
    """Top-level boxes of ``data`` in order (64-bit sizes and size 0 = "to the end" handled).

    Raises :class:`MediaFormatError` when a box header is truncated, a size is smaller than
    its header, or a box runs past the end of the data.
    """
    view = memoryview(data)
    if view.format != "B":
        view = view.cast("B")
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 8:
            raise MediaFormatError("truncated box header")
        size, kind = _HEAD.unpack_from(view, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise MediaFormatError("truncated 64-bit box size")
            size, header = _U64.unpack_from(view, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise MediaFormatError(f"box {kind!r} size {size} does not fit the data")
        yield Box(kind, pos, size, view[pos + header : pos + size])
        pos += size


def find_boxes(data: BytesLike, path: str) -> list[Box]:
    """All boxes at a slash-separated path, e.g. ``"moov/trak/mdia/mdhd"``, descending only
    through pure container boxes."""
    names = [part.encode("ascii") for part in path.split("/")]
    level = list(iter_boxes(data))
    for depth, name in enumerate(names):
        found = [b for b in level if b.type == name]
        if depth == len(names) - 1:
            return found
        if name not in CONTAINERS:
            raise MediaFormatError(f"{name!r} is not a container box")
        level = [child for b in found for child in b.children()]
    return []

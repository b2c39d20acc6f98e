"""A wall-clock time burnt into a video frame, readable by machines and by people.

Glass-to-glass latency is measured by decoding a frame at the viewer and subtracting the
time burnt into it at capture from the viewer's clock. So the code must survive lossy H.264
and read back exactly — or not at all: a wrong time would silently corrupt a latency
percentile, a missing one only shrinks the sample. Hence:

* big black/white luma blocks (8 px up to 360p, growing with the frame: 16 px at 720p, 24 at
  1080p) on the 8-px transform grid, read from each block's centre only, so
  ringing at the edges never matters;
* a fixed 16-block sync row that both proves the code is there and gives the reader its
  black and white levels (the threshold adapts to any contrast or range the codec left);
* 48 data bits (milliseconds since the epoch, big-endian) and a CRC-16/CCITT over them;
  any block that is neither clearly black nor clearly white, a sync mismatch or a CRC
  mismatch yields ``None``.

Under the blocks the same time is written as ``HH:MM:SS.mmm`` (UTC) in a built-in 5×7 font
for people watching the stream. Everything is drawn in the top-left corner on a black box,
with the chroma under it set neutral so the box is grey-scale in any colour pattern.

Pure numpy: no clock (the time is passed in), no I/O. The reader takes the frame at its
original size: codes are not searched for at other scales or positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DATA_BITS",
    "MAX_MS",
    "ClockLayout",
    "burn_clock",
    "clock_layout",
    "format_clock",
    "luma_plane",
    "read_clock",
]

DATA_BITS = 48
MAX_MS = (1 << DATA_BITS) - 1
BLACK, WHITE, NEUTRAL = 16, 235, 128  # limited-range luma/chroma, what H.264 expects

_COLS = 16
_SYNC = (1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1)  # 8 white + 8 black, not periodic
_ROWS = 1 + (DATA_BITS + 16) // _COLS  # sync row + 4 rows of 64 bits (data + CRC)
_MIN_BLOCK = 4
_MIN_CONTRAST = 48.0  # white − black, in 8-bit luma steps
_MARGIN = 0.25  # a block must sit in the outer quarter of the black..white range

# 5×7 glyphs: "#" lit. Only what "HH:MM:SS.mmm" needs.
_FONT_ROWS: dict[str, tuple[str, ...]] = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    ":": ("     ", "  #  ", "  #  ", "     ", "  #  ", "  #  ", "     "),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
}
_GLYPHS = {
    ch: np.array([[c == "#" for c in row] for row in rows], dtype=bool)
    for ch, rows in _FONT_ROWS.items()
}
_GLYPH_W, _GLYPH_H = 5, 7
_TEXT_CHARS = len("HH:MM:SS.mmm")

# Formats whose first plane is 8-bit luma at full frame size.
_LUMA_FIRST = frozenset(
    {
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv440p",
        "yuvj440p",
        "yuv411p",
        "yuv410p",
        "nv12",
        "nv21",
        "gray",
    }
)


@dataclass(frozen=True, slots=True)
class ClockLayout:
    """Where the code goes in a frame of a given size (the writer and reader agree on it
    from the size alone). ``box`` is the whole overlay; ``text`` is ``None`` when the
    digits do not fit (tiny frames)."""

    block: int
    grid_x: int
    grid_y: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    text_scale: int
    text_xy: tuple[int, int] | None


def clock_layout(width: int, height: int) -> ClockLayout | None:
    """The layout for a ``width``×``height`` frame, or ``None`` if even the smallest code
    does not fit."""
    if width <= 0 or height <= 0:
        return None
    block = 8 * max(1, min(width, height) // 360)
    # Grid plus a one-block black border on every side.
    while block >= _MIN_BLOCK and ((_COLS + 2) * block > width or (_ROWS + 2) * block > height):
        block -= 2
    if block < _MIN_BLOCK:
        return None
    scale = 1 if block < 8 else max(2, block // 5)
    text_w = (_TEXT_CHARS * (_GLYPH_W + 1) - 1) * scale
    text_h = _GLYPH_H * scale
    grid_bottom = (_ROWS + 1) * block
    box_w = max((_COLS + 2) * block, text_w + 2 * block)
    box_h = grid_bottom + text_h + block
    text_xy: tuple[int, int] | None = (block, grid_bottom)
    if box_w > width or box_h > height:
        text_xy = None
        box_w, box_h = (_COLS + 2) * block, (_ROWS + 2) * block
    return ClockLayout(block, block, block, (0, 0, box_w, box_h), scale, text_xy)


def format_clock(ms: int) -> str:
    """``HH:MM:SS.mmm`` of the UTC day (what the digits show)."""
    day_ms = ms % 86_400_000
    hours, rest = divmod(day_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _crc16(value: int) -> int:
    """CRC-16/CCITT-FALSE of the 6 big-endian bytes: detects every error of up to 3 bits
    and every burst of up to 16 in the 64-bit word."""
    crc = 0xFFFF
    for byte in value.to_bytes(6, "big"):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _bits(ms: int) -> NDArray[np.bool_]:
    word = (ms << 16) | _crc16(ms)
    data = [(word >> (63 - i)) & 1 for i in range(64)]
    return np.array(list(_SYNC) + data, dtype=bool).reshape(_ROWS, _COLS)


def _text_mask(text: str, scale: int) -> NDArray[np.bool_]:
    parts: list[NDArray[np.bool_]] = []
    gap = np.zeros((_GLYPH_H, 1), dtype=bool)
    for i, ch in enumerate(text):
        if i:
            parts.append(gap)
        parts.append(_GLYPHS[ch])
    mask = np.concatenate(parts, axis=1)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


def burn_clock(
    y: NDArray[np.uint8],
    ms: int,
    *,
    u: NDArray[np.uint8] | None = None,
    v: NDArray[np.uint8] | None = None,
    text: bool = True,
) -> ClockLayout:
    """Draw ``ms`` (milliseconds since the epoch) into the luma plane ``y`` in place, and
    neutralise the chroma planes under the box if given (any subsampling: their size
    says how much). Raises ``ValueError`` for a frame too small or a time out of range."""
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"clock value {ms} outside 0..2^{DATA_BITS}-1")
    if y.ndim != 2:
        raise ValueError("expected a 2-D luma plane")
    height, width = y.shape
    layout = clock_layout(width, height)
    if layout is None:
        raise ValueError(f"{width}x{height} is too small for a clock code")
    x0, y0, x1, y1 = layout.box
    y[y0:y1, x0:x1] = BLACK
    b = layout.block
    cells = _bits(ms).repeat(b, axis=0).repeat(b, axis=1)
    gy, gx = layout.grid_y, layout.grid_x
    y[gy : gy + _ROWS * b, gx : gx + _COLS * b] = np.where(cells, WHITE, BLACK).astype(np.uint8)
    if text and layout.text_xy is not None:
        mask = _text_mask(format_clock(ms), layout.text_scale)
        tx, ty = layout.text_xy
        region = y[ty : ty + mask.shape[0], tx : tx + mask.shape[1]]
        region[mask] = WHITE
    for plane in (u, v):
        if plane is not None and plane.ndim == 2 and plane.shape[0] and plane.shape[1]:
            sy = -(-height // plane.shape[0])  # subsampling factor, rounded up
            sx = -(-width // plane.shape[1])
            plane[y0 // sy : -(-y1 // sy), x0 // sx : -(-x1 // sx)] = NEUTRAL
    return layout


def luma_plane(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The frame's luma as a (height, width) view without copying when the format allows
    (YUV/NV/gray), converted to yuv420p otherwise."""
    if frame.format.name not in _LUMA_FIRST:
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8)[: plane.height * plane.line_size]
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]


def read_clock(frame: av.VideoFrame | NDArray[Any]) -> int | None:
    """The milliseconds burnt into a decoded frame (or its luma plane as a 2-D array of
    8-bit-range values), or ``None`` when there is no code or it does not check out.
    Never raises for any array: a latency probe must not crash on a strange frame.

    One case no single frame can reveal: at starved bitrates x264 may skip macroblocks and
    leave earlier pixels in place. Partly stale codes fail the CRC, but a wholly skipped
    code would repeat the previous picture's time, so a probe should ignore a value equal
    to the one it read before."""
    try:
        y = luma_plane(frame) if isinstance(frame, av.VideoFrame) else frame
        if not isinstance(y, np.ndarray) or y.ndim != 2 or y.dtype.kind not in "uifb":
            return None
        layout = clock_layout(int(y.shape[1]), int(y.shape[0]))
        if layout is None:
            return None
        return _decode(y, layout)
    except (ValueError, TypeError, av.FFmpegError):
        return None


def _decode(y: NDArray[Any], layout: ClockLayout) -> int | None:
    b = layout.block
    q = b // 4
    grid = y[layout.grid_y : layout.grid_y + _ROWS * b, layout.grid_x : layout.grid_x + _COLS * b]
    with np.errstate(all="ignore"):
        cells = grid.astype(np.float64).reshape(_ROWS, b, _COLS, b)[:, q : b - q, :, q : b - q]
        levels = cells.mean(axis=(1, 3))
        if not np.isfinite(levels).all():
            return None
        sync = levels[0]
        ones = np.array(_SYNC, dtype=bool)
        white, black = float(sync[ones].mean()), float(sync[~ones].mean())
        contrast = white - black
        if not np.isfinite(contrast) or contrast < _MIN_CONTRAST:
            return None
        norm = (levels - black) / contrast
    if not np.all((norm < _MARGIN) | (norm > 1 - _MARGIN)):
        return None  # some block is grey: damaged or not a code at all
    bits = norm > 0.5
    if not np.array_equal(bits[0], ones):
        return None
    word = 0
    for bit in bits[1:].reshape(-1):
        word = (word << 1) | int(bit)
    ms, crc = word >> 16, word & 0xFFFF
    return ms if _crc16(ms) == crc else None

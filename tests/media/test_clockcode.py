"""The burnt-in clock code: exact through real libx264 + the FFmpeg decoder at several
sizes and bitrates, ``None`` (never a wrong value) when absent or damaged, and a reader
that survives any array thrown at it."""

from __future__ import annotations

import random
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from ivcloud.device.av.video import H264Encoder, TestPattern, VideoProfile
from ivcloud.media.clockcode import (
    BLACK,
    MAX_MS,
    NEUTRAL,
    WHITE,
    burn_clock,
    clock_layout,
    format_clock,
    luma_plane,
    read_clock,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SIZES = [(320, 240), (640, 360), (1280, 720), (1920, 1080), (160, 120), (176, 144)]


def planes(width: int, height: int, fill: int = 90) -> tuple[NDArray[np.uint8], ...]:
    y = np.full((height, width), fill, dtype=np.uint8)
    u = np.full((height // 2, width // 2), 60, dtype=np.uint8)
    v = np.full((height // 2, width // 2), 200, dtype=np.uint8)
    return y, u, v


def block_slice(width: int, height: int, row: int, col: int) -> tuple[slice, slice]:
    """Pixels of code block (row, col); row 0 is the sync row."""
    layout = clock_layout(width, height)
    assert layout is not None
    b = layout.block
    y0, x0 = layout.grid_y + row * b, layout.grid_x + col * b
    return slice(y0, y0 + b), slice(x0, x0 + b)


# -- raw frames --------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_round_trip_raw(width: int, height: int) -> None:
    y, u, v = planes(width, height)
    burn_clock(y, NOW + 123, u=u, v=v)
    assert read_clock(y) == NOW + 123


def test_block_size_scales_and_is_at_least_8_px_from_240p() -> None:
    blocks = []
    for width, height in SIZES:
        layout = clock_layout(width, height)
        assert layout is not None and layout.block >= 8
        blocks.append(layout.block)
    assert blocks[:4] == sorted(blocks[:4]) and blocks[0] < blocks[3]  # 240p … 1080p


@given(
    ms=st.integers(0, MAX_MS),
    width=st.integers(36, 700).map(lambda n: 2 * n),
    height=st.integers(14, 400).map(lambda n: 2 * n),
    fill=st.integers(0, 255),
)
@settings(max_examples=200, deadline=None)
def test_round_trip_raw_any_time_any_size(ms: int, width: int, height: int, fill: int) -> None:
    y, u, v = planes(width, height, fill)
    burn_clock(y, ms, u=u, v=v)
    assert read_clock(y) == ms


def test_chroma_is_neutral_under_the_box_and_untouched_elsewhere() -> None:
    y, u, v = planes(640, 360)
    layout = burn_clock(y, NOW, u=u, v=v)
    x0, y0, x1, y1 = layout.box
    assert (u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] == NEUTRAL).all()
    assert (v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] == NEUTRAL).all()
    assert (u[y1 // 2 + 1 :, :] == 60).all() and (v[:, x1 // 2 + 1 :] == 200).all()
    assert (y[y1:, :] == 90).all()  # nothing drawn outside the box


def test_human_readable_digits() -> None:
    assert format_clock(NOW + 13 * 3_600_000 + 5 * 60_000 + 9_000 + 7) == "13:05:09.007"
    y, _, _ = planes(640, 360)
    layout = burn_clock(y, NOW)
    assert layout.text_xy is not None
    tx, ty = layout.text_xy
    text = y[ty : ty + 7 * layout.text_scale, tx : tx + 71 * layout.text_scale]
    assert 0.1 < float((text == WHITE).mean()) < 0.6  # lit glyph pixels on black
    without = planes(640, 360)[0]
    burn_clock(without, NOW, text=False)
    assert read_clock(without) == NOW
    assert not (without[ty : ty + 7 * layout.text_scale] == WHITE).any()


def test_burn_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        burn_clock(planes(320, 240)[0], MAX_MS + 1)
    with pytest.raises(ValueError, match="outside"):
        burn_clock(planes(320, 240)[0], -1)
    with pytest.raises(ValueError, match="too small"):
        burn_clock(planes(64, 64)[0], NOW)


# -- absent or damaged -------------------------------------------------------------------


def test_no_code_reads_none() -> None:
    pattern = TestPattern(640, 360)
    frame = av.VideoFrame(640, 360, "yuv420p")
    y, u, v = (np.frombuffer(memoryview(p), np.uint8) for p in frame.planes)
    pattern.draw(
        y.reshape(360, -1)[:, :640], u.reshape(180, -1)[:, :320], v.reshape(180, -1)[:, :320], NOW
    )
    assert read_clock(frame) is None
    assert read_clock(np.zeros((360, 640), np.uint8)) is None
    assert read_clock(np.full((360, 640), 255, np.uint8)) is None
    noise = np.random.default_rng(1).integers(0, 256, (360, 640), dtype=np.uint8)
    assert read_clock(noise) is None


@pytest.mark.parametrize("row", [0, 1, 2, 3, 4])
def test_any_flipped_block_reads_none(row: int) -> None:
    for col in range(16):
        y, _, _ = planes(320, 240)
        burn_clock(y, NOW + 999)
        rows, cols = block_slice(320, 240, row, col)
        y[rows, cols] = BLACK + WHITE - y[rows, cols]
        assert read_clock(y) is None, (row, col)


def test_grey_block_reads_none() -> None:
    y, _, _ = planes(320, 240)
    burn_clock(y, NOW)
    rows, cols = block_slice(320, 240, 3, 7)
    y[rows, cols] = 128
    assert read_clock(y) is None


@given(
    ms=st.integers(0, MAX_MS),
    flips=st.sets(st.integers(0, 63), min_size=1, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_up_to_three_flipped_data_blocks_never_read_as_a_value(ms: int, flips: set[int]) -> None:
    y, _, _ = planes(320, 240)
    burn_clock(y, ms)
    for bit in flips:
        rows, cols = block_slice(320, 240, 1 + bit // 16, bit % 16)
        y[rows, cols] = BLACK + WHITE - y[rows, cols]
    assert read_clock(y) is None


@given(ms=st.integers(0, MAX_MS), seed=st.integers(0, 2**32 - 1), amp=st.integers(0, 120))
@settings(max_examples=150, deadline=None)
def test_noisy_code_reads_right_or_none(ms: int, seed: int, amp: int) -> None:
    y, _, _ = planes(320, 240)
    burn_clock(y, ms)
    noise = np.random.default_rng(seed).integers(-amp, amp + 1, y.shape)
    noisy = np.clip(y.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    assert read_clock(noisy) in (ms, None)
    if amp <= 40:
        assert read_clock(noisy) == ms


_dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
)


@given(
    arr=hnp.arrays(
        dtype=_dtypes,
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=90),
    )
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_never_raises_on_any_array(arr: NDArray[Any]) -> None:
    result = read_clock(arr)
    assert result is None or (isinstance(result, int) and 0 <= result <= MAX_MS)


@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float64, np.int16]),
        shape=st.tuples(st.integers(28, 60), st.integers(72, 180)),
    ),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_never_raises_on_code_sized_arrays(arr: NDArray[Any]) -> None:
    result = read_clock(arr)
    assert result is None or isinstance(result, int)


@given(
    arr=hnp.arrays(
        dtype=np.float64,
        shape=(60, 180),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    )
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_never_raises_on_extreme_floats(arr: NDArray[Any]) -> None:
    assert read_clock(arr) is None or isinstance(read_clock(arr), int)


def test_reader_takes_any_video_frame_format() -> None:
    y, u, v = planes(640, 360)
    burn_clock(y, NOW + 42, u=u, v=v)
    frame = av.VideoFrame.from_ndarray(
        np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, 640),
        format="yuv420p",
    )
    assert read_clock(frame) == NOW + 42
    assert luma_plane(frame).shape == (360, 640)
    assert read_clock(frame.reformat(format="rgb24")) == NOW + 42
    assert read_clock(frame.reformat(format="nv12")) == NOW + 42


# -- through the real encoder and decoder ------------------------------------------------


def encode_decode(profile: VideoProfile, times: list[int]) -> list[int | None]:
    """Burn each time into the moving pattern, H.264-encode, decode, read back."""
    pattern = TestPattern(profile.width, profile.height)
    encoder = H264Encoder(profile)
    decoder = av.CodecContext.create("h264", "r")
    read: list[int | None] = []
    for i, ms in enumerate(times):
        unit = encoder.encode(pattern.frame(ms), pts_ms=i * 1000 // profile.fps, capture_ms=ms)
        frames = decoder.decode(av.Packet(unit.data))
        assert len(frames) == 1
        read.append(read_clock(frames[0]))
    return read


@pytest.mark.parametrize(
    ("width", "height", "bitrate"),
    [
        (320, 240, 150_000),
        (320, 240, 400_000),
        (640, 360, 600_000),
        (640, 360, 200_000),
        (1280, 720, 1_500_000),
        (1920, 1080, 3_000_000),
    ],
)
def test_exact_after_h264(width: int, height: int, bitrate: int) -> None:
    rng = random.Random(width * height + bitrate)
    # Random times, each unrelated to the last: the hardest case for P-frames.
    times = [rng.randrange(0, MAX_MS) for _ in range(20)]
    times += [NOW + i * 67 for i in range(20)]  # and a realistic run
    profile = VideoProfile(width, height, fps=15, bitrate=bitrate)
    assert encode_decode(profile, times) == times


def test_exact_after_h264_with_the_slower_preset() -> None:
    rng = random.Random(5)
    times = [NOW + rng.randrange(0, 86_400_000) for _ in range(30)]
    profile = VideoProfile(640, 360, bitrate=300_000, preset="veryfast")
    assert encode_decode(profile, times) == times


def test_damaged_after_h264_reads_none() -> None:
    profile = VideoProfile(640, 360)
    pattern = TestPattern(640, 360)
    encoder = H264Encoder(profile)
    decoder = av.CodecContext.create("h264", "r")
    unit = encoder.encode(pattern.frame(NOW), pts_ms=0, capture_ms=NOW)
    (frame,) = decoder.decode(av.Packet(unit.data))
    y = luma_plane(frame).copy()
    assert read_clock(y) == NOW
    rows, cols = block_slice(640, 360, 2, 5)
    y[rows, cols] = 255 - y[rows, cols]
    assert read_clock(y) is None

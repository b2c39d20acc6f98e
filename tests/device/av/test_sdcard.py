"""The simulated camera's SD card with real media: H.264 + AAC from the simulated camera
recorded into FLV segments, played back and decoded with FFmpeg (PyAV), the capture time
read from every picture. A fake clock drives recording and paced playback, so nothing
waits real time."""

from __future__ import annotations

import asyncio
import functools
import itertools
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.device.av.sdcard import BadOffset, NoSuchFile, SdCard
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.xp2p_replies import RecordSpan, month_bitmask
from tests.device.av.sdcard_support import (
    NOW_S,
    FakeClock,
    card_copy,
    decode_flv,
    flv_tags,
    read_all,
    record_burst,
    recorded_template,
)
from tests.helpers import poll

T0 = NOW_S * 1000


def ms(text: str) -> int:
    """UTC ISO time → Unix ms."""
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def card(template: Path, tmp_path: Path) -> SdCard:
    """7 s of camera recorded in 2 s segments (the last one 0.9 s)."""
    return card_copy(template, tmp_path / "sd")


# -- recording ---------------------------------------------------------------------------


async def test_segments_are_standalone_flv_files_cut_at_keyframes(card: SdCard) -> None:
    segs = card.segments
    assert [(s.start_ms - T0, s.end_ms - T0) for s in segs] == [
        (0, 2000),
        (2000, 4000),
        (4000, 6000),
        (6000, 6900),
    ]
    assert all(s.complete and s.path.name.endswith("_0.flv") for s in segs)
    for seg in segs:
        data = seg.path.read_bytes()
        assert seg.size == len(data)
        decoded = decode_flv(data)  # each file plays on its own
        assert decoded.clocks[0] == seg.start_ms  # starts with its keyframe
        assert decoded.clocks == sorted(decoded.clocks)
        assert decoded.clocks[-1] <= seg.end_ms
        assert decoded.audio_frames > 0
        tags = flv_tags(data)
        assert tags[0].is_video_sequence_header and tags[1].is_video_keyframe
        assert tags[0].timestamp == tags[1].timestamp == 0
        first_audio = next(i for i, t in enumerate(tags) if t.tag_type == 8)
        assert tags[first_audio].is_audio_sequence_header


async def test_record_index_merges_contiguous_segments(card: SdCard) -> None:
    assert card.record_index() == [RecordSpan(0, NOW_S, NOW_S + 7)]
    # A window gets the segments it touches (2-4 s and 4-6 s), merged.
    assert card.record_index(NOW_S + 3, NOW_S + 4) == [RecordSpan(0, NOW_S + 2, NOW_S + 6)]
    assert card.record_index(NOW_S + 100, NOW_S + 200) == []
    assert card.record_index(kind=1) == []
    # A later recording after a pause is a separate span.
    record_burst(card, T0 + 60_000, 12)
    assert card.record_index() == [
        RecordSpan(0, NOW_S, NOW_S + 7),
        RecordSpan(0, NOW_S + 60, NOW_S + 62),
    ]


async def test_file_list_names_sizes_and_times(card: SdCard) -> None:
    files = card.file_list(NOW_S + 1, NOW_S + 3)
    assert [f.file_name for f in files] == [s.name for s in card.segments[:2]]
    assert files[0].file_size == card.segments[0].path.stat().st_size
    assert (files[0].begin_time_s, files[0].end_time_s) == (NOW_S, NOW_S + 2)
    assert card.file_list(file_type=1) == []  # no pictures on the simulated card


async def test_download_from_offset_returns_exact_bytes(card: SdCard) -> None:
    seg = card.segments[1]
    data = seg.path.read_bytes()
    for offset in (0, 1, 12345, len(data) - 1, len(data)):
        assert await read_all(card.open_file(seg.name, offset)) == data[offset:]
    with pytest.raises(BadOffset):
        card.open_file(seg.name, len(data) + 1)
    for name in ("nope.flv", "../sd/" + seg.name, seg.name + ".part"):
        with pytest.raises(NoSuchFile):
            card.open_file(name, 0)


# -- playback ----------------------------------------------------------------------------


async def test_playback_window_decodes_in_range_and_increasing(card: SdCard) -> None:
    session = card.open_playback(T0 + 2500, T0 + 5500, pace=False)
    data = await read_all(session)
    assert session.state == "ended"
    decoded = decode_flv(data)
    # From the keyframe at or before the start (one per second) to the end, crossing the
    # segment boundary at 4 s without a glitch.
    assert decoded.clocks[0] == T0 + 2000
    assert decoded.clocks[-1] == T0 + 5500
    assert decoded.clocks == sorted(set(decoded.clocks))
    assert len(decoded.clocks) == 36
    assert decoded.audio_frames > 40
    tags = flv_tags(data)
    media = [t for t in tags if not (t.is_video_sequence_header or t.is_audio_sequence_header)]
    assert media[0].timestamp == 0  # rebased
    assert sum(t.is_video_sequence_header for t in tags) == 1  # not repeated per segment
    assert session.progress_ms == 3000


async def test_paced_playback_takes_recorded_time_on_the_clock(card: SdCard) -> None:
    clock = FakeClock(NOW_S + 3600)
    session = card.open_playback(T0 + 1000, T0 + 4000, clock=clock, sleep=clock.sleep)
    data = await read_all(session)
    assert decode_flv(data).clocks[-1] == T0 + 4000
    assert clock.slept == pytest.approx(3.0, abs=0.11)


async def test_seek_jumps_forward_and_back(card: SdCard) -> None:
    session = card.open_playback(T0, T0 + 6900, pace=False)
    out = bytearray()
    seeks = iter([("progress", 5200), ("time", T0 + 1000)])
    async for chunk in session:
        out += chunk
        tags = len(flv_tags(bytes(out)))
        if tags in (20, 60):  # well inside the first and the later stretch
            how, value = next(seeks)
            assert session.seek(**{f"{how}_ms": value})
    clocks = decode_flv(bytes(out)).clocks
    jumps = [(a - T0, b - T0) for a, b in itertools.pairwise(clocks) if b - a != 100]
    assert len(jumps) == 2
    (before1, after1), (before2, after2) = jumps
    assert after1 == 5000  # the keyframe at or before progress 5.2 s
    assert after2 == 1000 and before2 > 5000
    assert before1 < after1
    assert clocks[-1] == T0 + 6900
    timestamps = [t.timestamp for t in flv_tags(bytes(out)) if t.tag_type == 9]
    assert timestamps == sorted(timestamps)  # the output timeline never goes back


async def test_pause_holds_the_consumer_until_resume(card: SdCard) -> None:
    clock = FakeClock(NOW_S + 3600)
    session = card.open_playback(T0, T0 + 6000, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        await session.__anext__()
    assert session.pause() and session.state == "paused"
    sent, progress = session.bytes_sent, session.progress_ms
    task = asyncio.create_task(session.__anext__())
    await poll(lambda: _now(session.parked), lambda parked: parked)
    assert not task.done()
    assert (session.bytes_sent, session.progress_ms) == (sent, progress)
    assert session.resume() and session.state == "playing"
    assert len(await task) > 0 and session.bytes_sent > sent
    await session.aclose()
    assert session.state == "ended"
    assert not session.pause() and not session.seek(progress_ms=0)


async def test_aclose_releases_a_parked_consumer(card: SdCard) -> None:
    session = card.open_playback(T0, T0 + 6000, pace=False)
    await session.__anext__()
    session.pause()
    task = asyncio.create_task(read_all(session))
    await poll(lambda: _now(session.parked), lambda parked: parked)
    await session.aclose()
    assert await task == b""


async def _now(value: bool) -> bool:
    return value


# -- the index over days, retention, crashes -----------------------------------------------


def test_month_bitmask_across_days_and_time_zones(tmp_path: Path) -> None:
    card = SdCard(tmp_path / "utc", retention_hours=24 * 60)
    record_burst(card, ms("2026-01-07T23:59:59.500"), 11)  # crosses midnight: days 7 and 8
    record_burst(card, ms("2026-01-14T12:00:00"), 3)
    record_burst(card, ms("2026-01-31T20:00:00"), 3)  # 04:00 on Feb 1 at UTC+8
    assert card.month_days(2026, 1) == [7, 8, 14, 31]
    assert card.month_days(2026, 2) == []
    assert card.month_days(2025, 12) == []
    east = SdCard(
        tmp_path / "utc", utc_offset_s=8 * 3600, retention_hours=24 * 60
    )  # same files, China time
    assert east.month_days(2026, 1) == [8, 14]
    assert east.month_days(2026, 2) == [1]
    assert month_bitmask(card.month_days(2026, 1)) == (1 << 6) | (1 << 7) | (1 << 13) | (1 << 30)


def test_retention_deletes_the_oldest(tmp_path: Path) -> None:
    card = SdCard(tmp_path / "sd", retention_hours=10 / 3600)  # keep 10 s
    for start in (0, 4_000, 8_000, 30_000):
        record_burst(card, T0 + start, 10)
    # Newest recording ends at 30.9 s: those ending more than 10 s before are gone.
    assert [s.start_ms - T0 for s in card.segments] == [30_000]
    assert sorted(p.name for p in (tmp_path / "sd").iterdir()) == [card.segments[0].name]

    full = SdCard(tmp_path / "full")
    for start in (0, 2_000, 4_000):
        record_burst(full, T0 + start, 10)
    one = full.segments[0].size
    full.capacity_bytes = 2 * one + one // 2
    assert len(full.enforce_retention()) == 1
    assert [s.start_ms - T0 for s in full.segments] == [2_000, 4_000]


async def test_torn_segment_is_truncated_on_restart(card: SdCard) -> None:
    root = card.root
    whole = card.segments[1].path.read_bytes()
    start = T0 + 100_000
    (root / f"rec_{start}_0.flv.part").write_bytes(whole[: len(whole) * 2 // 3])
    (root / f"rec_{start + 50_000}_0.flv.part").write_bytes(whole[:9] + b"\x00" * 500)
    junk_start = start + 90_000
    (root / f"rec_{junk_start}_0.flv.part").write_bytes(whole[:30_000] + b"\xff" * 64)
    (root / "notes.txt").write_text("not a recording")

    again = SdCard(root)
    assert len(again.recovered) == 2
    torn = again.segment_at(start)
    assert torn is not None and torn.complete and torn.size < len(whole) * 2 // 3
    data = torn.path.read_bytes()
    assert len(data) == torn.size
    reader = FlvReader()
    assert reader.feed(data) and reader.buffered == 0  # whole tags only
    clocks = decode_flv(data).clocks
    assert 0 <= torn.end_ms - (start + clocks[-1] - clocks[0]) < 100
    assert again.segment_at(start + 50_000) is None  # nothing usable: deleted
    assert not (root / f"rec_{start + 50_000}_0.flv.part").exists()
    junk = again.segment_at(junk_start)
    assert junk is not None and junk.size <= 30_000
    assert (root / "notes.txt").exists()  # foreign files are left alone
    assert len(again.segments) == len(card.segments) + 2


@functools.cache
def _one_segment() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        card = SdCard(tmp)
        record_burst(card, T0, 25)
        return card.segments[0].path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_recovery_keeps_a_whole_tag_prefix_of_any_damage(data: st.DataObject) -> None:
    whole = _one_segment()
    cut = data.draw(st.integers(0, len(whole)))
    tail = data.draw(st.binary(max_size=40))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"rec_{T0}_0.flv.part").write_bytes(whole[:cut] + tail)
        card = SdCard(tmp)
        seg = card.segment_at(T0)
        if seg is None:
            assert not any(Path(tmp).iterdir())  # dropped: no keyframe survived
            return
        kept = seg.path.read_bytes()
        assert whole.startswith(kept[: min(len(kept), cut)])
        reader = FlvReader()
        tags = reader.feed(kept)
        assert reader.buffered == 0 and any(t.is_video_keyframe for t in tags)

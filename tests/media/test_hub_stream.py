"""The hub's per-stream logic with synthetic FLV tags (pure, no sockets): GOP cache, fan-out
of the very same bytes, lagging viewers skipping to the next keyframe, and — under random
viewer schedules — bounded memory and decodable output for every viewer."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.media.fanout import Item, Viewer
from ivcloud.media.stream import Stream
from ivcloud.protocol.av import FlvReader, encode_tag, flv_header
from ivcloud.protocol.av.flv import (
    TAG_AUDIO,
    TAG_SCRIPT,
    TAG_VIDEO,
    aac_raw_body,
    aac_sequence_header_body,
    avc_nalu_body,
    avc_sequence_header_body,
)
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.protocol.stream_urls import StreamKey

KEY = StreamKey("PID0000001", "cam01")
HEADER = flv_header(has_audio=True, has_video=True)


def vconf(config_id: int, ts: int = 0) -> bytes:
    return encode_tag(TAG_VIDEO, ts, avc_sequence_header_body(b"\x01cfg" + bytes([config_id])))


def aconf(ts: int = 0) -> bytes:
    return encode_tag(TAG_AUDIO, ts, aac_sequence_header_body(b"\x12\x10"))


def video(seq: int, ts: int, *, key: bool, size: int = 16) -> bytes:
    body = seq.to_bytes(4, "big") + b"\x00" * max(0, size - 4)
    return encode_tag(TAG_VIDEO, ts, avc_nalu_body(body, keyframe=key, composition_time_ms=0))


def audio(seq: int, ts: int, size: int = 16) -> bytes:
    body = seq.to_bytes(4, "big") + b"\x00" * max(0, size - 4)
    return encode_tag(TAG_AUDIO, ts, aac_raw_body(body))


@dataclass(frozen=True)
class Parsed:
    kind: str  # header | vconf | aconf | meta | video | audio
    seq: int = -1
    key: bool = False
    ts: int = 0
    config: int = -1


def parse(item: Item) -> Parsed:
    assert isinstance(item, bytes)
    if item.startswith(b"FLV"):
        assert item == HEADER
        return Parsed("header")
    tags = FlvReader(expect_header=False).feed(item)
    assert len(tags) == 1, "one tag per item"
    tag = tags[0]
    payload = bytes(tag.payload)
    if tag.is_video_sequence_header:
        return Parsed("vconf", ts=tag.timestamp, config=payload[-1])
    if tag.is_audio_sequence_header:
        return Parsed("aconf", ts=tag.timestamp)
    if tag.tag_type == TAG_SCRIPT:
        return Parsed("meta", ts=tag.timestamp)
    seq = int.from_bytes(payload[:4], "big")
    if tag.tag_type == TAG_VIDEO:
        return Parsed("video", seq, tag.is_video_keyframe, tag.timestamp)
    return Parsed("audio", seq, False, tag.timestamp)


def new_stream(gop_limit: int = 100_000) -> Stream:
    stream = Stream(KEY, gop_limit=gop_limit, max_tag_size=1 << 20)
    stream.begin_publish()
    return stream


def drain(viewer: Viewer) -> list[Item]:
    out = []
    while (item := viewer.pop()) is not None:
        out.append(item)
    return out


# -- examples ---------------------------------------------------------------------------------


def test_joining_viewer_gets_header_configs_and_gop_at_once() -> None:
    stream = new_stream()
    k1, p1, a1 = video(1, 1000, key=True), video(2, 1066, key=False), audio(3, 1070)
    stream.feed(HEADER + vconf(7, 0) + aconf(0) + k1 + p1 + a1)
    viewer = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(viewer)
    items = drain(viewer)
    kinds = [parse(i).kind for i in items]
    assert kinds == ["header", "vconf", "aconf", "video", "video", "audio"]
    # The sequence headers are re-stamped to the keyframe's time, the media are the
    # stream's own objects (no copies).
    assert [parse(i).ts for i in items[1:3]] == [1000, 1000]
    assert items[3] is stream.gop[0] and items[3] == k1
    assert stream.gop_bytes == len(k1) + len(p1) + len(a1)


def test_same_bytes_objects_reach_every_viewer() -> None:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + video(1, 0, key=True))
    viewers = [Viewer(stream, 1 << 20) for _ in range(5)]
    for v in viewers:
        stream.add_flv_viewer(v)
        drain(v)
    stream.feed(video(2, 66, key=False))
    items = [drain(v) for v in viewers]
    assert all(len(i) == 1 for i in items)
    assert all(i[0] is items[0][0] for i in items)


def test_viewer_before_any_keyframe_starts_at_the_first_one() -> None:
    stream = new_stream()
    viewer = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(viewer)
    stream.feed(HEADER + vconf(1) + video(1, 0, key=False) + audio(2, 5))
    assert drain(viewer) == []
    stream.feed(video(3, 66, key=True) + video(4, 133, key=False))
    got = [parse(i) for i in drain(viewer)]
    assert [p.kind for p in got] == ["header", "vconf", "video", "video"]
    assert got[2].key and got[2].seq == 3


def test_a_gop_past_the_limit_is_dropped_and_the_next_keyframe_restores_it() -> None:
    stream = new_stream(gop_limit=1000)
    stream.feed(HEADER + vconf(1) + video(1, 0, key=True, size=400))
    stream.feed(video(2, 66, key=False, size=400))
    assert len(stream.gop) == 2
    stream.feed(video(3, 133, key=False, size=400))
    assert stream.gop == [] and stream.gop_drops == 1
    joiner = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(joiner)
    assert drain(joiner) == []  # nothing decodable is cached: it waits
    stream.feed(video(4, 200, key=True))
    assert len(stream.gop) == 1
    assert [parse(i).kind for i in drain(joiner)] == ["header", "vconf", "video"]


def test_slow_viewer_skips_to_the_next_keyframe_and_gets_the_configs_again() -> None:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + aconf() + video(1, 0, key=True))
    slow, fast = Viewer(stream, 2000), Viewer(stream, 1 << 20)
    stream.add_flv_viewer(slow)
    stream.add_flv_viewer(fast)
    assert parse(drain(slow)[0]).kind == "header"
    seq = 2
    for n in range(10):  # the slow viewer stops reading
        stream.feed(video(seq, 66 * (n + 1), key=False, size=500))
        seq += 1
    assert slow.lag_events == 1 and slow.waiting and slow.queued_bytes == 0
    assert slow.skipped > 0
    stream.feed(video(seq, 1000, key=True))
    got = [parse(i) for i in drain(slow)]
    assert [p.kind for p in got] == ["vconf", "aconf", "video"]
    assert got[-1].key and got[-1].seq == seq
    assert {p.ts for p in got} == {1000}
    # The fast one missed nothing.
    assert [parse(i).seq for i in drain(fast)][-11:] == list(range(2, seq + 1))


def test_lag_before_anything_was_sent_resends_the_file_header() -> None:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + video(1, 0, key=True, size=500))
    viewer = Viewer(stream, 1000)
    stream.add_flv_viewer(viewer)  # queued, nothing popped yet
    stream.feed(video(2, 66, key=False, size=800))
    assert viewer.lag_events == 1
    stream.feed(video(3, 133, key=True))
    assert [parse(i).kind for i in drain(viewer)] == ["header", "vconf", "video"]


def test_new_sequence_header_is_forwarded_live_and_used_for_joiners() -> None:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + video(1, 0, key=True))
    viewer = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(viewer)
    drain(viewer)
    stream.feed(vconf(2, 100) + video(2, 100, key=True))
    first = parse(drain(viewer)[0])
    assert (first.kind, first.config) == ("vconf", 2)
    joiner = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(joiner)
    assert parse(drain(joiner)[1]).config == 2


def test_metadata_is_part_of_the_initial_prelude() -> None:
    stream = new_stream()
    meta = encode_tag(TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09")
    stream.feed(HEADER + meta + vconf(1) + video(1, 40, key=True))
    viewer = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(viewer)
    assert [parse(i).kind for i in drain(viewer)] == ["header", "meta", "vconf", "video"]


def test_audio_only_stream_resumes_on_any_audio_frame() -> None:
    stream = new_stream()
    stream.feed(flv_header(has_audio=True, has_video=False) + aconf() + audio(1, 0))
    viewer = Viewer(stream, 1 << 20)
    stream.add_flv_viewer(viewer)
    got = drain(viewer)
    assert got[0] == flv_header(has_audio=True, has_video=False)
    assert [parse(i).kind for i in got[1:]] == ["aconf", "audio"]


def test_ended_viewer_drains_then_stops() -> None:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + video(1, 0, key=True))
    woken: list[int] = []
    viewer = Viewer(stream, 1 << 20, lambda: woken.append(1))
    stream.add_flv_viewer(viewer)
    stream.end(4410, "publisher disconnected")
    assert viewer.ended and (viewer.end_code, viewer.end_reason) == (4410, "publisher disconnected")
    assert len(drain(viewer)) == 3 and woken
    stream.feed(video(2, 66, key=True))
    assert viewer.pop() is None


def test_broken_publisher_bytes_raise_media_format_error() -> None:
    stream = new_stream()
    with pytest.raises(MediaFormatError):
        stream.feed(b"NOTFLV\x00\x00\x00\x00\x00\x00")


def test_viewer_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Viewer(new_stream(), 0)


# -- random viewer schedules ------------------------------------------------------------------

LIMIT = 3000
GOP_LIMIT = 2500
MAX_TAG = 1300

# Mostly media, keyframes now and then, viewers reading at random paces: enough pressure
# that viewers overflow, skip and resume in most examples.
_op = st.one_of(
    st.tuples(st.just("video"), st.integers(0, 5).map(lambda n: n == 0), st.integers(8, 1200)),
    st.tuples(st.just("video"), st.just(False), st.integers(200, 1200)),
    st.tuples(st.just("audio"), st.integers(8, 300)),
    st.tuples(st.just("pop"), st.integers(0, 7), st.integers(0, 12)),
    st.tuples(st.just("join")),
    st.tuples(st.just("leave"), st.integers(0, 7)),
    st.tuples(st.just("config")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, min_size=20, max_size=150))
def test_random_schedules_keep_memory_bounded_and_output_decodable(
    ops: list[tuple[object, ...]],
) -> None:
    stream = new_stream(gop_limit=GOP_LIMIT)
    stream.feed(HEADER + vconf(0) + aconf())
    config, seq, ts = 0, 0, 0
    config_of: dict[int, int] = {}  # keyframe seq → config id it was coded with
    viewers: list[Viewer] = []
    outputs: dict[Viewer, list[Item]] = {}
    prelude_max = len(HEADER) + len(vconf(0)) + len(aconf())
    for op in ops:
        if op[0] == "video" or op[0] == "audio":
            seq += 1
            ts += 33
            if op[0] == "video":
                key, size = bool(op[1]), int(op[2])  # type: ignore[call-overload]
                if key:
                    config_of[seq] = config
                stream.feed(video(seq, ts, key=key, size=size))
            else:
                stream.feed(audio(seq, ts, size=int(op[1])))  # type: ignore[call-overload]
        elif op[0] == "config":
            config += 1
            stream.feed(vconf(config, ts))
        elif op[0] == "join":
            viewer = Viewer(stream, LIMIT)
            stream.add_flv_viewer(viewer)
            viewers.append(viewer)
            outputs[viewer] = []
        elif op[0] == "pop" and viewers:
            viewer = viewers[int(op[1]) % len(viewers)]  # type: ignore[call-overload]
            for _ in range(int(op[2])):  # type: ignore[call-overload]
                item = viewer.pop()
                if item is None:
                    break
                outputs[viewer].append(item)
        elif op[0] == "leave" and viewers:
            viewer = viewers.pop(int(op[1]) % len(viewers))  # type: ignore[call-overload]
            stream.remove_viewer(viewer)
        # Memory stays bounded whatever the viewers do.
        assert stream.gop_bytes <= GOP_LIMIT + MAX_TAG
        for viewer in viewers:
            assert viewer.queued_bytes <= LIMIT + prelude_max + MAX_TAG
    for viewer, out in outputs.items():
        out.extend(drain(viewer))
        check_decodable([parse(i) for i in out], config_of)


def check_decodable(items: list[Parsed], config_of: dict[int, int]) -> None:
    """Starts with the file header; every start/resume is a keyframe right after the
    sequence headers (stamped with its time); media are contiguous between resumes; a
    keyframe always follows the configuration it was coded with."""
    if not items:
        return
    assert items[0].kind == "header"
    assert all(p.kind != "header" for p in items[1:])
    last_seq: int | None = None
    config_seen: int | None = None
    pending_configs: list[Parsed] = []
    for p in items[1:]:
        if p.kind in ("vconf", "aconf", "meta"):
            pending_configs.append(p)
            if p.kind == "vconf":
                config_seen = p.config
            continue
        contiguous = last_seq is not None and p.seq == last_seq + 1
        if not contiguous:
            assert p.kind == "video" and p.key, f"resume at {p}"
            # The prelude (the last configs before it) is stamped with the resume's time.
            assert any(c.kind == "vconf" and c.ts == p.ts for c in pending_configs)
            assert pending_configs[-1].ts == p.ts, "configs not at resume time"
        if p.kind == "video" and p.key:
            assert config_seen == config_of[p.seq], "keyframe after a stale configuration"
        pending_configs = []
        last_seq = p.seq

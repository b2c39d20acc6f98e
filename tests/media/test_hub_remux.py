"""The per-stream FLV → fMP4 remux with real H.264/AAC (encoded by PyAV under a fake clock):
what a WS-fMP4 viewer receives decodes, starts on a keyframe at once, survives a skip, and
a configuration change brings a new init segment."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from ivcloud.device.av import EncodedAudio
from ivcloud.media.fanout import Item, Viewer
from ivcloud.media.stream import Stream
from ivcloud.protocol.av import FlvReader, rewrite_timestamp
from ivcloud.protocol.av import iter_boxes as boxes
from ivcloud.protocol.stream_urls import StreamKey
from tests.media.hub_support import (
    Recording,
    audio_frames,
    chunks_of,
    decode_clocks,
    record,
)

KEY = StreamKey("PID0000001", "cam01")


@pytest.fixture(scope="module")
def rec() -> Recording:
    return asyncio.run(record(3.0))  # 30 pictures, keyframes at 0, 1, 2 s; AAC audio


def new_stream() -> Stream:
    stream = Stream(KEY, gop_limit=1 << 20, max_tag_size=1 << 20)
    stream.begin_publish()
    return stream


def drain(viewer: Viewer) -> list[Item]:
    out = []
    while (item := viewer.pop()) is not None:
        out.append(item)
    return out


def split(items: list[Item]) -> tuple[dict[str, str], bytes, list[bytes]]:
    """(init message, init segment, fragments) of an fMP4 viewer's output."""
    assert isinstance(items[0], str) and isinstance(items[1], bytes)
    fragments = [i for i in items[2:] if isinstance(i, bytes)]
    assert len(fragments) == len(items) - 2, "one init only"
    return json.loads(items[0]), items[1], fragments


def test_viewer_before_the_publisher_gets_init_then_decodable_fragments(rec: Recording) -> None:
    stream = new_stream()
    viewer = Viewer(stream, 1 << 22)
    stream.add_mp4_viewer(viewer)
    for chunk in chunks_of(rec.data, 1500):  # cut anywhere, as a socket delivers
        stream.feed(chunk)
    info, init, fragments = split(drain(viewer))
    assert info["type"] == "init"
    assert re.fullmatch(r"avc1\.42C0[0-9A-F]{2},mp4a\.40\.2", info["codecs"])
    assert info["mime"] == f'video/mp4; codecs="{info["codecs"]}"'
    assert [b.type for b in boxes(init)] == [b"ftyp", b"moov"]
    assert all([b.type for b in boxes(f)] == [b"moof", b"mdat"] for f in fragments)
    clocks = decode_clocks(init + b"".join(fragments), "mp4")
    # Every picture but the one the muxer still holds back (it waits for the next).
    assert clocks[0] == rec.keyframe_clocks[0]
    assert len(clocks) == 29 and clocks == sorted(clocks)
    sent_audio = sum(1 for f in rec.frames if isinstance(f, EncodedAudio))
    assert sent_audio - 4 <= audio_frames(init + b"".join(fragments), "mp4") <= sent_audio


def test_late_viewer_starts_at_once_on_the_cached_keyframe(rec: Recording) -> None:
    stream = new_stream()
    cut = len(rec.chunks) * 5 // 6  # between the keyframes at 2 s and the end
    stream.feed(b"".join(rec.chunks[:cut]))
    viewer = Viewer(stream, 1 << 22)
    stream.add_mp4_viewer(viewer)  # starts the remux from the GOP cache
    _, init, fragments = split(drain(viewer))
    assert fragments, "the cached GOP is served at once"
    clocks = decode_clocks(init + b"".join(fragments), "mp4")
    assert clocks[0] == rec.keyframe_clocks[-1]
    stream.feed(b"".join(rec.chunks[cut:]))
    more = [i for i in drain(viewer) if isinstance(i, bytes)]
    clocks = decode_clocks(init + b"".join(fragments + more), "mp4")
    assert clocks == sorted(clocks) and clocks[-1] > rec.keyframe_clocks[-1]
    assert stream.remux is not None and stream.remux.gop_bytes > 0


def test_the_same_fragment_objects_go_to_every_mp4_viewer(rec: Recording) -> None:
    stream = new_stream()
    viewers = [Viewer(stream, 1 << 22) for _ in range(3)]
    for viewer in viewers:
        stream.add_mp4_viewer(viewer)
    stream.feed(rec.data)
    outputs = [drain(v) for v in viewers]
    assert all(len(o) == len(outputs[0]) for o in outputs)
    assert all(a is b for o in outputs[1:] for a, b in zip(o[2:], outputs[0][2:], strict=True))
    assert stream.remux is not None and stream.remux.fragments == len(outputs[0]) - 2


async def test_video_only_and_missing_audio_config() -> None:
    video_only = await record(1.5, audio=False)
    stream = new_stream()
    viewer = Viewer(stream, 1 << 22)
    stream.add_mp4_viewer(viewer)
    stream.feed(video_only.data)
    info, init, fragments = split(drain(viewer))
    assert re.fullmatch(r"avc1\.42C0[0-9A-F]{2}", info["codecs"])
    assert len(decode_clocks(init + b"".join(fragments), "mp4")) >= 10

    # The header announces audio that never comes: the remux waits for its configuration,
    # then gives up at the second keyframe and goes video-only.
    with_audio = await record(2.5)
    reader = FlvReader()
    tags = reader.feed(with_audio.data)
    no_audio = with_audio.chunks[0][:13] + b"".join(t.data for t in tags if t.tag_type == 9)
    stream = new_stream()
    viewer = Viewer(stream, 1 << 22)
    stream.add_mp4_viewer(viewer)
    stream.feed(no_audio)
    info, init, fragments = split(drain(viewer))
    assert "mp4a" not in info["codecs"]
    assert decode_clocks(init + b"".join(fragments), "mp4")[0] == with_audio.keyframe_clocks[1]


def test_slow_mp4_viewer_resumes_with_the_init_again(rec: Recording) -> None:
    stream = new_stream()
    slow = Viewer(stream, 20_000)
    stream.add_mp4_viewer(slow)
    received: list[Item] = []
    stall = range(5, len(rec.chunks) * 2 // 3)
    for n, chunk in enumerate(rec.chunks):
        stream.feed(chunk)
        if n not in stall:  # reads, stops for a while, reads again
            received.extend(drain(slow))
    assert slow.lag_events >= 1
    texts = [i for i in received if isinstance(i, str)]
    assert len(texts) >= 2, "the init message comes again after the skip"
    # What follows the last init decodes on its own, from a keyframe.
    last = max(i for i, item in enumerate(received) if isinstance(item, str))
    init = received[last + 1]
    tail = [i for i in received[last + 2 :] if isinstance(i, bytes)]
    assert isinstance(init, bytes) and tail
    clocks = decode_clocks(init + b"".join(tail), "mp4")
    assert clocks[0] in rec.keyframe_clocks[1:]


async def test_configuration_change_sends_a_new_init(rec: Recording) -> None:
    bigger = await record(1.5, width=480, height=360)
    stream = new_stream()
    viewer = Viewer(stream, 1 << 22)
    stream.add_mp4_viewer(viewer)
    stream.feed(rec.data)
    # The camera switches resolution: new sequence headers, later timestamps.
    offset = 4000
    tags = FlvReader().feed(bigger.data)
    stream.feed(b"".join(rewrite_timestamp(t.data, t.timestamp + offset) for t in tags))
    items = drain(viewer)
    inits = [n for n, item in enumerate(items) if isinstance(item, str)]
    assert len(inits) == 2
    first, second = json.loads(items[inits[0]]), json.loads(items[inits[1]])
    assert first["codecs"] != second["codecs"] or items[inits[0] + 1] != items[inits[1] + 1]
    init = items[inits[1] + 1]
    assert isinstance(init, bytes)
    tail = [i for i in items[inits[1] + 2 :] if isinstance(i, bytes)]
    clocks = decode_clocks(init + b"".join(tail), "mp4")
    assert clocks[0] == bigger.keyframe_clocks[0] and len(clocks) >= 10

"""Write coalescing in the hub (pure): which items wake a viewer's writer, draining a backlog
in one go, and joining runs of binary items into one write without changing the byte
stream or separating an fMP4 init message from its init segment."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivcloud.media.fanout import Item, Viewer, coalesce
from ivcloud.media.stream import AUDIO_RIDE_MAX, Stream
from ivcloud.protocol.av import flv_header
from tests.media.test_hub_stream import HEADER, aconf, audio, new_stream, parse, vconf, video


class WakeCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def watched(stream: Stream) -> tuple[Viewer, WakeCounter]:
    wakes = WakeCounter()
    viewer = Viewer(stream, 1 << 20, wakes)
    stream.add_flv_viewer(viewer)
    viewer.pop_all()
    wakes.count = 0  # the join's wake-up
    return viewer, wakes


def started_stream() -> Stream:
    stream = new_stream()
    stream.feed(HEADER + vconf(1) + aconf() + video(1, 1000, key=True))
    return stream


def test_audio_between_video_frames_rides_along_with_the_next_frame() -> None:
    stream = started_stream()
    viewer, wakes = watched(stream)
    stream.feed(audio(2, 1010) + audio(3, 1030))
    assert wakes.count == 0 and len(viewer.queue) == 2  # queued, writer not woken
    stream.feed(video(4, 1040, key=False))
    assert wakes.count == 1
    assert [parse(i).seq for i in viewer.pop_all()] == [2, 3, 4]
    assert viewer.pop_all() == []


def test_audio_only_streams_wake_the_writer_for_every_frame() -> None:
    stream = new_stream()
    stream.feed(flv_audio_only_header() + aconf() + audio(1, 0))
    viewer, wakes = watched(stream)
    stream.feed(audio(2, 64) + audio(3, 128))
    assert wakes.count == 2
    assert [parse(i).seq for i in viewer.pop_all()] == [2, 3]


def test_audio_waits_for_video_at_most_audio_ride_max_frames_in_a_row() -> None:
    """A stalled (or very slow) video track must not hold the audio back."""
    stream = started_stream()
    viewer, wakes = watched(stream)
    for n in range(AUDIO_RIDE_MAX):
        stream.feed(audio(2 + n, 1010 + 64 * n))
    assert wakes.count == 0
    stream.feed(audio(9, 2000))
    assert wakes.count == 1
    assert [parse(i).seq for i in viewer.pop_all()] == [*range(2, 2 + AUDIO_RIDE_MAX), 9]
    stream.feed(audio(10, 2064))  # the count starts again after an urgent tag
    assert wakes.count == 1


def test_encoder_delayed_audio_still_rides_along() -> None:
    """Encoders interleave audio 100-200 ms behind the video it plays with (the bench's
    recording does): riding goes by arrival order, not timestamps."""
    stream = started_stream()
    viewer, wakes = watched(stream)
    stream.feed(video(2, 1200, key=False) + audio(3, 1010))
    assert wakes.count == 1 and len(viewer.queue) == 2
    viewer.pop_all()
    stream.feed(audio(4, 1074))
    assert wakes.count == 1
    stream.feed(video(5, 1240, key=False))
    assert wakes.count == 2
    assert [parse(i).seq for i in viewer.pop_all()] == [4, 5]


def test_configuration_and_keyframes_always_wake() -> None:
    stream = started_stream()
    viewer, wakes = watched(stream)
    stream.feed(vconf(2, 1050))
    stream.feed(video(5, 1066, key=True))
    assert wakes.count == 2
    assert [parse(i).kind for i in viewer.pop_all()] == ["vconf", "video"]


def test_joining_wakes_once_and_the_end_wakes_a_viewer_with_riders_queued() -> None:
    stream = started_stream()
    wakes = WakeCounter()
    viewer = Viewer(stream, 1 << 20, wakes)
    stream.add_flv_viewer(viewer)
    assert wakes.count == 1 and len(viewer.queue) == 4  # header, configs, keyframe
    viewer.pop_all()
    stream.feed(audio(2, 1010))
    stream.end(4410, "gone")
    assert wakes.count == 2 and viewer.ended
    assert [parse(i).seq for i in viewer.pop_all()] == [2]


def test_pop_all_empties_the_backlog_and_its_byte_count() -> None:
    stream = started_stream()
    viewer, _ = watched(stream)
    before = viewer.taken_bytes
    stream.feed(video(2, 1040, key=False) + video(3, 1080, key=False))
    queued = viewer.queued_bytes
    assert queued > 0
    assert len(viewer.pop_all()) == 2
    assert viewer.queued_bytes == 0 and not viewer.queue
    assert viewer.taken_bytes == before + queued


def test_coalesce_keeps_an_init_message_and_its_segment_apart() -> None:
    assert coalesce([b"a", b"b", '{"type":"init"}', b"init", b"f1", b"f2"]) == [
        b"ab",
        '{"type":"init"}',
        b"init",
        b"f1f2",
    ]
    one = b"only"
    assert coalesce([one])[0] is one


items_strategy = st.lists(
    st.one_of(st.binary(min_size=1, max_size=8), st.text(min_size=1, max_size=4)),
    min_size=1,
    max_size=20,
)


@given(items_strategy)
def test_coalesce_preserves_the_stream(items: list[Item]) -> None:
    out = coalesce(items)
    assert [i for i in out if isinstance(i, str)] == [i for i in items if isinstance(i, str)]
    assert _binary_runs(out) == _binary_runs(items)
    # Adjacent binary outputs only where a text item precedes the first of them.
    for before, prev, cur in zip([None, *out], out, out[1:], strict=False):
        if isinstance(prev, bytes) and isinstance(cur, bytes):
            assert isinstance(before, str)


def _binary_runs(items: list[Item]) -> list[bytes]:
    """The concatenated bytes between text items."""
    runs: list[bytes] = [b""]
    for item in items:
        if isinstance(item, str):
            runs.append(b"")
        else:
            runs[-1] += item
    return runs


def flv_audio_only_header() -> bytes:
    return flv_header(has_audio=True, has_video=False)

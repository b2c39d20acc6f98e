"""The device-side uploader (``iv_cs`` shape) against a real server, fed frame by frame as a
real device's encoder loop would: the clip starts on the keyframe before the event and ends
on the keyframe after it, segments tile, pictures are real JPEGs of the event; picture-only
events; retries with back-off, final refusals, and a bounded queue that drops instead of
blocking."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import Iterator

import av
import httpx
import pytest

from ivcloud.app import Ivcloud
from ivcloud.device import DeviceInfo
from ivcloud.device.av import EncodedVideo, VideoEncoder
from ivcloud.device.cloud_storage import CloudStorageUploader, UploadResult
from ivcloud.device.snapshot import SnapshotError, keyframe_to_jpeg
from ivcloud.media.clockcode import read_clock
from ivcloud.services.devices import DeviceRecord
from tests.cloud_storage_support import SMALL, counts
from tests.helpers import Provisioned, poll, provision


class Clock:
    """The device's wall clock, moved along with the frames it captures."""

    def __init__(self, now_s: float) -> None:
        self.now = now_s

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def cam(admin: httpx.AsyncClient) -> Provisioned:
    return await provision(admin, "camera", "camera", "cam-1")


@pytest.fixture
async def rec(server: Ivcloud, cam: Provisioned) -> DeviceRecord:
    return await server.devices.get(cam.product_id, cam.device_name)


@pytest.fixture
def encoder() -> Iterator[VideoEncoder]:
    enc = VideoEncoder(SMALL)
    yield enc
    enc.close()


def info(cam: Provisioned) -> DeviceInfo:
    return DeviceInfo(cam.product_id, cam.device_name, cam.secret)


def frames(enc: VideoEncoder, t0_ms: int, first: int, last: int) -> list[EncodedVideo]:
    """Frames ``first..last-1`` of a 10 fps stream starting at ``t0_ms`` (keyframe every 10)."""
    return [enc.encode(t0_ms + n * 100, n * 100) for n in range(first, last)]


async def test_clip_covers_the_event_from_the_keyframe_before_it(
    server: Ivcloud, cam: Provisioned, rec: DeviceRecord, encoder: VideoEncoder
) -> None:
    assert server.endpoints is not None
    t0 = (int(time.time()) - 120) * 1000
    clock = Clock(t0 / 1000)
    results: list[UploadResult] = []
    up = CloudStorageUploader(
        info(cam), server.endpoints.http_url, clock=clock, on_result=results.append
    )
    await up.start()
    stream = frames(encoder, t0, 0, 60)
    for frame in stream[:15]:  # keyframes at 0 and 10: the pre-roll starts at frame 10
        clock.now = frame.capture_ms / 1000
        up.feed(frame)
    assert not up.recording
    event_start = await up.event_start(0, 1, {"person": True})
    assert event_start == stream[14].capture_ms and up.recording
    for frame in stream[15:36]:
        clock.now = frame.capture_ms / 1000
        up.feed(frame)
    event_end = await up.event_stop(0, 1)
    for frame in stream[36:60]:  # the clip closes at the keyframe at frame 40
        clock.now = frame.capture_ms / 1000
        up.feed(frame)
    assert not up.recording
    assert await up.drain(20)
    await up.aclose()
    assert [r for r in results if not r.ok] == []
    assert up.stats.segments == 3 and up.stats.failed == 0
    segments = await server.cs_query.segments(rec, 0, t0, t0 + 60_000, 100)
    assert [(s.start_ms - t0, s.end_ms - t0, s.duration_ms) for s in segments] == [
        (1000, 2000, 1000),
        (2000, 3000, 1000),
        (3000, 4000, 1000),
    ]
    page = await server.cs_query.events_page(rec, t0, t0 + 60_000, size=5)
    [event] = page.events
    assert (event.start_ms, event.end_ms, event.data) == (event_start, event_end, {"person": True})
    assert event.upload_status == "Finished" and event.thumbnail_key is not None
    picture = await asyncio.to_thread(
        (server.settings.objects_dir / event.thumbnail_key).read_bytes
    )
    assert picture[:2] == b"\xff\xd8"
    # The picture is the keyframe before the event (frame 10): its burnt-in clock says so.
    assert await asyncio.to_thread(_jpeg_clock, picture) == stream[10].capture_ms


def _jpeg_clock(jpeg: bytes) -> int | None:
    with av.open(io.BytesIO(jpeg)) as container:
        return read_clock(next(container.decode(video=0)))


async def test_event_before_any_keyframe_waits_for_one(
    server: Ivcloud, cam: Provisioned, rec: DeviceRecord, encoder: VideoEncoder
) -> None:
    assert server.endpoints is not None
    t0 = (int(time.time()) - 120) * 1000
    clock = Clock(t0 / 1000)
    up = CloudStorageUploader(info(cam), server.endpoints.http_url, clock=clock)
    await up.start()
    stream = frames(encoder, t0, 0, 25)
    await up.event_start(0, 2)
    assert not up.recording  # nothing to start from yet
    for frame in stream[:12]:
        clock.now = frame.capture_ms / 1000
        up.feed(frame)
    assert up.recording
    await up.event_stop(0, 2)
    for frame in stream[12:25]:
        up.feed(frame)
    await up.aclose()
    segments = await server.cs_query.segments(rec, 0, t0, t0 + 60_000, 100)
    assert [(s.start_ms - t0, s.end_ms - t0) for s in segments] == [(0, 1000), (1000, 2000)]


async def test_picture_only_event(server: Ivcloud, cam: Provisioned, rec: DeviceRecord) -> None:
    assert server.endpoints is not None
    up = CloudStorageUploader(info(cam), server.endpoints.http_url)
    await up.start()
    enc = VideoEncoder(SMALL)
    jpeg = keyframe_to_jpeg(enc.encode(int(time.time() * 1000), 0).data)
    enc.close()
    at = time.time() - 5
    start_ms = await up.event_directly_report(0, 3, jpeg, at, {"unlock": 1})
    assert start_ms == round(at * 1000)
    await up.aclose()
    view = await server.cs_query.event_at(rec, start_ms)
    assert view is not None and not view.video and view.data == {"unlock": 1}
    assert view.upload_status == "Finished" and view.end_ms == start_ms
    stored = await asyncio.to_thread(
        (server.settings.objects_dir / (view.thumbnail_key or "")).read_bytes
    )
    assert stored == jpeg


async def test_network_errors_are_retried_with_backoff_then_reported(
    cam: Provisioned, unused_tcp_port: int
) -> None:
    delays: list[float] = []
    results: list[UploadResult] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    up = CloudStorageUploader(
        info(cam),
        f"http://127.0.0.1:{unused_tcp_port}",
        retries=3,
        backoff_first=0.5,
        sleep=sleep,
        on_result=results.append,
    )
    await up.start()
    await up.event_start(0, 1)
    await up.event_stop(0, 1)
    assert await up.drain(20)
    await up.aclose()
    assert [(r.kind, r.ok, r.status) for r in results] == [
        ("event", False, None),
        ("stop", False, None),
    ]
    assert up.stats.failed == 2 and up.stats.retries == 6
    first = delays[:3]
    assert 0.5 <= first[0] <= 0.625 and 1.0 <= first[1] <= 1.25 and 2.0 <= first[2] <= 2.5


async def test_a_refusal_is_final(server: Ivcloud, cam: Provisioned) -> None:
    assert server.endpoints is not None
    results: list[UploadResult] = []
    wrong = DeviceInfo(cam.product_id, cam.device_name, "AAAAAAAAAAAAAAAAAAAAAA==")
    up = CloudStorageUploader(wrong, server.endpoints.http_url, on_result=results.append)
    await up.start()
    await up.event_start(0, 1)
    assert await up.drain(20)
    await up.aclose()
    assert [(r.kind, r.ok, r.status) for r in results] == [("event", False, 401)]
    assert up.stats.retries == 0
    assert (await counts(server.sessions, server.settings.objects_dir))[2] == 0


async def test_full_queue_drops_segments_instead_of_blocking(
    cam: Provisioned, encoder: VideoEncoder, unused_tcp_port: int
) -> None:
    """The link is down and the worker waits on its back-off: new GOPs beyond the bound are
    dropped, and feeding stays instant."""
    gate = asyncio.Event()
    results: list[UploadResult] = []

    async def stuck(_: float) -> None:
        await gate.wait()

    t0 = (int(time.time()) - 120) * 1000
    up = CloudStorageUploader(
        info(cam),
        f"http://127.0.0.1:{unused_tcp_port}",
        queue_max=2,
        retries=100,
        sleep=stuck,
        on_result=results.append,
        thumbnails=False,
    )
    await up.start()
    stream = frames(encoder, t0, 0, 61)
    up.feed(stream[0])
    await up.event_start(0, 1)
    started = time.perf_counter()
    for frame in stream[1:]:
        up.feed(frame)
    assert time.perf_counter() - started < 1.0
    assert up.stats.dropped_segments == 4  # 6 GOPs closed, 2 fit in the queue
    assert [r.detail for r in results if r.kind == "segment"] == ["upload queue full: dropped"] * 4
    await up.aclose(drain_timeout_s=0.1)


async def test_misuse_is_refused_locally(cam: Provisioned) -> None:
    up = CloudStorageUploader(info(cam), "http://127.0.0.1:9", channel=1)
    with pytest.raises(ValueError, match="channel"):
        await up.event_start(0, 1)
    with pytest.raises(ValueError, match="not running"):
        await up.event_stop(1, 1)
    await up.event_start(1, 1)
    with pytest.raises(ValueError, match="already running"):
        await up.event_start(1, 1)
    with pytest.raises(SnapshotError):
        keyframe_to_jpeg(b"\x00\x00\x00\x01\x09\x10")


async def test_live_source_feeds_the_uploader(
    server: Ivcloud, cam: Provisioned, rec: DeviceRecord
) -> None:
    """What a simulator does: ``CloudStorageUploader(info, base_url, LiveSource(...))``."""
    from ivcloud.device.av import LiveSource

    assert server.endpoints is not None
    source = LiveSource(SMALL)
    up = CloudStorageUploader(info(cam), server.endpoints.http_url, source)
    await up.start()
    await poll(lambda: _ready(up), bool, deadline_s=10)
    start = await up.event_start(0, 5)
    await poll(lambda: _segments(server, rec, start), lambda n: n >= 1, deadline_s=10)
    await up.event_stop(0, 5)
    await up.aclose()
    await source.aclose()
    segments = await server.cs_query.segments(rec, 0, start - 5000, start + 60_000, 100)
    assert segments and segments[0].start_ms <= start
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(segments))


async def _ready(up: CloudStorageUploader) -> bool:
    return up.last_keyframe_ms is not None


async def _segments(server: Ivcloud, rec: DeviceRecord, start: int) -> int:
    return len(await server.cs_query.segments(rec, 0, start - 5000, start + 60_000, 100))

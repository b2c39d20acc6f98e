"""Device-side cloud storage, the shape of ``iv_cs`` (device-protocol spec §7.6): event clips
and pictures uploaded to ivcloud over its device upload API (docs/cloud-storage.md).

``event_start`` / ``event_stop`` / ``event_directly_report`` mirror the C calls. Frames come
in through :meth:`CloudStorageUploader.feed` (a real device's encoder loop calls it) or from
an async iterator such as :class:`~ivcloud.device.av.LiveSource`. Between events the
uploader keeps a pre-roll of the current GOP, so a clip starts on the keyframe *before* the
event — the moments leading up to a doorbell press are usually the interesting ones. While
an event runs, each GOP becomes one fMP4 media segment (``Fmp4Muxer(fragment="gop")``); the
clip ends at the first keyframe after the last event stopped.

Uploads never hold up the caller: ``feed`` only muxes and queues, and one worker task sends
the queue in order (init before its segments, an event before its picture and its stop)
with exponential back-off on network errors and 5xx answers. The queue of media segments is
bounded; when the link cannot keep up, new segments are dropped (counted, reported through
``on_result``) rather than growing memory or blocking the device's MQTT loop. Control
uploads (events, stops, pictures, init segments) are tiny and always queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import structlog

from ivcloud.device.av import EncodedAudio, EncodedVideo
from ivcloud.device.cs_upload import Job, UploadKind, UploadQueue, UploadResult, UploadStats
from ivcloud.device.snapshot import SnapshotError, keyframe_to_jpeg
from ivcloud.device.types import DeviceInfo
from ivcloud.protocol.av import (
    Fmp4Muxer,
    annexb_to_avcc,
    build_avc_decoder_config,
    nal_type,
    split_annexb,
)
from ivcloud.protocol.errors import MediaFormatError

__all__ = ["CloudStorageUploader", "Frame", "UploadResult", "UploadStats"]

log = structlog.get_logger("ivcloud.device.cloud_storage")

Frame = EncodedVideo | EncodedAudio


def _parameter_sets(keyframe: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    nals = split_annexb(keyframe)
    sps = tuple(n for n in nals if nal_type(n) == 7)
    pps = tuple(n for n in nals if nal_type(n) == 8)
    if not sps or not pps:
        raise MediaFormatError("keyframe without SPS/PPS")
    return sps, pps


class CloudStorageUploader:
    """One channel of ``iv_cs``: ``await start()``, feed frames (or pass ``source``), call
    the ``event_*`` methods, ``await aclose()`` at the end."""

    def __init__(
        self,
        info: DeviceInfo,
        base_url: str,
        source: AsyncIterable[Frame] | None = None,
        *,
        channel: int = 0,
        audio_config: bytes | None = None,
        queue_max: int = 16,
        max_gop_bytes: int = 4 * 1024 * 1024,
        retries: int = 5,
        backoff_first: float = 0.5,
        backoff_cap: float = 10.0,
        http_timeout: float = 30.0,
        thumbnails: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_result: Callable[[UploadResult], None] | None = None,
    ) -> None:
        self.info = info
        self.channel = channel
        self._source = source
        if audio_config is None and source is not None and hasattr(source, "audio_config"):
            with contextlib.suppress(KeyError):
                audio_config = source.audio_config("aac")
        self._audio_config = audio_config
        self._max_gop, self._thumbnails, self._clock = max_gop_bytes, thumbnails, clock
        self._uploads = UploadQueue(
            info,
            base_url,
            media_max=queue_max,
            retries=retries,
            backoff_first=backoff_first,
            backoff_cap=backoff_cap,
            http_timeout=http_timeout,
            clock=clock,
            sleep=sleep,
            on_result=on_result,
        )
        # media state
        self._active: dict[int, int] = {}  # event id -> start ms
        self._preroll: list[Frame] = []
        self._preroll_bytes = 0
        self._last_key: EncodedVideo | None = None
        self._pending_start = False
        self._pending_thumbs: list[tuple[int, int]] = []
        self._muxer: Fmp4Muxer | None = None
        self._params: tuple[tuple[bytes, ...], tuple[bytes, ...]] | None = None
        self._init_sha = ""
        self._segment_start = 0
        self._last_video_ms = 0
        self._last_interval = 40
        self._tasks: set[asyncio.Task[Any]] = set()  # pictures being encoded
        self._reader: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def stats(self) -> UploadStats:
        return self._uploads.stats

    async def start(self) -> None:
        self._uploads.start()
        if self._source is not None and self._reader is None:
            self._reader = asyncio.create_task(self._read(self._source))

    async def _read(self, source: AsyncIterable[Frame]) -> None:
        try:
            async for frame in source:
                self.feed(frame)
        finally:
            self._finish_recording()

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued upload (and pending picture) is done; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while len(self._uploads) or self._tasks:
                    if self._tasks:
                        await asyncio.gather(*self._tasks, return_exceptions=True)
                    await self._uploads.wait_idle()
        except TimeoutError:
            return False
        return True

    async def aclose(self, drain_timeout_s: float = 10.0) -> None:
        """Stop reading, close the clip in progress, send what is queued, shut down."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._finish_recording()
        await self.drain(drain_timeout_s)
        await self._uploads.close()

    # -- iv_cs calls -----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    def _check_channel(self, channel: int) -> None:
        if channel != self.channel:
            raise ValueError(f"this uploader serves channel {self.channel}, not {channel}")

    @property
    def recording(self) -> bool:
        """A clip is being cut (an event runs, or the GOP after the last one is closing)."""
        return self._muxer is not None

    @property
    def last_keyframe_ms(self) -> int | None:
        """Capture time of the newest keyframe seen: once set, an event starts its clip
        (and takes its picture) at once instead of waiting for the next keyframe."""
        return None if self._last_key is None else self._last_key.capture_ms

    async def event_start(
        self, channel: int, event_id: int, data: dict[str, Any] | None = None
    ) -> int:
        """``iv_cs_event_start``: the event begins now; returns its start (ms)."""
        self._check_channel(channel)
        if event_id in self._active:
            raise ValueError(f"event {event_id} is already running")
        start_ms = self._now_ms()
        self._active[event_id] = start_ms
        doc: dict[str, Any] = {"channel": channel, "event_id": event_id, "start_ms": start_ms}
        if data is not None:
            doc["data"] = data
        self._enqueue_json("event", "events", doc)
        if self._muxer is None:
            if self._preroll:
                self._begin_recording()
            else:
                self._pending_start = True
                force = getattr(self._source, "force_keyframe", None)
                if callable(force):
                    force()
        if self._thumbnails:
            if self._last_key is not None:
                self._snapshot(self._last_key, event_id, start_ms)
            else:
                self._pending_thumbs.append((event_id, start_ms))
        return start_ms

    async def event_stop(self, channel: int, event_id: int) -> int:
        """``iv_cs_event_stop``: the event ends now; the clip ends at the next keyframe
        once no event is running. Returns the end (ms)."""
        self._check_channel(channel)
        start_ms = self._active.pop(event_id, None)
        if start_ms is None:
            raise ValueError(f"event {event_id} is not running")
        end_ms = max(start_ms, self._now_ms())
        doc = {"channel": channel, "event_id": event_id, "start_ms": start_ms, "end_ms": end_ms}
        self._enqueue_json("stop", "events/stop", doc)
        if not self._active:
            self._pending_start = False
        return end_ms

    async def event_directly_report(
        self,
        channel: int,
        event_id: int,
        jpeg: bytes,
        ts: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> int:
        """``iv_cs_event_directly_report``: an event with a picture and no video (picture-
        stream locks). ``ts`` is the event time in unix seconds (default now)."""
        self._check_channel(channel)
        at_ms = self._now_ms() if ts is None else round(ts * 1000)
        doc: dict[str, Any] = {
            "channel": channel,
            "event_id": event_id,
            "start_ms": at_ms,
            "end_ms": at_ms,
            "video": False,
        }
        if data is not None:
            doc["data"] = data
        self._enqueue_json("event", "events", doc)
        self._enqueue_thumbnail(event_id, at_ms, jpeg)
        return at_ms

    # -- frames ----------------------------------------------------------------------------

    def feed(self, frame: Frame) -> None:
        """Take one encoded frame (capture order; ``capture_ms`` is wall-clock time).
        Never blocks; bad media drops the clip in progress instead of raising."""
        try:
            if isinstance(frame, EncodedVideo):
                self._video(frame)
            elif frame.codec == "aac" and self._audio_config is not None:
                if self._muxer is not None:
                    self._mux(frame)
                elif self._preroll:
                    self._keep(frame)
        except MediaFormatError as exc:
            log.warning("cs_media_dropped", device=self.info.client_id, error=str(exc))
            self._muxer = None
            self._preroll, self._preroll_bytes = [], 0

    def _keep(self, frame: Frame) -> None:
        self._preroll.append(frame)
        self._preroll_bytes += len(frame.data)
        if self._preroll_bytes > self._max_gop:  # GOP too long to keep: wait for the next
            self._preroll, self._preroll_bytes = [], 0

    def _video(self, frame: EncodedVideo) -> None:
        if self._last_video_ms:
            self._last_interval = max(1, frame.capture_ms - self._last_video_ms)
        self._last_video_ms = frame.capture_ms
        if not frame.keyframe:
            if self._muxer is not None:
                self._mux(frame)
            elif self._preroll:
                self._keep(frame)
            return
        self._last_key = frame
        for event_id, start_ms in self._pending_thumbs:
            self._snapshot(frame, event_id, start_ms)
        self._pending_thumbs = []
        if self._muxer is not None:
            if _parameter_sets(frame.data) != self._params:  # new resolution: new init
                self._finish_recording()
            else:
                self._enqueue_segment(self._mux(frame), frame.capture_ms)
                if self._active:
                    self._segment_start = frame.capture_ms
                    return
                self._muxer = None  # the last event stopped: the clip ends here
        self._preroll, self._preroll_bytes = [frame], len(frame.data)
        if self._pending_start or (self._active and self._muxer is None):
            self._begin_recording()

    def _begin_recording(self) -> None:
        """Start a clip from the pre-roll (which begins with a keyframe)."""
        self._pending_start = False
        first = self._preroll[0]
        assert isinstance(first, EncodedVideo) and first.keyframe
        self._params = _parameter_sets(first.data)
        avc = build_avc_decoder_config(*self._params)
        muxer = Fmp4Muxer(avc_config=avc, audio_config=self._audio_config, fragment="gop")
        init = muxer.init_segment()
        self._init_sha = hashlib.sha256(init).hexdigest()
        self._uploads.push(Job("init", "PUT", "init", {"channel": self.channel}, init, "video/mp4"))
        self._muxer, self._segment_start = muxer, first.capture_ms
        frames, self._preroll, self._preroll_bytes = self._preroll, [], 0
        for frame in frames:
            self._mux(frame)

    def _mux(self, frame: Frame) -> bytes:
        """Into the clip's muxer; returns the GOP segment a keyframe completes (or b"")."""
        assert self._muxer is not None
        if isinstance(frame, EncodedVideo):
            avcc = annexb_to_avcc(frame.data)
            return self._muxer.add_video(avcc, frame.capture_ms, frame.capture_ms, frame.keyframe)
        return self._muxer.add_audio(frame.data, frame.capture_ms)

    def _finish_recording(self) -> None:
        """Close the clip now (source ended, codec change, shutdown): the last frame gets
        the last measured frame interval."""
        muxer, self._muxer = self._muxer, None
        if muxer is not None:
            with contextlib.suppress(MediaFormatError):
                self._enqueue_segment(muxer.flush(), self._last_video_ms + self._last_interval)

    def _enqueue_segment(self, segment: bytes, end_ms: int) -> None:
        if not segment:
            return
        query: dict[str, int | str] = {
            "channel": self.channel,
            "start_ms": self._segment_start,
            "end_ms": end_ms,
            "init": self._init_sha,
        }
        self._uploads.push(Job("segment", "PUT", "segments", query, segment, "video/mp4"))

    # -- pictures --------------------------------------------------------------------------

    def _snapshot(self, keyframe: EncodedVideo, event_id: int, start_ms: int) -> None:
        async def make() -> None:
            try:
                jpeg = await asyncio.to_thread(keyframe_to_jpeg, keyframe.data)
            except SnapshotError as exc:
                self._uploads.report(UploadResult("thumbnail", False, None, str(exc)))
                return
            self._enqueue_thumbnail(event_id, start_ms, jpeg)

        task = asyncio.create_task(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue_thumbnail(self, event_id: int, start_ms: int, jpeg: bytes) -> None:
        query: dict[str, int | str] = {
            "channel": self.channel,
            "event_id": event_id,
            "start_ms": start_ms,
        }
        self._uploads.push(Job("thumbnail", "PUT", "thumbnails", query, jpeg, "image/jpeg"))

    def _enqueue_json(self, kind: UploadKind, path: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, separators=(",", ":")).encode()
        self._uploads.push(Job(kind, "POST", path, {}, body, "application/json"))

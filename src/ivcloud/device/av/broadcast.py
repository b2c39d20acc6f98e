"""``FrameBroadcaster``: one camera's encoded frames shared by every viewer on the device.

A camera has one encoder; every P2P viewer (a WebRTC media track, an FLV stream over the data
channel) wants the same frames. The broadcaster pulls from the source only while someone is
subscribed (no viewer, no encoding) and hands the same frame objects to each subscriber's
bounded queue. A subscriber that does not keep up is never allowed to hold the others back
or to grow memory: when its queue is full its backlog is dropped and it resumes at the next
video keyframe (an audio-only subscriber simply resumes with the next frame), like the hub's
lagging viewers. A new video subscriber starts at a keyframe and asks the source for one, so
it is not kept waiting for the end of the GOP; requests are coalesced until the keyframe
comes, so many joining viewers cost one IDR, not many.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Collection
from typing import Protocol, Self

import structlog

from ivcloud.device.av.audio import AudioCodec
from ivcloud.device.av.source import MediaFrame
from ivcloud.device.av.video import EncodedVideo

__all__ = [
    "FeedClosed",
    "FeedError",
    "FeedFailed",
    "FrameBroadcaster",
    "FrameSource",
    "FrameStream",
    "MediaFeed",
    "Subscription",
]

log = structlog.get_logger("ivcloud.device.av")

ALL_AUDIO: tuple[AudioCodec, ...] = ("aac", "opus")


class FeedError(RuntimeError):
    """A subscription could not be served."""


class FeedClosed(FeedError):
    """The broadcaster was closed (or its source ended) before this subscription."""


class FeedFailed(FeedError):
    """The source raised; the subscription ends with this error (``__cause__`` is the
    source's exception)."""


class FrameSource(Protocol):
    """What a broadcaster reads: :class:`~ivcloud.device.av.LiveSource`, or a real camera's
    encoder wrapped the same way (an async iterator of frames that can be asked for an IDR)."""

    def __anext__(self) -> Awaitable[MediaFrame]: ...

    def force_keyframe(self) -> None: ...


class FrameStream(Protocol):
    """One subscriber's frames: iterate, and ``close()`` when done."""

    def __aiter__(self) -> AsyncIterator[MediaFrame]: ...

    def __anext__(self) -> Awaitable[MediaFrame]: ...

    def close(self) -> None: ...


class MediaFeed(Protocol):
    """What the WebRTC device peer needs from the device: subscriptions to the camera's
    frames (filtered by kind) and a way to ask for a keyframe (a viewer reported loss)."""

    def subscribe(
        self, *, video: bool = True, audio: Collection[AudioCodec] = ALL_AUDIO
    ) -> FrameStream: ...

    def force_keyframe(self) -> None: ...


class Subscription:
    """One subscriber's bounded queue of frames. Counters: ``delivered`` (frames handed
    out), ``dropped`` (frames thrown away or skipped because the subscriber lagged; frames
    before its first keyframe are not counted)."""

    def __init__(
        self,
        owner: FrameBroadcaster,
        *,
        video: bool,
        audio: Collection[AudioCodec],
        max_frames: int,
        max_bytes: int,
    ) -> None:
        self._owner = owner
        self.video = video
        self.audio = frozenset(audio)
        self._max_frames, self._max_bytes = max_frames, max_bytes
        self._queue: deque[MediaFrame] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._await_key = video  # video subscribers start on a keyframe
        self._started = not video  # got its first frame: later gaps count as drops
        self._ended = False
        self._error: BaseException | None = None
        self.delivered = 0
        self.dropped = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    # -- fed by the broadcaster ---------------------------------------------------------------

    def _offer(self, frame: MediaFrame) -> None:
        if isinstance(frame, EncodedVideo):
            if not self.video:
                return
            if self._await_key:
                if not frame.keyframe:
                    self.dropped += self._started  # skipped while lagging
                    return
                self._await_key = False
                self._started = True
        else:
            if frame.codec not in self.audio:
                return
            if self.video and self._await_key:
                self.dropped += self._started  # audio starts (again) with a picture
                return
        size = len(frame.data)
        if len(self._queue) >= self._max_frames or self._queued_bytes + size > self._max_bytes:
            self._overflow(frame)
            return
        self._queue.append(frame)
        self._queued_bytes += size
        self._ready.set()

    def _overflow(self, frame: MediaFrame) -> None:
        """The subscriber lags: forget its backlog, resume at the next keyframe (video) or
        with this frame (audio only)."""
        self.dropped += len(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        if self.video and not (isinstance(frame, EncodedVideo) and frame.keyframe):
            self._await_key = True
            self.dropped += 1
            return
        self._queue.append(frame)
        self._queued_bytes = len(frame.data)
        self._ready.set()

    def _end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._ready.set()

    # -- consumer side ------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MediaFrame:
        while not self._queue:
            if self._ended:
                if self._error is not None:
                    raise FeedFailed("the camera's frame source failed") from self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame.data)
        self.delivered += 1
        return frame

    def close(self) -> None:
        """Unsubscribe; iteration ends once the queue is drained (it is cleared here)."""
        self._queue.clear()
        self._queued_bytes = 0
        if not self._ended:
            self._end(None)
        self._owner._remove(self)

    async def aclose(self) -> None:
        self.close()


class FrameBroadcaster:
    """Fan one :class:`FrameSource` out to any number of :class:`Subscription` s.

    ``max_frames`` / ``max_bytes`` bound each subscriber's queue (defaults: 4 s of 15 fps
    video plus audio, 4 MiB). The broadcaster does not own the source: closing it ends the
    subscriptions, not the camera."""

    def __init__(
        self, source: FrameSource, *, max_frames: int = 120, max_bytes: int = 4 * 1024 * 1024
    ) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self._source = source
        self._max_frames, self._max_bytes = max_frames, max_bytes
        self._subs: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._key_pending = False
        self.frames_in = 0  # frames pulled from the source
        self.keyframes_forced = 0  # keyframe requests passed on to the source

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def running(self) -> bool:
        """Whether the source is being read (someone is subscribed)."""
        return self._task is not None and not self._task.done()

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(
        self, *, video: bool = True, audio: Collection[AudioCodec] = ALL_AUDIO
    ) -> Subscription:
        """A new subscription to video (from the next keyframe) and/or the audio codecs
        named. Raises :class:`FeedClosed` after :meth:`aclose` or the end of the source."""
        if self._closed:
            raise FeedClosed("the camera's feed is closed")
        if not video and not audio:
            raise ValueError("subscribe to video, audio or both")
        sub = Subscription(
            self, video=video, audio=audio, max_frames=self._max_frames, max_bytes=self._max_bytes
        )
        self._subs.append(sub)
        if video:
            self.force_keyframe()
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._pump())
        return sub

    def force_keyframe(self) -> None:
        """Ask the source for an IDR, unless one was asked for and has not come yet."""
        if not self._key_pending:
            self._key_pending = True
            self.keyframes_forced += 1
            self._source.force_keyframe()

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def _pump(self) -> None:
        """Read the source while anyone listens. Stopping between frames (never by
        cancelling an encode in flight) leaves the source ready for the next viewer."""
        while self._subs:
            try:
                frame = await self._source.__anext__()
            except StopAsyncIteration:
                self._finish(None)
                return
            except Exception as exc:  # a camera failure ends every subscription
                log.warning("av.source_failed", error=repr(exc))
                self._finish(exc)
                return
            self.frames_in += 1
            if isinstance(frame, EncodedVideo) and frame.keyframe:
                self._key_pending = False
            for sub in tuple(self._subs):
                sub._offer(frame)

    def _finish(self, error: BaseException | None) -> None:
        self._closed = True
        subs, self._subs = self._subs, []
        for sub in subs:
            sub._end(error)

    async def aclose(self) -> None:
        """End every subscription and stop reading the source (without closing it)."""
        self._finish(None)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})  # raises only if *we* are cancelled

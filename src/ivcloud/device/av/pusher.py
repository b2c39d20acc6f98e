"""Live push to the stream hub: on ``stream_push_start`` the device opens an outbound
WebSocket (always possible from behind NAT) to the signed URL the cloud sent and writes FLV
of a live source into it, one binary message per muxer output (a frame's tags).

* The source is asked for a keyframe at once, so the hub — and any viewer waiting — gets a
  decodable picture with the first message.
* One pusher per (channel, quality): a new ``stream_push_start`` for a stream already being
  pushed replaces the old push (the cloud only asks again when it lost the old one).
* A push ends on ``stream_push_stop``, when the hub closes the socket, or when the source
  ends. Reconnecting is not automatic: the cloud asks again when viewers want the stream.
* Backpressure: ``send`` waits while the socket's buffer is full; a real-time source
  (:class:`~ivcloud.device.av.LiveSource`) then drops frames instead of queueing them.

The reply to ``stream_push_start`` is sent once the WebSocket is open (code 0), or with
code 500 and the reason when it could not be opened, so the cloud learns at once.

Frames come from a :class:`~ivcloud.device.av.LiveSource` per push
(:func:`live_source_factory`), or — on a device that also serves P2P viewers and records —
from its shared broadcaster (:func:`feed_source_factory`, one :class:`FeedSource` per push),
so one encoder per quality serves them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ivcloud.device.av.audio import AudioCodec, EncodedAudio
from ivcloud.device.av.broadcast import FeedClosed, FrameStream, MediaFeed
from ivcloud.device.av.source import LiveSource, MediaFrame
from ivcloud.device.av.video import EncodedVideo, VideoProfile
from ivcloud.device.video_link import VideoResult
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.av import FlvMuxer
from ivcloud.protocol.errors import MediaFormatError

if TYPE_CHECKING:
    from ivcloud.device.av.xp2p_device import Xp2pDevice
    from ivcloud.device.sdk import IvDevice

log = structlog.get_logger("ivcloud.device.pusher")

__all__ = [
    "FeedSource",
    "FrameSource",
    "PushError",
    "PushManager",
    "SourceFactory",
    "StreamPusher",
    "feed_source_factory",
    "live_source_factory",
]


class FrameSource(Protocol):
    """What a pusher reads: :class:`LiveSource` or anything shaped like it."""

    video_profile: VideoProfile | None

    def audio_config(self, codec: AudioCodec) -> bytes: ...

    def force_keyframe(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[MediaFrame]: ...

    async def aclose(self) -> None: ...


#: Builds the source of one push: ``factory(channel, quality)``.
SourceFactory = Callable[[int, vs.Quality], FrameSource]


def live_source_factory(**video_overrides: Any) -> SourceFactory:
    """A camera's :class:`LiveSource` per push: the quality's :class:`VideoProfile` (640x360
    @ 15 fps for ``standard``) with ``video_overrides`` applied (e.g. ``width=320,
    height=240, fps=10`` for a light test stream), and AAC audio."""

    def make(channel: int, quality: vs.Quality) -> FrameSource:
        return LiveSource(video=VideoProfile.named(quality, **video_overrides))

    return make


class FeedSource:
    """A push's frames taken from a shared :class:`~ivcloud.device.av.broadcast.MediaFeed`
    (the device's broadcaster: one encoder for the hub upload, P2P viewers and the SD
    recorder) instead of a source of its own. It subscribes when the push starts reading
    (video from a keyframe, AAC only: FLV) and ``aclose()`` unsubscribes — the camera keeps
    running for the others. ``video_profile`` only says whether there is video."""

    def __init__(
        self, feed: MediaFeed, *, video_profile: VideoProfile | None, audio_config: bytes | None
    ) -> None:
        self.video_profile = video_profile
        self._feed = feed
        self._aac = audio_config
        self._sub: FrameStream | None = None
        self._closed = False

    def audio_config(self, codec: AudioCodec) -> bytes:
        if codec != "aac" or self._aac is None:
            raise KeyError(codec)
        return self._aac

    def force_keyframe(self) -> None:
        self._feed.force_keyframe()

    def __aiter__(self) -> AsyncIterator[MediaFrame]:
        if self._closed:
            raise FeedClosed("the push ended")
        if self._sub is None:
            audio: tuple[AudioCodec, ...] = ("aac",) if self._aac is not None else ()
            self._sub = self._feed.subscribe(video=self.video_profile is not None, audio=audio)
        return self._sub.__aiter__()

    async def aclose(self) -> None:
        self._closed = True
        if self._sub is not None:
            self._sub.close()


def feed_source_factory(
    device: Xp2pDevice, profile: Callable[[int, vs.Quality], VideoProfile | None]
) -> SourceFactory:
    """Pushes that read ``device.feed(channel, quality)``, the frames P2P viewers and the
    recorder get; ``profile(channel, quality)`` is the stream's video profile (``None``:
    audio only)."""

    def make(channel: int, quality: vs.Quality) -> FrameSource:
        return FeedSource(
            device.feed(channel, quality),
            video_profile=profile(channel, quality),
            audio_config=device.audio_config(channel, quality),
        )

    return make


class PushError(Exception):
    """The push WebSocket could not be opened (refused, unreachable, timed out)."""


class StreamPusher:
    """One push: ``await connect()``, then ``await run()`` until it ends; ``stop()`` any
    time. ``close_code``/``close_reason`` tell how the hub closed it (None if we did)."""

    def __init__(self, url: str, source: FrameSource, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.source = source
        self.connect_timeout = connect_timeout
        self._ws: ClientConnection | None = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.done = asyncio.Event()
        self._running = False

    async def connect(self) -> None:
        try:
            self._ws = await connect(
                self.url,
                open_timeout=self.connect_timeout,
                compression=None,  # video does not compress; deflate would only cost CPU
                max_size=1 << 20,  # the hub sends nothing but a close frame
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            await self.source.aclose()
            self.done.set()
            raise PushError(str(exc) or type(exc).__name__) from None

    async def run(self) -> None:
        ws = self._ws
        if ws is None or self._running:
            raise RuntimeError("connect first, run once")
        self._running = True
        pump = asyncio.create_task(self._pump(ws))
        closed = asyncio.create_task(ws.wait_closed())
        try:
            await asyncio.wait({pump, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, closed):
                task.cancel()
            for task in (pump, closed):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.source.aclose()
            with contextlib.suppress(Exception):
                await ws.close()
            self.close_code, self.close_reason = ws.close_code, ws.close_reason
            self.done.set()

    async def _pump(self, ws: ClientConnection) -> None:
        source = self.source
        try:
            aac: bytes | None = source.audio_config("aac")
        except KeyError:
            aac = None
        muxer = FlvMuxer(
            has_video=source.video_profile is not None, has_audio=aac is not None, audio_config=aac
        )
        source.force_keyframe()
        head = muxer.header()
        try:
            async for frame in source:
                if isinstance(frame, EncodedVideo):
                    data = muxer.add_video(frame.data, frame.pts_ms)
                elif isinstance(frame, EncodedAudio) and frame.codec == "aac" and aac:
                    data = muxer.add_audio(frame.data, frame.pts_ms)
                else:
                    continue
                if not data:
                    continue
                if head:
                    data, head = head + data, b""
                await ws.send(data)
                self.frames_sent += 1
                self.bytes_sent += len(data)
        except ConnectionClosed:
            return
        except MediaFormatError as exc:
            log.warning("push_bad_frame", error=str(exc))

    async def stop(self) -> None:
        """End the push (the socket is closed normally, code 1000)."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._running:
            await self.done.wait()
        elif not self.done.is_set():
            await self.source.aclose()
            self.done.set()


class PushManager:
    """Answers ``stream_push_start`` / ``stream_push_stop`` for a device: install it on an
    :class:`~ivcloud.device.IvDevice` and call :meth:`close` when the device stops."""

    def __init__(self, source_factory: SourceFactory, *, connect_timeout: float = 5.0) -> None:
        self.source_factory = source_factory
        self.connect_timeout = connect_timeout
        self.active: dict[tuple[int, vs.Quality], StreamPusher] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Every push started, newest last (for diagnostics and tests).
        self.history: list[StreamPusher] = []

    def install(self, device: IvDevice) -> None:
        device.on_video(vs.PUSH_START, self.on_push_start)
        device.on_video(vs.PUSH_STOP, self.on_push_stop)

    async def on_push_start(self, msg: vs.SignalMessage) -> VideoResult:
        req = vs.parse_push_start(msg)
        key = (req.channel, req.quality)
        old = self.active.pop(key, None)
        if old is not None:
            await old.stop()
        pusher = StreamPusher(
            req.url,
            self.source_factory(req.channel, req.quality),
            connect_timeout=self.connect_timeout,
        )
        try:
            await pusher.connect()
        except PushError as exc:
            log.info(
                "push_connect_failed", channel=req.channel, quality=req.quality, error=str(exc)
            )
            return VideoResult(vs.FAILED, f"push connection failed: {exc}"[:200])
        self.active[key] = pusher
        self.history.append(pusher)
        task = asyncio.create_task(self._run(key, pusher))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("push_started", channel=req.channel, quality=req.quality)
        return VideoResult(vs.OK, "pushing")

    async def _run(self, key: tuple[int, vs.Quality], pusher: StreamPusher) -> None:
        try:
            await pusher.run()
        finally:
            if self.active.get(key) is pusher:
                del self.active[key]
            log.info("push_ended", channel=key[0], quality=key[1], code=pusher.close_code)

    async def on_push_stop(self, msg: vs.SignalMessage) -> VideoResult:
        req = vs.parse_push_stop(msg)
        pusher = self.active.pop((req.channel, req.quality), None)
        if pusher is None:
            return VideoResult(vs.OK, "not pushing")
        await pusher.stop()
        return VideoResult(vs.OK, "stopped")

    async def close(self) -> None:
        """Stop every push (the device is shutting down)."""
        pushers = list(self.active.values())
        self.active.clear()
        for pusher in pushers:
            await pusher.stop()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

"""The byte streams an XP2P visitor receives: live FLV muxed from the fan-out, and the
wrapper that ties any stream to its viewer slot.

A transport ends a stream with ``aclose()``, typically from another task than the one
reading it (the app cancelled while a chunk was being sent), and possibly before reading
it at all. :class:`ViewerStream` makes that safe: the slot is released exactly once, at
``aclose()`` or when the stream runs out, whether or not iteration ever started.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

from ivcloud.device.av.audio import AudioCodec, EncodedAudio
from ivcloud.device.av.broadcast import Subscription
from ivcloud.device.av.playback import PlaybackSession
from ivcloud.protocol.av.flv import FlvMuxer

if TYPE_CHECKING:
    from ivcloud.protocol.xp2p import ResType

__all__ = ["AAC_ONLY", "LiveFlv", "ViewerStream"]

AAC_ONLY: tuple[AudioCodec, ...] = ("aac",)  # FLV carries AAC; Opus is for WebRTC tracks


class LiveFlv:
    """FLV of a live subscription to the camera's broadcaster: header, then each frame muxed
    (sequence headers come with the first keyframe), timestamps from 0 at that keyframe by
    capture time. One muxer per viewer: a few µs per frame, and it keeps every viewer's
    stream self-contained. A failing camera ends the stream with ``FeedFailed``."""

    def __init__(self, sub: Subscription, audio_config: bytes | None) -> None:
        self._sub = sub
        self._audio_config = audio_config
        self._muxer = FlvMuxer(
            has_video=True, has_audio=audio_config is not None, audio_config=audio_config
        )
        self._header_sent = False
        self._base: int | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if not self._header_sent:
            self._header_sent = True
            return self._muxer.header()
        while True:
            frame = await self._sub.__anext__()
            if isinstance(frame, EncodedAudio):
                if frame.codec != "aac" or self._audio_config is None or self._base is None:
                    continue
                ts = frame.capture_ms - self._base
                data = self._muxer.add_audio(frame.data, ts) if ts >= 0 else b""
            else:
                if self._base is None:
                    self._base = frame.capture_ms  # subscriptions start at a keyframe
                data = self._muxer.add_video(frame.data, max(0, frame.capture_ms - self._base))
            if data:
                return data

    async def aclose(self) -> None:
        await self._sub.aclose()


Release = Callable[["ViewerStream"], Awaitable[None] | None]


class ViewerStream:
    """``AsyncIterator[bytes]`` for one request of one visitor. ``playback`` is the session
    the ``playback_*`` commands drive (``None`` for live and downloads); ``counts_as_viewer``
    says whether it takes a viewer slot (live, playback) or not (downloads)."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        channel: int,
        res_type: ResType | None,
        *,
        viewer: bool,
        release: Release,
    ) -> None:
        self._source = source
        self.channel = channel
        self.res_type = res_type
        self.counts_as_viewer = viewer
        self.playback = source if isinstance(source, PlaybackSession) else None
        self._release = release
        self._closed = False
        self._released = False
        self._running = False
        self.bytes_sent = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            await self._close_source()
            raise StopAsyncIteration
        self._running = True
        try:
            data = await self._source.__anext__()
        except StopAsyncIteration:
            self._running = False
            await self.aclose()
            raise
        finally:
            self._running = False
        self.bytes_sent += len(data)
        return data

    async def aclose(self) -> None:
        """End the stream and free its slot (idempotent, safe from any task)."""
        self._closed = True
        if not self._running or not inspect.isasyncgen(self._source):
            await self._close_source()  # LiveFlv / PlaybackSession stop a pending read
        if not self._released:
            self._released = True
            result = self._release(self)
            if inspect.isawaitable(result):
                await result

    async def _close_source(self) -> None:
        close: Any = getattr(self._source, "aclose", None)
        if close is not None:
            await close()

"""The stream hub: one upload per stream, fanned out to any number of viewers.

A :class:`~ivcloud.media.stream.Stream` exists while its publisher (the device's push
WebSocket) is attached; viewers join it once :class:`~ivcloud.services.streams.StreamService`
has got the device to publish. Publishing a chunk is synchronous: the stream parses tag
headers and offers the same ``bytes`` to every viewer's bounded backlog
(:mod:`ivcloud.media.fanout`) without awaiting, so a slow viewer costs the publisher
nothing; each viewer's writer (:mod:`ivcloud.api.direct_writer`, at the API edge) drains
its own backlog at its socket's pace.

Endings, with the WebSocket close codes the API edge sends (docs/live-video.md):

* publisher gone (closed its socket, sent a broken stream) → viewers end, 4410;
* device offline / stream idle after the last viewer → ``end_stream`` (from the service):
  viewers end and the publisher's socket is closed, 4410;
* server shutdown → everything ends, 1001; writers stuck on a dead socket are aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from ivcloud.media.fanout import Item, Viewer
from ivcloud.media.stream import Stream
from ivcloud.protocol.stream_urls import StreamKey
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.streams import StreamDemand, StreamService

log = structlog.get_logger("ivcloud.media.hub")

ViewerKind = Literal["flv", "mp4"]

#: WebSocket close codes (RFC 6455 private range 4000–4999, HTTP-like numbers).
CLOSE_BAD_STREAM = 4400  # publisher: not an FLV stream / text message
CLOSE_NOT_REQUESTED = 4404  # publisher: nobody asked for this stream
CLOSE_PUBLISHER_IDLE = 4408  # publisher: sent nothing for too long
CLOSE_ALREADY_PUBLISHED = 4409  # publisher: the stream already has a publisher
CLOSE_DEVICE_OFFLINE = 4409  # viewer: the device is offline
CLOSE_STREAM_ENDED = 4410  # both: the stream ended (publisher gone, device offline, idle)
CLOSE_UNAVAILABLE = 4503  # viewer: too many viewers, the device refused
CLOSE_TIMEOUT = 4504  # viewer: the device did not start streaming in time
CLOSE_GOING_AWAY = 1001  # server shutdown

#: Largest FLV tag a publisher may send (a 1080p keyframe is a few hundred KB).
MAX_TAG_SIZE = 4 * 1024 * 1024
_ABORT_GRACE_S = 1.0


class HubError(Exception):
    """A refusal by the hub itself; ``code`` is the WebSocket close code to send."""

    code = CLOSE_UNAVAILABLE


class TooManyViewers(HubError):
    code = CLOSE_UNAVAILABLE


class PublishRefused(HubError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class StreamGone(HubError):
    """The stream ended between the publisher's arrival and the viewer joining."""

    code = CLOSE_STREAM_ENDED


class ViewerSession:
    """One viewer connection. Its writer (:class:`~ivcloud.api.direct_writer.DirectWriter`)
    takes the viewer's wake-ups with :meth:`deliver_to` and drains it with :meth:`take`."""

    def __init__(self, key: StreamKey, kind: ViewerKind, stream: Stream, limit: int) -> None:
        self.key = key
        self.kind = kind
        self.stream = stream
        self.viewer = Viewer(stream, limit)
        #: Set at shutdown for writers that did not finish in time: the edge drops the socket.
        self.aborted = asyncio.Event()
        self.demand: StreamDemand | None = None

    def deliver_to(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever the viewer has something new to write (or ended)."""
        self.viewer.wake = wake

    def take(self) -> list[Item]:
        """Everything queued for this viewer now (possibly nothing)."""
        return self.viewer.pop_all()


class PublisherSession:
    def __init__(self, key: StreamKey, stream: Stream) -> None:
        self.key = key
        self.stream = stream
        #: Set when the hub ends the stream: the edge closes the socket with ``end_code``.
        self.ended = asyncio.Event()
        self.end_code = CLOSE_STREAM_ENDED
        self.end_reason = ""

    def end(self, code: int, reason: str) -> None:
        if not self.ended.is_set():
            self.end_code, self.end_reason = code, reason
            self.ended.set()


@dataclass(frozen=True, slots=True)
class HubStats:
    streams: int
    publishers: int
    viewers: int
    #: Bytes waiting in all viewers' backlogs, and in the fullest one.
    queued_bytes: int
    max_queued_bytes: int
    #: Bytes in the GOP caches (FLV and fMP4).
    cached_bytes: int
    #: Backlog overflows (viewer skipped to the next keyframe) and items skipped, ever.
    lag_events: int
    skipped: int
    bytes_in: int
    publishes: int


class StreamHub:
    """Implements :class:`~ivcloud.services.streams.StreamSink`."""

    def __init__(
        self,
        service: StreamService,
        *,
        gop_limit: int,
        backlog_limit: int,
        max_viewers: int,
        max_tag_size: int = MAX_TAG_SIZE,
    ) -> None:
        self._service = service
        self.gop_limit = gop_limit
        self.backlog_limit = backlog_limit
        self.max_viewers = max_viewers
        self.max_tag_size = max_tag_size
        self._streams: dict[StreamKey, Stream] = {}
        self._publishers: dict[StreamKey, PublisherSession] = {}
        self._sessions: set[ViewerSession] = set()
        self._idle = asyncio.Event()  # set while no viewer session is open
        self._idle.set()
        # Counters of what left (live ones are summed in stats()).
        self._lag_events = 0
        self._skipped = 0
        self._bytes_in = 0
        self._publishes = 0

    # -- viewers ----------------------------------------------------------------------------

    async def open_viewer(
        self, rec: DeviceRecord, key: StreamKey, kind: ViewerKind
    ) -> ViewerSession:
        """Join a stream, getting the device to publish it first if needed. Raises the
        service's ``DeviceOffline`` / ``StreamRefused`` / ``DeviceTimeout`` or a
        :class:`HubError`."""
        if self._service.viewers(key) >= self.max_viewers:
            raise TooManyViewers(f"this stream has {self.max_viewers} viewers already")
        demand = await self._service.watch(rec, key)
        stream = self._streams.get(key)
        if stream is None:
            self._service.unwatch(key, demand)
            raise StreamGone("the stream ended")
        session = ViewerSession(key, kind, stream, self.backlog_limit)
        session.demand = demand
        if kind == "flv":
            stream.add_flv_viewer(session.viewer)
        else:
            stream.add_mp4_viewer(session.viewer)
        self._sessions.add(session)
        self._idle.clear()
        return session

    def close_viewer(self, session: ViewerSession) -> None:
        if session not in self._sessions:
            return
        self._sessions.discard(session)
        if not self._sessions:
            self._idle.set()
        session.stream.remove_viewer(session.viewer)
        self._lag_events += session.viewer.lag_events
        self._skipped += session.viewer.skipped
        if session.demand is not None:
            self._service.unwatch(session.key, session.demand)

    # -- publishers -------------------------------------------------------------------------

    def open_publisher(self, key: StreamKey) -> PublisherSession:
        """A device's push connection. One publisher per stream: a second one is refused
        (the first keeps streaming; a dead one is noticed by WebSocket keep-alive)."""
        if key in self._publishers:
            raise PublishRefused(CLOSE_ALREADY_PUBLISHED, "stream already published")
        if not self._service.publisher_up(key):
            raise PublishRefused(CLOSE_NOT_REQUESTED, "nobody asked for this stream")
        stream = Stream(key, gop_limit=self.gop_limit, max_tag_size=self.max_tag_size)
        stream.begin_publish()
        session = PublisherSession(key, stream)
        self._streams[key] = stream
        self._publishers[key] = session
        self._publishes += 1
        log.info("stream_publisher_up", stream=str(key))
        return session

    def publish(self, session: PublisherSession, data: bytes) -> None:
        """Publisher bytes → every viewer. Raises ``MediaFormatError`` for a broken stream."""
        if session.ended.is_set():
            return
        session.stream.feed(data)

    def close_publisher(self, session: PublisherSession, reason: str) -> None:
        """The publisher's socket closed (or sent garbage): end the stream's viewers."""
        if self._publishers.get(session.key) is not session:
            return
        del self._publishers[session.key]
        stream = self._streams.pop(session.key)
        self._bytes_in += stream.bytes_in
        stream.end(CLOSE_STREAM_ENDED, reason)
        session.end(CLOSE_STREAM_ENDED, reason)
        self._service.publisher_down(session.key)
        log.info("stream_publisher_down", stream=str(session.key), reason=reason)

    # -- StreamSink -------------------------------------------------------------------------

    def end_stream(self, key: StreamKey, reason: str) -> None:
        self._end(key, CLOSE_STREAM_ENDED, reason)

    def _end(self, key: StreamKey, code: int, reason: str) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            self._bytes_in += stream.bytes_in
            stream.end(code, reason)
        publisher = self._publishers.pop(key, None)
        if publisher is not None:
            publisher.end(code, reason)
            log.info("stream_ended", stream=str(key), reason=reason)

    async def close(self) -> None:
        """Server shutdown: end every stream; abort writers that cannot finish in time (a
        viewer that stopped reading would otherwise hold the HTTP server open)."""
        for key in list(self._streams):
            self._end(key, CLOSE_GOING_AWAY, "server shutting down")
        for abort in (False, True):
            if abort:
                for session in list(self._sessions):
                    session.aborted.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), _ABORT_GRACE_S)

    # -- observability ----------------------------------------------------------------------

    def stream(self, key: StreamKey) -> Stream | None:
        return self._streams.get(key)

    def viewer_sessions(self) -> list[ViewerSession]:
        """Open viewer sessions (per-viewer backlog and lag counters in ``.viewer``)."""
        return list(self._sessions)

    def stats(self) -> HubStats:
        viewers = [s.viewer for s in self._sessions]
        cached = 0
        bytes_in = self._bytes_in
        for stream in self._streams.values():
            cached += stream.gop_bytes + (stream.remux.gop_bytes if stream.remux else 0)
            bytes_in += stream.bytes_in
        return HubStats(
            streams=len(self._streams),
            publishers=len(self._publishers),
            viewers=len(viewers),
            queued_bytes=sum(v.queued_bytes for v in viewers),
            max_queued_bytes=max((v.queued_bytes for v in viewers), default=0),
            cached_bytes=cached,
            lag_events=self._lag_events + sum(v.lag_events for v in viewers),
            skipped=self._skipped + sum(v.skipped for v in viewers),
            bytes_in=bytes_in,
            publishes=self._publishes,
        )

"""Demand-driven live upload: a device pushes a stream to the hub only while someone watches.

The hub (``ivcloud.media.hub``) moves bytes; this service decides when a device is asked to
push and to stop, over the ``$video`` signalling channel:

* the first viewer of a stream (device, channel, quality) with no publisher live sends
  ``stream_push_start`` with a signed, short-lived publish URL, then waits (bounded) for
  the device's WebSocket to arrive. Concurrent viewers share that one attempt; a device that
  is offline, refuses or never connects gives every waiting viewer the same clear error.
* when the last viewer leaves, the upload lingers ``linger_s`` (a quick re-open reuses it
  and its GOP cache), then the hub drops the stream and ``stream_push_stop`` goes down.
* a device going offline ends its streams at once (viewers end cleanly, no hang).

It also mints the per-user signed viewer URLs and checks viewer / publisher signatures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ivcloud.bus.events import BusEvent, DeviceOnline
from ivcloud.protocol import stream_urls
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.stream_urls import LiveFormat, StreamKey
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import DeviceOffline, DeviceTimeout, ServiceError, Unavailable
from ivcloud.services.ports import Clock, Downlink
from ivcloud.services.video_signal import VideoSignalService

log = structlog.get_logger("ivcloud.streams")

#: How long a publish URL sent in ``stream_push_start`` stays valid: the device connects
#: right away, so a leaked URL is useless soon after.
PUBLISH_URL_TTL_S = 60


class StreamRefused(Unavailable):
    """The device answered ``stream_push_start`` with an error code."""


class StreamSink(Protocol):
    """What the service needs from the hub (set by the composition root)."""

    def end_stream(self, key: StreamKey, reason: str) -> None:
        """Drop the stream: close its publisher, end its viewers with ``reason``."""
        ...


@dataclass(frozen=True, slots=True)
class ViewerUrls:
    flv_url: str
    ws_flv_url: str
    ws_mp4_url: str
    expire_time: int

    def to_api(self) -> dict[str, Any]:
        return {
            "FlvUrl": self.flv_url,
            "WsFlvUrl": self.ws_flv_url,
            "WsMp4Url": self.ws_mp4_url,
            "ExpireTime": self.expire_time,
        }


class StreamDemand:
    """One stream's demand state (opaque to callers: ``watch`` hands it out so that a late
    ``unwatch`` cannot decrement a later demand for the same stream). ``ready`` is the
    current attempt to get a publisher: set when it connects, failed (with the viewers'
    error) when the attempt fails."""

    __slots__ = ("asked", "linger", "live", "ready", "rec", "viewers")

    def __init__(self, rec: DeviceRecord) -> None:
        self.rec = rec
        self.viewers = 0
        self.live = False
        self.asked = False
        self.ready: asyncio.Future[None] | None = None
        self.linger: asyncio.Task[None] | None = None


class StreamService:
    def __init__(
        self,
        signals: VideoSignalService,
        downlink: Downlink,
        clock: Clock,
        *,
        url_key: bytes,
        base_url: str,
        publisher_wait_s: float = 10.0,
        linger_s: float = 5.0,
    ) -> None:
        self._signals = signals
        self._downlink = downlink
        self._clock = clock
        self._key = url_key
        #: Public HTTP base URL (``http[s]://host:port``); set again once the port is known.
        self.base_url = base_url
        self.publisher_wait_s = publisher_wait_s
        self.linger_s = linger_s
        self.sink: StreamSink | None = None
        self._demands: dict[StreamKey, StreamDemand] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- URLs -------------------------------------------------------------------------------

    def _ws_base(self) -> str:
        base = self.base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://") :]
        return "ws://" + base.removeprefix("http://")

    def viewer_urls(self, user_id: str, key: StreamKey, ttl_s: int) -> ViewerUrls:
        expires = self._clock.now_ms() // 1000 + ttl_s
        flv = stream_urls.sign_live(self._key, key, "flv", user_id, expires)
        mp4 = stream_urls.sign_live(self._key, key, "mp4", user_id, expires)
        base, ws = self.base_url.rstrip("/"), self._ws_base()
        return ViewerUrls(base + flv, ws + flv, ws + mp4, expires)

    def publish_url(self, key: StreamKey) -> str:
        expires = self._clock.now_ms() // 1000 + PUBLISH_URL_TTL_S
        return self._ws_base() + stream_urls.sign_publish(self._key, key, expires)

    def verify_viewer(
        self, product_id: str, device_name: str, fmt: LiveFormat, query: Mapping[str, str]
    ) -> tuple[StreamKey, str]:
        """``(stream, user id)`` of a viewer URL; ``BadSignedUrl`` otherwise."""
        now = self._clock.now_ms() // 1000
        return stream_urls.verify_live(self._key, product_id, device_name, fmt, query, now)

    def verify_publisher(
        self, product_id: str, device_name: str, query: Mapping[str, str]
    ) -> StreamKey:
        now = self._clock.now_ms() // 1000
        return stream_urls.verify_publish(self._key, product_id, device_name, query, now)

    # -- viewers (called by the hub) --------------------------------------------------------

    async def watch(self, rec: DeviceRecord, key: StreamKey) -> StreamDemand:
        """A viewer joined: return (the demand, for :meth:`unwatch`) once a publisher is
        live. Raises ``DeviceOffline``, ``StreamRefused``, ``DeviceTimeout`` (the viewer is
        then not counted)."""
        demand = self._demands.get(key)
        if demand is None:
            demand = self._demands[key] = StreamDemand(rec)
        demand.viewers += 1
        if demand.linger is not None:
            demand.linger.cancel()
            demand.linger = None
        if demand.live:
            return demand
        try:
            if demand.ready is None:
                if not self._downlink.is_connected(rec.client_id):
                    raise DeviceOffline(f"device {rec.product_id}/{rec.device_name} is offline")
                demand.ready = self._new_attempt(demand, key)
            ready = demand.ready
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.publisher_wait_s)
            except TimeoutError:
                if demand.ready is ready:  # the next viewer asks the device again
                    demand.ready = None
                raise DeviceTimeout(
                    f"the device did not start streaming within {self.publisher_wait_s:g} s"
                ) from None
        except BaseException:
            self.unwatch(key, demand)
            raise
        return demand

    def unwatch(self, key: StreamKey, demand: StreamDemand) -> None:
        """A viewer left; the last one starts the linger countdown."""
        if self._demands.get(key) is not demand:
            return
        demand.viewers = max(0, demand.viewers - 1)
        if demand.viewers == 0 and demand.linger is None:
            demand.linger = self._spawn(self._linger(key, demand))

    def viewers(self, key: StreamKey) -> int:
        demand = self._demands.get(key)
        return 0 if demand is None else demand.viewers

    # -- publishers (called by the hub) -----------------------------------------------------

    def publisher_up(self, key: StreamKey) -> bool:
        """A device's push connection arrived; False when nobody asked for this stream
        (the hub then refuses it)."""
        demand = self._demands.get(key)
        if demand is None:
            return False
        demand.live = True
        if demand.ready is None or demand.ready.done():
            demand.ready = asyncio.get_running_loop().create_future()
        demand.ready.set_result(None)
        return True

    def publisher_down(self, key: StreamKey) -> None:
        """The push connection closed: the next viewer asks the device again."""
        demand = self._demands.get(key)
        if demand is not None:
            demand.live = False
            demand.ready = None

    # -- presence ---------------------------------------------------------------------------

    def on_bus_event(self, event: BusEvent) -> None:
        """Bus listener (synchronous): a device that went offline ends its streams."""
        if not isinstance(event, DeviceOnline) or event.online:
            return
        gone = [
            key
            for key in self._demands
            if key.product_id == event.product_id and key.device_name == event.device_name
        ]
        for key in gone:
            demand = self._demands.pop(key)
            self._drop(
                demand, DeviceOffline(f"device {key.product_id}/{key.device_name} went offline")
            )
            if self.sink is not None:
                self.sink.end_stream(key, "device offline")

    async def close(self) -> None:
        """Stop timers (server shutdown); streams end with the hub."""
        for demand in self._demands.values():
            self._drop(demand, Unavailable("server shutting down"))
        self._demands.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _new_attempt(self, demand: StreamDemand, key: StreamKey) -> asyncio.Future[None]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Failed attempts may have no viewer left to await them: mark them retrieved.
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        demand.asked = True
        self._spawn(self._ask(demand, key, ready))
        return ready

    async def _ask(self, demand: StreamDemand, key: StreamKey, ready: asyncio.Future[None]) -> None:
        params = vs.push_start_params(self.publish_url(key), key.channel, key.quality)
        try:
            reply = await self._signals.request(demand.rec, vs.PUSH_START, params)
        except ServiceError as exc:
            self._fail(demand, exc, ready)
            return
        if not reply.ok:
            log.info("stream_push_refused", stream=str(key), code=reply.code, status=reply.status)
            self._fail(
                demand,
                StreamRefused(
                    f"the device refused to stream ({reply.code} {reply.status})".strip()
                ),
                ready,
            )

    def _fail(
        self, demand: StreamDemand, exc: BaseException, ready: asyncio.Future[None] | None = None
    ) -> None:
        """Fail an attempt (default: the current one) for everyone waiting on it."""
        fut = demand.ready if ready is None else ready
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if demand.ready is fut:
            demand.ready = None

    def _drop(self, demand: StreamDemand, exc: BaseException) -> None:
        """A demand removed from outside its linger task: fail waiters, stop its timer."""
        self._fail(demand, exc)
        if demand.linger is not None:
            demand.linger.cancel()
            demand.linger = None

    async def _linger(self, key: StreamKey, demand: StreamDemand) -> None:
        await asyncio.sleep(self.linger_s)
        if self._demands.get(key) is not demand or demand.viewers > 0:
            return
        del self._demands[key]
        demand.linger = None
        self._fail(demand, Unavailable("no viewer left"))
        if self.sink is not None:
            self.sink.end_stream(key, "no viewers")
        if demand.asked and self._downlink.is_connected(demand.rec.client_id):
            try:
                reply = await self._signals.request(
                    demand.rec, vs.PUSH_STOP, vs.push_stop_params(key.channel, key.quality)
                )
                log.info("stream_push_stopped", stream=str(key), code=reply.code)
            except ServiceError as exc:
                log.info("stream_push_stop_failed", stream=str(key), error=str(exc))

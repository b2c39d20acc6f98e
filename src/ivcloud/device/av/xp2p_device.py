"""``Xp2pDevice``: a camera's XP2P side as a whole — its live feeds, SD cards, viewer limit,
talk slot and ``iv_avt_*`` callbacks — shared by the per-connection services
(:class:`~ivcloud.device.av.xp2p_service.Xp2pDeviceService`, see that module for the
request vocabulary it serves).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import structlog

from ivcloud.device.av.audio import AudioCodec
from ivcloud.device.av.broadcast import FeedError, FrameBroadcaster
from ivcloud.device.av.ptz import DeviceStatus
from ivcloud.device.av.recorder import SdCardRecorder
from ivcloud.device.av.sdcard import SdCard
from ivcloud.device.av.source import Clock, MediaFrame, Sleep
from ivcloud.device.av.xp2p_callbacks import Notify, Xp2pCallbacks, call_quietly
from ivcloud.device.av.xp2p_service import Xp2pDeviceService
from ivcloud.device.av.xp2p_streams import AAC_ONLY
from ivcloud.protocol.xp2p import Quality

__all__ = ["CameraSource", "Notify", "SourceFactory", "Xp2pCallbacks", "Xp2pDevice"]

log = structlog.get_logger("ivcloud.device.xp2p")


class CameraSource(Protocol):
    """A camera stream: :class:`~ivcloud.device.av.source.LiveSource`, or a real camera's
    encoder wrapped the same way (frames, keyframe on demand, AAC config, close)."""

    def __aiter__(self) -> AsyncIterator[MediaFrame]: ...

    def __anext__(self) -> Awaitable[MediaFrame]: ...

    def force_keyframe(self) -> None: ...

    def audio_config(self, codec: AudioCodec) -> bytes: ...

    async def aclose(self) -> None: ...


#: ``sources(channel, quality)``: opens the stream of one channel and quality.
SourceFactory = Callable[[int, Quality], CameraSource]


class Xp2pDevice:
    """One camera (or NVR with ``channels`` > 1). ``sources(channel, quality)`` opens a live
    source (``None``: no live video, 406); ``sdcards`` maps channels to cards (absent: no
    playback/download for that channel, 406). ``talk_decode`` makes talk audio arrive as
    PCM. ``clock``/``sleep`` pace playback (tests inject fakes)."""

    def __init__(
        self,
        *,
        sources: SourceFactory | None = None,
        sdcards: Mapping[int, SdCard] | None = None,
        callbacks: Xp2pCallbacks | None = None,
        channels: int = 1,
        max_viewers: int = 4,
        talk_decode: bool = False,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not 1 <= channels <= 65:
            raise ValueError("channels must be 1..65")
        if max_viewers < 1:
            raise ValueError("max_viewers must be at least 1")
        self.sources = sources
        self.sdcards = dict(sdcards or {})
        self.callbacks = callbacks or Xp2pCallbacks()
        self.channels = channels
        self.max_viewers = max_viewers
        self.talk_decode = talk_decode
        self.clock, self.sleep = clock, sleep
        self.visitors: dict[str, Xp2pDeviceService] = {}
        self.talker: tuple[str, int] | None = None  # (visitor, channel) talking now
        self._feeds: dict[tuple[int, Quality], tuple[CameraSource, FrameBroadcaster]] = {}
        self._recorders: list[asyncio.Task[None]] = []
        self._retired: list[CameraSource] = []

    async def connect(self, visitor: str) -> Xp2pDeviceService:
        """A new app connection; ``visitor`` identifies it (unique while connected)."""
        if visitor in self.visitors:
            raise ValueError(f"visitor {visitor!r} is already connected")
        service = Xp2pDeviceService(self, visitor)
        self.visitors[visitor] = service
        await call_quietly(self.callbacks.on_notify, Notify.PEER_READY, visitor)
        return service

    def feed(self, channel: int, quality: Quality) -> FrameBroadcaster:
        """The shared frames of a channel and quality: one source, opened on first use and
        kept (a broadcaster reads it only while someone is subscribed), replaced if it
        ended. Give the same feed to the WebRTC peer so its tracks share the encoder."""
        if self.sources is None:
            raise RuntimeError("this device has no live sources")
        key = (channel, quality)
        current = self._feeds.get(key)
        if current is None or current[1].closed:
            if current is not None:
                self._retired.append(current[0])  # ended or failed: closed in aclose()
            source = self.sources(channel, quality)
            current = (source, FrameBroadcaster(source))
            self._feeds[key] = current
        return current[1]

    def audio_config(self, channel: int, quality: Quality) -> bytes | None:
        """The AAC AudioSpecificConfig of a feed (``None``: no AAC in it)."""
        self.feed(channel, quality)
        try:
            return self._feeds[(channel, quality)][0].audio_config("aac")
        except KeyError:
            return None

    def record(
        self,
        channel: int = 0,
        quality: Quality = "standard",
        *,
        segment_s: float = 60.0,
        record_type: int = 0,
    ) -> asyncio.Task[None]:
        """Record a live stream onto the channel's SD card, sharing the viewers' encoder,
        until the returned task is cancelled (or :meth:`aclose`)."""
        card = self.sdcards[channel]
        feed = self.feed(channel, quality)
        recorder = SdCardRecorder(
            card,
            audio_config=self.audio_config(channel, quality),
            segment_s=segment_s,
            record_type=record_type,
            request_keyframe=feed.force_keyframe,
        )
        sub = feed.subscribe(audio=AAC_ONLY)

        async def run() -> None:
            try:
                await recorder.record(sub)
            except FeedError as exc:
                log.warning("sdcard_recording_stopped", channel=channel, error=repr(exc))
            finally:
                sub.close()

        task = asyncio.create_task(run())
        self._recorders.append(task)
        return task

    @property
    def streaming(self) -> set[str]:
        """Visitors holding a live or playback stream."""
        return {v for v, s in self.visitors.items() if s.viewing}

    def status(self) -> DeviceStatus:
        return DeviceStatus(user_num=len(self.visitors), talking=self.talker is not None)

    def may_view(self, visitor: str) -> bool:
        return visitor in self.streaming or len(self.streaming) < self.max_viewers

    async def aclose(self) -> None:
        for service in list(self.visitors.values()):
            await service.close()
        for task in self._recorders:
            task.cancel()
        await asyncio.gather(*self._recorders, return_exceptions=True)
        self._recorders.clear()
        for source, feed in self._feeds.values():
            await feed.aclose()
            self._retired.append(source)
        self._feeds.clear()
        for source in self._retired:
            await source.aclose()
        self._retired.clear()

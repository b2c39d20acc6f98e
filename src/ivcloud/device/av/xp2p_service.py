"""The camera side of the XP2P vocabulary: what a device answers to each request of a
viewer ("visitor"), whatever tunnel carried it (spec device-protocol.md §7.4, §7.7).

:class:`~ivcloud.device.av.xp2p_device.Xp2pDevice` is the device: its live sources (one
encoder per channel and quality, shared by all viewers, WebRTC tracks and the SD-card
recorder through a :class:`~ivcloud.device.av.broadcast.FrameBroadcaster`), its SD cards,
the viewer limit and the callbacks a camera implements. ``await device.connect(visitor)`` gives an
:class:`Xp2pDeviceService` for one app connection; its ``handle_request(text)`` (also its
``__call__`` and its ``handler``: the data channel's ``RequestHandler``) answers

==========================  ===================================================================
request                     answer
==========================  ===================================================================
``inner_define`` /          ``str`` — the command's reply text (errors too, in the command's
``user_define``             shape: ``[{"status":"404",…}]``, ``{"status":"406"}``)
``ipc.flv?action=live``     :class:`ViewerStream` — FLV bytes from the live fan-out
``…action=playback``        :class:`ViewerStream` over a :class:`PlaybackSession` (the
                            ``playback_*`` commands of this visitor act on it)
``…action=download``        :class:`ViewerStream` — the file's bytes from ``offset``
``voice?…``                 :class:`~ivcloud.device.av.talk.TalkSink` — ``write(bytes)``
==========================  ===================================================================

or raises :class:`~ivcloud.protocol.p2p_channel.RequestRefused` with the XP2P status: 404 bad
request / nothing recorded there / no such file, 405 too many viewers, 406 unsupported, 1
refused (someone else is talking). The return types are the data channel's handler contract
(``str | AsyncIterator[bytes] | VoiceSink``); streams are ended with ``aclose()``, sinks with
``close()``.

Viewer accounting: ``max_viewers`` limits the visitors holding a live or playback stream at
once (a visitor with one may open more); ``get_device_st`` answers 405 to anyone else when
the limit is reached, and ``appConnectNum`` counts connected visitors. Talk is one visitor
at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog

from ivcloud.device.av.sdcard import SdCard, SdCardError
from ivcloud.device.av.talk import TalkSink
from ivcloud.device.av.xp2p_callbacks import Notify, call_quietly
from ivcloud.device.av.xp2p_streams import AAC_ONLY, LiveFlv, ViewerStream
from ivcloud.protocol.p2p_channel import RequestHandler, RequestRefused
from ivcloud.protocol.xp2p import (
    ST_ACCEPT,
    ST_REFUSE,
    ST_TOO_MANY,
    ST_UNSUPPORTED,
    BadRequest,
    DeviceStQuery,
    DownloadRequest,
    FileListQuery,
    InnerDefine,
    LiveRequest,
    MonthQuery,
    PlaybackRequest,
    RecordIndexQuery,
    ResType,
    SeekQuery,
    StreamInfo,
    Unsupported,
    UserDefine,
    VoiceRequest,
    Xp2pRequestError,
    parse_request,
)

if TYPE_CHECKING:
    from ivcloud.device.av.xp2p_device import Xp2pDevice

from ivcloud.protocol.xp2p_replies import (
    device_st_reply,
    error_reply,
    file_list_reply,
    month_record_reply,
    progress_reply,
    record_index_reply,
    status_reply,
)

__all__ = ["Xp2pDeviceService"]

log = structlog.get_logger("ivcloud.device.xp2p")


class Xp2pDeviceService:
    """One visitor's requests (see the module doc). Also callable: ``await service(text)``."""

    def __init__(self, device: Xp2pDevice, visitor: str) -> None:
        self.device = device
        self.visitor = visitor
        self._streams: list[ViewerStream] = []
        self._talk: TalkSink | None = None
        self.closed = False

    @property
    def viewing(self) -> bool:
        return any(s.counts_as_viewer for s in self._streams)

    def playback(self, channel: int = 0) -> ViewerStream | None:
        """This visitor's newest playback stream on ``channel`` (what ``playback_*`` act on)."""
        for stream in reversed(self._streams):
            if stream.playback is not None and stream.channel == channel:
                return stream
        return None

    async def __call__(self, text: str) -> str | ViewerStream | TalkSink:
        return await self.handle_request(text)

    @property
    def handler(self) -> RequestHandler:
        """This visitor as the data channel's request handler (mypy checks the fit)."""
        return self.handle_request

    async def handle_request(self, text: str) -> str | ViewerStream | TalkSink:
        if self.closed:
            raise RequestRefused(503, "visitor disconnected")
        try:
            req = parse_request(text)
        except Xp2pRequestError as exc:
            log.info("xp2p_bad_request", visitor=self.visitor, status=exc.status, error=str(exc))
            if exc.command:
                return error_reply(exc, app_connect_num=len(self.device.visitors))
            raise RequestRefused(exc.status, str(exc)) from None
        log.debug("xp2p_request", visitor=self.visitor, kind=type(req).__name__, ch=req.channel)
        if isinstance(req, InnerDefine):
            try:
                return self._inner(req)
            except Xp2pRequestError as exc:
                return error_reply(exc, app_connect_num=len(self.device.visitors))
        if isinstance(req, UserDefine):
            return await self._user(req)
        if req.channel >= self.device.channels:
            raise RequestRefused(404, f"no channel {req.channel}")
        if isinstance(req, LiveRequest):
            return await self._live(req)
        if isinstance(req, PlaybackRequest):
            return await self._playback(req)
        if isinstance(req, DownloadRequest):
            return self._download(req)
        return await self._voice(req)

    # -- commands ----------------------------------------------------------------------------

    def _card(self, channel: int, cmd: str) -> SdCard:
        card = self.device.sdcards.get(channel)
        if card is None:
            raise Unsupported(f"no SD card on channel {channel}", cmd=cmd)
        return card

    def _inner(self, req: InnerDefine) -> str:
        p, ch = req.params, req.channel
        if ch >= self.device.channels:
            raise BadRequest(f"no channel {ch}", cmd=req.cmd)
        if isinstance(p, DeviceStQuery):
            return device_st_reply(self._device_st(p, ch), len(self.device.visitors))
        if isinstance(p, RecordIndexQuery):
            spans = self._card(ch, req.cmd).record_index(p.start_time, p.end_time, p.type)
            return record_index_reply(spans)
        if isinstance(p, MonthQuery):
            return month_record_reply(self._card(ch, req.cmd).month_days(p.year, p.month))
        if isinstance(p, FileListQuery):
            files = self._card(ch, req.cmd).file_list(p.start_time, p.end_time, p.file_type)
            return file_list_reply(files)
        if req.cmd == "get_nvr_list":
            raise Unsupported("an IPC has no NVR channels", cmd=req.cmd)
        stream = self.playback(ch)
        if stream is None or stream.playback is None:
            raise BadRequest(f"no playback on channel {ch}", cmd=req.cmd)
        session = stream.playback
        if isinstance(p, SeekQuery):
            ok = session.seek(
                time_ms=None if p.time is None else p.time * 1000, progress_ms=p.progress_ms
            )
        elif req.cmd == "playback_pause":
            ok = session.pause()
        elif req.cmd == "playback_resume":
            ok = session.resume()
        else:
            return progress_reply(ST_ACCEPT, session.progress_ms)
        return status_reply(ST_ACCEPT if ok else ST_REFUSE)

    def _device_st(self, q: DeviceStQuery, channel: int) -> int:
        dev = self.device
        if q.type == "live" and dev.sources is None:
            return ST_UNSUPPORTED
        if q.type == "playback" and channel not in dev.sdcards:
            return ST_UNSUPPORTED
        if q.type == "voice":
            if dev.callbacks.on_talk_audio is None:
                return ST_UNSUPPORTED
            return ST_ACCEPT if dev.talker in (None, (self.visitor, channel)) else ST_REFUSE
        return ST_ACCEPT if dev.may_view(self.visitor) else ST_TOO_MANY

    async def _user(self, req: UserDefine) -> str:
        handler = self.device.callbacks.on_user_command
        if handler is None:
            return status_reply(ST_UNSUPPORTED)
        try:
            result = handler(self.visitor, req.channel, req.cmd)
            return await result if inspect.isawaitable(result) else result
        except Exception:
            log.exception("xp2p_user_command_failed", visitor=self.visitor)
            return status_reply(ST_REFUSE)

    # -- streams -----------------------------------------------------------------------------

    def _admit(self) -> None:
        if not self.device.may_view(self.visitor):
            raise RequestRefused(ST_TOO_MANY, f"at most {self.device.max_viewers} viewers")

    async def _live(self, req: LiveRequest) -> ViewerStream:
        if self.device.sources is None:
            raise RequestRefused(ST_UNSUPPORTED, "no live video")
        self._admit()
        dev = self.device
        config = dev.audio_config(req.channel, req.quality)
        flv = LiveFlv(dev.feed(req.channel, req.quality).subscribe(audio=AAC_ONLY), config)
        return await self._open(flv, req.channel, req.res_type, req.info, viewer=True)

    async def _playback(self, req: PlaybackRequest) -> ViewerStream:
        card = self.device.sdcards.get(req.channel)
        if card is None:
            raise RequestRefused(ST_UNSUPPORTED, "no SD card")
        start_ms, end_ms = req.start_time * 1000, req.end_time * 1000
        if not card.overlapping(start_ms, end_ms, req.type):
            raise RequestRefused(404, "nothing recorded in that range")
        self._admit()
        session = card.open_playback(
            start_ms, end_ms, kind=req.type, clock=self.device.clock, sleep=self.device.sleep
        )
        return await self._open(session, req.channel, ResType.PB, req.info, viewer=True)

    def _download(self, req: DownloadRequest) -> ViewerStream:
        card = self.device.sdcards.get(req.channel)
        if card is None:
            raise RequestRefused(ST_UNSUPPORTED, "no SD card")
        try:
            data = card.open_file(req.file_name, req.offset)
        except SdCardError as exc:
            raise RequestRefused(404, str(exc)) from None
        stream = ViewerStream(data, req.channel, None, viewer=False, release=self._forget)
        self._streams.append(stream)
        return stream

    async def _open(
        self,
        source: AsyncIterator[bytes],
        channel: int,
        res: ResType,
        info: StreamInfo,
        *,
        viewer: bool,
    ) -> ViewerStream:
        cb = self.device.callbacks

        async def release(stream: ViewerStream) -> None:
            self._forget(stream)
            await call_quietly(cb.on_stop_real_play, self.visitor, channel, res)

        stream = ViewerStream(source, channel, res, viewer=viewer, release=release)
        self._streams.append(stream)
        await call_quietly(cb.on_start_real_play, self.visitor, channel, res, info)
        return stream

    def _forget(self, stream: ViewerStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    async def _voice(self, req: VoiceRequest) -> TalkSink:
        dev, cb = self.device, self.device.callbacks
        if cb.on_talk_audio is None:
            raise RequestRefused(ST_UNSUPPORTED, "this device cannot play talk audio")
        if dev.talker is not None:
            raise RequestRefused(ST_REFUSE, "another app is talking")
        dev.talker = (self.visitor, req.channel)
        visitor, channel, on_audio = self.visitor, req.channel, cb.on_talk_audio

        async def deliver(codec: str, frame: bytes) -> None:
            result = on_audio(visitor, channel, codec, frame)
            if inspect.isawaitable(result):
                await result

        async def closed() -> None:
            if dev.talker == (visitor, channel):
                dev.talker = None
            if self._talk is sink:
                self._talk = None
            await call_quietly(cb.on_talk_stop, visitor, channel)

        sink = TalkSink(deliver, input_format=req.format, decode=dev.talk_decode, on_close=closed)
        self._talk = sink
        await call_quietly(cb.on_talk_start, visitor, channel, req.calltype)
        return sink

    async def close(self) -> None:
        """The app disconnected: end its streams and its talk, free its viewer slot."""
        if self.closed:
            return
        self.closed = True
        for stream in list(self._streams):
            await stream.aclose()
        if self._talk is not None:
            await self._talk.close()
        self.device.visitors.pop(self.visitor, None)
        await call_quietly(self.device.callbacks.on_notify, Notify.LINK_DISCONNECTED, self.visitor)

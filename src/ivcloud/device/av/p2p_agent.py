"""``P2PAgent``: a camera's P2P live view, wired to the cloud's ``$video`` signalling.

The pieces exist on their own — :class:`~ivcloud.device.av.webrtc.DevicePeer` (one WebRTC
session), :class:`~ivcloud.device.av.xp2p_device.Xp2pDevice` (what a camera answers to XP2P
requests, its encoders and SD cards) and :class:`~ivcloud.device.IvDevice` (the MQTT link with
its ``$video`` dispatcher). The agent connects them (docs/live-video.md, "P2P sessions
through the cloud"; wire format: :mod:`ivcloud.protocol.p2p_signal`):

* ``webrtc_offer`` → one ``DevicePeer`` per session: its media is the ``Xp2pDevice``'s shared
  broadcaster for the requested channel and quality (one encoder for every viewer, the hub
  upload and the SD recorder), its ``xp2p`` data channel is served by
  ``Xp2pDevice.connect(visitor).handler``; the reply carries the answer SDP. Every session
  holds a viewer slot: at ``max_viewers`` the offer is refused with XP2P status 405.
* ``webrtc_close`` → that peer closes. A peer that ends by itself (the app went away, it
  never connected) is reported to the cloud with ``webrtc_closed`` so the cloud forgets it.
* ``xp2p_command`` → a command (``inner_define`` / ``user_define``) relayed by the cloud
  when no P2P session is up, answered by the same ``Xp2pDeviceService`` machinery: the
  visitor's newest session's service if it has one (``playback_*`` then act on its
  playback), else a short-lived one. Stream requests are refused: they need a session.
* ``_sys_xp2p_info`` (:mod:`ivcloud.protocol.xp2p_info`) is reported once the link is up
  and again whenever it changes (:meth:`refresh_info` after a capability change).
* Every peer closes when the MQTT link drops (:meth:`on_offline`, from ``IvDevice``'s
  ``on_offline``; at the latest on the next connect) — the cloud forgets a device's sessions
  when it goes offline — and on :meth:`aclose`.

Visitors: the cloud sends an opaque per-user id; the device-side visitor of a session is
``<visitor>.<session>`` (unique while connected, as ``Xp2pDevice.connect`` requires; two
phones of one user are two viewers), of a relayed command ``<visitor>.relay<n>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ivcloud.device.av.rtc_channel import ChannelLimits
from ivcloud.device.av.webrtc import DevicePeer, IcePolicy, NegotiationFailed, WebRtcUnavailable
from ivcloud.device.av.xp2p_device import Xp2pDevice
from ivcloud.device.av.xp2p_service import Xp2pDeviceService
from ivcloud.device.types import OK
from ivcloud.device.video_link import VideoResult
from ivcloud.protocol import p2p_signal as ps
from ivcloud.protocol import video_signal as vs
from ivcloud.protocol.p2p_channel import RequestRefused
from ivcloud.protocol.xp2p import (
    ST_BAD_REQUEST,
    ST_TOO_MANY,
    DownloadRequest,
    LiveRequest,
    PlaybackRequest,
    VoiceRequest,
    Xp2pRequestError,
    parse_request,
)
from ivcloud.protocol.xp2p_info import format_xp2p_info, new_peer_id

if TYPE_CHECKING:
    from ivcloud.device.sdk import IvDevice

__all__ = ["XP2P_INFO_PROP", "AgentSession", "P2PAgent"]

log = structlog.get_logger("ivcloud.device.p2p_agent")

XP2P_INFO_PROP = "_sys_xp2p_info"
_STREAMS = (LiveRequest, PlaybackRequest, DownloadRequest, VoiceRequest)


@dataclass(eq=False)
class AgentSession:
    """One WebRTC session: the cloud's id, the visitor it came for, its peer and service."""

    session: str
    visitor: str
    peer: DevicePeer
    service: Xp2pDeviceService
    channel: int
    quality: vs.Quality
    notify: bool = True  # tell the cloud when it ends (not when the cloud ended it)
    done: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def local_visitor(self) -> str:
        return self.service.visitor


def _refused(status: int, reason: str) -> VideoResult:
    return VideoResult(ps.REFUSED, reason[:200], {"xp2p_status": status})


class P2PAgent:
    """The device's P2P side. ``P2PAgent(xp2p).install(device)`` before ``sys_init``'s first
    connect; pass ``on_offline=agent.on_offline`` to ``sys_init`` (or call it from yours).

    ``peer_id`` fixes the ``_sys_xp2p_info`` peer id (default: random per agent);
    ``report_info=False`` leaves reporting it to the caller (:attr:`xp2p_info` gives it);
    ``connect_timeout``, ``limits`` and ``ice_transport_policy`` go to every ``DevicePeer``.
    """

    def __init__(
        self,
        xp2p: Xp2pDevice,
        *,
        peer_id: str | None = None,
        report_info: bool = True,
        connect_timeout: float = 30.0,
        limits: ChannelLimits | None = None,
        ice_transport_policy: IcePolicy = "all",
    ) -> None:
        self.xp2p = xp2p
        self.peer_id = peer_id or new_peer_id(secrets.token_bytes(16))
        self.report_info = report_info
        self.connect_timeout = connect_timeout
        self.limits = limits
        self.ice_transport_policy: IcePolicy = ice_transport_policy
        self._sessions: dict[str, AgentSession] = {}
        self._opening: set[str] = set()  # device-side visitors of offers being set up
        self._device: IvDevice | None = None
        self._reported: str | None = None
        self._relay_ids = itertools.count(1)
        self._closing = False
        format_xp2p_info(self.peer_id, ())  # a bad peer id fails here, not at first report

    # -- wiring -----------------------------------------------------------------------------

    def install(self, device: IvDevice) -> None:
        """Answer the P2P ``$video`` methods of ``device`` and follow its connection."""
        if self._device is not None:
            raise RuntimeError("the agent is already installed")
        self._device = device
        device.on_video(ps.WEBRTC_OFFER, self.on_offer)
        device.on_video(ps.WEBRTC_CLOSE, self.on_close)
        device.on_video(ps.XP2P_COMMAND, self.on_command)
        device.add_extension(self)

    @property
    def sessions(self) -> Mapping[str, AgentSession]:
        return self._sessions

    # -- _sys_xp2p_info ---------------------------------------------------------------------

    @property
    def xp2p_info(self) -> str:
        """The current value: this agent's peer id and what the camera serves now."""
        dev = self.xp2p
        flags = {"c", "w"}
        if dev.sources is not None:
            flags.add("l")
        if dev.sdcards:
            flags.add("p")
        if dev.callbacks.on_talk_audio is not None:
            flags.add("t")
        if dev.callbacks.on_user_command is not None:
            flags.add("u")
        return format_xp2p_info(self.peer_id, flags)

    async def refresh_info(self) -> int | None:
        """Report ``_sys_xp2p_info`` if it changed since the last accepted report (and the
        device is online); the ``report_reply`` code, or ``None`` when nothing was sent."""
        device, value = self._device, self.xp2p_info
        if device is None or not device.online or value == self._reported:
            return None
        # Claimed before the round trip, so a refresh while this report is in flight does
        # not send the same value again; given back if the cloud refuses it.
        previous, self._reported = self._reported, value
        try:
            code = await device.property_report({XP2P_INFO_PROP: value})
        except BaseException:
            self._reported = previous
            raise
        if code != OK:
            self._reported = previous
            log.info("xp2p_info_report_refused", code=code)
        return code

    # -- the device's connection (IvDevice extension hooks) ---------------------------------

    def on_message(self, topic: str, doc: dict[str, Any]) -> bool:
        return False  # only $video methods, which come through on_video

    async def on_session_start(self) -> None:
        """A (re)connect: sessions of the previous connection are gone on the cloud's side."""
        await self._close_all("reconnected")
        if self.report_info:
            self._reported = None  # report once per connection
            await self.refresh_info()

    async def on_offline(self, status: int = 0) -> None:
        """The MQTT link dropped (``IvDevice`` ``on_offline``): close every peer."""
        await self._close_all("offline")

    async def aclose(self) -> None:
        """Close every session (the device is shutting down); the ``Xp2pDevice`` is the
        caller's to close."""
        self._closing = True
        await self._close_all("shutdown")

    # -- $video handlers --------------------------------------------------------------------

    async def on_offer(self, msg: vs.SignalMessage) -> VideoResult:
        offer = ps.parse_webrtc_offer(msg)  # SignalError → 406 from the video link
        if self._closing:
            return VideoResult(vs.FAILED, "shutting down")
        local = f"{offer.visitor}.{offer.session}"
        if offer.session in self._sessions or local in self._opening:
            return VideoResult(vs.INVALID, "invalid params: the session is already open")
        dev = self.xp2p
        if offer.channel >= dev.channels:
            return _refused(ST_BAD_REQUEST, f"no channel {offer.channel}")
        viewers = set(dev.streaming) | self._opening
        viewers.update(s.local_visitor for s in self._sessions.values())
        if len(viewers) >= dev.max_viewers:
            return _refused(ST_TOO_MANY, f"at most {dev.max_viewers} viewers")
        media = dev.feed(offer.channel, offer.quality) if dev.sources is not None else None
        self._opening.add(local)  # counted from here on: concurrent offers see the slot taken
        try:
            service = await dev.connect(local)
            try:
                peer = DevicePeer(
                    media=media,
                    handler=service.handler,
                    ice_servers=offer.ice_servers,
                    ice_transport_policy=self.ice_transport_policy,
                    limits=self.limits,
                    connect_timeout=self.connect_timeout,
                )
            except WebRtcUnavailable as exc:
                await service.close()
                return VideoResult(vs.FAILED, str(exc)[:200])
            session = AgentSession(
                offer.session, offer.visitor, peer, service, offer.channel, offer.quality
            )
            self._sessions[offer.session] = session  # holds its viewer slot while answering
        finally:
            self._opening.discard(local)
        try:
            answer = await peer.accept(offer.offer)
        except NegotiationFailed as exc:
            session.notify = False
            await self._finish(session, "negotiation failed")
            return VideoResult(vs.INVALID, f"invalid params: {exc}"[:200])
        except BaseException:
            session.notify = False
            await self._finish(session, "answer failed")
            raise
        if session.done:  # closed while answering (the link dropped, shutdown)
            return VideoResult(vs.FAILED, "the session closed while answering")
        session.watcher = asyncio.create_task(self._watch(session))
        log.info("p2p_session_answered", session=offer.session[:12], channel=offer.channel)
        return VideoResult(vs.OK, "answered", {"answer": answer})

    async def on_close(self, msg: vs.SignalMessage) -> VideoResult:
        session = self._sessions.get(ps.parse_session(msg))
        if session is None:
            return VideoResult(vs.OK, "not open")
        session.notify = False  # the cloud asked: it already forgot the session
        await self._finish(session, "closed by the cloud")
        return VideoResult(vs.OK, "closed")

    async def on_command(self, msg: vs.SignalMessage) -> VideoResult:
        command = ps.parse_xp2p_command(msg)
        try:
            request = parse_request(command.request)
        except Xp2pRequestError as exc:
            if not exc.command:
                return _refused(exc.status, str(exc))
            request = None  # the service answers it in the command's reply shape
        if isinstance(request, _STREAMS):
            return VideoResult(vs.INVALID, "invalid params: streams need a P2P session or the hub")
        mine = [s for s in self._sessions.values() if s.visitor == command.visitor and not s.done]
        if mine:
            return await self._run_command(mine[-1].service, command.request)
        service = await self.xp2p.connect(f"{command.visitor}.relay{next(self._relay_ids)}")
        try:
            return await self._run_command(service, command.request)
        finally:
            await service.close()

    # -- internals --------------------------------------------------------------------------

    async def _run_command(self, service: Xp2pDeviceService, text: str) -> VideoResult:
        try:
            reply = await service.handle_request(text)
        except RequestRefused as exc:
            return _refused(exc.status, str(exc))
        if not isinstance(reply, str):  # never for a command; close whatever it is
            close = getattr(reply, "aclose", None) or getattr(reply, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            return VideoResult(vs.INVALID, "invalid params: not a command")
        return VideoResult(vs.OK, "ok", {"reply": reply})

    async def _watch(self, session: AgentSession) -> None:
        await session.peer.wait_closed()
        await self._finish(session, "peer closed")

    async def _finish(self, session: AgentSession, reason: str) -> None:
        """End a session once: its peer, its visitor's streams and talk, its slot; tell the
        cloud if it ended on the device's side."""
        if session.done:
            return
        session.done = True
        if self._sessions.get(session.session) is session:
            del self._sessions[session.session]
        try:
            await session.peer.close()
        finally:
            await session.service.close()
        log.info("p2p_session_ended", session=session.session[:12], reason=reason)
        device = self._device
        if session.notify and device is not None and device.online and device.info is not None:
            topic = vs.video_topic("up", device.info.product_id, device.info.device_name)
            doc = vs.request_doc(
                ps.WEBRTC_CLOSED,
                f"closed-{secrets.token_hex(8)}",
                ps.webrtc_closed_params(session.session, reason),
            )
            with contextlib.suppress(Exception):  # best effort: the cloud also drops it offline
                await device.publish(topic, doc)

    async def _close_all(self, reason: str) -> None:
        sessions = list(self._sessions.values())
        for session in sessions:
            session.notify = False
            await self._finish(session, reason)
        watchers = [s.watcher for s in sessions if s.watcher is not None]
        for watcher in watchers:
            if watcher is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watcher

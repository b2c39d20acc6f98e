"""``DevicePeer``: the camera's end of one WebRTC live-view session (aiortc).

One peer per viewer session. The app is the offerer; the device answers. Signalling is not
this module's business: whoever carries the offer and answer (MQTT ``$video`` methods, a test
passing strings) calls :meth:`DevicePeer.accept` and :meth:`DevicePeer.add_ice_candidate`.

What the viewer gets:

- **video**: the camera's H.264 access units, packetized and never re-encoded
  (:class:`~ivcloud.device.av.rtc_tracks.H264PassthroughTrack`), negotiated as constrained
  baseline ``42e01f`` / packetization-mode 1; a PLI or FIR from the viewer makes the camera
  send an IDR, and a new viewer's first frame is a keyframe;
- **audio**: the camera's Opus packets, also passed through (WebRTC has no AAC, so a camera
  that only encodes AAC sends no WebRTC audio; its AAC still goes out in FLV over the data
  channel);
- **the ``xp2p`` data channel** (opened by the app), served by
  :class:`~ivcloud.device.av.rtc_channel.ChannelServer` with the request handler given here.

Frames come from a :class:`~ivcloud.device.av.broadcast.MediaFeed` — normally the device's
:class:`~ivcloud.device.av.broadcast.FrameBroadcaster` — so every viewer shares one encoder.

ICE: aiortc gathers all local candidates before it answers (no local trickle), so the
answer SDP carries every candidate. The viewer's candidates may arrive in the offer or
trickle in later (:meth:`add_ice_candidate`, ``None`` = end of candidates), as browsers send
them.

aiortc is imported lazily: without the ``webrtc`` extra this module still imports and
:class:`WebRtcUnavailable` says what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ivcloud.device.av.broadcast import MediaFeed
from ivcloud.device.av.rtc_channel import ChannelLimits, ChannelServer, ChannelStats
from ivcloud.protocol.p2p_channel import CHANNEL_LABEL, RequestHandler
from ivcloud.rtc import (
    INSTALL_HINT,
    add_remote_candidate,
    aiortc_available,
    new_peer_connection,
)

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

    from ivcloud.device.av.rtc_tracks import H264PassthroughTrack, OpusPassthroughTrack

__all__ = [
    "DevicePeer",
    "DevicePeerError",
    "DevicePeerStats",
    "NegotiationFailed",
    "PeerClosed",
    "WebRtcUnavailable",
]

log = structlog.get_logger("ivcloud.device.p2p")

IcePolicy = Literal["all", "relay"]
# What aiortc's SDP parser raises on text that is not SDP (it indexes and asserts freely).
_SDP_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    IndexError,
    AssertionError,
    TypeError,
    AttributeError,
)


class DevicePeerError(Exception):
    """Base of the device peer's errors."""


class WebRtcUnavailable(DevicePeerError):
    """aiortc is not installed (``pip install 'ivcloud[webrtc]'``)."""


class NegotiationFailed(DevicePeerError):
    """The offer cannot be answered: not SDP, no H.264 constrained baseline / Opus the
    device can send, or the wrong signalling state."""


class PeerClosed(DevicePeerError):
    """The session ended (closed, failed ICE/DTLS, or never connected in time)."""


def _require_aiortc() -> None:
    """Fail with a clear message, once, where a peer is created (the imports that follow
    inside methods are then known to work)."""
    if not aiortc_available():
        raise WebRtcUnavailable(INSTALL_HINT)


@dataclass(frozen=True, slots=True)
class DevicePeerStats:
    connection_state: str
    keyframe_requests: int  # PLI/FIR received from the viewer
    video_packets: int
    video_keyframes: int
    audio_packets: int
    channel: ChannelStats | None


class DevicePeer:
    """The device side of one viewer session.

    ``ice_servers`` are ``RTCIceServer`` dicts (``IceService.ice_servers`` gives them);
    ``connect_timeout`` closes a session whose viewer never connected, so an abandoned offer
    does not hold the camera."""

    def __init__(
        self,
        *,
        media: MediaFeed | None,
        handler: RequestHandler | None,
        ice_servers: Sequence[Mapping[str, Any]] = (),
        ice_transport_policy: IcePolicy = "all",
        audio: bool = True,
        limits: ChannelLimits | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        _require_aiortc()
        self._pc = new_peer_connection(ice_servers, ice_transport_policy)
        self._media = media
        self._handler = handler
        self._send_audio = audio
        self._limits = limits or ChannelLimits()
        self._connect_timeout = connect_timeout
        self._video: H264PassthroughTrack | None = None
        self._audio: OpusPassthroughTrack | None = None
        self._server: ChannelServer | None = None
        self._keyframe_requests = 0
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._closer: asyncio.Future[None] | None = None
        self._pc.on("datachannel", self._on_datachannel)
        self._pc.on("connectionstatechange", self._on_state)

    # -- signalling -------------------------------------------------------------------------

    async def accept(self, offer_sdp: str) -> str:
        """Apply the viewer's offer and return the answer SDP (with all local candidates).
        An offer that cannot be answered raises :class:`NegotiationFailed` and closes the
        peer; a second offer (renegotiation is not supported) only raises."""
        if self._pc.signalingState != "stable" or self._closing or self._watchdog is not None:
            raise NegotiationFailed(f"cannot answer in state {self._pc.signalingState}")
        try:
            return await self._accept(offer_sdp)
        except NegotiationFailed:
            await self.close()
            raise

    async def _accept(self, offer_sdp: str) -> str:
        from aiortc import RTCSessionDescription
        from aiortc.exceptions import InternalError, InvalidStateError, OperationError
        from aiortc.sdp import SessionDescription

        try:
            kinds = {m.kind for m in SessionDescription.parse(offer_sdp).media}
        except _SDP_ERRORS as exc:
            raise NegotiationFailed(f"the offer is not valid SDP: {exc!r}") from None
        if not kinds & {"video", "audio", "application"}:
            raise NegotiationFailed("the offer is not valid SDP: no media and no data channel")
        self._add_tracks(kinds)
        answer_errors: tuple[type[Exception], ...] = (
            InternalError,
            InvalidStateError,
            *_SDP_ERRORS,
        )
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await self._pc.setLocalDescription(await self._pc.createAnswer())
        except OperationError as exc:
            raise NegotiationFailed(f"no common codec: {exc}") from None
        except answer_errors as exc:
            raise NegotiationFailed(f"the offer cannot be answered: {exc!r}") from None
        self._watchdog = asyncio.get_running_loop().create_task(self._connect_watchdog())
        log.info("p2p.answered", media=sorted(kinds))
        return str(self._pc.localDescription.sdp)

    def _add_tracks(self, kinds: set[str]) -> None:
        """Send-only transceivers with our codec preferences, created *before* the offer is
        applied so aiortc matches the offer's m-lines to them and negotiates our codecs."""
        if self._media is None:
            return
        from ivcloud.device.av import rtc_tracks as tracks

        if "video" in kinds:
            self._video = tracks.H264PassthroughTrack(self._media)
            video = self._pc.addTransceiver(self._video, direction="sendonly")
            video.setCodecPreferences(tracks.video_codec_preferences())
            tracks.on_keyframe_request(video.sender, self._on_keyframe_request)
        if "audio" in kinds and self._send_audio:
            self._audio = tracks.OpusPassthroughTrack(self._media)
            audio = self._pc.addTransceiver(self._audio, direction="sendonly")
            audio.setCodecPreferences(tracks.audio_codec_preferences())

    async def add_ice_candidate(
        self,
        candidate: str | None,
        *,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = 0,
    ) -> None:
        """A trickled remote candidate: the browser's ``candidate`` string (with or without
        the ``candidate:`` prefix) and its ``sdpMid`` / ``sdpMLineIndex``; ``None`` means
        end of candidates. A malformed candidate raises :class:`NegotiationFailed`."""
        try:
            await add_remote_candidate(self._pc, candidate, sdp_mid, sdp_mline_index)
        except ValueError as exc:
            raise NegotiationFailed(str(exc)) from exc

    # -- state ------------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    @property
    def channel(self) -> ChannelServer | None:
        """The ``xp2p`` channel's server once the app opened it."""
        return self._server

    @property
    def stats(self) -> DevicePeerStats:
        video, audio = self._video, self._audio
        return DevicePeerStats(
            connection_state=self.connection_state,
            keyframe_requests=self._keyframe_requests,
            video_packets=video.packets_sent if video else 0,
            video_keyframes=video.keyframes_sent if video else 0,
            audio_packets=audio.packets_sent if audio else 0,
            channel=self._server.stats if self._server else None,
        )

    async def wait_connected(self, timeout_s: float = 15.0) -> None:
        """Until ICE and DTLS are up; :class:`PeerClosed` if the session ends first."""
        closed = asyncio.ensure_future(self._closed.wait())
        connected = asyncio.ensure_future(self._connected.wait())
        try:
            done, _ = await asyncio.wait(
                {closed, connected}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
            connected.cancel()
        if self._closed.is_set():
            raise PeerClosed("the session closed")
        if not done:
            raise PeerClosed(f"the viewer did not connect within {timeout_s} s")

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- events -----------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self._server is not None:
            log.info("p2p.channel_refused", label=channel.label)
            channel.close()
            return
        self._server = ChannelServer(channel, self._handler, self._limits)

    def _on_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            self._connected.set()
            log.info("p2p.connected")
        elif state in ("failed", "closed") and self._closer is None:
            self._closer = asyncio.ensure_future(self.close())

    def _on_keyframe_request(self) -> None:
        self._keyframe_requests += 1
        if self._media is not None:
            self._media.force_keyframe()

    async def _connect_watchdog(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self._connect_timeout)
        except TimeoutError:
            log.info("p2p.connect_timeout", seconds=self._connect_timeout)
            await self.close()

    # -- teardown ---------------------------------------------------------------------------

    async def close(self) -> None:
        """End the session: open requests are cancelled (streams closed, sinks closed), the
        tracks stop reading the camera, the connection closes. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        try:
            if self._server is not None:
                await self._server.close()
            for track in (self._video, self._audio):
                if track is not None:
                    track.stop()
            with contextlib.suppress(Exception):
                await self._pc.close()
        finally:
            self._closed.set()
            log.info("p2p.closed")

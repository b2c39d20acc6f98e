"""``AppPeer``: the app SDK's end of a WebRTC live-view session with a camera (aiortc).

The app is the offerer: :meth:`AppPeer.offer` gives the SDP to send to the device (through
whatever signalling: the cloud's MQTT ``$video`` channel, a test handing strings over),
:meth:`AppPeer.answer` applies the device's answer. The offer asks for receive-only H.264
(constrained baseline ``42e01f``, packetization-mode 1) and Opus, and opens the ``xp2p``
data channel. aiortc gathers every local candidate before the offer is returned (no local
trickle); the device's candidates are in its answer or trickle in via
:meth:`add_ice_candidate`.

Once connected:

- :attr:`video_track` / :attr:`audio_track`: aiortc decodes what arrives, so
  ``await peer.video_track.recv()`` is an ``av.VideoFrame`` (and
  :func:`ivcloud.media.clockcode.read_clock` reads a simulated camera's capture time off it);
  :meth:`request_keyframe` sends a PLI;
- :meth:`request` (XP2P commands, e.g. ``action=inner_define&channel=0&cmd=get_device_st``),
  :meth:`open_stream` (``ipc.flv?action=live&…`` → FLV bytes), :meth:`start_voice`
  (``voice?channel=0&calltype=audio`` → a sink for talk audio);
- :meth:`selected_path`: ``"direct"`` or ``"turn"`` (a relay candidate is in the pair).

aiortc is imported lazily: without the ``webrtc`` extra ``ivcloud.client`` still imports and
creating a peer raises :class:`P2PUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ivcloud.client.p2p_channel import (
    ChannelClient,
    P2PClosed,
    P2PError,
    P2PRequestFailed,
    P2PStream,
    P2PStreamError,
    P2PTimeout,
    VoiceUpload,
)
from ivcloud.protocol.p2p_channel import CHANNEL_LABEL, DEFAULT_WINDOW, MAX_WINDOW, MIN_WINDOW
from ivcloud.rtc import (
    INSTALL_HINT,
    add_remote_candidate,
    aiortc_available,
    new_peer_connection,
)

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack, RTCRtpCodecCapability, RTCRtpTransceiver

__all__ = [
    "AppPeer",
    "NegotiationFailed",
    "P2PClosed",
    "P2PError",
    "P2PRequestFailed",
    "P2PStream",
    "P2PStreamError",
    "P2PTimeout",
    "P2PUnavailable",
    "VoiceUpload",
]

log = structlog.get_logger("ivcloud.client.p2p")

H264_PROFILE_LEVEL_ID = "42e01f"
Path = Literal["direct", "turn"]


class P2PUnavailable(P2PError):
    """aiortc is not installed (``pip install 'ivcloud[webrtc]'``)."""


class NegotiationFailed(P2PError):
    """The answer cannot be applied (not SDP, wrong state, no common codec)."""


def _require_aiortc() -> None:
    if not aiortc_available():
        raise P2PUnavailable(INSTALL_HINT)


def _video_preferences() -> list[RTCRtpCodecCapability]:
    from aiortc import RTCRtpReceiver

    capabilities = RTCRtpReceiver.getCapabilities("video")
    codecs = capabilities.codecs if capabilities is not None else []
    h264 = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/h264"
        and str(c.parameters.get("profile-level-id", "")).lower() == H264_PROFILE_LEVEL_ID
        and str(c.parameters.get("packetization-mode", "0")) == "1"
    ]
    return h264 + [c for c in codecs if c.mimeType.lower() == "video/rtx"]


def _audio_preferences() -> list[RTCRtpCodecCapability]:
    from aiortc import RTCRtpReceiver

    capabilities = RTCRtpReceiver.getCapabilities("audio")
    codecs = capabilities.codecs if capabilities is not None else []
    return [c for c in codecs if c.name.lower() == "opus"]


class AppPeer:
    """The viewer side of one session with a camera.

    ``ice_servers`` are ``RTCIceServer`` dicts (what ivcloud's ICE server list gives);
    ``ice_transport_policy="relay"`` uses TURN only. ``request_timeout`` bounds every
    request's wait for the device's answer; ``stream_window`` is the default flow-control
    window of streams."""

    def __init__(
        self,
        ice_servers: Sequence[Mapping[str, Any]] = (),
        *,
        ice_transport_policy: Literal["all", "relay"] = "all",
        video: bool = True,
        audio: bool = True,
        request_timeout: float = 10.0,
        stream_window: int = DEFAULT_WINDOW,
    ) -> None:
        _require_aiortc()
        if not MIN_WINDOW <= stream_window <= MAX_WINDOW:
            raise ValueError(f"stream_window must be {MIN_WINDOW}..{MAX_WINDOW}")
        self._pc = new_peer_connection(ice_servers, ice_transport_policy)
        self.request_timeout = request_timeout
        self.stream_window = stream_window
        self._video: RTCRtpTransceiver | None = None
        self._audio: RTCRtpTransceiver | None = None
        if video:
            self._video = self._pc.addTransceiver("video", direction="recvonly")
            self._video.setCodecPreferences(_video_preferences())
        if audio:
            self._audio = self._pc.addTransceiver("audio", direction="recvonly")
            self._audio.setCodecPreferences(_audio_preferences())
        self._channel = self._pc.createDataChannel(CHANNEL_LABEL, ordered=True)
        self._client = ChannelClient(self._channel)
        self._open = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._closer: asyncio.Future[None] | None = None
        self._channel.on("open", self._open.set)
        self._channel.on("close", self._on_channel_close)
        self._pc.on("connectionstatechange", self._on_state)

    # -- signalling -------------------------------------------------------------------------

    async def offer(self) -> str:
        """The offer SDP, with every local candidate gathered."""
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return str(self._pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        """Apply the device's answer."""
        from aiortc import RTCSessionDescription
        from aiortc.exceptions import InternalError, InvalidStateError, OperationError

        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        except OperationError as exc:
            raise NegotiationFailed(f"no common codec: {exc}") from None
        except (
            InternalError,
            InvalidStateError,
            ValueError,
            KeyError,
            IndexError,
            AssertionError,
            TypeError,
            AttributeError,
        ) as exc:
            raise NegotiationFailed(f"the answer cannot be applied: {exc!r}") from None

    async def add_ice_candidate(
        self,
        candidate: str | None,
        *,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = 0,
    ) -> None:
        """A trickled device candidate (``candidate:…`` string); ``None`` = end of them."""
        try:
            await add_remote_candidate(self._pc, candidate, sdp_mid, sdp_mline_index)
        except ValueError as exc:
            raise NegotiationFailed(str(exc)) from exc

    async def wait_connected(self, timeout_s: float = 15.0) -> None:
        """Until the data channel is open (ICE, DTLS and SCTP are up)."""
        if self._closed.is_set():
            raise P2PClosed("the P2P session is closed")
        opened = asyncio.ensure_future(self._open.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait(
                {opened, closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            closed.cancel()
        if self._closed.is_set():
            raise P2PClosed("the P2P session closed before it connected")
        if not self._open.is_set():
            raise P2PTimeout(f"not connected within {timeout_s} s")

    # -- media ------------------------------------------------------------------------------

    @property
    def video_track(self) -> MediaStreamTrack | None:
        """The camera's video, decoded by aiortc (``recv()`` → ``av.VideoFrame``); set
        once the answer is applied."""
        return self._video.receiver.track if self._video is not None else None

    @property
    def audio_track(self) -> MediaStreamTrack | None:
        return self._audio.receiver.track if self._audio is not None else None

    async def request_keyframe(self) -> bool:
        """Send a PLI for the camera's video (after a decoding glitch, or to start a
        recording on a keyframe). ``False`` when no video has arrived yet to refer to."""
        if self._video is None:
            return False
        receiver = self._video.receiver
        sources = receiver.getSynchronizationSources()
        send_pli = getattr(receiver, "_send_rtcp_pli", None)  # aiortc 1.16, no public API
        if not sources or send_pli is None:
            return False
        await send_pli(sources[0].source)
        return True

    # -- the data channel -------------------------------------------------------------------

    async def request(self, text: str, *, timeout_s: float | None = None) -> str:
        """Send an XP2P command; its reply text. :class:`P2PTimeout`,
        :class:`P2PRequestFailed` or :class:`P2PClosed` otherwise."""
        await self._ready()
        return await self._client.request(text, timeout_s or self.request_timeout)

    async def open_stream(
        self, text: str, *, window: int | None = None, timeout_s: float | None = None
    ) -> P2PStream:
        """Open a stream (e.g. ``ipc.flv?action=live&channel=0&quality=high``): an async
        iterator of its bytes; ``aclose()`` cancels it on the device."""
        await self._ready()
        window = window or self.stream_window
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise ValueError(f"window must be {MIN_WINDOW}..{MAX_WINDOW}")
        return await self._client.open_stream(
            text, window=window, timeout_s=timeout_s or self.request_timeout
        )

    async def start_voice(self, text: str, *, timeout_s: float | None = None) -> VoiceUpload:
        """Start a talk upload (e.g. ``voice?channel=0&calltype=audio``); write audio frames
        to the returned upload, ``aclose()`` it when done."""
        await self._ready()
        return await self._client.start_voice(text, timeout_s or self.request_timeout)

    async def _ready(self) -> None:
        if not self._open.is_set():
            await self.wait_connected(self.request_timeout)

    # -- state ------------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    def selected_path(self) -> Path | None:
        """``"turn"`` if the nominated ICE pair uses a relay candidate on either side,
        ``"direct"`` otherwise (host or server-reflexive: hole-punched); ``None`` before
        ICE has nominated a pair."""
        sctp = self._pc.sctp
        if sctp is None:
            return None
        connection = getattr(sctp.transport.transport, "_connection", None)  # aioice 0.13
        nominated = getattr(connection, "_nominated", None)
        if not nominated:
            return None
        pair = next(iter(nominated.values()))
        types = {pair.local_candidate.type, pair.remote_candidate.type}
        return "turn" if "relay" in types else "direct"

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _on_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            self._close_soon()

    def _on_channel_close(self) -> None:
        self._client.close()
        self._close_soon()

    def _close_soon(self) -> None:
        if self._closer is None and not self._closing:
            self._closer = asyncio.ensure_future(self.close())

    async def close(self) -> None:
        """End the session; open requests fail with :class:`P2PClosed`. Idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._client.close()
        try:
            with contextlib.suppress(Exception):
                await self._pc.close()
        finally:
            self._closed.set()
            log.info("p2p.app_closed")

"""aiortc media tracks that send the camera's encoded frames as they are.

aiortc's ``RTCRtpSender`` accepts either raw frames (which it encodes with its own libx264 /
libopus) or ``av.Packet`` s, which it only packetizes (``H264Encoder.pack`` splits the Annex B
access unit at its start codes into STAP-A / FU-A payloads; ``OpusEncoder.pack`` sends the
packet as one payload). The tracks here return packets, so the device's H.264 reaches the
viewer bit for bit and no second encoder runs on the device — the point of a camera SDK.

Two things aiortc does not do for pre-encoded media, done here:

- **Keyframes on request.** On PLI/FIR aiortc only sets a flag its own encoder reads, which
  packets never pass through. :func:`on_keyframe_request` wraps the sender's (private, aiortc
  1.16) ``_send_keyframe`` so the request reaches the camera's encoder instead.
- **Codec choice.** The camera sends constrained baseline (profile-level-id ``42e01f``) with
  packetization-mode 1, which is what :func:`video_codec_preferences` restricts the answer
  to; audio is Opus only (:func:`audio_codec_preferences`): WebRTC has no AAC.

This module imports aiortc; :mod:`ivcloud.device.av.webrtc` imports it lazily, so a device
installed without the ``webrtc`` extra still works for everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import structlog
from aiortc import MediaStreamTrack, RTCRtpCodecCapability, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from ivcloud.device.av.audio import AudioCodec, EncodedAudio
from ivcloud.device.av.broadcast import FeedError, FrameStream, MediaFeed
from ivcloud.device.av.video import EncodedVideo

__all__ = [
    "H264_PROFILE_LEVEL_ID",
    "H264PassthroughTrack",
    "OpusPassthroughTrack",
    "audio_codec_preferences",
    "on_keyframe_request",
    "video_codec_preferences",
]

log = structlog.get_logger("ivcloud.device.p2p")

H264_PROFILE_LEVEL_ID = "42e01f"  # constrained baseline, level 3.1: what the camera encodes
VIDEO_TIME_BASE = Fraction(1, 90_000)
_OPUS: tuple[AudioCodec, ...] = ("opus",)
OPUS_TIME_BASE = Fraction(1, 48_000)  # RTP's Opus clock is 48 kHz whatever the input rate


def video_codec_preferences() -> list[RTCRtpCodecCapability]:
    """H.264 constrained baseline, packetization-mode 1, and RTX for retransmissions."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/h264"
        and str(c.parameters.get("profile-level-id", "")).lower() == H264_PROFILE_LEVEL_ID
        and str(c.parameters.get("packetization-mode", "0")) == "1"
    ]
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx


def audio_codec_preferences() -> list[RTCRtpCodecCapability]:
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name.lower() == "opus"]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> bool:
    """Call ``callback`` whenever the viewer sends PLI or FIR for this sender. Returns
    ``False`` (and logs) if this aiortc has no hook to wrap, i.e. keyframes then come only
    at GOP boundaries."""
    original = getattr(sender, "_send_keyframe", None)
    if not callable(original):
        log.warning("p2p.no_keyframe_hook", effect="keyframes at GOP boundaries only")
        return False

    def send_keyframe() -> None:
        original()
        callback()

    setattr(sender, "_send_keyframe", send_keyframe)  # noqa: B010 (a method on purpose)
    return True


class _FeedTrack(MediaStreamTrack):
    """Subscribes to the feed at the first ``recv()`` — when the RTP sender starts, i.e.
    the connection is up — so the viewer's first frame is a fresh keyframe, not one queued
    while ICE and DTLS were still connecting."""

    def __init__(self, feed: MediaFeed) -> None:
        super().__init__()
        self._feed = feed
        self._frames: FrameStream | None = None
        self.packets_sent = 0

    def _subscribe(self) -> FrameStream:
        raise NotImplementedError

    async def _next(self) -> EncodedVideo | EncodedAudio:
        if self.readyState != "live":
            raise MediaStreamError
        if self._frames is None:
            try:
                self._frames = self._subscribe()
            except FeedError:
                self.stop()
                raise MediaStreamError from None
        try:
            frame = await self._frames.__anext__()
        except (StopAsyncIteration, FeedError):
            self.stop()
            raise MediaStreamError from None
        self.packets_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        if self._frames is not None:
            self._frames.close()


class H264PassthroughTrack(_FeedTrack):
    """The camera's H.264 access units as ``av.Packet`` s stamped in the 90 kHz RTP clock."""

    kind = "video"

    def __init__(self, feed: MediaFeed) -> None:
        super().__init__(feed)
        self.keyframes_sent = 0

    def _subscribe(self) -> FrameStream:
        return self._feed.subscribe(video=True, audio=())

    async def recv(self) -> av.Packet[Any]:
        frame = await self._next()
        assert isinstance(frame, EncodedVideo)
        if frame.keyframe:
            self.keyframes_sent += 1
        packet = av.Packet(frame.data)
        packet.pts = frame.pts_ms * 90
        packet.time_base = VIDEO_TIME_BASE
        return packet


class OpusPassthroughTrack(_FeedTrack):
    """The camera's Opus packets, stamped in RTP's 48 kHz Opus clock."""

    kind = "audio"

    def _subscribe(self) -> FrameStream:
        return self._feed.subscribe(video=False, audio=_OPUS)

    async def recv(self) -> av.Packet[Any]:
        frame = await self._next()
        assert isinstance(frame, EncodedAudio)
        packet = av.Packet(frame.data)
        packet.pts = frame.pts_ms * 48
        packet.time_base = OPUS_TIME_BASE
        return packet

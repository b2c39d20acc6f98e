"""``LiveSource``: a simulated camera's live stream, paced by the wall clock.

Frames come out when a real camera would have them: video frame *n* at ``t0 + n/fps``,
an audio frame once its last sample has been "recorded". Encoding runs in a worker thread
(``asyncio.to_thread``) so a device's MQTT loop keeps answering while x264 works, and the
next frame is scheduled from the clock, never from the previous frame's end, so encode
time never accumulates as drift. A source that falls behind (a starved event loop, an
overloaded box) drops video frames and skips audio like a camera whose buffer overran,
keeping the stream live rather than ever later.

The clock and the sleep are injectable: tests run a fake clock and get exact schedules
without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Self

from ivcloud.closing import ClosesOnExit
from ivcloud.device.av.audio import AudioCodec, AudioEncoder, AudioProfile, EncodedAudio
from ivcloud.device.av.video import EncodedVideo, VideoEncoder, VideoProfile

__all__ = ["DEFAULT_AUDIO", "DEFAULT_VIDEO", "Clock", "LiveSource", "MediaFrame", "Sleep"]

MediaFrame = EncodedVideo | EncodedAudio
Clock = Callable[[], float]  # seconds since the epoch
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_VIDEO = VideoProfile()
DEFAULT_AUDIO: tuple[AudioProfile, ...] = (AudioProfile("aac"),)


class _AudioTrack:
    def __init__(self, profile: AudioProfile) -> None:
        self.encoder = AudioEncoder(profile)
        self.period = profile.frame_samples / profile.sample_rate
        self.k = 0  # next frame to capture

    def due(self) -> float:
        """Seconds after t0 when frame ``k`` is complete."""
        return (self.k + 1) * self.period


class LiveSource(ClosesOnExit):
    """Async iterator of :class:`EncodedVideo` and :class:`EncodedAudio` in capture order
    (video first on ties). One consumer at a time; :meth:`force_keyframe` and
    :meth:`aclose` may be called from any task.

    ``max_audio_lag_s`` bounds how far audio may fall behind before frames are skipped;
    video never queues more than the frame that is due now."""

    def __init__(
        self,
        video: VideoProfile | None = DEFAULT_VIDEO,
        audio: Sequence[AudioProfile] = DEFAULT_AUDIO,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        max_audio_lag_s: float = 0.5,
    ) -> None:
        if video is None and not audio:
            raise ValueError("a source needs video or audio")
        codecs = [a.codec for a in audio]
        if len(set(codecs)) != len(codecs):
            raise ValueError("at most one audio stream per codec")
        self.video_profile = video
        self.video = VideoEncoder(video) if video is not None else None
        self._audio = [_AudioTrack(a) for a in audio]
        self._clock, self._sleep = clock, sleep
        self._max_audio_lag = max_audio_lag_s
        self._t0: float | None = None
        self._n = 0  # next video frame
        self._ready: deque[MediaFrame] = deque()
        self._closed = False
        self.dropped_video = 0
        self.skipped_audio = 0

    # -- what muxers need up front --------------------------------------------------------

    def audio_config(self, codec: AudioCodec) -> bytes:
        """AAC: the 2-byte AudioSpecificConfig; Opus: the OpusHead."""
        for track in self._audio:
            if track.encoder.profile.codec == codec:
                return track.encoder.config
        raise KeyError(codec)

    @property
    def audio_profiles(self) -> list[AudioProfile]:
        return [t.encoder.profile for t in self._audio]

    # -- control --------------------------------------------------------------------------

    def force_keyframe(self) -> None:
        """The next video frame is an IDR with SPS/PPS (a viewer joined)."""
        if self.video is not None:
            self.video.force_keyframe()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Stop; iteration ends. Waits (off the loop) for an encode in flight to finish
        before the codecs are released."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self.video is not None:
            self.video.close()
        for track in self._audio:
            track.encoder.close()

    # -- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> MediaFrame:
        while not self._ready:
            if self._closed:
                raise StopAsyncIteration
            if self._t0 is None:
                self._t0 = self._clock()
            t0 = self._t0
            track, due = self._next_track()
            wait = t0 + due - self._clock()
            if wait > 0:
                await self._sleep(wait)
                if self._closed:
                    raise StopAsyncIteration
            try:
                produced = await self._capture(track, t0)
            except RuntimeError:
                if self._closed:  # aclose() released the codecs under our feet
                    raise StopAsyncIteration from None
                raise
            if self._closed:
                raise StopAsyncIteration
            self._ready.extend(produced)
        return self._ready.popleft()

    def _next_track(self) -> tuple[_AudioTrack | None, float]:
        """The stream due soonest (``None`` for video) and when, in seconds after t0."""
        best: _AudioTrack | None = None
        best_due = math.inf
        if self.video_profile is not None:
            best_due = self._n / self.video_profile.fps
        for track in self._audio:
            if track.due() < best_due:
                best, best_due = track, track.due()
        return best, best_due

    async def _capture(self, track: _AudioTrack | None, t0: float) -> list[MediaFrame]:
        now = self._clock()
        if track is None:
            assert self.video is not None and self.video_profile is not None
            fps = self.video_profile.fps
            latest = math.floor((now - t0) * fps + 1e-9)
            if latest > self._n:  # a whole frame late or more: show what is due now
                self.dropped_video += latest - self._n
                self._n = latest
            pts_ms = round(self._n * 1000 / fps)
            self._n += 1
            encoded = await asyncio.to_thread(self.video.encode, round(now * 1000), pts_ms)
            return [encoded]
        behind = math.floor((now - t0 - self._max_audio_lag) / track.period) - track.k
        if behind > 0:
            track.encoder.skip(behind)
            track.k += behind
            self.skipped_audio += behind
        start_ms = (t0 + track.k * track.period) * 1000
        track.k += 1
        return list(await asyncio.to_thread(track.encoder.encode, start_ms))

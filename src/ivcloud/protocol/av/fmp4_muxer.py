"""FLV-style samples (AVCC video, raw AAC, millisecond timestamps) → fMP4 for MSE.

This is the hub's one remux per stream for browsers. Sample durations come from the next
sample's timestamp: each track holds back its latest sample until the next one arrives (or
:meth:`Fmp4Muxer.flush`). That costs one frame interval of latency (40 ms at 25 fps) and buys
exact durations, so consecutive fragments tile the timeline with no gap or overlap. That
matters for MSE: Chromium treats a decode-time jump of more than twice the previous frame's
duration as a discontinuity and drops everything up to the next keyframe, which a guessed
("nominal") duration followed by a late frame would trigger. ``flush`` is the one place a
nominal duration is used: the last measured one, or 40 ms / 1024 samples if none was.

Nothing is emitted before the first video keyframe (when there is a video track), so the
first media segment a browser sees is decodable. AAC timestamps that are within 2 ms of the
previous frame's end are snapped to it: millisecond FLV timestamps would otherwise make
1024-sample frames jitter by ±44 samples, each jitter a tiny audio gap or overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivcloud.protocol.av.aac import SAMPLES_PER_FRAME
from ivcloud.protocol.av.bits import BytesLike
from ivcloud.protocol.av.fmp4 import (
    VIDEO_TIMESCALE,
    AudioTrack,
    Sample,
    TrackRun,
    VideoTrack,
    init_segment,
    media_segment,
)
from ivcloud.protocol.errors import MediaFormatError

FragmentPolicy = Literal["frame", "gop"]
NOMINAL_FRAME_MS = 40


@dataclass(slots=True)
class _Held:
    data: BytesLike
    time: int  # decode time in the track timescale
    composition_offset: int
    sync: bool


class _Track:
    """One track's timeline: the held-back sample and the samples ready to emit."""

    __slots__ = ("held", "last_duration", "ready", "ready_start", "timescale", "track_id", "video")

    def __init__(self, track_id: int, timescale: int, nominal_duration: int, video: bool) -> None:
        self.track_id = track_id
        self.timescale = timescale
        self.video = video
        self.held: _Held | None = None
        self.ready: list[Sample] = []
        self.ready_start = 0
        self.last_duration = nominal_duration

    def push(self, sample: _Held) -> None:
        """Hold ``sample``; the previously held one becomes ready with its exact duration."""
        if self.held is not None:
            self._release(sample.time - self.held.time)
        self.held = sample

    def flush(self) -> None:
        if self.held is not None:
            self._release(self.last_duration)
            self.held = None

    def _release(self, duration: int) -> None:
        held = self.held
        assert held is not None
        if duration <= 0:
            kind = "video" if self.video else "audio"
            raise MediaFormatError(f"{kind} decode timestamps must increase")
        if not self.ready:
            self.ready_start = held.time
        self.ready.append(Sample(held.data, duration, held.sync, held.composition_offset))
        self.last_duration = duration

    def drain(self) -> TrackRun | None:
        if not self.ready:
            return None
        run = TrackRun(self.track_id, self.ready_start, self.ready, self.video)
        self.ready = []
        return run


class Fmp4Muxer:
    """Build with the stream's avcC and/or AudioSpecificConfig (from the FLV sequence
    headers); a change of either needs a new muxer and init segment.

    ``fragment="frame"`` (default, live): one fragment per video frame, audio riding along
    with the next one (per audio frame when there is no video). ``fragment="gop"``: one
    fragment per GOP, emitted when the next keyframe arrives (recordings, HLS-like use).
    The ``add_*`` methods return the media segment they complete, or ``b""``.
    """

    def __init__(
        self,
        *,
        avc_config: BytesLike | None = None,
        audio_config: BytesLike | None = None,
        fragment: FragmentPolicy = "frame",
    ) -> None:
        if fragment not in ("frame", "gop"):
            raise ValueError(f"unknown fragment policy {fragment!r}")
        self.video = VideoTrack.from_avc_config(avc_config, 1) if avc_config else None
        audio_id = 2 if self.video else 1
        self.audio = AudioTrack.from_asc(audio_config, audio_id) if audio_config else None
        if self.video is None and self.audio is None:
            raise MediaFormatError("Fmp4Muxer needs a video or an audio configuration")
        self._policy = fragment
        self._sequence = 0
        self._started = self.video is None
        self._v = _Track(1, VIDEO_TIMESCALE, NOMINAL_FRAME_MS * 90, True)
        rate = self.audio.sample_rate if self.audio else 1
        self._a = _Track(audio_id, rate, SAMPLES_PER_FRAME, False)

    @property
    def codecs(self) -> str:
        return ",".join(t.codec_string for t in (self.video, self.audio) if t is not None)

    @property
    def mime_type(self) -> str:
        """The string for ``MediaSource.addSourceBuffer``."""
        kind = "video" if self.video else "audio"
        return f'{kind}/mp4; codecs="{self.codecs}"'

    def init_segment(self) -> bytes:
        return init_segment(self.video, self.audio)

    def add_video(self, avcc_sample: BytesLike, dts_ms: int, pts_ms: int, keyframe: bool) -> bytes:
        if self.video is None:
            raise MediaFormatError("this muxer has no video track")
        _check_time(dts_ms)
        if not self._started:
            if not keyframe:
                return b""
            self._started = True
        offset = (pts_ms - dts_ms) * 90
        self._v.push(_Held(avcc_sample, dts_ms * 90, offset, keyframe))
        if self._policy == "frame" or keyframe:
            return self._emit()
        return b""

    def add_audio(self, raw_aac: BytesLike, dts_ms: int) -> bytes:
        if self.audio is None:
            raise MediaFormatError("this muxer has no audio track")
        _check_time(dts_ms)
        if not self._started:
            return b""
        self._a.push(_Held(raw_aac, self._audio_time(dts_ms), 0, True))
        return self._emit() if self.video is None else b""

    def _audio_time(self, dts_ms: int) -> int:
        rate = self._a.timescale
        time = dts_ms * rate // 1000
        held = self._a.held
        if held is not None:
            expected = held.time + SAMPLES_PER_FRAME
            if abs(time - expected) <= rate * 2 // 1000:
                return expected
        return time

    def flush(self) -> bytes:
        """Emit everything held, the last sample of each track with a nominal duration."""
        self._v.flush()
        self._a.flush()
        return self._emit()

    def _emit(self) -> bytes:
        runs = [run for run in (self._v.drain(), self._a.drain()) if run is not None]
        if not runs:
            return b""
        self._sequence += 1
        return media_segment(self._sequence, runs)


def _check_time(dts_ms: int) -> None:
    if dts_ms < 0:
        raise MediaFormatError(f"negative decode timestamp {dts_ms} ms")

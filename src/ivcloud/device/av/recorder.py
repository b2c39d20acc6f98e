"""Records a camera's encoded frames onto its :class:`~ivcloud.device.av.sdcard.SdCard`.

Segments start at a keyframe (so each file plays on its own) and are cut at the first
keyframe after ``segment_s`` (default 60 s); a cut gives the old segment the new one's start
as its end, so back-to-back segments touch and ``get_record_index`` merges them. A jump in
the capture clock (frames stopped, or the clock was set) closes the segment; recording
resumes at the next keyframe, which the recorder asks its source for.

Writes are small appends in the event loop (a few KB per frame at camera bitrates); the file
buffer is flushed at every keyframe, so a reader of the growing segment, and crash recovery,
always find whole GOPs, and fsynced once when the segment closes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable
from typing import BinaryIO

from ivcloud.device.av.audio import EncodedAudio
from ivcloud.device.av.sdcard import SdCard, Segment
from ivcloud.device.av.video import EncodedVideo
from ivcloud.protocol.av.flv import FlvMuxer

__all__ = ["SdCardRecorder"]

MediaFrame = EncodedVideo | EncodedAudio


class SdCardRecorder:
    """Frames in (from a :class:`~ivcloud.device.av.source.LiveSource` or a fan-out
    subscription), segment files out. ``audio_config`` is the AAC AudioSpecificConfig
    (``None``: video only; Opus frames are always skipped, FLV cannot carry them).
    ``record_type`` is the product-defined type reported by ``get_record_index`` (e.g. 0
    continuous, 1 event); it may be changed between segments."""

    def __init__(
        self,
        card: SdCard,
        *,
        audio_config: bytes | None = None,
        segment_s: float = 60.0,
        record_type: int = 0,
        max_gap_ms: int = 3000,
        request_keyframe: Callable[[], None] | None = None,
    ) -> None:
        if segment_s <= 0:
            raise ValueError("segment_s must be positive")
        self.card = card
        self.audio_config = audio_config
        self.segment_ms = round(segment_s * 1000)
        self.record_type = record_type
        self.max_gap_ms = max_gap_ms
        self._request_keyframe = request_keyframe
        self._file: BinaryIO | None = None
        self._muxer: FlvMuxer | None = None
        self._start = 0  # start_ms of the open segment
        self._last_video = 0
        self._last = 0
        self._size = 0
        self._asked = False
        self.finished: list[Segment] = []

    @property
    def recording(self) -> bool:
        return self._file is not None

    async def record(self, frames: AsyncIterable[MediaFrame]) -> None:
        """Record until the frames end (or the task is cancelled); the open segment is
        finished either way."""
        try:
            async for frame in frames:
                self.write(frame)
        finally:
            self.close()

    def write(self, frame: MediaFrame) -> None:
        if isinstance(frame, EncodedVideo):
            self._write_video(frame)
        elif self._file is not None and frame.codec == "aac" and self.audio_config:
            ts = frame.capture_ms - self._start
            if ts >= 0:  # audio captured before the segment's first picture is left out
                assert self._muxer is not None
                self._append(self._muxer.add_audio(frame.data, ts))
                self._last = max(self._last, frame.capture_ms)

    def _write_video(self, frame: EncodedVideo) -> None:
        t = frame.capture_ms
        if self._file is not None and not 0 <= t - self._last_video <= self.max_gap_ms:
            self._close_segment(self._last)  # capture clock jumped: no fake continuity
        if self._file is not None and frame.keyframe and t - self._start >= self.segment_ms:
            self._close_segment(t)
        if self._file is None:
            if not frame.keyframe:
                if not self._asked and self._request_keyframe is not None:
                    self._request_keyframe()
                    self._asked = True
                return
            self._open_segment(t)
        assert self._muxer is not None
        self._append(self._muxer.add_video(frame.data, t - self._start))
        self._last_video = t
        self._last = max(self._last, t)
        if frame.keyframe:
            self._flush()

    def _open_segment(self, t: int) -> None:
        self._start, path = self.card.begin_segment(t, self.record_type)
        self._file = path.open("wb")
        self._muxer = FlvMuxer(
            has_video=True, has_audio=self.audio_config is not None, audio_config=self.audio_config
        )
        self._size = 0
        self._last = self._last_video = t
        self._asked = False
        self._append(self._muxer.header())

    def _append(self, data: bytes) -> None:
        if data and self._file is not None:
            self._file.write(data)
            self._size += len(data)

    def _flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            self.card.grow_segment(self._start, self._last, self._size)

    def _close_segment(self, end_ms: int) -> None:
        f, self._file, self._muxer = self._file, None, None
        if f is None:
            return
        f.flush()
        os.fsync(f.fileno())
        f.close()
        done = self.card.finish_segment(self._start, max(end_ms, self._start), self._size)
        if done is not None:
            self.finished.append(done)

    def close(self) -> Segment | None:
        """Finish the open segment (if any) and return it."""
        before = len(self.finished)
        self._close_segment(self._last)
        return self.finished[-1] if len(self.finished) > before else None

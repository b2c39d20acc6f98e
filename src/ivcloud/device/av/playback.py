"""SD-card playback: FLV of the recordings between two times, with the pause / resume /
seek / progress state the XP2P ``playback_*`` commands act on (spec §7.5, §7.7).

The stream is one FLV file as far as the player can tell: a header, the sequence headers,
then the recorded tags with timestamps rebased to start at 0 (``rewrite_timestamp``: only
the 4 timestamp bytes change, nothing is re-muxed). It starts at the keyframe at or before
the requested time, so the first picture decodes. Output timestamps never go back: after a
seek, or across a gap between recordings, the timeline continues from where it was (40 ms
later) while ``progress`` follows the recorded wall-clock time — so flv.js keeps playing
instead of waiting out a gap or discarding "old" frames.

Pacing: by default tags leave at the rate they were recorded (clock and sleep injectable);
``pace=False`` sends as fast as the consumer reads. Commands take effect at the next tag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Literal

import structlog

from ivcloud.protocol.av.flv import TAG_AUDIO, TAG_VIDEO, flv_header, rewrite_timestamp
from ivcloud.protocol.av.flv_reader import FlvReader, FlvTag
from ivcloud.protocol.errors import MediaFormatError

if TYPE_CHECKING:
    from ivcloud.device.av.sdcard import SdCard, Segment
    from ivcloud.device.av.source import Clock, Sleep

__all__ = ["PlaybackSession", "PlaybackState"]

log = structlog.get_logger("ivcloud.device.playback")

PlaybackState = Literal["playing", "paused", "ended"]
RESTART_STEP_MS = 40  # output-timeline step after a seek or a skipped gap
GAP_MS = 2000  # a jump in recorded time larger than this is skipped, not waited out
READ_CHUNK = 256 * 1024
_Item = tuple[int, FlvTag]  # (recorded wall-clock ms, tag)


class PlaybackSession:
    """Async iterator of FLV bytes for [``start_ms``, ``end_ms``] of a card. One consumer;
    :meth:`pause`, :meth:`resume`, :meth:`seek` and :meth:`aclose` may be called from any
    task. ``parked`` is true while the consumer is held by a pause."""

    def __init__(
        self,
        card: SdCard,
        start_ms: int,
        end_ms: int,
        *,
        kind: int | None = None,
        pace: bool = True,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if end_ms < start_ms:
            raise ValueError("end_ms before start_ms")
        self.card = card
        self.start_ms, self.end_ms, self.kind, self.pace = start_ms, end_ms, kind, pace
        self._clock = clock or time.time
        self._sleep = sleep or asyncio.sleep
        self._state: PlaybackState = "playing"
        self._resume = asyncio.Event()
        self._resume.set()
        self._seek_to: int | None = None
        self._position: int | None = None
        self._running = False
        self.parked = False
        self.bytes_sent = 0
        self._gen = self._run()

    # -- commands ----------------------------------------------------------------------------

    @property
    def state(self) -> PlaybackState:
        return self._state

    @property
    def progress_ms(self) -> int:
        """Recorded time of the last picture sent, in ms after ``start_ms`` (0 before any)."""
        return 0 if self._position is None else max(0, self._position - self.start_ms)

    def pause(self) -> bool:
        if self._state == "ended":
            return False
        self._state = "paused"
        self._resume.clear()
        return True

    def resume(self) -> bool:
        if self._state == "ended":
            return False
        self._state = "playing"
        self._resume.set()
        return True

    def seek(self, *, time_ms: int | None = None, progress_ms: int | None = None) -> bool:
        """Continue from a recorded time, or from ``progress_ms`` after ``start_ms``; clamped
        to the session's range. A paused session stays paused."""
        if self._state == "ended" or (time_ms is None) == (progress_ms is None):
            return False
        target = time_ms if time_ms is not None else self.start_ms + (progress_ms or 0)
        self._seek_to = min(max(target, self.start_ms), self.end_ms)
        return True

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> PlaybackSession:
        return self

    async def __anext__(self) -> bytes:
        if self._state == "ended" and not self._running:
            await self._gen.aclose()
            raise StopAsyncIteration
        self._running = True
        try:
            data = await self._gen.__anext__()
        except StopAsyncIteration:
            self._state = "ended"
            raise
        finally:
            self._running = False
        self.bytes_sent += len(data)
        return data

    async def aclose(self) -> None:
        """End the session; a consumer parked by a pause is released (its iteration ends)."""
        self._state = "ended"
        self._resume.set()
        if not self._running:
            await self._gen.aclose()

    async def _run(self) -> AsyncGenerator[bytes, None]:
        yield flv_header(has_audio=await self._has_audio(), has_video=True)
        out_last = -1
        target = self.start_ms
        while self._state != "ended":
            items = self._items_from(target)
            base_wall: int | None = None
            prev_wall = 0
            base_out = 0 if out_last < 0 else out_last + RESTART_STEP_MS
            anchor: tuple[float, int] | None = None
            reseek = False
            try:
                async for wall, tag in items:
                    if not self._resume.is_set():
                        self.parked = True
                        await self._resume.wait()
                        self.parked = False
                        anchor = None
                    if self.state == "ended":  # aclose() while parked
                        return
                    if self._seek_to is not None:
                        target, self._seek_to, reseek = self._seek_to, None, True
                        break
                    if base_wall is None or wall - prev_wall > GAP_MS:
                        if base_wall is not None:
                            base_out = out_last + RESTART_STEP_MS
                        base_wall, anchor = wall, None
                    prev_wall = max(prev_wall, wall)
                    out = max(0, base_out + wall - base_wall)
                    if self.pace:
                        if anchor is None:
                            anchor = (self._clock(), out)
                        wait = anchor[0] + (out - anchor[1]) / 1000 - self._clock()
                        if wait > 0:
                            await self._sleep(wait)
                    out_last = max(out_last, out)
                    if tag.tag_type == TAG_VIDEO and not tag.is_video_sequence_header:
                        self._position = wall  # progress follows the pictures
                    yield rewrite_timestamp(tag.data, out)
            finally:
                await items.aclose()
            if not reseek:
                break
        self._state = "ended"

    async def _has_audio(self) -> bool:
        found = self.card.overlapping(self.start_ms, self.end_ms, self.kind)
        if not found:
            return False
        try:
            head = await asyncio.to_thread(_read_head, found[0])
        except OSError:
            return True
        return len(head) > 4 and bool(head[4] & 0x04)

    async def _items_from(self, target: int) -> AsyncGenerator[_Item, None]:
        """Recorded tags from the keyframe at or before ``target`` to ``end_ms``, sequence
        headers first (and again whenever they change), across segments."""
        started = False
        gop: list[_Item] = []
        headers: dict[int, FlvTag] = {}
        sent: dict[int, bytes] = {}
        after: int | None = None
        while (seg := self._next_segment(after, target)) is not None:
            after = seg.start_ms
            async with aclosing(_read_segment(self.card, seg)) as tags:
                async for tag in tags:
                    wall = seg.start_ms + tag.timestamp
                    if tag.is_video_sequence_header or tag.is_audio_sequence_header:
                        headers[tag.tag_type] = tag
                        if started and sent.get(tag.tag_type) != bytes(tag.payload):
                            sent[tag.tag_type] = bytes(tag.payload)
                            yield wall, tag
                        continue
                    if tag.tag_type not in (TAG_VIDEO, TAG_AUDIO):
                        continue
                    if wall > self.end_ms:
                        return
                    if started:
                        yield wall, tag
                        continue
                    if tag.is_video_keyframe and wall <= target:
                        gop = [(wall, tag)]
                    elif not gop and not tag.is_video_keyframe:
                        pass  # before the first usable keyframe
                    elif wall <= target:
                        gop.append((wall, tag))
                    else:  # first tag past the target: start at the GOP (or this keyframe)
                        started = True
                        burst, gop = [*gop, (wall, tag)], []
                        for item in _fresh_headers(headers, sent, burst[0][0]) + burst:
                            yield item
            if not started and gop:  # the target lies past this segment's last tag
                started = True
                burst, gop = gop, []
                for item in _fresh_headers(headers, sent, burst[0][0]) + burst:
                    yield item

    def _next_segment(self, after: int | None, target: int) -> Segment | None:
        for seg in self.card.overlapping(target, self.end_ms, self.kind):
            if after is None or seg.start_ms > after:
                return seg
        return None


def _fresh_headers(headers: dict[int, FlvTag], sent: dict[int, bytes], wall: int) -> list[_Item]:
    out: list[_Item] = []
    for kind in (TAG_VIDEO, TAG_AUDIO):
        tag = headers.get(kind)
        if tag is not None and sent.get(kind) != bytes(tag.payload):
            sent[kind] = bytes(tag.payload)
            out.append((wall, tag))
    return out


def _read_head(seg: Segment) -> bytes:
    with seg.path.open("rb") as f:
        return f.read(13)


async def _read_segment(card: SdCard, seg: Segment) -> AsyncGenerator[FlvTag, None]:
    """The complete tags of a segment file; the growing segment is read up to what has been
    flushed. A file renamed since the index was read (the recorder finished it) is found
    again by its start time; one deleted by retention is skipped."""
    try:
        f = seg.path.open("rb")
    except FileNotFoundError:
        again = card.segment_at(seg.start_ms)
        if again is None or again.path == seg.path:
            return
        try:
            f = again.path.open("rb")
        except FileNotFoundError:
            return
    reader = FlvReader()
    try:
        while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
            try:
                tags = reader.feed(chunk)
            except MediaFormatError as exc:
                log.warning("playback_bad_segment", file=seg.name, error=str(exc))
                return
            for tag in tags:
                yield tag
    finally:
        f.close()

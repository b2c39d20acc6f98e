"""One viewer's bounded backlog: what the hub has handed it and its writer has not sent.

Pure and synchronous (no sockets, no asyncio): the stream offers every item to every viewer
without awaiting, and each viewer's writer pops at its own pace. Items are the stream's
own ``bytes`` objects (FLV tags, fMP4 fragments), never copies, so N viewers cost N
references, not N buffers.

The backlog is bounded in bytes. A viewer whose backlog would pass the limit is *lagging*:
its queued media is dropped and everything is skipped up to the next resume point (a video
keyframe), where it resumes, so its memory stays bounded whatever its connection does and
it never sees a frame it cannot decode. A viewer that has not started yet (joined before
any keyframe) waits the same way.

Each item is *urgent* (wake the writer now) or may *ride along* with the next urgent one.
The stream marks audio that arrives between video frames as riding along, so a writer that
keeps up sends one video frame and the audio before it in one socket write instead of one
write per tag (on loopback the per-write cost — the syscall and the writer's wake-up — is
what a viewer costs the hub). Writers drain everything queued at once (:meth:`Viewer.pop_all`).

Resuming needs the decoder configuration first. The viewer asks its :class:`PreludeSource`:
``initial=True`` while nothing at all has been delivered (FLV: file header, metadata and
sequence headers; fMP4: the init message and init segment), ``initial=False`` after a skip
(FLV: the sequence headers again; fMP4: the init again), since the configuration may have
been among the dropped items.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

#: An item handed to viewers: binary (FLV tag, fMP4 segment) or a text message (fMP4 init).
Item = bytes | str


class PreludeSource(Protocol):
    def prelude(self, *, initial: bool, resume_at: Item) -> Sequence[Item]:
        """Items that must precede ``resume_at`` for a decoder to start there."""
        ...


class Viewer:
    """``offer`` from the stream, ``pop``/``pop_all`` from the writer. ``wake`` (optional) is
    called when the writer has something new to do (an urgent item queued, or the viewer
    ended); it may be called again before the writer runs, so it must be idempotent."""

    __slots__ = (
        "end_code",
        "end_reason",
        "ended",
        "fresh",
        "lag_events",
        "limit",
        "needs_prelude",
        "queue",
        "queued_bytes",
        "skipped",
        "source",
        "taken_bytes",
        "waiting",
        "wake",
    )

    def __init__(
        self, source: PreludeSource, limit: int, wake: Callable[[], None] | None = None
    ) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.source = source
        self.limit = limit
        self.wake = wake
        self.queue: deque[Item] = deque()
        self.queued_bytes = 0
        #: Skipping until a resume point (not started yet, or lagging).
        self.waiting = True
        #: The prelude must be queued before the next resume point.
        self.needs_prelude = True
        #: Nothing popped yet: the next prelude must be the initial one.
        self.fresh = True
        self.ended = False
        self.end_code = 1000
        self.end_reason = ""
        #: Times the backlog overflowed; items skipped while waiting.
        self.lag_events = 0
        self.skipped = 0
        #: Bytes handed to the writer, ever.
        self.taken_bytes = 0

    def join(self, start: Sequence[Item]) -> None:
        """Start at once with ``start`` (prelude and cached GOP): the stream had a resume
        point. Without one, the viewer stays waiting for the next."""
        if start:
            self._push_all(start)
            self.waiting = self.needs_prelude = False

    def offer(self, item: Item, resume: bool, urgent: bool = True) -> None:
        """Queue ``item`` (``resume``: a point a decoder can start at) or skip it. A
        non-``urgent`` item does not wake the writer: it leaves with the next urgent one (or
        the end)."""
        if self.ended:
            return
        if self.waiting:
            if not resume:
                self.skipped += 1
                return
            self.waiting = False
            if self.needs_prelude:
                self.needs_prelude = False
                self._push_all(self.source.prelude(initial=self.fresh, resume_at=item))
            self._push(item, True)
            return
        if self.queue and self.queued_bytes + len(item) > self.limit:
            self._lag()
            if resume:
                self.offer(item, True)
            else:
                self.skipped += 1
            return
        self._push(item, urgent)

    def pop(self) -> Item | None:
        """The next item to write, or None when the backlog is empty."""
        if not self.queue:
            return None
        item = self.queue.popleft()
        self.queued_bytes -= len(item)
        self.taken_bytes += len(item)
        self.fresh = False
        return item

    def pop_all(self) -> list[Item]:
        """Everything queued, oldest first (empty when nothing is)."""
        if not self.queue:
            return []
        items = list(self.queue)
        self.queue.clear()
        self.taken_bytes += self.queued_bytes
        self.queued_bytes = 0
        self.fresh = False
        return items

    def restart(self) -> None:
        """Skip to the next resume point and send the prelude before it (the decoder
        configuration changed); what is queued is still sent."""
        self.waiting = self.needs_prelude = True

    def end(self, code: int, reason: str) -> None:
        """No more items will come; the writer sends what is queued, then closes."""
        if not self.ended:
            self.ended = True
            self.end_code, self.end_reason = code, reason
            if self.wake is not None:
                self.wake()

    def _lag(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0
        self.waiting = True
        self.needs_prelude = True
        self.lag_events += 1

    def _push(self, item: Item, urgent: bool) -> None:
        self.queue.append(item)
        self.queued_bytes += len(item)
        if urgent and self.wake is not None:
            self.wake()

    def _push_all(self, items: Sequence[Item]) -> None:
        queue = self.queue
        for item in items:
            queue.append(item)
            self.queued_bytes += len(item)
        if items and self.wake is not None:
            self.wake()


def coalesce(items: Sequence[Item]) -> list[Item]:
    """``items`` with each run of binary items joined into one: one socket write, or one
    WebSocket message, per run. A byte stream (HTTP-FLV, WS-FLV) may be cut anywhere between
    whole tags, and MSE takes several fMP4 fragments in one append. A text item stays apart
    and so does the binary item right after it: a text message announces the next message
    (the fMP4 ``init`` message precedes the init segment, which players expect on its own)."""
    if len(items) == 1:
        return [items[0]]
    out: list[Item] = []
    run: list[bytes] = []
    after_text = False
    for item in items:
        if isinstance(item, str):
            _flush(run, out)
            out.append(item)
            after_text = True
        elif after_text:
            out.append(item)
            after_text = False
        else:
            run.append(item)
    _flush(run, out)
    return out


def _flush(run: list[bytes], out: list[Item]) -> None:
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
        run.clear()

"""One live stream in the hub: the publisher's FLV in, the same bytes out to every viewer.

Per tag the stream reads only the FLV tag header (:class:`~ivcloud.protocol.av.FlvReader`)
and keeps what a joining viewer needs to start decoding at once:

* the FLV file header (rebuilt from the publisher's header flags), the latest script
  (``onMetaData``) tag and the latest video and audio sequence-header tags;
* the GOP cache: the tags since the last video keyframe, bounded in bytes — a GOP that grows
  past ``gop_limit`` is dropped (a viewer joining then waits for the next keyframe rather
  than the hub holding an unbounded GOP).

A new FLV viewer gets header + metadata + sequence headers + GOP cache in one go and then
the live tags, so its first picture is a keyframe, available immediately. Every viewer is
handed the very ``bytes`` object the reader produced (:mod:`ivcloud.media.fanout` bounds
each viewer's backlog). fMP4 viewers hang off the stream's one :class:`Fmp4Remux`.

Audio tags that arrive between video frames are offered as non-urgent: they leave with
the next video frame in one write (see :mod:`ivcloud.media.fanout`). At most
``AUDIO_RIDE_MAX`` audio tags wait in a row: the next one wakes the writer, so a stalled or
very slow video track holds audio back by at most that many audio frames (≈ 128 ms of AAC
at 16 kHz), and audio-only streams are never held. The rule goes by arrival order, not by
timestamps: encoders commonly interleave audio 100–200 ms behind the video it plays with.

Synchronous and socket-free, so the whole fan-out logic is unit-testable; the asyncio glue
is in :mod:`ivcloud.media.hub`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ivcloud.media.fanout import Item, Viewer
from ivcloud.media.remux import Fmp4Remux
from ivcloud.protocol.av import FlvReader, FlvTag, flv_header, rewrite_timestamp
from ivcloud.protocol.av.flv import TAG_AUDIO, TAG_SCRIPT
from ivcloud.protocol.stream_urls import StreamKey

_TS_OFFSET = 4  # where an FLV tag's timestamp starts
#: Audio tags that may wait in a row for the next video frame (see the module docstring).
AUDIO_RIDE_MAX = 2


class Stream:
    """The state of one :class:`StreamKey`. ``begin_publish`` per publisher connection,
    then ``feed`` its bytes; viewers come and go at any time."""

    def __init__(self, key: StreamKey, *, gop_limit: int, max_tag_size: int) -> None:
        self.key = key
        self.gop_limit = gop_limit
        self.max_tag_size = max_tag_size
        self._reader: FlvReader | None = None
        self.header: bytes | None = None
        self._has_audio_flag = False
        self.metadata: bytes | None = None
        self.video_config: FlvTag | None = None
        self.audio_config: FlvTag | None = None
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.flv_viewers: set[Viewer] = set()
        self.mp4_viewers: set[Viewer] = set()
        self.remux: Fmp4Remux | None = None
        self._riding = 0  # audio tags offered non-urgent since the last urgent tag
        # counters
        self.bytes_in = 0
        self.tags_in = 0
        self.gop_drops = 0

    # -- publisher --------------------------------------------------------------------------

    def begin_publish(self) -> None:
        """A (new) publisher connection: its bytes start with an FLV header."""
        self._reader = FlvReader(max_tag_size=self.max_tag_size)
        self._riding = 0

    def feed(self, data: bytes) -> None:
        """Publisher bytes, cut anywhere. Raises ``MediaFormatError`` on a broken stream
        (the hub then drops the publisher)."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("feed before begin_publish")
        self.bytes_in += len(data)
        tags = reader.feed(data)
        if self.header is None and reader.header is not None:
            flags = reader.header
            self.header = flv_header(has_audio=flags.has_audio, has_video=flags.has_video)
            self._has_audio_flag = flags.has_audio
            if self.remux is not None:  # started by a viewer that came before any byte
                self.remux.expect_audio(flags.has_audio)
        for tag in tags:
            self._on_tag(tag)

    def _on_tag(self, tag: FlvTag) -> None:
        self.tags_in += 1
        data = tag.data
        if tag.is_video_sequence_header:
            if self.video_config is not None and self.video_config.payload != tag.payload:
                self._drop_gop()  # coded with the old configuration
            self.video_config = tag
            if self.remux is not None:
                self._remux_config(self.remux, self.remux.set_video_config, tag)
            self._fan_flv(data, False)
            return
        if tag.is_audio_sequence_header:
            if self.audio_config is not None and self.audio_config.payload != tag.payload:
                self._drop_gop()
            self.audio_config = tag
            if self.remux is not None:
                self._remux_config(self.remux, self.remux.set_audio_config, tag)
            self._fan_flv(data, False)
            return
        if tag.tag_type == TAG_SCRIPT:
            self.metadata = data
            self._fan_flv(data, False)
            return
        resume = tag.is_video_keyframe or (self.video_config is None and tag.tag_type == TAG_AUDIO)
        self._cache(data, resume)
        urgent = (
            tag.tag_type != TAG_AUDIO
            or self.video_config is None
            or self._riding >= AUDIO_RIDE_MAX
        )
        self._riding = 0 if urgent else self._riding + 1
        self._fan_flv(data, resume, urgent)
        remux = self.remux
        if remux is not None and self.mp4_viewers:
            out = remux.feed(tag)
            if out is not None:
                self._fan_mp4(*out)
            elif remux.reset_pending:
                remux.reset_pending = False
                for viewer in self.mp4_viewers:
                    viewer.restart()

    def _cache(self, data: bytes, resume: bool) -> None:
        if resume:
            self.gop, self.gop_bytes = [data], len(data)
        elif self.gop:
            if self.gop_bytes + len(data) <= self.gop_limit:
                self.gop.append(data)
                self.gop_bytes += len(data)
            else:
                self._drop_gop()

    def _drop_gop(self) -> None:
        """Joiners wait for the next keyframe instead."""
        if self.gop:
            self.gop, self.gop_bytes = [], 0
            self.gop_drops += 1

    def _fan_flv(self, data: bytes, resume: bool, urgent: bool = True) -> None:
        for viewer in self.flv_viewers:
            viewer.offer(data, resume, urgent)

    def _fan_mp4(self, segment: bytes, resume: bool) -> None:
        for viewer in self.mp4_viewers:
            viewer.offer(segment, resume)

    # -- FLV viewers ------------------------------------------------------------------------

    def prelude(self, *, initial: bool, resume_at: Item) -> Sequence[Item]:
        """:class:`~ivcloud.media.fanout.PreludeSource` for FLV viewers. The sequence
        headers are re-stamped with the resume tag's timestamp (small per-viewer copies, only
        at a start or resume) so each viewer's timeline starts there and never goes back."""
        ts = _timestamp(resume_at)
        out: list[Item] = []
        if initial:
            if self.header is None:
                return ()
            out.append(self.header)
            if self.metadata is not None:
                out.append(rewrite_timestamp(self.metadata, ts))
        for config in (self.video_config, self.audio_config):
            if config is not None:
                out.append(rewrite_timestamp(config.data, ts))
        return out

    def add_flv_viewer(self, viewer: Viewer) -> None:
        if self.gop:
            viewer.join([*self.prelude(initial=True, resume_at=self.gop[0]), *self.gop])
        self.flv_viewers.add(viewer)

    # -- fMP4 viewers -----------------------------------------------------------------------

    def add_mp4_viewer(self, viewer: Viewer) -> None:
        """Starts the remux with the first fMP4 viewer, replaying the GOP cache through it so
        that viewer (like an FLV one) starts on the cached keyframe at once."""
        if self.remux is None:
            self.remux = Fmp4Remux(gop_limit=self.gop_limit, header_has_audio=self._has_audio_flag)
            if self.video_config is not None:
                self.remux.set_video_config(bytes(self.video_config.payload))
            if self.audio_config is not None:
                self.remux.set_audio_config(bytes(self.audio_config.payload))
            self._replay_gop()
        viewer.source = self.remux
        viewer.join(self.remux.start_items())
        self.mp4_viewers.add(viewer)

    def _remux_config(
        self, remux: Fmp4Remux, configure: Callable[[bytes], bool], tag: FlvTag
    ) -> None:
        """A sequence header for the remux. The first complete configuration starts it:
        the GOP cache (coded with that configuration) is replayed so waiting viewers start
        at once. A later change builds a new init: viewers restart at the next keyframe,
        with the new init before it."""
        was_ready = remux.ready
        if not configure(bytes(tag.payload)):
            return
        if not was_ready:
            self._replay_gop()
            return
        for viewer in self.mp4_viewers:
            viewer.restart()

    def _replay_gop(self) -> None:
        remux = self.remux
        if remux is None or not remux.ready:
            return
        reader = FlvReader(max_tag_size=self.max_tag_size, expect_header=False)
        for data in self.gop:
            for tag in reader.feed(data):
                out = remux.feed(tag)
                if out is not None:
                    self._fan_mp4(*out)

    # -- teardown ---------------------------------------------------------------------------

    def remove_viewer(self, viewer: Viewer) -> None:
        self.flv_viewers.discard(viewer)
        self.mp4_viewers.discard(viewer)
        if not self.mp4_viewers:
            self.remux = None  # restarted (from the GOP cache) by the next fMP4 viewer

    def end(self, code: int, reason: str) -> None:
        """End every viewer (they drain what is queued, then close with ``code``)."""
        for viewer in (*self.flv_viewers, *self.mp4_viewers):
            viewer.end(code, reason)

    @property
    def viewer_count(self) -> int:
        return len(self.flv_viewers) + len(self.mp4_viewers)

    def viewers(self) -> list[Viewer]:
        return [*self.flv_viewers, *self.mp4_viewers]


def _timestamp(tag: Item) -> int:
    if isinstance(tag, str) or len(tag) < _TS_OFFSET + 4:
        return 0
    b = tag
    return (b[_TS_OFFSET] << 16 | b[_TS_OFFSET + 1] << 8 | b[_TS_OFFSET + 2]) | (
        b[_TS_OFFSET + 3] << 24
    )

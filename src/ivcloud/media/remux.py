"""The one FLV → fMP4 remux per stream, for browser (MSE) viewers.

Started when a stream's first fMP4 viewer joins and fed the stream's FLV tags (its GOP cache
first, so that viewer starts at once). It keeps the init segment and the fragments since the
last keyframe (bounded in bytes, like the FLV GOP cache), and every fMP4 viewer is handed the
same fragment objects.

Track layout. MSE requires every init segment of a SourceBuffer to have the same number of
audio and video tracks, so the layout is fixed before the first init: video if the stream
has a video configuration, audio if it has an AAC configuration *or* the FLV header
announces audio (then the remux waits for the audio configuration, giving up on it at the
second keyframe without one). A configuration change later (new SPS, new ASC) builds a new
muxer with the same layout; viewers get the init message and init segment again.

Fragments are one video frame each (``Fmp4Muxer(fragment="frame")``, which holds each sample
back until the next one arrives to know its exact duration), so a fragment "starts on a
keyframe" when the sample it carries is one: the flag of the previously added frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import structlog

from ivcloud.media.fanout import Item
from ivcloud.protocol.av import FlvTag, Fmp4Muxer
from ivcloud.protocol.av.flv import (
    AAC_RAW,
    AVC_NALU,
    SOUND_AAC,
    TAG_AUDIO,
    TAG_VIDEO,
    VIDEO_CODEC_AVC,
)
from ivcloud.protocol.errors import MediaFormatError

log = structlog.get_logger("ivcloud.media.remux")


class Fmp4Remux:
    """FLV tags in, ``(fragment, starts_with_keyframe)`` out. Also the fMP4 viewers'
    :class:`~ivcloud.media.fanout.PreludeSource`."""

    def __init__(self, *, gop_limit: int, header_has_audio: bool) -> None:
        self.gop_limit = gop_limit
        self._expect_audio = header_has_audio
        self._video_config: bytes | None = None
        self._audio_config: bytes | None = None
        self._layout: tuple[bool, bool] | None = None  # (video, audio), fixed once chosen
        self._built_with: tuple[bytes | None, bytes | None] = (None, None)
        self._keyframes_waiting = 0
        self._muxer: Fmp4Muxer | None = None
        self._held_key = False  # the keyframe flag of the sample the muxer holds back
        self._started = False  # the muxer has taken its first keyframe
        self.info: str | None = None  # the JSON "init" text message
        self.init: bytes | None = None
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.fragments = 0
        self.resets = 0
        #: A reset built a new muxer: viewers must restart at the next keyframe (new init).
        self.reset_pending = False

    @property
    def ready(self) -> bool:
        return self._muxer is not None

    def expect_audio(self, announced: bool) -> None:
        """The FLV header's audio flag, when it arrives after the remux was started."""
        if self._layout is None:
            self._expect_audio = announced or self._audio_config is not None

    # -- configuration ----------------------------------------------------------------------

    def set_video_config(self, avc_config: bytes) -> bool:
        """A video sequence header; True when a (new) init segment was built."""
        if avc_config == self._video_config:
            return False
        self._video_config = avc_config
        return self._rebuild()

    def set_audio_config(self, asc: bytes) -> bool:
        if asc == self._audio_config:
            return False
        self._audio_config = asc
        self._expect_audio = True
        return self._rebuild()

    def _rebuild(self, *, force: bool = False) -> bool:
        layout = self._layout
        if layout is None:
            if self._video_config is None and self._audio_config is None:
                return False
            if self._video_config is not None and self._expect_audio and not self._audio_config:
                return False  # wait for the audio configuration (see the module docstring)
            layout = (self._video_config is not None, self._audio_config is not None)
        video = self._video_config if layout[0] else None
        audio = self._audio_config if layout[1] else None
        if (layout[0] and video is None) or (layout[1] and audio is None):
            return False
        if not force and self._muxer is not None and (video, audio) == self._built_with:
            return False  # e.g. an audio config for a layout without audio: nothing changes
        try:
            muxer = Fmp4Muxer(avc_config=video, audio_config=audio, fragment="frame")
            init = muxer.init_segment()
        except MediaFormatError as exc:
            log.info("remux_bad_config", error=str(exc))
            return False
        self._layout = layout
        self._built_with = (video, audio)
        self._muxer = muxer
        self._held_key = self._started = False
        self.init = init
        self.info = json.dumps(
            {"type": "init", "codecs": muxer.codecs, "mime": muxer.mime_type},
            separators=(",", ":"),
        )
        self.gop, self.gop_bytes = [], 0
        return True

    # -- media ------------------------------------------------------------------------------

    def feed(self, tag: FlvTag) -> tuple[bytes, bool] | None:
        """A coded (non-configuration) tag; the fragment it completes, if any."""
        if self._muxer is None:
            self._give_up_on_audio(tag)
            if self._muxer is None:
                return None
        muxer = self._muxer
        try:
            if tag.tag_type == TAG_VIDEO and tag.codec_id == VIDEO_CODEC_AVC:
                if muxer.video is None or tag.packet_type != AVC_NALU:
                    return None
                key = tag.is_video_keyframe
                starts_key = self._held_key  # the fragment carries the held sample
                dts = tag.timestamp
                segment = muxer.add_video(tag.payload, dts, dts + tag.composition_time, key)
                if key or self._started:  # the muxer drops frames before its first keyframe
                    self._started = True
                    self._held_key = key
            elif tag.tag_type == TAG_AUDIO and tag.codec_id == SOUND_AAC:
                if muxer.audio is None or tag.packet_type != AAC_RAW:
                    return None
                if muxer.audio is None:
                    return None
                segment = muxer.add_audio(tag.payload, tag.timestamp)
                starts_key = muxer.video is None
            else:
                return None
        except MediaFormatError as exc:
            # E.g. a timestamp jump backwards: start over at the next keyframe.
            log.info("remux_reset", error=str(exc))
            self.resets += 1
            self.reset_pending = self._rebuild(force=True)
            return None
        if not segment:
            return None
        self.fragments += 1
        self._cache(segment, starts_key)
        return segment, starts_key

    def _give_up_on_audio(self, tag: FlvTag) -> None:
        if tag.is_video_keyframe and self._video_config is not None and self._layout is None:
            self._keyframes_waiting += 1
            if self._keyframes_waiting >= 2:
                self._expect_audio = False
                self._rebuild()

    def _cache(self, segment: bytes, starts_key: bool) -> None:
        if starts_key:
            self.gop, self.gop_bytes = [segment], len(segment)
        elif self.gop and self.gop_bytes + len(segment) <= self.gop_limit:
            self.gop.append(segment)
            self.gop_bytes += len(segment)
        else:
            self.gop, self.gop_bytes = [], 0

    # -- PreludeSource ----------------------------------------------------------------------

    def prelude(self, *, initial: bool, resume_at: Item) -> Sequence[Item]:
        """The init message and segment, before the first fragment and after any skip."""
        if self.info is None or self.init is None:
            return ()
        return (self.info, self.init)

    def start_items(self) -> list[Item]:
        """What a joining viewer gets at once: prelude and cached fragments (or nothing when
        there is no keyframe-started fragment yet)."""
        if not self.gop or self.info is None or self.init is None:
            return []
        return [self.info, self.init, *self.gop]

"""WebSocket viewers of the fan-out benchmark (``fanout_viewers.py --proto ws-flv|ws-mp4``).

* :class:`WsFlvViewer` — ivcloud's ``WsFlvUrl`` or node-media-server's
  ``ws://host:port/live/<name>.flv``. Both send binary messages of whole FLV pieces
  (ivcloud: the file header and/or one or more whole tags per message; NMS 4.4.3: the
  header, the metadata and codec headers, then one tag per message, ``FlvSession.sendBuffer``
  ← ``BroadcastServer``). Payloads go into the same :class:`~fanout_flv.FlvWalker` as HTTP-FLV,
  and a message that ends inside a tag is an error: it would break a player that appends
  messages as they come.
* :class:`WsMp4Viewer` — ivcloud's ``WsMp4Url``: a text ``init`` message, a binary init
  segment (alone), then binary messages of one or more whole ``moof`` + ``mdat`` fragments
  (docs/live-video.md, "What viewers receive"). Counted: bytes, messages, fragments, video
  frames (``trun`` sample counts of the video track), keyframes (first sample's flags),
  delivery delay from ``tfdt`` (the remux keeps the device's ms timestamps at 90 kHz), gaps
  and re-inits mid-stream (a skip). Boxes are walked with the project's
  :func:`ivcloud.protocol.av.iter_boxes`.

:func:`ws_table` is the extra table ``hub_fanout.py`` prints for these viewers.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from typing import Any

from fanout_flv import FlvWalker, ViewerBase
from fanout_report import fmt
from ws_client import OP_TEXT, WsClient

from ivcloud.protocol.av import Box, iter_boxes
from ivcloud.protocol.errors import MediaFormatError

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TRUN_DATA_OFFSET, _TRUN_FIRST_FLAGS = 0x000001, 0x000004
_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS = 0x000100, 0x000200, 0x000400
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample


class WsFlvViewer(FlvWalker, WsClient):
    def __init__(self, host: str, port: int, target: str, epoch_ms: int, frame_ms: float) -> None:
        FlvWalker.__init__(self, epoch_ms, frame_ms)
        WsClient.__init__(self, host, port, target)

    def ws_error(self, message: str) -> None:
        self.fail(message)

    def stop(self) -> None:
        self.close()

    def ws_message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            raise ValueError("text message on a WS-FLV stream")
        self.bytes_total += len(payload)
        if self.measuring:
            self.messages_window += 1
        self.feed_flv(payload)
        if self.flv:
            raise ValueError("message ends inside an FLV tag")

    def summary(self, window: float) -> dict[str, Any]:
        return {**super().summary(window), "msgs_s": round(self.messages_window / window, 2)}


def video_track(init: bytes) -> tuple[int, int]:
    """(track id, timescale) of the init segment's video track."""
    top = {b.type: b for b in iter_boxes(init)}
    if b"ftyp" not in top or b"moov" not in top:
        raise ValueError("init segment without ftyp + moov")
    for trak in top[b"moov"].children():
        if trak.type != b"trak":
            continue
        kids = {b.type: b for b in trak.children()}
        mdia = {b.type: b for b in kids[b"mdia"].children()}
        if bytes(mdia[b"hdlr"].payload[8:12]) != b"vide":
            continue
        tkhd, mdhd = kids[b"tkhd"].payload, mdia[b"mdhd"].payload
        track_id = _U32.unpack_from(tkhd, 20 if tkhd[0] == 1 else 12)[0]
        timescale = _U32.unpack_from(mdhd, 20 if mdhd[0] == 1 else 12)[0]
        return track_id, timescale
    raise ValueError("init segment without a video track")


class WsMp4Viewer(ViewerBase, WsClient):
    def __init__(self, host: str, port: int, target: str, epoch_ms: int, frame_ms: float) -> None:
        ViewerBase.__init__(self, epoch_ms, frame_ms)
        WsClient.__init__(self, host, port, target)
        self.want_init = False  # the init message came; the next binary is the init segment
        self.inits = 0
        self.track_id = 0
        self.timescale = 0
        self.fragments_window = 0

    def ws_error(self, message: str) -> None:
        self.fail(message)

    def stop(self) -> None:
        self.close()

    def ws_message(self, opcode: int, payload: bytes) -> None:
        if self.measuring:
            self.messages_window += 1
        if opcode == OP_TEXT:
            info = json.loads(payload)
            if info.get("type") != "init" or "mime" not in info:
                raise ValueError(f"unexpected text message {info!r}")
            self.want_init = True
            self.inits += 1
            if self.keyframes:  # init again mid-stream: the hub skipped us to a keyframe
                self.resyncs += 1
            return
        self.bytes_total += len(payload)
        if self.measuring:
            self.bytes_window += len(payload)
        try:
            if self.want_init:
                self.track_id, self.timescale = video_track(payload)
                self.want_init = False
            elif not self.timescale:
                raise ValueError("media before the init segment")
            else:
                self._segments(payload)
        except (MediaFormatError, KeyError, struct.error) as exc:
            raise ValueError(f"bad fMP4: {exc!r}") from exc

    def _segments(self, payload: bytes) -> None:
        """Whole ``moof`` + ``mdat`` pairs (a box past the message's end raises)."""
        now_ms = time.time() * 1000
        expect_mdat = False
        for top in iter_boxes(payload):
            if top.type == b"moof":
                if expect_mdat:
                    raise ValueError("moof without its mdat")
                expect_mdat = True
                if self.measuring:
                    self.fragments_window += 1
                self._moof(top.children(), now_ms)
            elif top.type == b"mdat":
                if not expect_mdat:
                    raise ValueError("mdat without a moof")
                expect_mdat = False
            else:
                raise ValueError(f"unexpected box {top.type!r} in a media message")
        if expect_mdat:
            raise ValueError("message ends after a moof")

    def _moof(self, children: Iterator[Box], now_ms: float) -> None:
        for traf in children:
            if traf.type != b"traf":
                continue
            kids = {b.type: b.payload for b in traf.children()}
            if _U32.unpack_from(kids[b"tfhd"], 4)[0] != self.track_id:
                continue
            tfdt, trun = kids[b"tfdt"], kids[b"trun"]
            base = _U64.unpack_from(tfdt, 4)[0] if tfdt[0] == 1 else _U32.unpack_from(tfdt, 4)[0]
            flags = _U32.unpack_from(trun)[0] & 0xFFFFFF
            count = _U32.unpack_from(trun, 4)[0]
            if not count:
                continue
            pos = 8 + (4 if flags & _TRUN_DATA_OFFSET else 0)  # after count, data offset
            if flags & _TRUN_FIRST_FLAGS:
                first_flags = _U32.unpack_from(trun, pos)[0]
            elif flags & _TRUN_FLAGS:  # the first entry's flags, after duration and size
                skip = (4 if flags & _TRUN_DURATION else 0) + (4 if flags & _TRUN_SIZE else 0)
                first_flags = _U32.unpack_from(trun, pos + skip)[0]
            else:
                first_flags = 0  # the trex defaults: not seen from ivcloud
            # ivcloud's fragments carry one video frame each; were there more, they count as
            # frames but only the first gives a delay and a gap check.
            self.video_frame(base * 1000 / self.timescale, not first_flags & _NON_SYNC, now_ms)
            if self.measuring:
                self.video_window += count - 1

    def summary(self, window: float) -> dict[str, Any]:
        return {
            **super().summary(window),
            "msgs_s": round(self.messages_window / window, 2),
            "fragments_s": round(self.fragments_window / window, 2),
            "inits": self.inits,
        }


def ws_table(rows: list[dict[str, Any]]) -> str:
    """The table ``hub_fanout.py`` adds for WebSocket viewers: messages (and fMP4 fragments)
    per second per viewer — the writes a server makes, which is what a viewer costs on a
    fast network."""
    measured = [r for r in rows if r["viewers"]]
    frags = any("fragments_s_min" in r for r in measured)
    head = "| server | viewers | messages/s per viewer (min / median) |"
    head += " fragments/s per viewer (min / median) |" if frags else ""
    lines = [head, "|---|---|---|" + ("---|" if frags else "")]
    for r in measured:
        line = f"| {r['server']} | {r['viewers']} | {fmt(r.get('msgs_s_min'))} / "
        line += f"{fmt(r.get('msgs_s_median'))} |"
        if frags:
            line += f" {fmt(r.get('fragments_s_min'))} / {fmt(r.get('fragments_s_median'))} |"
        lines.append(line)
    return "\n".join(lines)

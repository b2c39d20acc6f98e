"""Fragmented MP4: our segments decoded by PyAV's mov demuxer, the box tree checked, the
hub's FLV → fMP4 path end to end, and property tests for the box reader."""

from __future__ import annotations

import struct
from typing import Any

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.av.boxes import Box, box, find_boxes, iter_boxes
from ivcloud.protocol.av.flv import AVC_NALU, TAG_AUDIO, TAG_VIDEO, FlvMuxer
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.av.fmp4 import (
    SAMPLE_NON_SYNC,
    SAMPLE_SYNC,
    AudioTrack,
    Sample,
    TrackRun,
    init_segment,
    media_segment,
)
from ivcloud.protocol.av.fmp4_muxer import Fmp4Muxer
from ivcloud.protocol.av.h264 import (
    NAL_PPS,
    NAL_SPS,
    build_avc_decoder_config,
    join_avcc,
    nal_type,
    split_annexb,
)
from ivcloud.protocol.errors import MediaFormatError
from tests.protocol.av import (
    EncodedAudio,
    EncodedVideo,
    encode_aac,
    encode_h264,
    interleaved,
    open_container,
)


def avc_config(frame: EncodedVideo) -> bytes:
    nals = split_annexb(frame.annexb)
    sps = [n for n in nals if nal_type(n) == NAL_SPS]
    return build_avc_decoder_config(sps, [n for n in nals if nal_type(n) == NAL_PPS])


def avcc_sample(frame: EncodedVideo) -> bytes:
    return join_avcc(n for n in split_annexb(frame.annexb) if nal_type(n) not in (7, 8, 9))


def remux(
    video: tuple[EncodedVideo, ...],
    audio: EncodedAudio | None,
    fragment: str = "frame",
    shift_ms: int = 0,
) -> tuple[Fmp4Muxer, list[bytes]]:
    """Init segment followed by every non-empty media segment."""
    muxer = Fmp4Muxer(
        avc_config=avc_config(video[0]) if video else None,
        audio_config=audio.asc if audio else None,
        fragment=fragment,  # type: ignore[arg-type]
    )
    segments = [muxer.init_segment()]
    for ts, item in interleaved(video, audio, shift_ms):
        if isinstance(item, EncodedVideo):
            pts = item.pts_ms + shift_ms
            segments.append(muxer.add_video(avcc_sample(item), ts, pts, item.keyframe))
        else:
            segments.append(muxer.add_audio(item, ts))
    segments.append(muxer.flush())
    return muxer, [s for s in segments if s]


def demux(data: bytes) -> dict[str, list[av.Packet[Any]]]:
    packets: dict[str, list[av.Packet[Any]]] = {"video": [], "audio": []}
    with open_container(data, "mp4") as container:
        for packet in container.demux():
            if packet.size:
                packets[packet.stream.type].append(packet)
    return packets


def decode(data: bytes) -> dict[str, list[av.VideoFrame | av.AudioFrame]]:
    frames: dict[str, list[av.VideoFrame | av.AudioFrame]] = {"video": [], "audio": []}
    with open_container(data, "mp4") as container:
        for packet in container.demux():
            frames[packet.stream.type] += [
                f for f in packet.decode() if isinstance(f, av.VideoFrame | av.AudioFrame)
            ]
    return frames


def trun_entries(traf: Box) -> tuple[int, list[tuple[int, ...]]]:
    """(version, [(duration, size, flags[, composition offset]), ...]) of a traf's trun."""
    trun = next(b for b in traf.children() if b.type == b"trun")
    version, flags = trun.full_box_header
    count = struct.unpack_from(">I", trun.payload, 4)[0]
    width = 4 if flags & 0x800 else 3
    fmt = ">" + ("IIIi" if version else "IIII")[:width]
    entries = [struct.unpack_from(fmt, trun.payload, 12 + i * 4 * width) for i in range(count)]
    return version, entries


def track_id(traf: Box) -> int:
    tfhd = next(b for b in traf.children() if b.type == b"tfhd")
    assert tfhd.full_box_header == (0, 0x020000)  # default-base-is-moof
    return int(struct.unpack_from(">I", tfhd.payload, 4)[0])


def tfdt(traf: Box) -> int:
    return int(
        struct.unpack_from(">Q", next(b for b in traf.children() if b.type == b"tfdt").payload, 4)[
            0
        ]
    )


# ------------------------------------------------------------------------ init segment


def test_init_segment_box_tree() -> None:
    video, audio = encode_h264(), encode_aac()
    config = avc_config(video[0])
    init = Fmp4Muxer(avc_config=config, audio_config=audio.asc).init_segment()
    assert [b.type for b in iter_boxes(init)] == [b"ftyp", b"moov"]
    ftyp = next(iter_boxes(init)).payload
    assert bytes(ftyp[:4]) == b"iso5" and {bytes(ftyp[i : i + 4]) for i in (8, 12, 16)} == {
        b"iso5",
        b"iso6",
        b"mp41",
    }
    assert len(find_boxes(init, "moov/mvhd")) == 1
    tkhd = [b.payload for b in find_boxes(init, "moov/trak/tkhd")]
    assert [struct.unpack_from(">II", p, 76) for p in tkhd] == [(320 << 16, 240 << 16), (0, 0)]
    mdhd = [
        struct.unpack_from(">I", b.payload, 12)[0] for b in find_boxes(init, "moov/trak/mdia/mdhd")
    ]
    assert mdhd == [90000, 44100]
    hdlr = [bytes(b.payload[8:12]) for b in find_boxes(init, "moov/trak/mdia/hdlr")]
    assert hdlr == [b"vide", b"soun"]
    minf = find_boxes(init, "moov/trak/mdia/minf")
    assert [[c.type for c in m.children()] for m in minf] == [
        [b"vmhd", b"dinf", b"stbl"],
        [b"smhd", b"dinf", b"stbl"],
    ]
    stbls = find_boxes(init, "moov/trak/mdia/minf/stbl")
    assert [c.type for c in stbls[0].children()] == [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]
    avc1 = next(next(stbls[0].children()).children(8))  # stsd: 8 bytes before its entries
    assert avc1.type == b"avc1" and struct.unpack_from(">HH", avc1.payload, 24) == (320, 240)
    assert bytes(next(iter_boxes(avc1.payload[78:])).payload) == config
    mp4a = next(next(stbls[1].children()).children(8))
    esds = next(iter_boxes(mp4a.payload[28:]))
    assert mp4a.type == b"mp4a" and esds.type == b"esds" and audio.asc in bytes(esds.payload)
    trex = find_boxes(init, "moov/mvex/trex")
    assert [struct.unpack_from(">I", t.payload, 4)[0] for t in trex] == [1, 2]


def test_mime_type_and_track_ids() -> None:
    video, audio = encode_h264(), encode_aac()
    both = Fmp4Muxer(avc_config=avc_config(video[0]), audio_config=audio.asc)
    assert both.mime_type == 'video/mp4; codecs="avc1.42C00D,mp4a.40.2"'
    audio_only = Fmp4Muxer(audio_config=audio.asc)
    assert audio_only.mime_type == 'audio/mp4; codecs="mp4a.40.2"'
    assert audio_only.audio is not None and audio_only.audio.track_id == 1


# ------------------------------------------------------------------------ segments → PyAV


def test_per_frame_fragments_decode_in_pyav() -> None:
    video, audio = encode_h264(), encode_aac()
    _, segments = remux(video, audio)
    assert len(segments) == 1 + len(video)  # init + one fragment per video frame
    data = b"".join(segments)
    packets = demux(data)
    assert [p.pts for p in packets["video"]] == [f.pts_ms * 90 for f in video]
    assert [p.size for p in packets["video"]] == [len(avcc_sample(f)) for f in video]
    assert [p.is_keyframe for p in packets["video"]] == [f.keyframe for f in video]
    assert [p.pts for p in packets["audio"]] == [i * 1024 for i in range(len(audio.frames))]
    assert [bytes(p) for p in packets["audio"]] == list(audio.frames)
    frames = decode(data)
    assert len(frames["video"]) == 36 and len(frames["audio"]) == 50
    assert {(f.width, f.height) for f in frames["video"]} == {(320, 240)}  # type: ignore[union-attr]


def test_gop_fragments_start_with_keyframes() -> None:
    video = encode_h264()
    _, segments = remux(video, None, fragment="gop")
    assert len(segments) == 1 + 3  # three GOPs of 12
    base = 0
    for sequence, segment in enumerate(segments[1:], start=1):
        moof, mdat = iter_boxes(segment)
        (mfhd,) = [b for b in moof.children() if b.type == b"mfhd"]
        assert struct.unpack_from(">I", mfhd.payload, 4)[0] == sequence
        (traf,) = [b for b in moof.children() if b.type == b"traf"]
        _, entries = trun_entries(traf)
        assert [e[2] for e in entries] == [SAMPLE_SYNC] + [SAMPLE_NON_SYNC] * 11
        assert tfdt(traf) == base and {e[0] for e in entries} == {3600}
        assert len(mdat.payload) == sum(e[1] for e in entries)
        base += sum(e[0] for e in entries)
    assert len(decode(b"".join(segments))["video"]) == 36


def test_b_frames_keep_composition_offsets() -> None:
    video = encode_h264(320, 240, 24, profile="main", bframes=2, preset="veryfast")
    shift = -min(f.dts_ms for f in video)
    _, segments = remux(video, None, shift_ms=shift)
    offsets = []
    for segment in segments[1:]:
        traf = find_boxes(segment, "moof/traf")[0]
        version, entries = trun_entries(traf)
        assert version == 0
        offsets += [e[3] for e in entries]
    assert offsets == [(f.pts_ms - f.dts_ms) * 90 for f in video]
    packets = demux(b"".join(segments))["video"]
    assert [p.pts for p in packets] == [(f.pts_ms + shift) * 90 for f in video]
    assert len(decode(b"".join(segments))["video"]) == 24


def test_flush_uses_last_duration_and_audio_snaps_to_1024() -> None:
    video, audio = encode_h264(), encode_aac(frames=10)
    _, segments = remux(video[:3], audio)
    last = find_boxes(segments[-1], "moof/traf")
    video_entries = trun_entries(last[0])[1]
    assert video_entries[-1][0] == 3600  # flushed frame: last measured duration
    audio_durations = [
        entry[0]
        for segment in segments[1:]
        for traf in find_boxes(segment, "moof/traf")
        if track_id(traf) == 2
        for entry in trun_entries(traf)[1]
    ]
    assert audio_durations == [1024] * 10  # ms timestamps jitter; samples do not


def test_audio_only_muxer_fragments_per_frame() -> None:
    audio = encode_aac(frames=20)
    _, segments = remux((), audio)
    assert len(segments) == 1 + 20
    frames = decode(b"".join(segments))["audio"]
    assert [f.pts for f in frames] == [i * 1024 for i in range(20)]


def test_nothing_before_the_first_keyframe() -> None:
    video, audio = encode_h264(), encode_aac()
    muxer = Fmp4Muxer(avc_config=avc_config(video[0]), audio_config=audio.asc)
    assert muxer.add_audio(audio.frames[0], 0) == b""
    assert muxer.add_video(avcc_sample(video[1]), 40, 40, False) == b""
    assert muxer.add_video(avcc_sample(video[0]), 80, 80, True) == b""  # held back
    segment = muxer.add_video(avcc_sample(video[1]), 120, 120, False)
    traf = find_boxes(segment, "moof/traf")
    assert len(traf) == 1 and tfdt(traf[0]) == 80 * 90


def test_hub_path_flv_to_fmp4() -> None:
    """What the hub does: FlvReader tags straight into the muxer, payloads untouched."""
    video, audio = encode_h264(), encode_aac()
    flv_muxer = FlvMuxer(audio_config=audio.asc)
    stream = flv_muxer.header()
    for ts, item in interleaved(video, audio):
        if isinstance(item, EncodedVideo):
            stream += flv_muxer.add_video(item.annexb, item.pts_ms, ts)
        else:
            stream += flv_muxer.add_audio(item, ts)
    tags = FlvReader().feed(stream)
    avcc = next(t for t in tags if t.is_video_sequence_header).payload
    asc = next(t for t in tags if t.is_audio_sequence_header).payload
    muxer = Fmp4Muxer(avc_config=avcc, audio_config=asc)
    out = [muxer.init_segment()]
    for tag in tags:
        if tag.tag_type == TAG_VIDEO and tag.packet_type == AVC_NALU:
            pts = tag.timestamp + tag.composition_time
            out.append(muxer.add_video(tag.payload, tag.timestamp, pts, tag.is_video_keyframe))
        elif tag.tag_type == TAG_AUDIO and not tag.is_audio_sequence_header:
            out.append(muxer.add_audio(tag.payload, tag.timestamp))
    out.append(muxer.flush())
    frames = decode(b"".join(out))
    assert len(frames["video"]) == 36 and len(frames["audio"]) == 50


def test_muxer_refusals() -> None:
    video, audio = encode_h264(), encode_aac()
    muxer = Fmp4Muxer(avc_config=avc_config(video[0]))
    muxer.add_video(avcc_sample(video[0]), 40, 40, True)
    with pytest.raises(MediaFormatError, match="increase"):
        muxer.add_video(avcc_sample(video[1]), 40, 40, False)
    with pytest.raises(MediaFormatError):
        muxer.add_video(b"", -1, 0, True)
    with pytest.raises(MediaFormatError):
        muxer.add_audio(audio.frames[0], 0)
    with pytest.raises(MediaFormatError):
        Fmp4Muxer()
    with pytest.raises(MediaFormatError):
        Fmp4Muxer(avc_config=b"\x01\x42")
    with pytest.raises(ValueError, match="policy"):
        Fmp4Muxer(audio_config=audio.asc, fragment="second")  # type: ignore[arg-type]
    with pytest.raises(MediaFormatError):
        init_segment(None, None)
    with pytest.raises(MediaFormatError):
        media_segment(1, [TrackRun(1, 0, [], False)])


def test_media_segment_two_tracks_data_offsets() -> None:
    runs = [
        TrackRun(1, 9000, [Sample(b"abc", 3000, True, 0), Sample(b"de", 3000, False, -10)], True),
        TrackRun(2, 44100, [Sample(b"XYZW", 1024)], False),
    ]
    segment = media_segment(7, runs)
    moof, mdat = iter_boxes(segment)
    trafs = [b for b in moof.children() if b.type == b"traf"]
    truns = [next(c for c in t.children() if c.type == b"trun") for t in trafs]
    offsets = [struct.unpack_from(">i", trun.payload, 8)[0] for trun in truns]
    assert bytes(mdat.payload) == b"abcdeXYZW"
    assert [segment[o : o + 2] for o in offsets] == [b"ab", b"XY"]
    assert trun_entries(trafs[0]) == (
        1,
        [(3000, 3, SAMPLE_SYNC, 0), (3000, 2, SAMPLE_NON_SYNC, -10)],
    )
    assert [tfdt(t) for t in trafs] == [9000, 44100]
    assert AudioTrack.from_asc(b"\x12\x38").channels == 8  # channel configuration 7


# ------------------------------------------------------------------------ box reader


def test_box_reader_sizes() -> None:
    large = struct.pack(">I4sQ", 1, b"free", 16 + 3) + b"abc"
    to_end = struct.pack(">I4s", 0, b"mdat") + b"rest"
    boxes = list(iter_boxes(box(b"ftyp", b"iso5") + large + to_end))
    assert [(b.type, b.offset, b.size, bytes(b.payload)) for b in boxes] == [
        (b"ftyp", 0, 12, b"iso5"),
        (b"free", 12, 19, b"abc"),
        (b"mdat", 31, 12, b"rest"),
    ]
    for bad in (
        b"\x00\x00\x00",
        struct.pack(">I4s", 7, b"free"),
        struct.pack(">I4s", 9, b"free"),
        struct.pack(">I4sI", 1, b"free", 0),
    ):
        with pytest.raises(MediaFormatError):
            list(iter_boxes(bad))
    with pytest.raises(MediaFormatError):
        find_boxes(box(b"ftyp", b"iso5"), "ftyp/x")
    with pytest.raises(MediaFormatError):
        Box(b"trun", 0, 8, memoryview(b"")).full_box_header  # noqa: B018


@given(st.binary(max_size=200))
def test_box_reader_tiles_the_data_or_refuses(data: bytes) -> None:
    try:
        boxes = list(iter_boxes(data))
    except MediaFormatError:
        return
    assert sum(b.size for b in boxes) == len(data)
    assert [b.offset for b in boxes] == [sum(b.size for b in boxes[:i]) for i in range(len(boxes))]


@given(
    st.lists(
        st.tuples(st.sampled_from([b"moov", b"trak", b"free"]), st.binary(max_size=30)), max_size=5
    )
)
def test_box_reader_reads_what_box_wrote(items: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(box(kind, payload) for kind, payload in items)
    assert [(b.type, bytes(b.payload)) for b in iter_boxes(data)] == items
    try:
        found = find_boxes(data, "moov/trak")
    except MediaFormatError:
        return  # a moov payload that is not a box sequence
    assert all(b.type == b"trak" for b in found)

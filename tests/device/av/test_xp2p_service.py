"""The camera's XP2P service, driven with the request texts an app sends: real H.264/AAC
from the simulated camera (fake clock), FLV decoded with FFmpeg, talk audio encoded and
decoded with FFmpeg, PTZ and the LianLian JSON form, viewer limits and refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivcloud.device.av import AudioEncoder, AudioProfile, LiveSource
from ivcloud.device.av.ptz import SimulatedCommands
from ivcloud.device.av.sdcard import SdCard
from ivcloud.device.av.talk import TalkSink
from ivcloud.device.av.xp2p_device import Notify, Xp2pCallbacks, Xp2pDevice
from ivcloud.device.av.xp2p_streams import ViewerStream
from ivcloud.protocol.av.aac import add_adts
from ivcloud.protocol.av.flv import FlvMuxer
from ivcloud.protocol.errors import MediaFormatError
from ivcloud.protocol.p2p_channel import RequestRefused, VoiceSink
from ivcloud.protocol.xp2p import ResType, StreamInfo
from tests.device.av.sdcard_support import (
    NOW_S,
    FakeClock,
    card_copy,
    decode_flv,
    flv_tags,
    live_source,
    read_all,
    recorded_template,
)
from tests.helpers import poll

T0 = NOW_S * 1000
ST = "action=inner_define&channel=0&cmd=get_device_st&type={}&quality=standard"


class Camera:
    """An ``Xp2pDevice`` with the simulated camera's sources, an SD card and callbacks
    that record what the device was told."""

    def __init__(self, card: SdCard | None, *, max_viewers: int = 2, talk: bool = True) -> None:
        self.clock = FakeClock(NOW_S + 3600)
        self.opened: list[tuple[int, str]] = []
        self.events: list[tuple[Any, ...]] = []
        self.talk: list[tuple[str, int, str, bytes]] = []
        self.commands = SimulatedCommands()
        callbacks = Xp2pCallbacks(
            on_start_real_play=lambda *a: self.events.append(("start", *a)),
            on_stop_real_play=lambda *a: self.events.append(("stop", *a)),
            on_talk_start=lambda *a: self.events.append(("talk_start", *a)),
            on_talk_audio=(lambda *a: self.talk.append(a)) if talk else None,
            on_talk_stop=lambda *a: self.events.append(("talk_stop", *a)),
            on_user_command=self.commands,
            on_notify=lambda *a: self.events.append(("notify", *a)),
        )
        self.device = Xp2pDevice(
            sources=self.source,
            sdcards={0: card} if card else None,
            callbacks=callbacks,
            max_viewers=max_viewers,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.commands.status = self.device.status

    def source(self, channel: int, quality: str) -> LiveSource:
        self.opened.append((channel, quality))
        return live_source(self.clock)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def card(template: Path, tmp_path: Path) -> SdCard:
    return card_copy(template, tmp_path / "sd")


async def read_video(stream: ViewerStream, pictures: int) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
        if sum(t.tag_type == 9 for t in flv_tags(bytes(out))) > pictures:
            break
    return bytes(out)


async def _now(value: bool) -> bool:
    return value


# -- live --------------------------------------------------------------------------------


async def test_live_viewers_share_one_encoder_and_decode(card: SdCard) -> None:
    cam = Camera(card)
    a = await cam.device.connect("app-a")
    b = await cam.device.connect("app-b")
    sa = await a.handle_request("ipc.flv?action=live&channel=0&quality=high&requester=app-ios")
    sb = await b("ipc.flv?action=live&channel=0&quality=high")
    assert isinstance(sa, ViewerStream) and isinstance(sb, ViewerStream)
    data_a, data_b = await read_video(sa, 12), await read_video(sb, 12)
    assert cam.opened == [(0, "high")]  # one encoder for both viewers
    for data in (data_a, data_b):
        clocks = decode_flv(data).clocks
        assert len(clocks) >= 10 and clocks == sorted(set(clocks))
        tags = flv_tags(data)
        assert tags[0].is_video_sequence_header and tags[1].is_video_keyframe
        assert tags[1].timestamp == 0
    assert ("start", "app-a", 0, ResType.SD, StreamInfo(None, "app-ios")) in cam.events
    await sa.aclose()
    await sb.aclose()
    assert cam.events.count(("stop", "app-a", 0, ResType.SD)) == 1
    feed = cam.device.feed(0, "high")
    await poll(lambda: _now(feed.running), lambda running: not running)  # nobody: no encoding
    await cam.device.aclose()


async def test_device_st_statuses_and_the_viewer_limit(card: SdCard) -> None:
    cam = Camera(card, max_viewers=1, talk=False)
    a = await cam.device.connect("a")
    assert await a(ST.format("live")) == '[{"status":"0","appConnectNum":"1"}]'
    stream = await a("ipc.flv?action=live&channel=0&quality=standard")
    b = await cam.device.connect("b")
    assert await b(ST.format("live")) == '[{"status":"405","appConnectNum":"2"}]'
    assert await b(ST.format("playback")) == '[{"status":"405","appConnectNum":"2"}]'
    with pytest.raises(RequestRefused) as info:
        await b("ipc.flv?action=live&channel=0&quality=standard")
    assert info.value.status == 405
    assert await a(ST.format("live")) == '[{"status":"0","appConnectNum":"2"}]'  # a views
    assert await b(ST.format("(live)").replace("standard", "4k")) == (
        '[{"status":"404","appConnectNum":"2"}]'
    )
    assert await b(ST.format("voice")) == '[{"status":"406","appConnectNum":"2"}]'  # no speaker
    assert await b("action=inner_define&channel=0&cmd=format_sd") == '{"status":"406"}'
    assert await b("action=inner_define&channel=0&cmd=get_nvr_list") == '{"status":"406"}'
    assert await b("action=inner_define&channel=3&cmd=get_record_index") == '{"status":"404"}'
    await stream.aclose()
    assert await b(ST.format("live")) == '[{"status":"0","appConnectNum":"2"}]'
    await a.close()
    assert await b(ST.format("live")) == '[{"status":"0","appConnectNum":"1"}]'
    no_card = Camera(None)
    c = await no_card.device.connect("c")
    assert await c(ST.format("playback")) == '[{"status":"406","appConnectNum":"1"}]'
    await cam.device.aclose()


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("ipc.flv?action=live&channel=1&quality=high", 404),  # an IPC has channel 0 only
        ("ipc.flv?action=live&quality=ultra", 404),
        ("ipc.flv?action=live-mjpg&channel=0", 406),
        ("ipc.flv?action=playback&channel=0&start_time=1&end_time=3", 404),  # < 5 s apart
        ("ipc.flv?action=playback&channel=0&start_time=100&end_time=200", 404),  # nothing there
        ("ipc.flv?action=download&channel=0&file_name=nope.flv&offset=0", 404),
        ("voice?channel=0&calltype=fax", 404),
        ("index.html", 404),
    ],
)
async def test_stream_requests_are_refused_with_a_status(
    card: SdCard, text: str, status: int
) -> None:
    cam = Camera(card)
    visitor = await cam.device.connect("v")
    with pytest.raises(RequestRefused) as info:
        await visitor(text)
    assert info.value.status == status and str(info.value)
    assert not visitor.viewing


# -- SD card through the vocabulary -------------------------------------------------------


async def test_record_queries(card: SdCard) -> None:
    v = await Camera(card).device.connect("v")
    assert await v(
        f"action=inner_define&channel=0&cmd=get_record_index&start_time={NOW_S}"
        f"&end_time={NOW_S + 60}"
    ) == (f'{{"video_list":[{{"type":0,"start_time":"{NOW_S}","end_time":"{NOW_S + 7}"}}]}}')
    assert await v("action=inner_define&channel=0&cmd=get_month_record&time=202601") == (
        '{"video_list":"1"}'
    )
    assert await v("action=inner_define&channel=0&cmd=get_month_record&time=202602") == (
        '{"video_list":"0"}'
    )
    files = json.loads(await v("action=inner_define&channel=0&cmd=get_file_list&file_type=0"))
    assert [f["file_name"] for f in files["file_list"]] == [s.name for s in card.segments]
    assert await v("action=inner_define&channel=0&cmd=get_month_record&time=2026") == (
        '{"status":"404"}'
    )


async def test_playback_commands(card: SdCard) -> None:
    cam = Camera(card)
    v = await cam.device.connect("v")
    assert await v("action=inner_define&channel=0&cmd=playback_pause") == '{"status":"404"}'
    stream = await v(
        f"ipc.flv?action=playback&channel=0&start_time={NOW_S + 1}&end_time={NOW_S + 6}"
    )
    assert isinstance(stream, ViewerStream) and stream.playback is not None
    assert ("start", "v", 0, ResType.PB, StreamInfo()) in cam.events
    first = await read_video(stream, 10)
    progress = json.loads(await v("action=inner_define&channel=0&cmd=playback_progress"))
    assert progress["status"] == "0" and 800 <= int(progress["progress"]) <= 1000
    assert await v("action=inner_define&channel=0&cmd=playback_pause") == '{"status":"0"}'
    assert stream.playback.state == "paused"
    assert await v("action=inner_define&channel=0&cmd=playback_seek&progress=3500") == (
        '{"status":"0"}'
    )
    assert await v("action=inner_define&channel=0&cmd=playback_resume") == '{"status":"0"}'
    rest = await read_all(stream)
    clocks = decode_flv(first + rest).clocks
    assert clocks[0] == T0 + 1000 and clocks[-1] == T0 + 6000
    assert T0 + 4000 in clocks and T0 + 3000 not in clocks  # jumped to the keyframe at 4 s
    assert stream.playback.progress_ms == 5000 and stream.playback.state == "ended"
    assert not v.viewing  # the stream ran out: slot released
    seek = f"action=inner_define&channel=0&cmd=playback_seek&time={NOW_S + 2}"
    assert await v(seek) == '{"status":"404"}'  # no playback any more


async def test_download_via_the_service(card: SdCard) -> None:
    v = await Camera(card).device.connect("v")
    seg = card.segments[2]
    stream = await v(f"ipc.flv?action=download&channel=0&file_name={seg.name}&offset=777")
    assert isinstance(stream, ViewerStream) and not stream.counts_as_viewer
    assert await read_all(stream) == seg.path.read_bytes()[777:]


# -- talk --------------------------------------------------------------------------------


def tone_frames(count: int) -> tuple[bytes, list[bytes]]:
    encoder = AudioEncoder(AudioProfile("aac"))
    frames: list[bytes] = []
    while len(frames) < count:
        frames += [f.data for f in encoder.encode(T0 + 10_000 + len(frames) * 64)]
    encoder.close()
    return encoder.config, frames[:count]


def dominant_hz(pcm: bytes, rate: int = 16000) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


async def test_talk_flv_upload_arrives_decoded_at_the_callback(card: SdCard) -> None:
    cam = Camera(card)
    cam.device.talk_decode = True
    a = await cam.device.connect("a")
    b = await cam.device.connect("b")
    sink = await a("voice?channel=0&calltype=audio")
    assert isinstance(sink, TalkSink) and isinstance(sink, VoiceSink)
    assert await b(ST.format("voice")) == '[{"status":"1","appConnectNum":"2"}]'
    with pytest.raises(RequestRefused) as info:
        await b("voice?channel=0")
    assert info.value.status == 1
    asc, frames = tone_frames(40)
    muxer = FlvMuxer(has_video=False, audio_config=asc)
    upload = muxer.header() + b"".join(muxer.add_audio(f, i * 64) for i, f in enumerate(frames))
    for i in range(0, len(upload), 333):  # arbitrary transport pieces
        await sink.write(upload[i : i + 333])
    await sink.close()
    pcm = b"".join(frame for _, _, codec, frame in cam.talk if codec == "pcm")
    assert {(v, ch, codec) for v, ch, codec, _ in cam.talk} == {("a", 0, "pcm")}
    assert len(pcm) // 2 == pytest.approx(40 * 1024, abs=1024)
    quiet = pcm[2 * 4800 : 2 * 14400]  # 0.3-0.9 s: the tone, between the beeps
    assert dominant_hz(quiet) == pytest.approx(440, abs=15)
    assert ("talk_start", "a", 0, "audio") in cam.events and ("talk_stop", "a", 0) in cam.events
    assert cam.device.talker is None
    assert await b(ST.format("voice")) == '[{"status":"0","appConnectNum":"2"}]'


async def test_talk_adts_passes_through_and_bad_bytes_fail_clearly(card: SdCard) -> None:
    cam = Camera(card)
    v = await cam.device.connect("v")
    sink = await v("voice?channel=0&format=adts")
    assert isinstance(sink, TalkSink)
    asc, frames = tone_frames(10)
    adts = [add_adts(f, asc) for f in frames]
    await sink.write(b"".join(adts[:3]) + adts[3][:5])  # a frame split across writes
    await sink.write(adts[3][5:] + b"".join(adts[4:]))
    assert [frame for *_, frame in cam.talk] == adts
    with pytest.raises(MediaFormatError):
        await sink.write(b"\x00" * 100)
    await v.close()
    assert cam.device.talker is None and ("notify", Notify.LINK_DISCONNECTED, "v") in cam.events


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["flv", "adts", "pcm"]))
async def test_talk_sink_takes_any_bytes_or_fails_cleanly(data: bytes, fmt: str) -> None:
    got: list[tuple[str, bytes]] = []
    sink = TalkSink(lambda codec, frame: got.append((codec, frame)), input_format=fmt)  # type: ignore[arg-type]
    try:
        await sink.write(data)
    except MediaFormatError:
        return
    if fmt == "pcm":
        assert b"".join(f for _, f in got) == data[: len(data) & ~1]


# -- user_define -------------------------------------------------------------------------


async def test_ptz_and_lianlian_commands(card: SdCard) -> None:
    cam = Camera(card)
    v = await cam.device.connect("v")
    left = json.loads(await v("action=user_define&channel=0&cmd=ptz_left"))
    assert left["result"] == "0" and left["current_x"] == 45 and left["apex"] == "no"
    for _ in range(20):
        reply = json.loads(await v("action=user_define&channel=0&cmd=ptz_up"))
    assert reply["current_y"] == reply["max_y"] == 40 and reply["apex"] == "yes"
    cmd = '{"topic":"ptz","message_id":12,"data":{"cmd":"ptz_right_press"}}'
    assert json.loads(await v(f"action=user_define&channel=0&cmd={cmd}")) == {
        "confirmation_topic": "ptz",
        "result": "0",
        "apex": "no",
        "current_x": 50,
        "current_y": 40,
        "max_x": 100,
        "max_y": 40,
        "min_x": 0,
        "min_y": 0,
        "message_id": 12,
    }
    status = await v('action=user_define&channel=0&cmd={"topic":"get_status","message_id":"m1"}')
    assert status == (
        '{"confirmation_topic":"get_status","result":"0","status":"working","user_num":1,'
        '"signal_strength":80,"message_id":"m1"}'
    )
    assert json.loads(await v("action=user_define&channel=0&cmd=sing"))["result"] == "-1"
    assert cam.commands.log[0] == ("v", 0, "ptz_left")
    no_handler = Xp2pDevice(callbacks=Xp2pCallbacks())
    w = await no_handler.connect("w")
    assert await w("action=user_define&channel=0&cmd=ptz_left") == '{"status":"406"}'


async def test_recording_from_the_live_fanout_while_viewing(tmp_path: Path) -> None:
    card = SdCard(tmp_path / "sd")
    cam = Camera(card)
    cam.device.sdcards[0] = card
    task = cam.device.record(0, "standard", segment_s=1.0)
    v = await cam.device.connect("v")
    stream = await v("ipc.flv?action=live&channel=0&quality=standard")
    assert isinstance(stream, ViewerStream)
    await read_video(stream, 30)
    assert cam.opened == [(0, "standard")]  # the recorder and the viewer share the encoder
    await stream.aclose()
    task.cancel()
    await cam.device.aclose()
    assert card.segments and all(s.complete for s in card.segments)
    clocks = decode_flv(card.segments[0].path.read_bytes()).clocks
    assert clocks and clocks == sorted(clocks)

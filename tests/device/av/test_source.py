"""The simulated camera's media, checked by decoding it with FFmpeg (PyAV): H.264 constrained
baseline with SPS/PPS in every IDR access unit, a fixed GOP, one access unit per picture,
the capture time readable from each decoded picture; AAC and Opus that decode to the
tone and its beeps; and the real-time pacer under a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from ivcloud.device.av import (
    QUALITIES,
    AudioEncoder,
    AudioProfile,
    EncodedAudio,
    EncodedVideo,
    H264Encoder,
    LiveSource,
    MediaFrame,
    TestPattern,
    VideoEncoder,
    VideoProfile,
    audio_specific_config,
)
from ivcloud.media.clockcode import read_clock

NOW = 1_767_225_600_000  # a whole second, so beeps start at frame 0
SPS, PPS, IDR, NON_IDR = 7, 8, 5, 1


def nal_units(data: bytes) -> list[bytes]:
    """Split an Annex B buffer at its 3- and 4-byte start codes."""
    units: list[bytes] = []
    starts: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        units.append(data[start:end].rstrip(b"\x00"))
    return units


def nal_types(data: bytes) -> list[int]:
    return [unit[0] & 0x1F for unit in nal_units(data)]


def decode_video(units: list[EncodedVideo]) -> list[av.VideoFrame]:
    """Decode access unit by access unit, checking each gives its picture at once."""
    decoder = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for unit in units:
        out = decoder.decode(av.Packet(unit.data))
        assert len(out) == 1, "decoder should output each picture immediately"
        frames.extend(out)
    return frames


def encode_run(
    profile: VideoProfile, count: int, force_at: int | None = None
) -> list[EncodedVideo]:
    encoder = VideoEncoder(profile)
    units = []
    for i in range(count):
        if i == force_at:
            encoder.force_keyframe()
        units.append(encoder.encode(NOW + round(i * 1000 / profile.fps)))
    return units


# -- video -------------------------------------------------------------------------------


def test_profiles_and_validation() -> None:
    assert (QUALITIES["standard"].width, QUALITIES["standard"].height) == (640, 360)
    assert (QUALITIES["high"].width, QUALITIES["high"].height) == (1280, 720)
    assert (QUALITIES["super"].width, QUALITIES["super"].height) == (1920, 1080)
    assert all(p.fps == 15 and p.gop == 15 for p in QUALITIES.values())
    high = VideoProfile.named("high", fps=25, gop_seconds=2)
    assert (high.width, high.fps, high.gop) == (1280, 25, 50)
    for bad in (
        {"width": 641},
        {"height": 100},
        {"fps": 0},
        {"fps": 61},
        {"gop_seconds": 0.5},
        {"gop_seconds": 2.5},
        {"bitrate": 10},
        {"preset": "slow"},
    ):
        with pytest.raises(ValueError):
            VideoProfile(**bad)
    with pytest.raises(ValueError, match="quality"):
        VideoProfile.named("ultra")  # type: ignore[arg-type]


def test_h264_stream_is_constrained_baseline_with_fixed_gop_and_in_band_headers() -> None:
    profile = VideoProfile.named("standard")
    units = encode_run(profile, 3 * profile.gop + 1)
    assert [u.keyframe for u in units] == [i % profile.gop == 0 for i in range(len(units))]
    for unit in units:
        types = nal_types(unit.data)
        assert unit.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        if unit.keyframe:
            # Parameter sets first, in the same buffer as the IDR.
            assert types.index(SPS) < types.index(PPS) < types.index(IDR)
            assert NON_IDR not in types
        else:
            assert set(types) == {NON_IDR}
    sps = next(n for n in nal_units(units[0].data) if n[0] & 0x1F == SPS)
    profile_idc, constraints = sps[1], sps[2]
    assert profile_idc == 66  # baseline
    assert constraints & 0x40  # constraint_set1: constrained baseline
    frames = decode_video(units)
    assert len(frames) == len(units)
    for frame, unit in zip(frames, units, strict=True):
        assert (frame.width, frame.height) == (640, 360)
        assert read_clock(frame) == unit.capture_ms
    assert [u.pts_ms for u in units[:4]] == [0, 67, 133, 200]


def test_two_second_gop() -> None:
    profile = VideoProfile(320, 240, fps=10, gop_seconds=2.0, bitrate=200_000)
    units = encode_run(profile, 41)
    assert [i for i, u in enumerate(units) if u.keyframe] == [0, 20, 40]


def test_force_keyframe_restarts_the_gop() -> None:
    profile = VideoProfile(320, 240, fps=15, bitrate=300_000)
    units = encode_run(profile, 40, force_at=7)
    keyframes = [i for i, u in enumerate(units) if u.keyframe]
    assert keyframes == [0, 7, 22, 37]
    assert {SPS, PPS, IDR} <= set(nal_types(units[7].data))
    frames = decode_video(units)
    assert [read_clock(f) for f in frames] == [u.capture_ms for u in units]


def test_high_quality_decodes_with_clock() -> None:
    units = encode_run(VideoProfile.named("high"), 5)
    frames = decode_video(units)
    assert [(f.width, f.height) for f in frames] == [(1280, 720)] * 5
    assert [read_clock(f) for f in frames] == [u.capture_ms for u in units]


def test_pattern_moves() -> None:
    pattern = TestPattern(320, 240)
    a = pattern.frame(NOW).to_ndarray()
    b = pattern.frame(NOW + 500).to_ndarray()
    below_code = slice(100, 240)
    assert np.abs(a[below_code].astype(int) - b[below_code].astype(int)).mean() > 10


def test_h264_encoder_on_caller_frames_and_close() -> None:
    encoder = H264Encoder(VideoProfile(320, 240))
    frame = TestPattern(320, 240).frame(NOW)
    first = encoder.encode(frame, pts_ms=0, capture_ms=NOW)
    # A repeated pts must not upset x264 (it needs strictly increasing ones).
    again = encoder.encode(TestPattern(320, 240).frame(NOW), pts_ms=0, capture_ms=NOW)
    assert first.keyframe and not again.keyframe and again.pts_ms == 0
    encoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        encoder.encode(frame, pts_ms=10, capture_ms=NOW)


# -- audio -------------------------------------------------------------------------------


def decode_audio(packets: list[EncodedAudio], codec: str, extradata: bytes) -> NDArray[Any]:
    decoder = av.CodecContext.create(codec, "r")
    assert isinstance(decoder, av.audio.codeccontext.AudioCodecContext)
    decoder.extradata = extradata
    chunks = []
    for packet in packets:
        for frame in decoder.decode(av.Packet(packet.data)):
            assert isinstance(frame, av.AudioFrame)
            assert frame.sample_rate == packet.sample_rate
            chunks.append(frame.to_ndarray()[0].astype(np.float64))
    return np.concatenate(chunks)


def band_energy(x: NDArray[Any], rate: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[np.abs(freqs - hz) < 30].max() / spectrum.max())


def encode_audio(profile: AudioProfile, seconds: float) -> tuple[AudioEncoder, list[EncodedAudio]]:
    encoder = AudioEncoder(profile)
    out: list[EncodedAudio] = []
    k = 0
    while k * encoder.frame_ms < seconds * 1000:
        out.extend(encoder.encode(NOW + k * encoder.frame_ms))
        k += 1
    return encoder, out


@pytest.mark.parametrize("rate", [16000, 44100])
def test_aac_decodes_with_its_audio_specific_config(rate: int) -> None:
    encoder, packets = encode_audio(AudioProfile("aac", sample_rate=rate), 2.5)
    assert encoder.config == audio_specific_config(rate, 1)
    if rate == 16000:
        assert encoder.config == b"\x14\x08"  # AAC-LC, 16 kHz, mono
    assert all(p.codec == "aac" and p.samples == 1024 for p in packets)
    pts = [p.pts_ms for p in packets]
    assert pts[0] == 0 and pts == sorted(pts)
    assert not any(p.data[:2] == b"\xff\xf1" for p in packets)  # raw, not ADTS
    pcm = decode_audio(packets, "aac", encoder.config)
    assert float(np.sqrt((pcm**2).mean())) > 0.05  # not silence
    check_tone_and_beeps(pcm, rate)


def test_opus_decodes() -> None:
    encoder, packets = encode_audio(AudioProfile("opus"), 2.5)
    assert encoder.config.startswith(b"OpusHead")
    assert all(p.samples == 960 and p.sample_rate == 48000 for p in packets)
    assert [p.pts_ms for p in packets[:3]] == [0, 18, 38]  # 2.5 ms pre-skip, then 20 ms
    pcm = decode_audio(packets, "opus", encoder.config)
    assert float(np.sqrt((pcm**2).mean())) > 0.05
    check_tone_and_beeps(pcm, 48000)


def check_tone_and_beeps(pcm: NDArray[Any], rate: int) -> None:
    """The beep (1 kHz) sounds in the first 100 ms of each second, the tone (440 Hz) in
    between. The window edges keep clear of codec delay (a few ms)."""
    for second in (1, 2):
        beep = pcm[int((second + 0.02) * rate) : int((second + 0.08) * rate)]
        quiet = pcm[int((second + 0.3) * rate) : int((second + 0.9) * rate)]
        assert band_energy(beep, rate, 1000) == pytest.approx(1.0)
        assert band_energy(quiet, rate, 440) == pytest.approx(1.0)
        assert band_energy(quiet, rate, 1000) < 0.05


def test_audio_profile_validation() -> None:
    assert AudioProfile().sample_rate == 16000 and AudioProfile("opus").sample_rate == 48000
    for bad in (
        {"codec": "mp3"},
        {"codec": "aac", "sample_rate": 12345},
        {"codec": "opus", "sample_rate": 44100},
        {"codec": "opus", "frame_ms": 15},
        {"channels": 3},
    ):
        with pytest.raises(ValueError):
            AudioProfile(**bad)


# -- the pacer ---------------------------------------------------------------------------


class FakeClock:
    """Wall clock that only moves when the source sleeps (or a test jumps it)."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def collect(source: LiveSource, clock: FakeClock, until: float) -> list[MediaFrame]:
    out: list[MediaFrame] = []
    async for item in source:
        out.append(item)
        if clock.now >= until:
            break
    return out


def video_of(items: list[MediaFrame]) -> list[EncodedVideo]:
    return [i for i in items if isinstance(i, EncodedVideo)]


def audio_of(items: list[MediaFrame], codec: str) -> list[EncodedAudio]:
    return [i for i in items if isinstance(i, EncodedAudio) and i.codec == codec]


async def test_pacer_schedule_with_a_fake_clock() -> None:
    clock = FakeClock(NOW / 1000)
    profile = VideoProfile(320, 240, fps=15, bitrate=300_000)
    audio = [AudioProfile("aac"), AudioProfile("opus")]
    async with LiveSource(profile, audio, clock=clock, sleep=clock.sleep) as source:
        items = await collect(source, clock, NOW / 1000 + 2.0)
    video = video_of(items)
    # 0, 66.7, …, 2000 ms: captured on schedule, stamped with the (fake) wall clock.
    assert [v.capture_ms - NOW for v in video] == [round(i * 1000 / 15) for i in range(31)]
    assert [v.pts_ms for v in video] == [round(i * 1000 / 15) for i in range(31)]
    assert [i for i, v in enumerate(video) if v.keyframe] == [0, 15, 30]
    assert [read_clock(f) for f in decode_video(video)] == [v.capture_ms for v in video]
    aac, opus = audio_of(items, "aac"), audio_of(items, "opus")
    # An audio frame comes out once fully recorded (AAC: 64 ms, Opus: 20 ms). FFmpeg's AAC
    # encoder holds two frames back (look-ahead, then priming, which is dropped); Opus none.
    assert len(aac) == 2000 // 64 - 2
    assert len(opus) in (99, 100)  # the one due at exactly 2 s may tie with the last video
    assert [a.pts_ms for a in aac[:3]] == [0, 64, 128]
    assert all(b.pts_ms - a.pts_ms == 20 for a, b in itertools.pairwise(opus[1:]))
    assert aac[0].capture_ms == NOW
    # Interleaved in capture order: every item is out no later than the clock allows.
    assert all(s > 0 for s in clock.sleeps)
    assert pytest.approx(sum(clock.sleeps)) == 2.0
    assert source.dropped_video == 0 and source.skipped_audio == 0
    assert source.audio_config("aac") == b"\x14\x08"
    assert source.audio_config("opus").startswith(b"OpusHead")


async def test_pacer_drops_video_and_skips_audio_when_behind() -> None:
    clock = FakeClock(NOW / 1000)
    source = LiveSource(
        VideoProfile(320, 240, fps=10), [AudioProfile("opus")], clock=clock, sleep=clock.sleep
    )
    first = await anext(source)
    assert isinstance(first, EncodedVideo) and first.pts_ms == 0
    clock.now += 1.0  # the loop was starved for a second
    items: list[MediaFrame] = []
    while len(video_of(items)) < 2:
        items.append(await anext(source))
    video = video_of(items)
    assert video[0].pts_ms == 1000 and video[0].capture_ms == NOW + 1000
    assert video[1].pts_ms == 1100
    assert source.dropped_video == 9
    assert source.skipped_audio > 0
    # Audio resumes within max_audio_lag_s (0.5 s) of now, not a second behind.
    assert min(a.capture_ms for a in audio_of(items, "opus")) >= NOW + 1000 - 520
    await source.aclose()


async def test_pacer_force_keyframe_and_encodes_off_the_loop() -> None:
    clock = FakeClock(NOW / 1000)
    source = LiveSource(VideoProfile(320, 240), [], clock=clock, sleep=clock.sleep)
    assert source.video is not None
    threads: set[int] = set()
    encode = source.video.encode

    def recording(capture_ms: int, pts_ms: int | None = None) -> EncodedVideo:
        threads.add(threading.get_ident())
        return encode(capture_ms, pts_ms)

    source.video.encode = recording  # type: ignore[method-assign]
    units = [await anext(source) for _ in range(4)]
    source.force_keyframe()
    units += [await anext(source) for _ in range(2)]
    assert [isinstance(u, EncodedVideo) and u.keyframe for u in units] == [
        True,
        False,
        False,
        False,
        True,
        False,
    ]
    assert threads and threading.get_ident() not in threads
    await source.aclose()


async def test_pacer_close_ends_iteration_even_while_waiting() -> None:
    clock = FakeClock(NOW / 1000)
    release = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        await release.wait()
        clock.now += seconds

    source = LiveSource(VideoProfile(320, 240), [], clock=clock, sleep=slow_sleep)
    assert isinstance(await anext(source), EncodedVideo)
    waiting = asyncio.create_task(anext(source))
    await asyncio.sleep(0.01)
    await source.aclose()
    release.set()
    with pytest.raises(StopAsyncIteration):
        await waiting
    with pytest.raises(StopAsyncIteration):
        await anext(source)
    await source.aclose()  # idempotent
    assert source.closed
    assert [item async for item in source] == []


async def test_audio_only_source() -> None:
    clock = FakeClock(NOW / 1000)
    async with LiveSource(None, [AudioProfile("opus")], clock=clock, sleep=clock.sleep) as src:
        items = [await anext(src) for _ in range(10)]
    assert all(isinstance(i, EncodedAudio) for i in items)
    assert clock.now * 1000 == pytest.approx(NOW + 200)  # 10 × 20 ms, each once recorded


def test_source_rejects_nothing_to_send_and_duplicate_codecs() -> None:
    with pytest.raises(ValueError):
        LiveSource(None, [])
    with pytest.raises(ValueError):
        LiveSource(None, [AudioProfile("aac"), AudioProfile("aac", sample_rate=48000)])

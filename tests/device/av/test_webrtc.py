"""The device's WebRTC peer and its frame broadcaster, against real parts: a LiveSource
encoding with x264/libopus/AAC, aiortc peers on both ends talking over loopback UDP (offer
and answer handed over directly), aiortc decoding what arrives.

What is proven: the viewer's pictures are bit-identical to decoding the camera's own
bitstream (no re-encode on the device), with clock codes increasing; Opus arrives; a PLI
makes the camera send an IDR at once; several viewers share one encoder; a lagging
subscriber drops to the next keyframe without holding the others; closing either end ends
the other; bad offers and a misbehaving channel peer get clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from ivcloud.client.p2p import AppPeer, P2PClosed, P2PRequestFailed
from ivcloud.device.av import EncodedAudio, EncodedVideo, MediaFrame, VideoEncoder, VideoProfile
from ivcloud.device.av.broadcast import FeedClosed, FeedFailed, FrameBroadcaster
from ivcloud.device.av.rtc_channel import ChannelLimits
from ivcloud.device.av.webrtc import DevicePeer, NegotiationFailed, PeerClosed
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.p2p_channel import Failed, decode_answer, encode_data
from tests import p2p_support
from tests.p2p_support import CameraHandler, camera, connect, eventually, session

loopback_ice = p2p_support.loopback_ice  # the fixture, used by name
pytestmark = pytest.mark.usefixtures("loopback_ice")

NOW = 1_767_225_600_000


# -- the broadcaster, on real encoded frames --------------------------------------------------


def encoded_run(count: int, gop_seconds: float = 1.0) -> list[EncodedVideo]:
    profile = VideoProfile(320, 240, fps=10, gop_seconds=gop_seconds, bitrate=200_000)
    encoder = VideoEncoder(profile)
    try:
        return [encoder.encode(NOW + i * 100) for i in range(count)]
    finally:
        encoder.close()


class ScriptedSource:
    """Yields pre-encoded frames, one per event-loop turn, then ends (or fails)."""

    def __init__(self, frames: list[MediaFrame], fail: bool = False) -> None:
        self._frames = iter(frames)
        self._fail = fail
        self.forced = 0
        self.read = 0

    async def __anext__(self) -> MediaFrame:
        await asyncio.sleep(0)
        frame = next(self._frames, None)
        if frame is None:
            if self._fail:
                raise OSError("camera unplugged")
            raise StopAsyncIteration
        self.read += 1
        return frame

    def force_keyframe(self) -> None:
        self.forced += 1


async def drain(sub: AsyncIterator[MediaFrame]) -> list[MediaFrame]:
    return [frame async for frame in sub]


async def test_broadcaster_fans_out_and_drops_a_lagging_subscriber_to_a_keyframe() -> None:
    frames = encoded_run(55)  # keyframes at 0, 10, 20, …
    source = ScriptedSource(list(frames))
    feed = FrameBroadcaster(source, max_frames=8)
    fast = feed.subscribe(video=True, audio=())
    slow = feed.subscribe(video=True, audio=())
    assert source.forced == 1  # two joins before any keyframe: one IDR request
    fast_frames = await drain(fast)  # reads as frames come; `slow` never reads meanwhile
    assert fast_frames == frames  # the very same objects, in order, none lost
    assert fast.dropped == 0
    assert slow.queued <= 8 and slow.dropped > 0
    late = await drain(slow)
    assert late and isinstance(late[0], EncodedVideo) and late[0].keyframe
    assert [f.pts_ms for f in late] == [f.pts_ms for f in frames[-len(late) :]]
    assert slow.dropped + len(late) == len(frames)
    assert feed.closed and feed.frames_in == len(frames)
    with pytest.raises(FeedClosed):
        feed.subscribe()


async def test_broadcaster_reads_only_while_subscribed_and_starts_on_a_keyframe() -> None:
    frames = encoded_run(30)
    source = ScriptedSource(list(frames))
    feed = FrameBroadcaster(source)
    assert source.read == 0 and not feed.running  # no viewer, no encoding
    first = feed.subscribe(video=True, audio=())
    got = [await first.__anext__() for _ in range(3)]
    first.close()
    await eventually(lambda: not feed.running)
    read_then = source.read
    assert read_then <= 5  # stopped within a frame or two of the last viewer leaving
    assert [f.pts_ms for f in got] == [0, 100, 200]
    second = feed.subscribe(video=True, audio=())  # mid-GOP: waits for the next keyframe
    nxt = await second.__anext__()
    assert isinstance(nxt, EncodedVideo) and nxt.keyframe and nxt.pts_ms == 1000
    await feed.aclose()
    assert [f async for f in second] == []
    assert source.read < len(frames)


async def test_audio_subscription_and_source_failure() -> None:
    video = encoded_run(12)
    audio = [EncodedAudio("opus", i * 20, NOW + i * 20, b"\xfc" * 10, 960, 48000) for i in range(5)]
    mixed: list[MediaFrame] = [*audio[:2], video[0], *audio[2:], *video[1:]]
    source = ScriptedSource(mixed, fail=True)
    feed = FrameBroadcaster(source)
    opus_only = feed.subscribe(video=False, audio=("opus",))
    aac_only = feed.subscribe(video=False, audio=("aac",))
    both = feed.subscribe(video=True, audio=("opus",))
    with pytest.raises(FeedFailed) as info:
        await drain(opus_only)
    assert isinstance(info.value.__cause__, OSError)
    assert opus_only.delivered == len(audio)
    with pytest.raises(FeedFailed):
        await drain(aac_only)
    assert aac_only.delivered == 0
    got: list[MediaFrame] = []
    with pytest.raises(FeedFailed):
        async for frame in both:
            got.append(frame)
    # Audio from before the first picture is left out: the viewer starts with the picture.
    assert got[0] is video[0] and got[1:4] == audio[2:]
    with pytest.raises(ValueError):
        FrameBroadcaster(source, max_frames=0)


# -- media over WebRTC ---------------------------------------------------------------------


def reference_pictures(units: list[EncodedVideo]) -> dict[int, np.ndarray]:
    """The camera's own bitstream decoded with FFmpeg: capture ms → yuv420p pixels."""
    decoder = av.CodecContext.create("h264", "r")
    out: dict[int, np.ndarray] = {}
    for unit in units:
        for frame in decoder.decode(av.Packet(unit.data)):
            out[unit.capture_ms] = frame.to_ndarray(format="yuv420p")
    return out


async def test_video_reaches_the_viewer_bit_for_bit_and_audio_is_opus() -> None:
    async with camera() as cam, session(cam) as s:
        answer = s.answer
        start = answer.index("m=video")
        video_section = answer[start : answer.index("m=", start + 1)]
        assert "H264/90000" in video_section and "VP8" not in video_section
        assert "profile-level-id=42e01f" in video_section
        assert "packetization-mode=1" in video_section
        assert "opus/48000/2" in answer
        track = s.app.video_track
        assert track is not None
        received: list[tuple[int, np.ndarray]] = []
        while len(received) < 20:
            frame = await asyncio.wait_for(track.recv(), 10)
            clock = read_clock(frame)
            assert clock is not None, "every picture carries a readable clock code"
            received.append((clock, frame.to_ndarray(format="yuv420p")))
        clocks = [c for c, _ in received]
        assert clocks == sorted(set(clocks)), "pictures arrive in capture order"
        reference = reference_pictures(cam.tap.video)
        for clock, pixels in received:
            assert clock in reference
            # Identical to decoding the camera's bitstream: the device packetized the
            # camera's access units, it did not decode and re-encode them.
            assert np.array_equal(pixels, reference[clock])
        audio = s.app.audio_track
        assert audio is not None
        sound = await asyncio.wait_for(audio.recv(), 10)
        assert isinstance(sound, av.AudioFrame) and sound.sample_rate == 48000
        stats = s.device.stats
        assert stats.video_packets >= 20 and stats.audio_packets > 0
        assert stats.video_keyframes >= 1


async def test_pli_from_the_viewer_makes_the_camera_send_a_keyframe() -> None:
    async with camera() as cam, session(cam) as s:
        track = s.app.video_track
        assert track is not None
        await asyncio.wait_for(track.recv(), 10)
        gop = cam.source.video_profile.gop if cam.source.video_profile else 0
        assert gop == 20

        def early_in_gop() -> bool:
            video = cam.tap.video
            last_key = max(i for i, u in enumerate(video) if u.keyframe)
            return 2 <= len(video) - 1 - last_key <= 5

        await eventually(early_in_gop)
        video = cam.tap.video
        before = len(video)
        last_key = max(i for i, u in enumerate(video) if u.keyframe)
        assert await s.app.request_keyframe()
        await eventually(lambda: s.device.stats.keyframe_requests >= 1)
        await eventually(lambda: len(cam.tap.video) >= before + 3)
        after = cam.tap.video[before : before + 3]
        # The next GOP boundary is ~15 frames away: this IDR was asked for.
        assert any(u.keyframe for u in after)
        assert before + 3 < last_key + gop


async def test_two_viewers_share_one_encoder() -> None:
    async with camera() as cam, session(cam) as a, session(cam) as b:
        assert cam.feed.subscribers == 4  # video + audio track of each viewer
        seen: dict[str, set[int]] = {}
        for name, s in (("a", a), ("b", b)):
            track = s.app.video_track
            assert track is not None
            clocks = []
            for _ in range(10):
                clock = read_clock(await asyncio.wait_for(track.recv(), 10))
                assert clock is not None
                clocks.append(clock)
            seen[name] = set(clocks)
            # A joining viewer is not kept waiting for the GOP's end: its first picture is
            # the IDR the camera was asked for when the viewer's track started.
            first = next(i for i, u in enumerate(cam.tap.video) if u.capture_ms == clocks[0])
            assert cam.tap.video[first].keyframe
            assert any(0 <= first - at <= 2 for at in cam.tap.forced_at)
        # One camera, one encoder: both viewers show pictures of the same capture instants,
        # and the camera encoded each picture once whatever the number of viewers.
        tap_clocks = [u.capture_ms for u in cam.tap.video]
        assert len(tap_clocks) == len(set(tap_clocks))
        assert seen["a"] <= set(tap_clocks) and seen["b"] <= set(tap_clocks)
        assert cam.feed.frames_in == len(cam.tap.frames)


async def test_closing_the_app_ends_the_device_session() -> None:
    async with camera() as cam:
        s = await connect(cam)
        stream = await s.app.open_stream("ipc.flv?action=live&channel=0&quality=standard")
        await stream.__anext__()
        assert cam.feed.subscribers == 3  # two tracks and the FLV stream
        await s.app.close()
        await asyncio.wait_for(s.device.wait_closed(), 10)
        assert s.device.closed
        await eventually(lambda: cam.feed.subscribers == 0)
        assert cam.streams_closed == 1  # the handler's stream was closed, not leaked
        await eventually(lambda: not cam.feed.running)


async def test_closing_the_device_ends_the_app_session() -> None:
    async with camera() as cam:
        s = await connect(cam)
        track = s.app.video_track
        assert track is not None
        await asyncio.wait_for(track.recv(), 10)
        pending = asyncio.ensure_future(s.app.request("hang"))
        await eventually(lambda: s.handler is not None and "hang" in s.handler.requests)
        await s.device.close()
        await asyncio.wait_for(s.app.wait_closed(), 10)
        with pytest.raises(P2PClosed):
            await asyncio.wait_for(pending, 10)
        with pytest.raises(MediaStreamError):
            while True:
                await asyncio.wait_for(track.recv(), 10)
        with pytest.raises(P2PClosed):
            await s.app.request("action=inner_define&channel=0&cmd=get_device_st&type=live")
        assert cam.feed.subscribers == 0


# -- negotiation and a misbehaving peer ----------------------------------------------------


async def test_bad_offers_are_refused_clearly() -> None:
    async with camera() as cam:
        device = DevicePeer(media=cam.feed, handler=None)
        with pytest.raises(NegotiationFailed, match=r"not valid SDP|cannot be answered"):
            await device.accept("this is not sdp")
        assert device.closed  # nothing left half-open

        # A viewer that only offers VP8: the camera cannot send it without re-encoding.
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("video", direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities("video")
        assert caps is not None
        vp8 = [c for c in caps.codecs if c.mimeType == "video/VP8"]
        transceiver.setCodecPreferences(vp8)
        await pc.setLocalDescription(await pc.createOffer())
        device = DevicePeer(media=cam.feed, handler=None)
        with pytest.raises(NegotiationFailed, match="codec"):
            await device.accept(pc.localDescription.sdp)
        assert device.closed and cam.feed.subscribers == 0
        await pc.close()


async def test_an_abandoned_offer_times_out() -> None:
    async with camera() as cam:
        app = AppPeer()
        device = DevicePeer(media=cam.feed, handler=None, connect_timeout=0.5)
        await device.accept(await app.offer())  # the answer never reaches the app
        await asyncio.wait_for(device.wait_closed(), 10)
        with pytest.raises(PeerClosed):
            await device.wait_connected(timeout_s=1)
        await app.close()


async def test_a_misbehaving_channel_peer_gets_protocol_errors() -> None:
    """A raw aiortc peer (not the app SDK) sends junk on the xp2p channel."""
    async with camera() as cam:
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("xp2p")
        answers: asyncio.Queue[str | bytes] = asyncio.Queue()
        channel.on("message", answers.put_nowait)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        device = DevicePeer(
            media=None, handler=CameraHandler(cam), limits=ChannelLimits(max_open=2)
        )
        await pc.setLocalDescription(await pc.createOffer())
        answer = await device.accept(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(opened.wait(), 10)

        async def next_failure() -> tuple[int, int]:
            message = await asyncio.wait_for(answers.get(), 10)
            assert isinstance(message, str)
            answer = decode_answer(message)
            assert isinstance(answer, Failed)
            return answer.id, answer.status

        channel.send("{not json")
        assert await next_failure() == (0, 400)
        channel.send('{"id":7,"req":"x","window":3}')
        assert await next_failure() == (7, 400)  # the id could be read, so it is named
        channel.send(b"\x00\x00")  # binary junk
        assert await next_failure() == (0, 400)
        channel.send(encode_data(99, b"voice for nobody"))  # ignored: no such request
        channel.send('{"id":98,"cancel":true}')  # ignored: nothing to cancel
        channel.send('{"id":1,"req":"hang"}')
        channel.send('{"id":1,"req":"hang"}')
        assert await next_failure() == (1, 409)
        channel.send('{"id":2,"req":"hang"}')
        channel.send('{"id":3,"req":"hang"}')
        assert await next_failure() == (3, 429)
        server = device.channel
        assert server is not None and server.stats.bad_messages == 3
        assert server.open_requests == 2
        await pc.close()
        await asyncio.wait_for(device.wait_closed(), 10)
        assert server.open_requests == 0  # the hanging handlers were cancelled


async def test_requests_without_a_handler_get_503() -> None:
    async with session(None) as s:
        with pytest.raises(P2PRequestFailed) as info:
            await s.app.request("action=inner_define&channel=0&cmd=get_device_st&type=live")
        assert info.value.status == 503
        # Renegotiation is not supported: refused, and the session carries on.
        with pytest.raises(NegotiationFailed, match="state"):
            await s.device.accept(s.answer)
        assert s.device.connection_state == "connected"
        # A device without a camera feed answers the offered media inactive.
        assert s.app.video_track is None and s.app.audio_track is None
        assert s.device.stats.video_packets == 0

"""The app SDK's WebRTC peer against the device peer, over real loopback UDP (and through a
real coturn): XP2P commands and their errors, FLV live streams over the data channel that
FFmpeg decodes, cancel, flow control that stops a device within one window when the reader
stops (and the channel's buffer bound when the network is the bottleneck), talk audio into
the device's sink, the path in use (direct / TURN), and an SDK that still imports without
aiortc."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import time

import pytest

from ivcloud.client.p2p import (
    P2PClosed,
    P2PError,
    P2PRequestFailed,
    P2PStreamError,
    P2PTimeout,
)
from ivcloud.device.av import AudioEncoder, AudioProfile, VideoProfile
from ivcloud.device.av.rtc_channel import ChannelLimits
from ivcloud.device.av.webrtc import DevicePeerError
from ivcloud.media.clockcode import read_clock
from ivcloud.protocol.av.flv_reader import FlvReader
from ivcloud.protocol.p2p_channel import HEADER_SIZE, MAX_CHUNK, MAX_WINDOW, MIN_WINDOW
from ivcloud.services.ice import IceService
from tests import p2p_support, turn_server
from tests.p2p_support import camera, eventually, flv_frames, pattern_bytes, session
from tests.turn_server import SECRET, Coturn

loopback_ice = p2p_support.loopback_ice  # fixtures, used by name
coturn = turn_server.coturn
pytestmark = pytest.mark.usefixtures("loopback_ice")

LIVE = "ipc.flv?action=live&channel=0&quality=high"
DEVICE_ST = "action=inner_define&channel=0&cmd=get_device_st&type=live&quality=high"


async def test_commands_and_their_errors() -> None:
    async with camera() as cam, session(cam) as s:
        # Two media tracks are subscribed to the camera; the answer is the handler's text.
        assert await s.app.request(DEVICE_ST) == '[{"status":"0","appConnectNum":"2"}]'
        with pytest.raises(P2PRequestFailed) as refused:
            await s.app.request("action=inner_define&channel=0&cmd=format_sd")
        assert refused.value.status == 406  # the handler's own status
        with pytest.raises(P2PRequestFailed) as bad:
            await s.app.request("ipc.flv?action=live&channel=0&quality=ultra")
        assert bad.value.status == 404  # a ProtocolError from the handler: bad request
        with pytest.raises(P2PTimeout):
            await s.app.request("hang", timeout_s=0.3)
        server = s.device.channel
        assert server is not None
        # The timed-out request was cancelled on the device, not left running.
        await eventually(lambda: server.open_requests == 0 and server.stats.cancelled == 1)
        assert await s.app.request(DEVICE_ST)  # the channel is still fine


async def test_live_flv_over_the_data_channel_decodes_and_cancel_stops_it() -> None:
    async with camera() as cam, session(cam) as s:
        stream = await s.app.open_stream(LIVE)
        data = bytearray()
        async for chunk in stream:
            data += chunk
            if len(data) > 80_000:
                break
        assert cam.feed.subscribers == 3
        await stream.aclose()
        assert stream.ended
        frames = await flv_frames(bytes(data))
        clocks = [read_clock(f) for f in frames]
        assert len(frames) >= 10 and None not in clocks
        assert clocks == sorted(clocks)
        assert frames[0].key_frame  # the stream starts on a keyframe
        # Cancelled on the device: the handler's stream closed, its subscription released.
        await eventually(lambda: cam.streams_closed == 1 and cam.feed.subscribers == 2)
        server = s.device.channel
        assert server is not None and server.stats.cancelled == 1
        assert server.open_requests == 0


async def test_trickled_candidates_are_checked_on_both_ends() -> None:
    async with session(None) as s:
        for peer in (s.app, s.device):
            with pytest.raises(P2PError if peer is s.app else DevicePeerError):
                await peer.add_ice_candidate("candidate:not a candidate")
            await peer.add_ice_candidate(
                "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", sdp_mid="0"
            )
            await peer.add_ice_candidate(None)  # end of candidates


async def test_giving_up_on_a_request_cancels_it_on_the_device() -> None:
    """A caller cancelled while waiting for the answer (a player that hung up) must not
    leave the device working for an id nobody reads."""
    async with camera() as cam, session(cam) as s:
        server = s.device.channel
        assert server is not None
        waiting = asyncio.create_task(s.app.request("hang", timeout_s=60))
        await eventually(lambda: server.open_requests == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await eventually(lambda: server.open_requests == 0 and server.stats.cancelled == 1)


async def test_a_reader_that_stops_stops_the_device_within_one_window() -> None:
    window = MIN_WINDOW  # 16 KiB, under a second of this live stream
    one_second_gop = VideoProfile(320, 240, fps=10, gop_seconds=1.0, bitrate=300_000)
    no_media = {"video": False, "audio": False}
    async with (
        camera(one_second_gop, max_frames=20) as cam,
        session(cam, app_kwargs=no_media) as s,
    ):
        stream = await s.app.open_stream(LIVE, window=window)
        reader = FlvReader()
        data = bytearray(await stream.__anext__())
        server = s.device.channel
        assert server is not None and s.handler is not None
        subscription = s.handler.subscriptions[0]
        # The app reads nothing now. The device must stop sending at the window, and the
        # camera's frames for this stream are dropped upstream instead of queueing anywhere.
        await eventually(lambda: server.stats.credit_waits >= 1 and subscription.dropped > 0)
        assert stream.buffered <= window
        assert server.stats.max_outstanding <= window
        assert subscription.queued <= 20
        # Reading again resumes the stream, at a keyframe, still decodable.
        keyframes = sum(t.is_video_keyframe for t in reader.feed(bytes(data)))
        async for chunk in stream:
            data += chunk
            keyframes += sum(t.is_video_keyframe for t in reader.feed(chunk))
            if keyframes >= 2:
                break
        await stream.aclose()
        frames = await flv_frames(bytes(data))
        clocks = [read_clock(f) for f in frames]
        assert None not in clocks and clocks == sorted(clocks)
        assert any(b - a > 500 for a, b in itertools.pairwise(clocks))  # the gap


async def test_a_fast_stream_is_bounded_by_the_channel_buffer() -> None:
    size = 2 * 1024 * 1024
    limits = ChannelLimits(high_water=64 * 1024, low_water=16 * 1024)
    no_media = {"video": False, "audio": False}  # the camera stays idle: handler bytes only
    async with camera() as cam, session(cam, limits=limits, app_kwargs=no_media) as s:
        started = time.monotonic()
        stream = await s.app.open_stream(f"blob?size={size}", window=MAX_WINDOW)
        received = bytearray()
        async for chunk in stream:
            received += chunk
        elapsed = time.monotonic() - started
        assert bytes(received) == pattern_bytes(size)  # every byte, in order
        server = s.device.channel
        assert server is not None
        # The handler produces far faster than SCTP sends: the device waited on
        # bufferedAmount instead of queueing megabytes.
        assert server.stats.buffer_waits >= 1
        assert server.stats.max_buffered <= limits.high_water + MAX_CHUNK + HEADER_SIZE
        assert not cam.feed.running
        print(f"data channel: {size / elapsed / 1e6:.1f} MB/s over loopback")


async def test_talk_audio_reaches_the_device_sink() -> None:
    encoder = AudioEncoder(AudioProfile("aac"))
    frames = [
        packet.data for i in range(30) for packet in encoder.encode(1_767_225_600_000 + i * 64)
    ]
    encoder.close()
    assert len(frames) >= 25
    async with camera() as cam, session(cam) as s:
        upload = await s.app.start_voice("voice?channel=0&calltype=audio")
        for frame in frames:
            await upload.write(frame)
        await upload.aclose()
        await asyncio.wait_for(cam.voice_closed.wait(), 10)
        assert cam.voice == frames  # every frame, in order, one write per frame
        server = s.device.channel
        assert server is not None and server.stats.voice_frames == len(frames)
        with pytest.raises(P2PClosed):
            await upload.write(frames[0])


async def test_device_close_fails_an_open_stream() -> None:
    async with camera() as cam, session(cam) as s:
        stream = await s.app.open_stream(LIVE)
        await stream.__anext__()
        await s.device.close()
        with pytest.raises((P2PClosed, P2PStreamError)):
            async for _ in stream:
                pass
        await asyncio.wait_for(s.app.wait_closed(), 10)


async def test_direct_path_on_loopback() -> None:
    async with camera() as cam, session(cam) as s:
        assert s.app.selected_path() == "direct"


async def test_relay_only_goes_through_turn(coturn: Coturn) -> None:
    """ICE transport policy "relay": the app may only use coturn's relay, with credentials
    minted the way ivcloud mints them; video still arrives and decodes."""
    ice = IceService(turn_urls=[coturn.url()], turn_secret=SECRET)
    servers = ice.ice_servers("viewer-1", now=int(time.time()))
    async with (
        camera() as cam,
        session(
            cam,
            app_kwargs={"ice_servers": servers, "ice_transport_policy": "relay"},
            device_kwargs={"ice_servers": servers},
        ) as s,
    ):
        assert s.app.selected_path() == "turn"
        track = s.app.video_track
        assert track is not None
        clocks = []
        for _ in range(5):
            clock = read_clock(await asyncio.wait_for(track.recv(), 15))
            assert clock is not None
            clocks.append(clock)
        assert clocks == sorted(clocks)
        assert await s.app.request(DEVICE_ST)


def test_the_sdk_imports_without_aiortc() -> None:
    """The core install has no aiortc: ivcloud.client and ivcloud.device (peers included)
    still import, and creating a peer says what to install."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("aiortc", "aioice"):
                    raise ImportError(f"{name} blocked for this test")
                return None

        sys.meta_path.insert(0, Block())
        import ivcloud.client, ivcloud.device
        from ivcloud.client.p2p import AppPeer, P2PUnavailable
        from ivcloud.device.av.broadcast import FrameBroadcaster
        from ivcloud.device.av.webrtc import DevicePeer, WebRtcUnavailable
        try:
            AppPeer()
        except P2PUnavailable as exc:
            print("app:", exc)
        try:
            DevicePeer(media=None, handler=None)
        except WebRtcUnavailable as exc:
            print("device:", exc)
        assert not any(m.split(".")[0] in ("aiortc", "aioice") for m in sys.modules)
        """
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "app: WebRTC needs aiortc: pip install 'ivcloud[webrtc]'" in result.stdout
    assert "device: WebRTC needs aiortc" in result.stdout

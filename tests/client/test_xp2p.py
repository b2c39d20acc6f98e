"""The XP2P client's API against a real ivcloud: start/stop with the XP2P codes and the seed's
exact log lines, the cloud's side of ``start_service`` (the device's current xp2p info,
another user's device), commands over the tunnel or the cloud relay, and talk audio that
reaches the device as AAC in FLV — encoded from PCM (a 440 Hz tone is still 440 Hz) or
passed through byte for byte. The tunnel is real aiortc over loopback; tests that must
control it use the in-process signalling stand-in of tests/client/xp2p_support.py."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from ivcloud.app import Ivcloud
from ivcloud.client.app_sdk import AppClient
from ivcloud.client.xp2p import Xp2pClient
from ivcloud.client.xp2p_errors import (
    Xp2pCloudError,
    Xp2pError,
    Xp2pInfoError,
    Xp2pP2PUnavailable,
    Xp2pParamError,
    Xp2pRequestFailed,
    Xp2pServiceStateError,
)
from ivcloud.client.xp2p_session import P2PState
from ivcloud.device.av import AudioEncoder, AudioProfile
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.av import FlvReader
from ivcloud.protocol.av.aac import add_adts
from tests import p2p_support
from tests.client.xp2p_support import DEVICE_ST, INFO, LIVE, tone, xp2p_client
from tests.media.hub_support import Live, live_setup
from tests.p2p_support import eventually
from tests.rawdevice import device_for

loopback_ice = p2p_support.loopback_ice  # fixture, used by name
pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def live(server: Ivcloud) -> AsyncIterator[Live]:
    async with live_setup(server) as setup:
        yield setup


def warnings_with(logs: list[dict[str, Any]], code: int) -> list[str]:
    return [e["event"] for e in logs if e.get("xp2p_code") == code]


async def raises(code: int, call: Any) -> Xp2pError:
    with pytest.raises(Xp2pError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def test_start_and_stop_refuse_what_the_official_sdk_refuses_with_its_log_lines(
    server: Ivcloud, live: Live
) -> None:
    dev = live.device_id
    async with xp2p_client(server, live) as (client, _, _):
        with capture_logs() as logs:
            await raises(codes.XP2P_ERR_INIT_PRM, client.start_service("", INFO))
            await raises(codes.XP2P_ERR_INIT_PRM, client.start_service(dev, ""))
            await raises(codes.XP2P_ERR_INIT_PRM, client.start_service(dev, INFO, paths=("udp",)))
            await raises(codes.XP2P_ERR_XP2PINFO_RULE, client.start_service(dev, "hello"))
            tencent = "XP2Pk3fS3onCsgGaQJCinTCtfw==%2.4.46"  # not ivcloud's format
            await raises(codes.XP2P_ERR_XP2PINFO_RULE, client.start_service(dev, tencent))
            info = await client.start_service(dev, INFO)
            assert info.paths == ("p2p", "hub") and info.online
            again = await raises(codes.XP2P_ERR_P2P_ININED, client.start_service(dev, INFO))
            assert isinstance(again, Xp2pServiceStateError)
            none = "P/none"
            await raises(codes.XP2P_ERR_P2P_UNININ, client.send_command(none, DEVICE_ST))
            with pytest.raises(Xp2pServiceStateError):
                client.delegate_http_flv(none)
            await raises(codes.XP2P_ERR_SERVICE_NOTRUN, client.stop_service(none))
            await raises(codes.XP2P_ERR_UNINIT, client.stop_voice(dev))
        assert warnings_with(logs, codes.XP2P_ERR_P2P_ININED) == [
            f"p2p service is running with id:{dev}, please stop it first"
        ]
        assert warnings_with(logs, codes.XP2P_ERR_XP2PINFO_RULE) == [
            "remote xp2p_info rule wrong:hello",
            f"remote xp2p_info rule wrong:{tencent}",
        ]
        assert (
            warnings_with(logs, codes.XP2P_ERR_P2P_UNININ)
            == ["p2p service is not running with id:P/none, please run it first"] * 2
        )
        assert warnings_with(logs, codes.XP2P_ERR_UNINIT) == [
            "connot found request with service:AudioStream"
        ]
        assert all(e["log_level"] == "warning" for e in logs if "xp2p_code" in e)
        # Stopped, the id can be started again; two racing starts: one wins.
        await client.stop_service(dev)
        results = await asyncio.gather(
            client.start_service(dev, INFO), client.start_service(dev, INFO), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["ServiceInfo", "Xp2pServiceStateError"]


async def test_a_device_without_webrtc_is_served_by_the_hub_or_refused(
    server: Ivcloud, live: Live
) -> None:
    no_webrtc = "XP2P1:q0V3b2Qp1kqjv8d2c0xq3A:clpt"
    async with xp2p_client(server, live) as (client, cloud, _):
        cloud.info = no_webrtc
        with capture_logs() as logs:
            await raises(
                codes.XP2P_ERR_VERSION,
                client.start_service(live.device_id, no_webrtc, paths=("p2p",)),
            )
            info = await client.start_service(live.device_id, no_webrtc)
        assert info.paths == ("hub",)
        assert client.p2p_state(live.device_id) is P2PState.DISABLED
        line = "The xp2p_device_sdk is low, Please upgrade the device version to at least "
        assert warnings_with(logs, codes.XP2P_ERR_VERSION) == [line + "XP2P1 with flag w"] * 2
        await raises(codes.XP2P_ERR_DETECT_NOTREADY, client.wait_p2p(live.device_id))


async def test_the_cloud_checks_the_info_and_who_asks(server: Ivcloud, live: Live) -> None:
    assert server.endpoints is not None
    dev = live.device_id
    async with (
        AppClient(server.endpoints.http_url, access_token=live.token) as app,
        Xp2pClient(app, timeout=5.0) as client,
    ):
        with capture_logs() as logs:
            # The device never reported its info: the cloud's answer has none.
            await raises(codes.XP2P_ERR_GET_XP2PINFO, client.start_service(dev, INFO))
            async with device_for(server, live.device) as raw:
                report = {"method": "report", "clientToken": "t1", "params": {}}
                report["params"] = {"_sys_xp2p_info": INFO}
                assert (await raw.request("property", report))["code"] == 0
                outdated = "XP2P1:AAAAAAAAAAAAAAAAAAAAAA:clptuw"
                await raises(codes.XP2P_ERR_PROXY_INIT, client.start_service(dev, outdated))
                info = await client.start_service(dev, INFO)
                assert info.online and info.xp2p_info == INFO
        assert warnings_with(logs, codes.XP2P_ERR_GET_XP2PINFO) == [
            "request xp2p_info failed, errmsg:parse reply error"
        ]
        assert warnings_with(logs, codes.XP2P_ERR_PROXY_INIT) == ["remote xp2pinfo is invalid"]
    # Another user: the App API's NoPermission, for their device and for one that does not
    # exist alike, surfaces as −1001 carrying the App API code.
    async with (
        live_setup(server, "cam02") as theirs,
        AppClient(server.endpoints.http_url, access_token=live.token) as app,
        Xp2pClient(app, timeout=5.0) as client,
    ):
        with capture_logs() as logs:
            their_product = theirs.device.product_id
            for other in (f"{their_product}/cam02", f"{their_product}/nobody"):
                refused = await raises(
                    codes.XP2P_ERR_GET_XP2PINFO, client.start_service(other, INFO)
                )
                assert isinstance(refused, Xp2pInfoError)
                assert refused.api_code == "InvalidParameterValue.NoPermission"
        assert (
            warnings_with(logs, codes.XP2P_ERR_GET_XP2PINFO)
            == ["request xp2p_info failed, errmsg:InvalidParameterValue.NoPermission"] * 2
        )
        assert live.token not in str(logs)


async def test_commands_go_over_the_tunnel_when_it_is_up_else_through_the_cloud(
    server: Ivcloud, live: Live
) -> None:
    async with xp2p_client(server, live) as (client, cloud, _):
        cloud.gate.clear()
        await client.start_service(live.device_id, INFO)
        assert await client.send_command(live.device_id, DEVICE_ST) == (
            '[{"status":"0","appConnectNum":"0"}]'
        )
        assert cloud.relayed == [DEVICE_ST]
        cloud.gate.set()
        await client.wait_p2p(live.device_id)
        assert await client.send_command(live.device_id, DEVICE_ST) == (
            '[{"status":"0","appConnectNum":"0"}]'
        )
        assert cloud.relayed == [DEVICE_ST] and cloud.handlers[0].requests == [DEVICE_ST]
        refused = await raises(
            codes.XP2P_ERR_REQUEST_FAIL,
            client.send_command(live.device_id, "action=inner_define&channel=0&cmd=format_sd"),
        )
        assert isinstance(refused, Xp2pRequestFailed) and refused.status == 406
        await raises(codes.XP2P_ERR_INIT_PRM, client.send_command(live.device_id, LIVE))
        # The device closes the tunnel: back to the relay, and the app is told.
        await cloud.devices[0].close()
        await eventually(lambda: client.p2p_state(live.device_id) is P2PState.FAILED)
        await client.send_command(live.device_id, DEVICE_ST)
        assert cloud.relayed == [DEVICE_ST, DEVICE_ST]


def decode_talk(flv: bytes) -> tuple[int, np.ndarray[Any, Any]]:
    with av.open(io.BytesIO(flv), format="flv") as container:
        frames = list(container.decode(audio=0))
    pcm = np.concatenate([f.to_ndarray()[0] for f in frames])
    return frames[0].sample_rate, pcm


async def test_pcm_talk_reaches_the_device_as_aac_at_16_khz(server: Ivcloud, live: Live) -> None:
    async with xp2p_client(server, live) as (client, _, cam):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        talk = await client.start_voice(live.device_id, fmt="pcm", sample_rate=8000)
        pcm = tone(1.5, 8000)
        for i in range(0, len(pcm), 700):  # pieces that are not whole frames
            await talk.write(pcm[i : i + 700])
        await client.stop_voice(live.device_id)
        await eventually(cam.voice_closed.is_set)
        flv = b"".join(cam.voice)
        tags = FlvReader().feed(flv)
        assert tags[0].is_audio_sequence_header and all(t.tag_type == 8 for t in tags)
        assert len(tags) - 1 == talk.frames_sent >= 23  # 1.5 s of 64 ms frames
        rate, samples = decode_talk(flv)
        assert rate == 16000 and len(samples) >= 1.4 * 16000
        window = samples[4000:20000]
        peak_hz = np.argmax(np.abs(np.fft.rfft(window))) * rate / len(window)
        assert abs(peak_hz - 440) < 5
        with capture_logs() as logs:
            await raises(codes.XP2P_ERR_UNINIT, talk.write(pcm[:700]))
        assert warnings_with(logs, codes.XP2P_ERR_UNINIT) == ["application is invalid"]


async def test_aac_talk_passes_through_unchanged(server: Ivcloud, live: Live) -> None:
    encoder = AudioEncoder(AudioProfile("aac"))
    frames = [f.data for i in range(20) for f in encoder.encode(i * 64.0)]
    async with xp2p_client(server, live) as (client, _, cam):
        await client.start_service(live.device_id, INFO, paths=("p2p",))
        talk = await client.start_voice(live.device_id, fmt="aac", sample_rate=16000)
        for frame in frames[:10]:
            await talk.write(frame)  # raw frames
        for frame in frames[10:]:
            await talk.write(add_adts(frame, encoder.config))  # or ADTS
        await raises(codes.XP2P_ERR_INIT_PRM, talk.write(b"\xff\xf1" + b"\x00" * 20))
        await raises(codes.XP2P_ERR_REQUEST, client.start_voice(live.device_id))  # one at a time
        await talk.close()
        await eventually(cam.voice_closed.is_set)
        tags = FlvReader().feed(b"".join(cam.voice))
        assert bytes(tags[0].payload) == encoder.config
        assert [bytes(t.payload) for t in tags[1:]] == frames
        assert [t.timestamp for t in tags[1:4]] == [0, 64, 128]


async def test_talk_needs_the_tunnel(server: Ivcloud, live: Live) -> None:
    async with xp2p_client(server, live) as (client, cloud, _):
        await client.start_service(live.device_id, INFO, paths=("hub",))
        with capture_logs() as logs:
            await raises(codes.XP2P_ERR_DETECT_NOTREADY, client.start_voice(live.device_id))
            await raises(codes.XP2P_ERR_INIT_PRM, client.start_voice(live.device_id, fmt="mp3"))
            await raises(
                codes.XP2P_ERR_INIT_PRM, client.start_voice(live.device_id, sample_rate=12345)
            )
        assert warnings_with(logs, codes.XP2P_ERR_DETECT_NOTREADY) == [
            "p2p detect is not ready, state:3"
        ]
        await client.stop_service(live.device_id)
        cloud.refuse = Xp2pCloudError(codes.XP2P_ERR_REQUEST_FAIL, "refused", api_code="x")
        await client.start_service(live.device_id, INFO)
        unavailable = await raises(
            codes.XP2P_ERR_DETECT_NOTREADY, client.start_voice(live.device_id)
        )
        assert isinstance(unavailable, Xp2pP2PUnavailable) and unavailable.state == 2
        assert isinstance(
            await raises(codes.XP2P_ERR_INIT_PRM, client.send_command(live.device_id, "")),
            Xp2pParamError,
        )

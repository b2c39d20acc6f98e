"""The README's first command: ``ivcloud demo`` starts the server with three simulated
devices that connect, report, bind and answer — checked from outside, over HTTP; with
``--record`` its camera and video lock fill their SD cards. And ``ivcloud sim`` as its own
process: the video it streams through the hub has the resolution, rate and GOP asked for."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx

from ivcloud.app import Ivcloud
from ivcloud.protocol.av import FlvReader, FlvTag
from tests.helpers import poll
from tests.media.hub_support import Live, live_setup, running

IVCLOUD = str(Path(sys.executable).parent / "ivcloud")


@contextlib.asynccontextmanager
async def demo(data_dir: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        IVCLOUD,
        "demo",
        "--data-dir",
        str(data_dir),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_runs_three_simulated_devices(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    async with demo(data_dir, "--http-port", "0", "--mqtt-port", "0") as proc:

        async def ready() -> bool:
            return (data_dir / "server.json").exists() and (data_dir / "demo.json").exists()

        await poll(ready, bool, deadline_s=30)
        server = json.loads((data_dir / "server.json").read_text())
        devices = {d["kind"]: d for d in json.loads((data_dir / "demo.json").read_text())}
        assert set(devices) == {"camera", "lock-image", "lock-video"}
        token = (data_dir / "admin-token").read_text().strip()
        async with httpx.AsyncClient(
            base_url=server["http_url"] + "/api/console/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        ) as admin:

            def url(kind: str) -> str:
                d = devices[kind]
                return f"/products/{d['product_id']}/devices/{d['device_name']}"

            async def all_reporting() -> bool:
                for kind, wanted in (
                    ("camera", "_sys_xp2p_info"),
                    ("lock-image", "lock_motor_state"),
                    ("lock-video", "wakeup_state"),
                ):
                    body = (await admin.get(url(kind))).json()
                    if body["Online"] != 1 or wanted not in body["Properties"]:
                        return False
                return True

            await poll(all_reporting, bool, deadline_s=30)
            for kind in devices:
                tokens = (await admin.get(url(kind) + "/bind-tokens")).json()["Tokens"]
                assert tokens == [f"demo-{devices[kind]['device_name']}"]
            resp = await admin.post(
                url("lock-video") + "/actions/unlock_remote",
                json={"Params": {}, "TimeoutSeconds": 10},
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["Response"] == {"result": 1}

            async def relocked() -> bool:
                props = (await admin.get(url("lock-video"))).json()["Properties"]
                return bool(props["lock_motor_state"]["Value"] == 1)

            await poll(relocked, bool, deadline_s=30)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()
    assert server["http_url"] + "/api/console/v1" in output
    assert "/docs" in output
    for d in devices.values():
        assert d["secret"] in output
    assert not (data_dir / "server.json").exists()
    # The video devices have SD cards, but record only when asked (and the banner says how).
    assert "SD card recording" in output and "demo --record" in output
    for name in ("cam01", "lockvid01"):
        assert list(sd_card(data_dir, name).iterdir()) == []
    assert not (data_dir / "sim" / "lockimg01").exists()


def sd_card(data_dir: Path, device_name: str) -> Path:
    return data_dir / "sim" / device_name / "sdcard" / "ch0"


def decoded_sizes(flv: bytes) -> set[tuple[int, int]]:
    """The (width, height) of every picture PyAV decodes from an FLV stream or file."""
    with av.open(io.BytesIO(flv), "r", format="flv") as container:
        sizes = {(frame.width, frame.height) for frame in container.decode(video=0)}
    assert sizes, "no picture decoded"
    return sizes


async def test_demo_record_fills_both_sd_cards(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    async with demo(data_dir, "--http-port", "0", "--mqtt-port", "0", "--record") as proc:
        cards = [sd_card(data_dir, "cam01"), sd_card(data_dir, "lockvid01")]

        async def recording() -> list[int]:
            return [await asyncio.to_thread(card_bytes, card) for card in cards]

        await poll(recording, lambda sizes: min(sizes) > 20_000, deadline_s=40)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert proc.stdout is not None
        output = (await proc.stdout.read()).decode()
    assert "SD card recording" in output and "demo --record" not in output
    for card in cards:  # a clean stop finishes the open segment
        names = sorted(f.name for f in card.iterdir())
        assert names and all(n.startswith("rec_") and n.endswith("_0.flv") for n in names)
        assert decoded_sizes((card / names[-1]).read_bytes()) == {(640, 360)}


async def test_demo_says_when_a_default_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data_dir = tmp_path / "demo"
        async with demo(data_dir, "--http-port", "0", "--mqtt-port", str(port)) as proc:

            async def started() -> bool:
                return (data_dir / "server.json").exists()

            await poll(started, bool, deadline_s=30)
            server = json.loads((data_dir / "server.json").read_text())
            assert server["mqtt_port"] != port
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            assert proc.stdout is not None
            output = (await proc.stdout.read()).decode()
    assert f"port {port} (MQTT) is in use" in output


async def test_sim_rejects_unknown_kind() -> None:
    proc = await asyncio.create_subprocess_exec(
        IVCLOUD,
        "sim",
        "toaster",
        "--product",
        "P",
        "--device",
        "D",
        "--secret",
        "S",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"kind must be" in out


async def flv_until_keyframes(url: str, keyframes: int) -> tuple[bytes, list[FlvTag]]:
    """Read a hub HTTP-FLV stream until ``keyframes`` IDR pictures arrived."""
    data = bytearray()
    tags: list[FlvTag] = []
    reader = FlvReader()
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_bytes():
            data += chunk
            tags += reader.feed(chunk)
            if sum(t.is_video_keyframe for t in tags) >= keyframes:
                break
    return bytes(data), tags


async def test_sim_streams_the_resolution_fps_and_gop_asked_for(tmp_path: Path) -> None:
    async with (
        running(tmp_path / "data", stream_linger_s=0.2, stream_publisher_wait_s=10) as server,
        live_setup(server) as live,
    ):
        card_dir = tmp_path / "card"
        options = ["--width", "320", "--height", "240", "--fps", "10", "--gop", "2"]
        options += ["--data-dir", str(card_dir), "--record", "--retention-hours", "1"]
        async with sim_process(server, live, tmp_path / "sim.log", *options) as proc:
            urls = await live.urls()
            flv, tags = await flv_until_keyframes(urls["FlvUrl"], 4)
            assert decoded_sizes(flv) == {(320, 240)}
            video = [t for t in tags if t.tag_type == 9 and not t.is_video_sequence_header]
            keys = [i for i, t in enumerate(video) if t.is_video_keyframe]
            assert keys[-1] - keys[-2] == 20  # 2 s at 10 fps (the first GOP may be forced)
            steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(video)]
            assert sorted(steps)[len(steps) // 2] == 100  # 10 fps
            card = card_dir / "sdcard" / "ch0"
            await poll(lambda: asyncio.to_thread(card_bytes, card), lambda n: n > 10_000)
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        names = sorted(f.name for f in card.iterdir())
        assert names and all(n.startswith("rec_") and n.endswith(".flv") for n in names)
        assert decoded_sizes((card / names[-1]).read_bytes()) == {(320, 240)}


def card_bytes(card: Path) -> int:
    """Bytes flushed to an SD card so far (whole GOPs: the recorder flushes at keyframes)."""
    return sum(f.stat().st_size for f in card.glob("rec_*")) if card.exists() else 0


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def sim_process(
    server: Ivcloud, live: Live, log: Path, *options: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``ivcloud sim camera`` for the live setup's camera, online and reporting (its output
    goes to ``log``: a pipe nobody reads could fill and stall it)."""
    assert server.endpoints is not None
    ep, dev = server.endpoints, live.device
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            IVCLOUD, "sim", "camera", "--product", dev.product_id, "--device", dev.device_name,
            "--secret", dev.secret, "--host", ep.mqtt_host, "--port", str(ep.mqtt_port),
            *options, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:

        async def reported() -> bool:
            assert proc.returncode is None, read_log(log)
            rec = await server.devices.get(dev.product_id, dev.device_name)
            return "_sys_xp2p_info" in await server.telemetry.latest(rec)

        await poll(reported, bool, deadline_s=30)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

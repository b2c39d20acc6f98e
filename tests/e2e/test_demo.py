"""The README's first command: ``ivcloud demo`` starts the server with three simulated
devices that connect, report, bind and answer — checked from outside, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.helpers import poll

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

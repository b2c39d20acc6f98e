"""Live video across NATs, everything real and in separate network namespaces (netns.py):
``ivcloud serve`` (HTTP, MQTT, STUN) and Debian's coturn on the "internet" bridge, an
``ivcloud sim camera`` behind NAT B, and a viewer process (viewer.py: the app SDK, aiortc,
PyAV) behind NAT A, whose NAT each case reconfigures:

1. both NATs cone → the WebRTC session is hole-punched: path "direct", frames decoded;
2. the viewer's NAT symmetric → its server-reflexive address is useless to the camera, the
   session goes through coturn: path "turn", frames decoded;
3. the viewer's UDP blocked → no P2P at all; the XP2P client's race gives the hub (FLV over
   HTTP/TCP): path "hub", frames decoded;
4. only ivcloud's API reachable (signalling works, media URLs are reset, UDP dropped) → the
   viewer fails with a clear message within a bound, never hangs.

Plus the topology's self-test (NAT mappings observed from the internet and in conntrack) and
another user's token refused. Skipped only where namespaces cannot be made (not root, no
iproute2/iptables), with the reason in the output.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.client.app_sdk import AppClient
from tests.appclient import create_app
from tests.helpers import provision
from tests.nat import netns
from tests.nat.netns import INTERNET_IP, NAT_A_IP, Topology, call_in, wait_until

HTTP_PORT = 8080
MQTT_PORT = 1883
STUN_PORT = 3478
TURN_PORT = 3479  # coturn beside ivcloud's STUN on the same address
TURN_SECRET = "nat-test-static-auth-secret"
API = f"http://{INTERNET_IP}:{HTTP_PORT}"
VIEWER = Path(__file__).with_name("viewer.py")
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class World:
    topo: Topology
    device_id: str
    token: str  # the camera owner's AccessToken
    outsider_token: str  # a user of the same app without the camera
    logs: Path


async def _setup_users(data_dir: Path) -> tuple[str, str, str, str]:
    """Product, camera, app, owner (camera bound to their family by a console bind code)
    and an outsider — over HTTP, as an operator and two apps would."""
    token = (data_dir / "admin-token").read_text().strip()
    async with httpx.AsyncClient(
        base_url=API + "/api/console/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    ) as admin:
        cam = await provision(admin, "camera", "camera", "cam01")
        creds = await create_app(admin, cam.product_id)
        resp = await admin.post(
            f"/products/{cam.product_id}/devices/{cam.device_name}/bind-code",
            json={"ExpireSeconds": 600},
        )
        assert resp.status_code == 200, resp.text
        signature = resp.json()["DeviceSignature"]
    kwargs: dict[str, Any] = {"app_key": creds.app_key, "app_secret": creds.app_secret}
    async with AppClient(API, **kwargs) as owner, AppClient(API, **kwargs) as outsider:
        owner_token = await owner.login_wechat("nat-owner", "owner")
        family = await owner.get_default_family_id()
        await owner.request_api(
            "AppSecureAddDeviceInFamily",
            {"FamilyId": family, "RoomId": "0", "DeviceSignature": signature},
        )
        outsider_token = await outsider.login_wechat("nat-outsider", "outsider")
    return f"{cam.product_id}/{cam.device_name}", cam.secret, owner_token, outsider_token


async def _camera_ready(data_dir: Path, device_id: str) -> bool:
    token = (data_dir / "admin-token").read_text().strip()
    pid, dn = device_id.split("/")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as admin:
        body = (await admin.get(f"{API}/api/console/v1/products/{pid}/devices/{dn}")).json()
    info = body.get("Properties", {}).get("_sys_xp2p_info", {}).get("Value", "")
    return body.get("Online") == 1 and str(info).startswith("XP2P1:")


def _coturn_args(workdir: Path) -> list[str]:
    return [
        shutil.which("turnserver") or "turnserver",
        "-n",
        f"--listening-port={TURN_PORT}",
        f"--listening-ip={INTERNET_IP}",
        f"--relay-ip={INTERNET_IP}",
        "--min-port=50000",
        "--max-port=50200",
        "--use-auth-secret",
        f"--static-auth-secret={TURN_SECRET}",
        "--realm=ivcloud.test",
        "--no-tcp",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--no-cli",
        # As docs/live-video.md's coturn config: never relay into private networks. Here it
        # matters: a permission for a peer's 192.168.x host candidate would make coturn send
        # into a network it has no route to, and it closes the whole allocation on that error.
        "--denied-peer-ip=192.168.0.0-192.168.255.255",
        "--denied-peer-ip=172.16.0.0-172.31.255.255",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--log-file={workdir / 'turnserver.log'}",
        "--simple-log",
        "--verbose",  # sessions and permissions in the log: what to read when TURN fails
        "--no-stdout-log",
    ]


def _server_env(data_dir: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(data_dir),
        "IVCLOUD_DATA_DIR": str(data_dir),
        "IVCLOUD_HOST": INTERNET_IP,
        "IVCLOUD_HTTP_PORT": str(HTTP_PORT),
        "IVCLOUD_MQTT_PORT": str(MQTT_PORT),
        "IVCLOUD_STUN_PORT": str(STUN_PORT),
        "IVCLOUD_PUBLIC_URL": API,
        "IVCLOUD_TURN_URLS": f"turn:{INTERNET_IP}:{TURN_PORT}?transport=udp",
        "IVCLOUD_TURN_SECRET": TURN_SECRET,
    }


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = netns.namespaces_unavailable()
    if reason is not None:
        print(f"\nNAT traversal tests skipped: {reason}", file=sys.stderr)
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    base = tmp_path_factory.mktemp("nat")
    data_dir, logs = base / "data", base / "logs"
    data_dir.mkdir()
    logs.mkdir()
    with netns.topology() as topo:
        turn = topo.spawn(topo.internet, _coturn_args(base), log=logs / "coturn.out")
        server = topo.spawn(
            topo.internet,
            [str(BIN / "ivcloud"), "serve"],
            env=_server_env(data_dir),
            log=logs / "ivcloud.log",
        )

        def server_up() -> bool:
            assert server.poll() is None, f"ivcloud exited:\n{_tail(logs / 'ivcloud.log')}"
            return (data_dir / "server.json").exists()

        wait_until(server_up, 30, "ivcloud serve writes server.json")
        assert turn.poll() is None, f"coturn exited:\n{_tail(base / 'turnserver.log')}"
        device_id, secret, token, outsider = call_in(
            topo.internet, lambda: asyncio.run(_setup_users(data_dir))
        )
        pid, dn = device_id.split("/")
        camera = topo.spawn(
            topo.camera,
            [str(BIN / "ivcloud"), "sim", "camera", "--product", pid, "--device", dn,
             "--secret", secret, "--host", INTERNET_IP, "--port", str(MQTT_PORT)],
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(base)},
            log=logs / "camera.log",
        )  # fmt: skip

        def camera_up() -> bool:
            assert camera.poll() is None, f"camera exited:\n{_tail(logs / 'camera.log')}"
            return call_in(topo.internet, lambda: asyncio.run(_camera_ready(data_dir, device_id)))

        wait_until(camera_up, 30, "the camera is online and reported _sys_xp2p_info")
        yield World(topo, device_id, token, outsider, logs)


def run_viewer(
    world: World, mode: str, *, token: str | None = None, frames: int = 5, deadline: float = 40
) -> tuple[dict[str, Any], float, str]:
    """viewer.py inside the viewer namespace: its JSON line, wall time, stderr."""
    argv = [
        "ip", "netns", "exec", world.topo.viewer, sys.executable, str(VIEWER),
        "--api", API, f"--token={token or world.token}", "--device", world.device_id,
        "--mode", mode, "--frames", str(frames), "--timeout", "10",
        "--deadline", str(deadline),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 -- our own script, fixed arguments
        argv, capture_output=True, text=True, timeout=deadline + 20, env=env, cwd=ROOT
    )
    took = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"viewer printed no JSON (rc {done.returncode}):\n{done.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(lines[-1])
    assert (done.returncode == 0) == doc["ok"], (done.returncode, doc)
    print(f"\n[{mode}] {json.dumps(doc)}")
    return doc, took, done.stderr


def _assert_video(doc: dict[str, Any], stderr: str) -> None:
    assert doc["ok"], f"{doc}\n{stderr[-3000:]}"
    assert doc["frames"] == 5
    assert doc["width"] > 0 and doc["height"] > 0


# -- the topology itself -------------------------------------------------------------------


def _reflector(port_count: int) -> list[socket.socket]:
    socks = []
    for i in range(port_count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((INTERNET_IP, 40000 + i))
        s.settimeout(5)
        socks.append(s)
    return socks


def _mappings(world: World, mode: netns.NatMode) -> list[tuple[str, int]]:
    """From one viewer socket to two internet ports: the source each one saw."""
    world.topo.set_viewer_nat(mode)
    servers = call_in(world.topo.internet, lambda: _reflector(2))
    try:

        def send() -> socket.socket:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for s in servers:
                c.sendto(b"probe", s.getsockname())
            return c

        client = call_in(world.topo.viewer, send)
        seen = []
        for s in servers:
            data, addr = s.recvfrom(100)
            assert data == b"probe"
            seen.append((addr[0], addr[1]))
        client.close()
        return seen
    finally:
        for s in servers:
            s.close()


def test_topology_nat_mappings(world: World) -> None:
    cone = _mappings(world, "cone")
    assert [ip for ip, _ in cone] == [NAT_A_IP, NAT_A_IP]  # the NAT's address, not 192.168…
    assert cone[0][1] == cone[1][1], cone  # one mapping whatever the destination
    symmetric = _mappings(world, "symmetric")
    assert [ip for ip, _ in symmetric] == [NAT_A_IP, NAT_A_IP]
    assert symmetric[0][1] != symmetric[1][1], symmetric  # a new port per destination
    table = "\n".join(world.topo.conntrack(world.topo.nat_a))
    assert f"dst={NAT_A_IP} sport=40000 dport={symmetric[0][1]}" in table, table
    # The private LANs are not reachable across the internet: only the NATs' addresses.
    world.topo.set_viewer_nat("cone")

    def reach_camera_lan() -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect((netns.CAMERA_IP, 80))
        except OSError:
            return False
        finally:
            s.close()
        return True

    assert not call_in(world.topo.viewer, reach_camera_lan)


# -- the cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["peer", "race"])
def test_cone_nats_hole_punch_direct(world: World, mode: str) -> None:
    world.topo.set_viewer_nat("cone")
    doc, _, stderr = run_viewer(world, mode)
    _assert_video(doc, stderr)
    if mode == "peer":
        assert doc["path"] == "direct"
        # Both server-reflexive addresses (ivcloud's STUN) are the NATs' public ones.
        assert f"srflx {NAT_A_IP}:" in doc["candidates"]
        assert f"srflx {netns.NAT_B_IP}:" in doc["candidates"]
    else:
        assert doc["path"] in ("direct", "hub")  # the race's winner; both decode


@pytest.mark.parametrize("mode", ["peer", "race"])
def test_symmetric_viewer_nat_goes_through_turn(world: World, mode: str) -> None:
    world.topo.set_viewer_nat("symmetric")
    doc, _, stderr = run_viewer(world, mode)
    _assert_video(doc, stderr)
    assert doc["path"] == "turn" if mode == "peer" else doc["path"] in ("turn", "hub")


def test_blocked_udp_falls_back_to_the_hub(world: World) -> None:
    world.topo.set_viewer_nat("no-udp")
    doc, _, stderr = run_viewer(world, "race")
    _assert_video(doc, stderr)
    assert doc["path"] == "hub"


def test_no_path_at_all_is_a_clear_error_in_bounded_time(world: World) -> None:
    world.topo.set_viewer_nat(
        "api-only", allow=(INTERNET_IP, HTTP_PORT), reject_strings=("/media/v1/",)
    )
    doc, took, stderr = run_viewer(world, "race", deadline=40)
    assert not doc["ok"]
    assert "no live video by P2P or the hub" in doc["error"], doc
    assert "p2p state FAILED" in doc["error"], doc  # P2P was tried and failed, too
    assert "gave up" not in doc["error"]  # failed by itself, not by the outer deadline
    assert took < 40, took
    assert "viewer failed:" in stderr


def test_another_users_token_is_refused(world: World) -> None:
    world.topo.set_viewer_nat("cone")
    doc, _, _ = run_viewer(world, "peer", token=world.outsider_token)
    assert not doc["ok"]
    assert "NoPermission" in doc["error"], doc


def test_teardown_leaves_nothing_even_when_the_test_fails() -> None:
    reason = netns.namespaces_unavailable()
    if reason is not None:
        print(f"\nNAT topology teardown test skipped: {reason}", file=sys.stderr)
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    # A namespace left by a run that was killed (its pid is gone) is reaped by the next run.
    gone = subprocess.Popen(["true"])  # noqa: S607 -- a pid that is surely dead afterwards
    gone.wait()
    stale = f"{netns.PREFIX}{gone.pid}-1-inet"
    subprocess.run(["ip", "netns", "add", stale], check=True)  # noqa: S603, S607
    with pytest.raises(RuntimeError, match="the test failed"), netns.topology() as topo:
        assert stale not in Topology(tag=f"{netns.PREFIX}{gone.pid}-1").exists()
        sleeper = topo.spawn(topo.camera, ["sleep", "600"])
        names = topo.exists()
        raise RuntimeError("the test failed")
    assert len(names) == 5
    assert topo.exists() == []
    assert sleeper.poll() is not None  # killed, not orphaned

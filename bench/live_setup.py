"""What the live-video benchmarks share: one camera + app user provisioned with ivcloud's own
services, ``ivcloud serve`` and the camera simulator as subprocesses, App API calls, and CPU
windows over several processes.

Provisioning runs in-process before the server starts (as ``app_api.py`` does): a
``camera`` product with the standard ``camera`` model, one device, an app linked to the
product, one user with an AccessToken who owns the camera in their family — so every viewer
URL and P2P session in the benchmarks is minted through the App API as a real app would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procstat import Sampler

from ivcloud.app import Ivcloud
from ivcloud.config import Settings
from ivcloud.logs import configure

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Camera:
    product_id: str
    device_name: str
    secret: str
    app_id: str
    user_id: str
    token: str

    @property
    def device_id(self) -> str:
        return f"{self.product_id}/{self.device_name}"


async def provision(data_dir: Path, device_name: str = "cam01") -> Camera:
    settings = Settings(
        data_dir=data_dir,
        http_port=0,
        mqtt_port=0,
        mqtt_ws_port=None,
        stun_port=None,
        log_level="warning",
    )
    configure("warning")
    instance = Ivcloud(settings)
    await instance.start()
    try:
        product = await instance.products.create("bench camera", "camera", "wifi")
        pid = product.product_id
        await instance.products.import_standard_model(pid, "camera")
        rec = await instance.devices.create(pid, device_name)
        app = await instance.apps.create("bench app")
        await instance.apps.link_product(app.app_id, pid)
        user = await instance.users.create(app.app_id, nick_name="viewer")
        token, _ = await instance.users.issue_token(user)
        family = await instance.families.create_family(user, "home")
        await instance.families.bind_device(user, family, "0", rec)
    finally:
        await instance.stop()
    return Camera(pid, device_name, rec.secret, app.app_id, user.user_id, token)


class Proc:
    """A subprocess in its own session, output to a log file, stopped with SIGTERM."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own venv / node
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class IvcloudServe(Proc):
    """``ivcloud serve`` on free ports (read back from ``server.json``), log level warning;
    ``settings`` become ``IVCLOUD_*`` environment variables (e.g. ``stream_linger_s``)."""

    def __init__(self, data_dir: Path, wrapper: str = "", **settings: Any) -> None:
        """``wrapper``: a bench script with the ``ivcloud`` CLI (e.g. ``serve_uvloop.py``)."""
        env = dict(os.environ)
        env.update(IVCLOUD_LOG_LEVEL="warning", IVCLOUD_MQTT_WS_PORT="0")
        env.update({f"IVCLOUD_{k.upper()}": str(v) for k, v in settings.items()})
        if wrapper:
            argv = [sys.executable, str(Path(__file__).resolve().parent / wrapper)]
        else:
            argv = [str(VENV_BIN / "ivcloud")]
        argv += ["serve", "--data-dir", str(data_dir)]
        argv += ["--http-port", "0", "--mqtt-port", "0"]
        super().__init__("ivcloud", argv, data_dir / "server.log", env)
        self.data_dir = data_dir
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 60.0) -> IvcloudServe:
        info_file = self.data_dir / "server.json"
        info_file.unlink(missing_ok=True)
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                self.info = json.loads(info_file.read_text())
            except (OSError, json.JSONDecodeError):
                time.sleep(0.05)
                continue
            if int(self.info["mqtt_port"]) == 1883:
                raise RuntimeError("server picked 1883, which is Mosquitto's")
            return self
        self.stop()
        raise RuntimeError(f"server.json did not appear in {timeout}s:\n{self.log_tail()}")

    @property
    def http_url(self) -> str:
        return str(self.info["http_url"])

    @property
    def mqtt_port(self) -> int:
        return int(self.info["mqtt_port"])

    def devices_connected(self) -> int:
        import urllib.request

        with urllib.request.urlopen(self.http_url + "/healthz", timeout=5) as resp:  # noqa: S310
            return int(json.loads(resp.read())["devices_connected"])

    def wait_devices(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.devices_connected() >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{count} device(s) not connected after {timeout}s")


def camera_sim(server: IvcloudServe, cam: Camera, work: Path, record: str = "default") -> Proc:
    """The SDK's camera simulator as its own process: standard profile 640x360@15, GOP 1 s —
    the product default. ``record="default"``: ``ivcloud sim camera`` as shipped; ``"on"`` /
    ``"off"``: the same simulator with SD recording on / off (``bench/live_camera.py``)."""
    if record == "default":
        argv = [str(VENV_BIN / "ivcloud"), "sim", "camera"]
    else:
        argv = [sys.executable, str(Path(__file__).resolve().parent / "live_camera.py")]
        argv += ["--record", record]
    argv += ["--product", cam.product_id]
    argv += ["--device", cam.device_name, "--secret", cam.secret]
    argv += ["--host", "127.0.0.1", "--port", str(server.mqtt_port)]
    env = dict(os.environ, IVCLOUD_LOG_LEVEL="warning")
    return Proc("camera", argv, work / "camera.log", env)


def cpu_split(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process, all threads: where a server's time goes
    (its own code vs the kernel's socket work)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def cpu_row(sampler: Sampler, labels: list[str], start: float, end: float) -> dict[str, Any]:
    """CPU % of one core per watched label over the window, and the rest of the machine."""
    row: dict[str, Any] = {"seconds": round(end - start, 1)}
    known = 0.0
    for label in labels:
        w = sampler.window(label, start, end)
        row[f"{label}_cpu_pct"] = w.get("cpu_pct")
        row[f"{label}_rss_mib"] = w.get("rss_mib_peak")
        known += w.get("cpu_pct") or 0.0
    busy = sampler.machine_window(start, end).get("busy_pct")
    row["machine_busy_pct"] = busy
    row["other_cpu_pct"] = round(busy - known, 1) if busy is not None else None
    return row


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    s = sorted(values)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 1)

    return {
        "n": len(s),
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "min": round(s[0], 1),
        "max": round(s[-1], 1),
    }


def quiet_wait(max_s: float, busy_limit: float = 40.0) -> float:
    """Wait ≤ ``max_s`` for the shared box to be under ``busy_limit`` % (of 200 %) over 2 s;
    returns the last busy figure."""
    from procstat import read_machine_jiffies

    deadline = time.monotonic() + max_s
    busy_pct = 0.0
    while True:
        b0, t0 = read_machine_jiffies()
        time.sleep(2)
        b1, t1 = read_machine_jiffies()
        busy_pct = 100 * (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)
        if busy_pct < busy_limit or time.monotonic() > deadline:
            return round(busy_pct, 1)

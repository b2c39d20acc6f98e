"""What the live-video benchmarks share: one camera + app user provisioned with ivcloud's own
services, ``ivcloud serve`` and the camera simulator as subprocesses, App API calls, and CPU
windows over several processes.

Provisioning runs in-process before the server starts (as ``app_api.py`` does): a
``camera`` product with the standard ``camera`` model, one device, an app linked to the
product, one user with an AccessToken who owns the camera in their family — so every viewer
URL and P2P session in the benchmarks is minted through the App API as a real app would.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch import VENV_BIN, IvcloudServe, Proc, bench_instance, quiet_wait
from procstat import Sampler

# Launching and provisioning helpers live in launch.py (shared with the other benches); the
# live benches import them from here with the rest of their setup.
__all__ = [
    "VENV_BIN",
    "Camera",
    "IvcloudServe",
    "Proc",
    "camera_sim",
    "cpu_row",
    "cpu_split",
    "free_port",
    "percentiles",
    "provision",
    "quiet_wait",
]


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
    async with bench_instance(data_dir) as instance:
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
    return Camera(pid, device_name, rec.secret, app.app_id, user.user_id, token)


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

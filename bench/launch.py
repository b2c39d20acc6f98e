"""How the benchmarks provision, launch and drive processes — one copy for all of them.

- :func:`bench_instance`: an in-process ``Ivcloud`` on port 0 with warning-level logs, for
  provisioning a data dir with ivcloud's own services before the server starts (and for
  in-process timing);
- :class:`Proc`: a subprocess in its own session, output to a log file, stopped by SIGTERM;
  :meth:`Proc.wait_for_json` waits for the file a server writes once it listens;
- :class:`IvcloudServe`: ``ivcloud serve`` (or a bench wrapper with the same CLI) on free
  ports, read back from ``server.json``; :class:`StrictServe` also stops it gracefully or
  fails the run (the writer must commit its queue before the database is checked);
- :func:`run_with_events`: a load generator in its own process, its JSON-lines events handed
  to a callback, its result read from a file, killed if it overruns;
- :class:`PySpy`: ``py-spy record`` of one pid;
- :func:`quiet_wait`: wait for the shared box to be quiet before measuring.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

from procstat import read_machine_jiffies

from ivcloud.app import Ivcloud
from ivcloud.config import Settings
from ivcloud.logs import configure

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent

#: ``on_event(name, payload)``: ``("started", pid)`` once the process runs, then each event.
OnEvent = Callable[[Any, Any], None]


@contextlib.asynccontextmanager
async def bench_instance(data_dir: Path) -> AsyncIterator[Ivcloud]:
    """A started ``Ivcloud`` on ``data_dir`` (ports 0, no MQTT WebSocket, no STUN, warning
    logs), stopped on exit — provisioning through the product's own services."""
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
        yield instance
    finally:
        await instance.stop()


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
        self.killed = False  # the last stop() had to SIGKILL

    def start(self) -> Self:
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

    def wait_for_json(self, path: Path, timeout: float) -> dict[str, Any]:
        """The JSON document the process writes at ``path`` once it is ready (an earlier
        copy must be removed before :meth:`start`); stops it and raises if it exits first
        or the file does not appear within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                doc: dict[str, Any] = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                time.sleep(0.05)
                continue
            return doc
        self.stop()
        raise RuntimeError(f"{path.name} did not appear in {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the seconds it took."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.killed = True
        return time.monotonic() - start


class IvcloudServe(Proc):
    """``ivcloud serve`` on free ports (read back from ``server.json``), log level warning;
    ``settings`` become ``IVCLOUD_*`` environment variables (e.g. ``stream_linger_s``)."""

    def __init__(self, data_dir: Path, wrapper: str = "", **settings: Any) -> None:
        """``wrapper``: a bench script with the ``ivcloud`` CLI (e.g. ``serve_uvloop.py``,
        ``serve_gcstats.py``) — an experiment, not the product as shipped."""
        env = dict(os.environ)
        # the default WebSocket port 8083 may be taken; 0 = a free port
        env.update(IVCLOUD_LOG_LEVEL="warning", IVCLOUD_MQTT_WS_PORT="0")
        env.update({f"IVCLOUD_{k.upper()}": str(v) for k, v in settings.items()})
        if wrapper:
            argv = [sys.executable, str(BENCH_DIR / wrapper)]
        else:
            argv = [str(VENV_BIN / "ivcloud")]
        argv += ["serve", "--data-dir", str(data_dir)]
        # 0: the OS picks free ports (read back from server.json); never Mosquitto's 1883
        argv += ["--http-port", "0", "--mqtt-port", "0"]
        super().__init__("ivcloud", argv, data_dir / "server.log", env)
        self.data_dir = data_dir
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 60.0) -> Self:
        info_file = self.data_dir / "server.json"
        info_file.unlink(missing_ok=True)
        super().start()
        self.info = self.wait_for_json(info_file, timeout)
        if self.mqtt_port == 1883:
            raise RuntimeError("server picked 1883, which is Mosquitto's")
        return self

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


class StrictServe(IvcloudServe):
    """:class:`IvcloudServe` for the benches that check the database afterwards: no STUN
    (live view is not measured), and :meth:`stop` waits up to a minute for the graceful
    shutdown (the writer commits its queue) and fails the run if the server had to be
    killed."""

    def __init__(self, data_dir: Path, wrapper: str = "") -> None:
        super().__init__(data_dir, wrapper, stun_port="off")

    def stop(self, timeout: float = 60.0) -> float:
        took = super().stop(timeout)
        if self.killed:
            raise RuntimeError("server did not stop within the timeout; killed")
        return took


def run_with_events(
    script: str,
    spec: dict[str, Any],
    work: Path,
    label: str,
    timeout: float,
    on_event: OnEvent | None = None,
) -> dict[str, Any] | None:
    """Run ``bench/<script> --spec S --out O`` (S: ``spec`` as JSON in ``work``), handing
    each JSON line it prints to ``on_event(line["event"], line)`` (other lines are echoed);
    the result document from O, or ``None`` (said on stderr) if it failed or ran longer
    than ``timeout`` seconds and was killed."""
    spec_path = work / f"spec-{label}.json"
    out_path = work / f"result-{label}.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, str(BENCH_DIR / script), "--spec", str(spec_path), "--out", str(out_path)],
        stdout=subprocess.PIPE,
        stderr=None,
    )
    if on_event is not None:
        on_event("started", proc.pid)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                sys.stdout.write(line.decode(errors="replace"))
                continue
            if on_event is not None:
                on_event(event.get("event"), event)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        print(f"  loadgen ({label}) exceeded {timeout:.0f}s and was killed", file=sys.stderr)
        return None
    reader.join(timeout=5)
    if proc.returncode != 0 or not out_path.exists():
        print(f"  loadgen ({label}) failed with exit code {proc.returncode}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


class PySpy:
    """``py-spy record`` of one pid for ``seconds`` (raw collapsed stacks to ``out``);
    ``native`` unwinds C frames too, which has to pause the process."""

    def __init__(self, out: Path, seconds: int, native: bool = False) -> None:
        self.out = out
        self.seconds = seconds
        self.native = native
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, pid: int) -> None:
        exe = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
        if exe is None:
            print("  py-spy not installed; no profile", file=sys.stderr)
            return
        cmd = [exe, "record", "-p", str(pid), "-d", str(self.seconds), "-r", "100"]
        cmd += ["--format", "raw", "-o", str(self.out)]
        cmd += ["--native"] if self.native else ["--nonblocking"]
        self.proc = subprocess.Popen(  # noqa: S603
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def quiet_wait(max_s: float, busy_limit: float = 40.0, *, say: bool = False) -> float:
    """Wait ≤ ``max_s`` for the shared box to be under ``busy_limit`` % (of one core: 2 cores
    = 200 %) over 2 s; returns the last busy figure. ``say``: print each busy reading."""
    deadline = time.monotonic() + max_s
    ncpu = os.cpu_count() or 1
    while True:
        b0, t0 = read_machine_jiffies()
        time.sleep(2)
        b1, t1 = read_machine_jiffies()
        busy_pct = round(100 * ncpu * (b1 - b0) / max(1, t1 - t0), 1)
        if busy_pct < busy_limit or time.monotonic() > deadline:
            return busy_pct
        if say:
            print(f"[wait-quiet] machine {busy_pct} % busy (of {100 * ncpu}); waiting …")


def write_results(name: str, doc: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` (git ignores the folder); its path, relative to the
    repository, is printed."""
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    print(f"\nresults: {path.relative_to(BENCH_DIR.parent)}")
    return path

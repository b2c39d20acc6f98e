"""``ivcloud serve`` as a real process, for tests whose bodies are synchronous (schemathesis,
hypothesis over a blocking client) and so cannot share an event loop with an in-process
server."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IVCLOUD = str(Path(sys.executable).parent / "ivcloud")


@dataclass(frozen=True)
class Served:
    endpoints: dict[str, Any]  # server.json: http_url, mqtt_host, mqtt_port, …
    admin_token: str

    @property
    def url(self) -> str:
        return str(self.endpoints["http_url"])


@contextlib.contextmanager
def serve(data_dir: Path, **settings: str) -> Iterator[Served]:
    """The console script on free ports (never 1883), errors-only logs, ``settings``
    (``IVCLOUD_*`` variables) added to its environment; stopped (SIGTERM) on exit."""
    env = {**os.environ, "IVCLOUD_LOG_LEVEL": "error", "IVCLOUD_MQTT_WS_PORT": "0", **settings}
    data_dir.mkdir(parents=True, exist_ok=True)
    errors = data_dir / "serve.stderr"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own console script
            [IVCLOUD, "serve", "--data-dir", str(data_dir), "--http-port", "0", "--mqtt-port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        endpoints = _endpoints(proc, data_dir / "server.json", errors)
        yield Served(endpoints, (data_dir / "admin-token").read_text().strip())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _endpoints(proc: subprocess.Popen[bytes], info: Path, errors: Path) -> dict[str, Any]:
    """``server.json`` once the server has written it whole (it is written in place, so a
    reader can see it empty or cut short first)."""
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            tail = errors.read_text(errors="replace")[-3000:]
            raise AssertionError(f"ivcloud serve exited ({proc.returncode}):\n{tail}")
        assert time.monotonic() < deadline, "server did not start"
        try:
            endpoints: dict[str, Any] = json.loads(info.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
            continue
        return endpoints

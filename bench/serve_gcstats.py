"""Run ``ivcloud serve`` with garbage-collector pause accounting (bench diagnostics only).

    .venv/bin/python bench/serve_gcstats.py serve --data-dir D ...   # same arguments as ivcloud

Registers a :data:`gc.callbacks` hook that times every collection and, at exit, writes
``<data-dir>/gcstats.json``: count, total and max pause per generation and the 20 longest
pauses with their (monotonic) times.  Nothing in ``src/`` changes; this only observes.
Experiments (each only changes the collector's settings, never ivcloud's code):

* ``SIGUSR1`` calls :func:`gc.freeze` (the bench sends it after the fleet has connected, with
  ``--gc-freeze-at-report``): how much of the pause is walking long-lived objects?
* env ``BENCH_GC_THRESHOLD=a,b,c`` sets :func:`gc.set_threshold` at start.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_start: dict[int, float] = {}
_pauses: list[tuple[float, int, float, int]] = []  # (t, generation, seconds, collected)


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _start[threading.get_ident()] = time.perf_counter()
        return
    t0 = _start.pop(threading.get_ident(), None)
    if t0 is not None:
        _pauses.append((time.monotonic(), info["generation"], time.perf_counter() - t0,
                        info.get("collected", 0)))  # fmt: skip


def _data_dir(argv: list[str]) -> Path:
    if "--data-dir" in argv:
        return Path(argv[argv.index("--data-dir") + 1])
    return Path(os.environ.get("IVCLOUD_DATA_DIR", ".ivcloud"))


def _dump(path: Path) -> None:
    by_gen: dict[str, dict[str, float]] = {}
    for _, gen, secs, _ in _pauses:
        g = by_gen.setdefault(str(gen), {"count": 0, "total_ms": 0.0, "max_ms": 0.0})
        g["count"] += 1
        g["total_ms"] += secs * 1000
        g["max_ms"] = max(g["max_ms"], secs * 1000)
    longest = sorted(_pauses, key=lambda p: p[2], reverse=True)[:20]
    doc = {
        "by_generation": {
            k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in sorted(by_gen.items())
        },
        "longest": [
            {"t_mono": round(t, 3), "gen": g, "ms": round(s * 1000, 2), "collected": c}
            for t, g, s, c in longest
        ],
        "gen2_pauses": [
            {"t_mono": round(t, 3), "ms": round(s * 1000, 2)} for t, g, s, _ in _pauses if g == 2
        ],
        "thresholds": gc.get_threshold(),
        "freezes": [{"t_mono": round(t, 3), "frozen": n} for t, n in _freezes],
    }
    path.write_text(json.dumps(doc, indent=1))


_freezes: list[tuple[float, int]] = []


def _freeze(_signum: int, _frame: Any) -> None:
    gc.freeze()
    _freezes.append((time.monotonic(), gc.get_freeze_count()))


def main() -> None:
    argv = sys.argv[1:]
    threshold = os.environ.get("BENCH_GC_THRESHOLD")
    if threshold:
        gc.set_threshold(*(int(x) for x in threshold.split(",")))
    signal.signal(signal.SIGUSR1, _freeze)
    gc.callbacks.append(_callback)
    atexit.register(_dump, _data_dir(argv) / "gcstats.json")
    from ivcloud.cli import main as ivcloud_main

    sys.argv = ["ivcloud", *argv]
    ivcloud_main()


if __name__ == "__main__":
    main()

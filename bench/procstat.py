"""Read-only /proc sampling for the benchmarks: RSS, CPU time and whole-machine CPU use.

A :class:`Sampler` thread records ``(monotonic, rss_kib, cpu_s)`` per watched pid plus the
machine's busy/total jiffies every ``interval`` seconds; windows are cut afterwards with the
phase timestamps the load generator reports (both use CLOCK_MONOTONIC, so the two processes
agree on time)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (``VmRSS``, ``VmHWM``) in KiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def read_cpu_s(pid: int) -> float | None:
    """utime + stime of the whole process (all threads) in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces/parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    values = [int(x) for x in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


def find_pid_by_comm(name: str) -> int | None:
    """The first process whose /proc/<pid>/comm is ``name`` (e.g. the system mosquitto)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == name:
                    return int(entry)
        except OSError:
            continue
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)


class Sampler(threading.Thread):
    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(name="procstat-sampler", daemon=True)
        self.interval = interval
        self.pids: dict[str, int] = {}
        self.series: dict[str, Series] = {}
        self.machine: list[tuple[float, int, int]] = []
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, label: str, pid: int) -> None:
        with self._lock:
            self.pids[label] = pid
            self.series.setdefault(label, Series())

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)

    def sample_once(self) -> None:
        now = time.monotonic()
        busy, total = read_machine_jiffies()
        self.machine.append((now, busy, total))
        with self._lock:
            items = list(self.pids.items())
        for label, pid in items:
            rss = read_status_kib(pid, "VmRSS")
            cpu = read_cpu_s(pid)
            if rss is None or cpu is None:
                continue
            s = self.series[label]
            s.t.append(now)
            s.rss_kib.append(rss)
            s.cpu_s.append(cpu)

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample_once()
            self._stop_evt.wait(self.interval)
        self.sample_once()

    # -- windows ------------------------------------------------------------------------

    def window(self, label: str, start: float, end: float) -> dict[str, Any]:
        """CPU % (of one core) and RSS over ``[start, end]`` for ``label``."""
        s = self.series.get(label)
        if s is None or not s.t:
            return {}
        idx = [i for i, t in enumerate(s.t) if start <= t <= end]
        if len(idx) < 2:
            return {}
        i0, i1 = idx[0], idx[-1]
        dt = s.t[i1] - s.t[i0]
        return {
            "cpu_pct": round(100 * (s.cpu_s[i1] - s.cpu_s[i0]) / dt, 1) if dt > 0 else None,
            "cpu_s": round(s.cpu_s[i1] - s.cpu_s[i0], 2),
            "rss_mib_peak": round(max(s.rss_kib[i] for i in idx) / 1024, 1),
            "rss_mib_end": round(s.rss_kib[i1] / 1024, 1),
            "seconds": round(dt, 2),
        }

    def machine_window(self, start: float, end: float) -> dict[str, Any]:
        """Whole-machine CPU use over the window, in % of all cores (2 cores = 200 %)."""
        pts = [m for m in self.machine if start <= m[0] <= end]
        if len(pts) < 2:
            return {}
        (_, b0, t0), (_, b1, t1) = pts[0], pts[-1]
        ncpu = os.cpu_count() or 1
        return {"busy_pct": round(100 * ncpu * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else None}

    def timeline(self, label: str, start: float, step: float = 1.0) -> list[dict[str, float]]:
        """Per-``step`` points from ``start``: seconds since start, CPU % and RSS MiB."""
        s = self.series.get(label)
        out: list[dict[str, float]] = []
        if s is None or not s.t:
            return out
        last_i: int | None = None
        next_t = start
        for i, t in enumerate(s.t):
            if t < next_t:
                continue
            if last_i is not None and t > s.t[last_i]:
                cpu = 100 * (s.cpu_s[i] - s.cpu_s[last_i]) / (t - s.t[last_i])
                out.append(
                    {
                        "t": round(t - start, 1),
                        "cpu_pct": round(cpu, 1),
                        "rss_mib": round(s.rss_kib[i] / 1024, 1),
                    }
                )
            last_i = i
            next_t = t + step
        return out

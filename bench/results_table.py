"""Render device_pipeline result files as a Markdown table (for docs/benchmarks.md).

.venv/bin/python bench/results_table.py bench/results/device_pipeline-*-final.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _n(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


ROWS: list[tuple[str, tuple[str, ...], int, bool]] = [
    # label, path, digits, ratio (ivcloud / mosquitto)
    ("devices connected", ("connect", "connected"), 0, False),
    ("connect rate (connects/s, 200 in flight)", ("connect", "connects_per_s"), 0, True),
    ("connect latency p99 (ms)", ("connect", "connect_ms_p99"), 0, False),
    ("warm-up: 1st report per device, p50 / p99 (ms)", ("warmup", "latency_ms"), 1, False),
    ("offered (msg/s)", ("offered_rate",), 0, False),
    ("acknowledged (code 0) /s in window", ("acked_per_s_window",), 0, True),
    ("non-zero codes / missing replies", ("non_zero_codes",), 0, False),
    ("latency p50 (ms)", ("latency_ms", "p50"), 2, True),
    ("latency p95 (ms)", ("latency_ms", "p95"), 2, True),
    ("latency p99 (ms)", ("latency_ms", "p99"), 2, True),
    ("latency max (ms)", ("latency_ms", "max"), 1, True),
    ("server CPU %, connect phase", ("server_connect", "cpu_pct"), 0, False),
    ("server CPU %, report phase", ("server_report", "cpu_pct"), 0, False),
    ("server RSS after connect (MiB)", ("server_connect", "rss_mib_end"), 0, False),
    ("server RSS peak / end (MiB)", ("server_whole_run",), 0, False),
    ("load generator CPU %, report phase", ("client_report", "cpu_pct"), 0, False),
    ("other processes' CPU % (noise)", ("other_processes_cpu_pct_report",), 0, False),
]


def cell(run: dict[str, Any] | None, label: str, path: tuple[str, ...], digits: int) -> str:
    if run is None:
        return "–"
    v = _get(run, *path)
    if path == ("warmup", "latency_ms"):
        return f"{_n(_get(v, 'p50'), digits)} / {_n(_get(v, 'p99'), digits)}"
    if path == ("non_zero_codes",):
        return f"{_n(v)} / {_n(run.get('missing_replies'))}"
    if path == ("server_whole_run",):
        return f"{_n(_get(v, 'rss_mib_peak'), 0)} / {_n(_get(v, 'rss_mib_end'), 0)}"
    return _n(v, digits)


def table(doc: dict[str, Any]) -> str:
    ivc, mq = doc.get("ivcloud"), doc.get("mosquitto")
    p = doc["params"]
    lines = [
        f"**{p['devices']:,} devices, {p['rate']:,.0f} msg/s offered, {p['seconds']:.0f} s** "
        f"(`{doc['command']}`; result file `{doc.get('file', '')}`)",
        "",
        "| | ivcloud | Mosquitto | ivcloud / Mosquitto |",
        "|---|---:|---:|---:|",
    ]
    for label, path, digits, ratio in ROWS:
        r = ""
        if ratio and ivc and mq:
            a, b = _get(ivc, *path), _get(mq, *path)
            if isinstance(a, int | float) and isinstance(b, int | float) and b:
                r = f"{a / b:,.2f}"
        lines.append(f"| {label} | {cell(ivc, label, path, digits)} | "
                     f"{cell(mq, label, path, digits)} | {r} |")  # fmt: skip
    sc = _get(ivc, "stored_check") or {}
    lines.append(
        f"| stored check (acked reports / stored / acked-not-stored) | "
        f"{_n(sc.get('acked_reports'))} / {_n(sc.get('stored_reports'))} / "
        f"{_n(sc.get('acked_but_not_stored'))} | n/a | |"
    )
    gc2 = _get(ivc, "server_gc", "gen2_in_report_window")
    if gc2:
        lines.append(
            f"| server full (gen 2) GCs in report window: count / max ms / total ms | "
            f"{gc2['count']} / {_n(gc2['max_ms'])} / {_n(gc2['total_ms'])} | | |"
        )
    return "\n".join(lines)


def main() -> None:
    for name in sys.argv[1:]:
        doc = json.loads(Path(name).read_text())
        doc["file"] = Path(name).name
        print(table(doc))
        print()


if __name__ == "__main__":
    main()

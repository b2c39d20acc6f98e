"""Markdown tables of a ``hub_fanout.py`` run (rows as that script builds them): per server
and viewer count, then the ivcloud / NMS ratios and the marginal CPU per viewer between the
two largest counts."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def tables(rows: list[dict[str, Any]], counts: list[int]) -> str:
    head = (
        "| server | viewers | server CPU % (user + system) | CPU % per viewer | server RSS MiB | "
        "delivered kbit/s per viewer (min / median) | video fps min | gaps / resyncs | "
        "delivery delay p50 / p99 / max ms | viewer proc CPU % | other procs CPU % |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    str(r["viewers"]),
                    f"{fmt(r.get('server_cpu_pct'))} ({fmt(r.get('server_user_pct'))} + "
                    f"{fmt(r.get('server_system_pct'))})",
                    fmt(r.get("cpu_pct_per_viewer")),
                    fmt(r.get("server_rss_mib")),
                    f"{fmt(r.get('kbit_s_min'))} / {fmt(r.get('kbit_s_median'))}",
                    fmt(r.get("video_fps_min")),
                    f"{fmt(r.get('gaps'))} / {fmt(r.get('resyncs'))}",
                    "{} / {} / {}".format(
                        *(fmt((r.get("delay_ms") or {}).get(k)) for k in ("p50", "p99", "max"))
                    ),
                    fmt(r.get("viewers_cpu_pct")),
                    fmt(r.get("other_cpu_pct")),
                ]
            )
            + " |"
        )
    by = {(r["server"], r["viewers"]): r for r in rows}
    if any(r["server"] == "nms" for r in rows):  # no ratio with ivcloud alone (WS-fMP4)
        lines += ["", "| viewers | ivcloud / NMS server CPU | ivcloud / NMS RSS |"]
        lines.append("|---|---:|---:|")
    for n in counts:
        a, b = by.get(("ivcloud", n)), by.get(("nms", n))
        if not a or not b:
            continue
        cpu = (a["server_cpu_pct"] or 0) / b["server_cpu_pct"] if b.get("server_cpu_pct") else None
        rss = (a["server_rss_mib"] or 0) / b["server_rss_mib"] if b.get("server_rss_mib") else None
        lines.append(f"| {n} | {fmt(cpu)} | {fmt(rss)} |")
    if len(counts) >= 2:
        lo, hi = counts[-2], counts[-1]
        for server in ("ivcloud", "nms"):
            a, b = by.get((server, lo)), by.get((server, hi))
            if (
                a
                and b
                and a.get("server_cpu_pct") is not None
                and b.get("server_cpu_pct") is not None
            ):
                slope = (b["server_cpu_pct"] - a["server_cpu_pct"]) / (hi - lo)
                lines.append(
                    f"\nmarginal CPU per viewer, {server} ({lo} → {hi}): {slope:.3f} % of a core"
                )
    return "\n".join(lines)

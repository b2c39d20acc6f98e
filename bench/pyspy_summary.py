"""Summarize a ``py-spy record --format raw`` (collapsed stacks) profile.

    .venv/bin/python bench/pyspy_summary.py bench/results/<run>-pyspy.txt [--top 25]
        [--focus SUBSTRING]

Prints, over all non-idle samples: the share per thread, the top functions by *self* time
(the leaf frame: where the CPU actually is) and by *inclusive* time (on the stack at all),
and with ``--focus`` the inclusive share of frames whose text contains SUBSTRING.
Percentages are of all non-idle samples (py-spy drops idle samples unless ``--idle``)."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")
#: Leaves that are a thread waiting, which ``--nonblocking`` sampling still reports.
IDLE_LEAVES = (
    "EpollSelector.select",
    "_connection_worker_thread (aiosqlite/core.py:59)",  # tx.get(): waiting for work
    "Condition.wait",
    "Event.wait",
)


def frame_key(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``: group a function's lines."""
    frame = _LINE_NO.sub(")", frame.strip())
    name, _, where = frame.partition(" (")
    if where:
        where = where.rstrip(")")
        parts = where.split("/")
        tail = "/".join(parts[-2:]) if len(parts) > 1 else where
        return f"{name} ({tail})"
    return name


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--focus", action="append", default=[])
    ap.add_argument(
        "--busy",
        action="store_true",
        help="drop samples whose leaf is a known wait (selector, aiosqlite queue get)",
    )
    args = ap.parse_args()
    stacks = load(args.profile)
    if args.busy:
        stacks = [(f, n) for f, n in stacks if not any(w in f[-1] for w in IDLE_LEAVES)]
    total = sum(n for _, n in stacks)
    if not total:
        raise SystemExit("no samples")
    threads: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, n in stacks:
        threads[frames[0]] += n
        body = frames[1:] if frames[0].startswith(("thread", "process")) else frames
        if not body:
            continue
        self_t[frame_key(body[-1])] += n
        for key in {frame_key(f) for f in body}:
            incl[key] += n
    print(f"{total} samples")
    print("\nby thread:")
    for name, n in threads.most_common(10):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print(f"\ntop {args.top} by self time:")
    for name, n in self_t.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print(f"\ntop {args.top} by inclusive time:")
    for name, n in incl.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {name}")
    for focus in args.focus:
        n = sum(c for frames, c in stacks if any(focus in f for f in frames))
        print(f"\ninclusive share of frames containing {focus!r}: {100 * n / total:.1f}%")


if __name__ == "__main__":
    main()

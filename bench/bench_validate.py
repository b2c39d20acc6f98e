"""Time ThingModel.validate_report on the video-lock model (the device-report hot path).

Run: ``.venv/bin/python bench/bench_validate.py``. Not a test: it prints numbers for
docs/benchmarks.md. The DESIGN target of 5k reports/s on 2 cores leaves ~400 µs of CPU per
report for everything; validation should be a small, fixed slice of that.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

from ivcloud.protocol.thingmodel import load_standard_model, loads_thing_model

model = load_standard_model("lock-video")

# A full-state report as a lock sends after connecting (every property, lists filled in).
FULL: dict[str, Any] = {
    "sensitivity": 1,
    "battery_percentage": 87,
    "volume": 2,
    "wakeup_state": 1,
    "faces": [{"id": str(i), "face_name": f"face{i}"} for i in range(3)],
    "cards": [{"id": str(i), "card_name": f"card{i}"} for i in range(2)],
    "passwords": [{"id": "1", "password_name": "home"}],
    "fingerprints": [{"id": str(i), "fingerprints_name": f"finger{i}"} for i in range(4)],
    "lock_motor_state": 1,
    "child_lock_state": 0,
    "disarming": 0,
    "inner_lock_state": 0,
    "user_list": {"owner": "user-1", "shared_person": ["user-2", "user-3"]},
    "lock_state": 1,
    "_sys_xp2p_info": "XP2Pabcdefghijklmnopqrstuvwxyz0123456789%2.4.40",
    "_sys_cs_days": 7,
    "_sys_cs_status": 1,
    "_sys_cs_type": 2,
    "_sys_ai_status": 0,
}
# The common case afterwards: a partial report of what changed.
PARTIAL: dict[str, Any] = {"lock_motor_state": 0, "battery_percentage": 86}
# Scalars only (no arrays/structs): the per-property floor.
SCALARS = {k: v for k, v in FULL.items() if not isinstance(v, list | dict)}


def per_call_us(fn: Any, number: int) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    model.validate_report(FULL)
    n = 20_000
    full_us = per_call_us(lambda: model.validate_report(FULL), n)
    partial_us = per_call_us(lambda: model.validate_report(PARTIAL), n * 5)
    scalar_us = per_call_us(lambda: model.validate_report(SCALARS), n)
    text = json.dumps(model.to_json())
    parse_ms = per_call_us(lambda: loads_thing_model(text), 200) / 1000

    print("lock-video validate_report (best of 5)")
    print(f"  full report, {len(FULL)} properties:    {full_us:6.2f} µs/report")
    print(f"  scalars only, {len(SCALARS)} properties:  {scalar_us:6.2f} µs/report "
          f"({scalar_us / len(SCALARS):.2f} µs/property)")  # fmt: skip
    print(f"  partial report, {len(PARTIAL)} properties:  {partial_us:6.2f} µs/report")
    print(f"  parse + compile the model:         {parse_ms:6.2f} ms")


if __name__ == "__main__":
    main()

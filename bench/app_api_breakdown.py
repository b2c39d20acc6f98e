"""Where one App API request's CPU goes: each step of ``AppGetFamilyDeviceList`` and
``AppControlDeviceData`` timed in-process, one call at a time (no concurrency, no HTTP).

    .venv/bin/python bench/app_api_breakdown.py [--iterations 400] [--repeat 3]

Provisions like ``bench/app_api.py`` (one app, a 200-device family; 2 users), starts an
``Ivcloud`` in this process (stock asyncio loop, as ``ivcloud serve``) and, per step, runs it
``--iterations`` times after a warm-up, reporting CPU µs per call (``time.process_time``:
all threads, so aiosqlite's worker thread is included) and wall µs per call. The steps are
the calls the router and the two actions make, in order (read from
``api/appapi/router.py``, ``actions/devices.py``, ``services/{access,families,control}.py``),
plus the whole request through the ASGI app (``instance.http_app``, no socket) and two
floors: one ``SELECT 1`` through an ``AsyncSession`` (the fixed cost of a database round
trip on this stack) and the family page's SQL through the stdlib ``sqlite3`` module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from app_api import provision
from launch import bench_instance
from sqlalchemy import text

from ivcloud.protocol import appapi
from ivcloud.protocol.jsontext import RawJson
from ivcloud.services.access import Access


async def timed(
    label: str, fn: Callable[[], Awaitable[Any]], n: int, rows: list[dict[str, Any]]
) -> None:
    for _ in range(max(20, n // 10)):
        await fn()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    c1, w1 = time.process_time(), time.perf_counter()
    rows.append(
        {
            "step": label,
            "cpu_us": round((c1 - c0) / n * 1e6, 1),
            "wall_us": round((w1 - w0) / n * 1e6, 1),
        }
    )
    print(f"  {label:58} {rows[-1]['cpu_us']:9.1f} {rows[-1]['wall_us']:9.1f}")


async def asgi_post(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One request through the ASGI app, in memory."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def run(data_dir: Path, n: int, limit: int) -> list[dict[str, Any]]:
    doc = json.loads((data_dir / "users.json").read_text())
    rows: list[dict[str, Any]] = []
    async with bench_instance(data_dir) as inst:
        token = doc["users"][1]["token"]  # a member (not the owner) of the 200-device family
        fid = doc["family_id"]
        pid, dn = doc["device_ids"][1].split("/")
        user = await inst.users.authenticate(token)
        assert user is not None
        rec = await inst.devices.get(pid, dn)
        list_body = json.dumps(
            {
                "Action": "AppGetFamilyDeviceList",
                "RequestId": "r",
                "AccessToken": token,
                "FamilyId": fid,
                "Offset": 0,
                "Limit": limit,
            }
        ).encode()
        control_body = json.dumps(
            {
                "Action": "AppControlDeviceData",
                "RequestId": "r",
                "AccessToken": token,
                "DeviceId": f"{pid}/{dn}",
                "Data": '{"child_lock_state":1}',
            }
        ).encode()
        path = "/api/exploreropen/tokenapi"
        status, body = await asgi_post(inst.http_app, path, list_body)
        assert status == 200 and body.startswith(b'{"code":0,'), body[:200]
        status, body = await asgi_post(inst.http_app, path, control_body)
        assert status == 200 and body.startswith(b'{"code":0,'), body[:200]

        print(f"  {'step':58} {'CPU µs':>9} {'wall µs':>9}")

        async def select_one() -> None:
            async with inst.sessions() as s:
                await s.execute(text("SELECT 1"))

        await timed("floor: AsyncSession + SELECT 1 (one DB round trip)", select_one, n, rows)

        async def core_one() -> None:
            async with inst.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await timed("floor: engine.connect() + SELECT 1 (Core, no Session)", core_one, n, rows)
        import aiosqlite

        raw = await aiosqlite.connect(data_dir / "ivcloud.db")

        async def raw_one() -> None:
            async with raw.execute("SELECT 1") as cur:
                await cur.fetchall()

        await timed("floor: aiosqlite execute + fetchall (no SQLAlchemy)", raw_one, n, rows)
        await raw.close()

        print(" AppGetFamilyDeviceList, in the order the server runs it:")
        await timed("router: users.authenticate (cached)", lambda: inst.users.authenticate(token),
                    n, rows)  # fmt: skip
        await timed("router: apps.get(user.app_id) (cached)", lambda: inst.apps.get(user.app_id),
                    n, rows)  # fmt: skip
        await timed("action: access.require_family (AppGraph)",
                    lambda: inst.access.require_family(user, fid, admin=False), n,
                    rows)  # fmt: skip
        await timed(f"action: families.family_devices_json(limit {limit}) (AppGraph)",
                    lambda: inst.families.family_devices_json(fid, None, 0, limit), n,
                    rows)  # fmt: skip
        total, items = await inst.families.family_devices_json(fid, None, 0, limit)

        async def render() -> None:
            appapi.ok_json("r", {"DeviceList": RawJson(items), "Total": total})

        await timed(f"reply: envelope + {limit} pre-rendered items spliced", render, n, rows)
        await timed("whole request via ASGI app (no socket)",
                    lambda: asgi_post(inst.http_app, path, list_body), n, rows)  # fmt: skip

        print(" AppControlDeviceData:")
        await timed("action: access.require_device(SHARED) (AppGraph)",
                    lambda: inst.access.require_device(user, pid, dn, Access.SHARED), n,
                    rows)  # fmt: skip
        await timed("service: control.control (group commit, publish)",
                    lambda: inst.control.control(rec, {"child_lock_state": 1}), n,
                    rows)  # fmt: skip
        await timed("whole request via ASGI app (no socket)",
                    lambda: asgi_post(inst.http_app, path, control_body), n, rows)  # fmt: skip

    # The family page's SQL through the stdlib driver: what the database itself costs.
    con = sqlite3.connect(data_dir / "ivcloud.db")
    sql = (
        "SELECT fd.*, d.product_id, d.device_name FROM family_devices fd "
        "JOIN devices d ON d.id = fd.device_id WHERE fd.family_id = ? "
        "ORDER BY fd.created_ms, fd.device_id LIMIT ? OFFSET 0"
    )
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        con.execute("SELECT count(*) FROM family_devices WHERE family_id = ?", (fid,)).fetchone()
        con.execute(sql, (fid, limit)).fetchall()
    c1, w1 = time.process_time(), time.perf_counter()
    con.close()
    rows.append(
        {
            "step": f"floor: the page's 2 SQL statements via stdlib sqlite3 (limit {limit})",
            "cpu_us": round((c1 - c0) / n * 1e6, 1),
            "wall_us": round((w1 - w0) / n * 1e6, 1),
        }
    )
    print(f"  {rows[-1]['step']:58} {rows[-1]['cpu_us']:9.1f} {rows[-1]['wall_us']:9.1f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; the table shows medians")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ivcloud-appbreak-"))
    rounds: list[list[dict[str, Any]]] = []
    try:
        asyncio.run(provision(work, 2, args.devices))
        for r in range(args.repeat):
            print(f"round {r + 1}/{args.repeat}")
            rounds.append(asyncio.run(run(work, args.iterations, args.limit)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedian of {args.repeat} rounds × {args.iterations} calls")
    print("| step | CPU µs/call | wall µs/call |\n|---|---|---|")
    for k, row in enumerate(rounds[0]):
        cpu = statistics.median(x[k]["cpu_us"] for x in rounds)
        wall = statistics.median(x[k]["wall_us"] for x in rounds)
        print(f"| {row['step']} | {cpu:,.0f} | {wall:,.0f} |")


if __name__ == "__main__":
    main()

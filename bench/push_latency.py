"""Report → App push latency on loopback, with N WebSocket subscribers (not a test).

The server runs in a child process (its own interpreter and event loop): a real ``Ivcloud``
on free ports, one product/device with an int property ``seq``, one app user who owns the
device.  This process connects the device over MQTT and N clients to ``/ws/explorer``
(ActivePush), sends ``--reports`` reports at ``--rate``/s (QoS 0, open loop) and, for every
push, records arrival − send time of the report carrying that ``seq``.

    .venv/bin/python bench/push_latency.py --subscribers 1 --reports 2000 --rate 500
    .venv/bin/python bench/push_latency.py --subscribers 100 --reports 2000 --rate 500

Prints p50/p90/p99/max over all (report, subscriber) deliveries and over "last subscriber
served" per report, and the number of deliveries missing at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from websockets.asyncio.client import ClientConnection, connect

from ivcloud.app import Ivcloud
from ivcloud.config import Settings
from ivcloud.logs import configure
from ivcloud.protocol.credentials import make_username, sign_password
from ivcloud.runner import keep_gc_cheap

MODEL: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "", "CategoryId": "0"},
    "properties": [
        {
            "id": "seq",
            "name": "seq",
            "mode": "r",
            "define": {
                "type": "int",
                "min": "0",
                "max": "2000000000",
                "start": "0",
                "step": "1",
                "unit": "",
            },
        }
    ],
    "events": [],
    "actions": [],
}


# -- server (child process) -------------------------------------------------------------------


async def _serve(data_dir: Path, pipe: Connection) -> None:
    configure("warning")
    instance = Ivcloud(
        Settings.model_validate(
            {
                "data_dir": data_dir,
                "host": "127.0.0.1",
                "http_port": 0,
                "mqtt_port": 0,
                "mqtt_ws_port": 0,
                "stun_port": None,
                "log_level": "warning",
            }
        )
    )
    ep = await instance.start()
    async with httpx.AsyncClient(
        base_url=ep.http_url + "/api/console/v1",
        headers={"Authorization": f"Bearer {instance.admin_token}"},
    ) as admin:
        pid = (await admin.post("/products", json={"Name": "bench", "Category": "watch"})).json()[
            "ProductId"
        ]
        (await admin.put(f"/products/{pid}/thing-model", json=MODEL)).raise_for_status()
        dev = (await admin.post(f"/products/{pid}/devices", json={"DeviceName": "d1"})).json()
        app = (await admin.post("/apps", json={"Name": "bench"})).json()
        (await admin.put(f"/apps/{app['AppId']}/products/{pid}")).raise_for_status()
    user = await instance.users.create(app["AppId"], nick_name="bench")
    token, _ = await instance.users.issue_token(user)
    family = await instance.families.create_family(user, "home")
    rec = await instance.devices.find(pid, "d1")
    assert rec is not None
    await instance.families.bind_device(user, family, "0", rec)
    pipe.send(
        {
            "http_url": ep.http_url,
            "mqtt": [ep.mqtt_host, ep.mqtt_port],
            "product_id": pid,
            "secret": dev["DeviceSecret"],
            "token": token,
        }
    )
    done = asyncio.Event()
    asyncio.get_running_loop().add_reader(pipe.fileno(), done.set)
    # The production process's GC policy (``ivcloud serve`` runs the same).
    gc_policy = asyncio.create_task(keep_gc_cheap(instance, done))
    await done.wait()
    await gc_policy
    await instance.stop()


def serve(data_dir: str, pipe: Connection) -> None:
    asyncio.run(_serve(Path(data_dir), pipe))


# -- load (this process) ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(info: dict[str, Any], subscribers: int, reports: int, rate: float) -> dict[str, Any]:
    pid = info["product_id"]
    device_id = f"{pid}/d1"
    sent: dict[int, float] = {}
    per_delivery: list[float] = []
    last: dict[int, float] = {}
    got = 0
    all_in = asyncio.Event()

    async def reader(ws: ClientConnection) -> None:
        nonlocal got
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("action") != "DeviceChange" or frame["params"]["Type"] != "Property":
                continue
            seq = json.loads(base64.b64decode(frame["params"]["Payload"]))["params"]["seq"]
            lat = (now - sent[seq]) * 1000
            per_delivery.append(lat)
            last[seq] = max(last.get(seq, 0.0), lat)
            got += 1
            if got == reports * subscribers:
                all_in.set()

    url = info["http_url"].replace("http://", "ws://") + "/ws/explorer"
    clients = [await connect(url, compression=None) for _ in range(subscribers)]
    for ws in clients:
        await ws.send(
            json.dumps(
                {
                    "action": "ActivePush",
                    "reqId": "1",
                    "params": {"AccessToken": info["token"], "DeviceIds": [device_id]},
                }
            )
        )
        reply = json.loads(await ws.recv())
        assert reply["data"]["deviceIds"] == [device_id], reply
    tasks = [asyncio.create_task(reader(ws)) for ws in clients]

    host, port = info["mqtt"]
    username = make_username(pid, "d1", now=int(time.time()), connid="bench")
    async with aiomqtt.Client(
        host,
        port,
        identifier=pid + "d1",
        username=username,
        password=sign_password(info["secret"], username, "hmacsha256"),  # type: ignore[arg-type]
    ) as mqtt:
        topic = f"$thing/up/property/{pid}/d1"
        start = time.perf_counter()
        for seq in range(reports):
            due = start + seq / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = json.dumps({"method": "report", "clientToken": str(seq), "params": {"seq": seq}})
            sent[seq] = time.perf_counter()
            await mqtt.publish(topic, body.encode())
        with contextlib.suppress(TimeoutError):  # "missing" reports what did not arrive
            await asyncio.wait_for(all_in.wait(), 30)
    for t in tasks:
        t.cancel()
    for ws in clients:
        await ws.close()
    lasts = list(last.values())
    return {
        "subscribers": subscribers,
        "reports": reports,
        "rate": rate,
        "deliveries": len(per_delivery),
        "missing": reports * subscribers - len(per_delivery),
        "delivery_ms": {
            "p50": round(pct(per_delivery, 0.50), 2),
            "p90": round(pct(per_delivery, 0.90), 2),
            "p99": round(pct(per_delivery, 0.99), 2),
            "max": round(max(per_delivery, default=float("nan")), 2),
            "mean": round(statistics.fmean(per_delivery), 2) if per_delivery else None,
        },
        "last_subscriber_ms": {
            "p50": round(pct(lasts, 0.50), 2),
            "p99": round(pct(lasts, 0.99), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="ivcloud-push-bench-") as tmp:
        proc = ctx.Process(target=serve, args=(tmp, child), daemon=True)
        proc.start()
        try:
            if not parent.poll(60):
                raise SystemExit("server did not start")
            info = parent.recv()
            result = asyncio.run(run(info, args.subscribers, args.reports, args.rate))
            print(json.dumps(result, indent=2))
        finally:
            parent.send("stop")
            proc.join(30)
            if proc.is_alive():
                proc.terminate()


if __name__ == "__main__":
    main()

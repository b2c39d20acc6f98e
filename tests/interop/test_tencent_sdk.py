"""Interop: the official Tencent IoT Explorer Python device SDK (``tencent-iot-device`` 1.0.0)
talking to a real ivcloud instance.

The SDK needs paho-mqtt 1.5.1 while ivcloud uses paho-mqtt 2.x, so it lives in its own venv
(``.venv-interop``, created by ``scripts/test``) and is driven by ``tencent_driver.py`` in a
subprocess that prints one JSON line per observation.  See that file's docstring for how the
SDK is pointed at the local broker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivcloud.app import Ivcloud
from tests.gateway_kit import device_doc
from tests.helpers import Provisioned, poll, provision

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
INTEROP_PYTHON = ROOT / ".venv-interop" / "bin" / "python"
DRIVER = Path(__file__).with_name("tencent_driver.py")
DRIVER_TIMEOUT_S = 30.0


def _num(**define: Any) -> dict[str, Any]:
    return {k: str(v) for k, v in define.items()}


def _int(lo: int, hi: int, unit: str = "") -> dict[str, Any]:
    return {"type": "int", **_num(min=lo, max=hi, start=lo, step=1), "unit": unit}


def _string(hi: int) -> dict[str, Any]:
    return {"type": "string", "min": "0", "max": str(hi)}


def thing_model(product_id: str) -> dict[str, Any]:
    """A small custom model in the spec §4 format: every scalar type, one event of each
    kind the test posts, and one action with input and output."""
    return {
        "version": "1.0",
        "profile": {"ProductId": product_id, "CategoryId": "1"},
        "properties": [
            {
                "id": "power_switch",
                "name": "Power",
                "desc": "",
                "mode": "rw",
                "define": {"type": "bool", "mapping": {"0": "off", "1": "on"}},
                "required": False,
            },
            {
                "id": "brightness",
                "name": "Brightness",
                "desc": "",
                "mode": "rw",
                "define": _int(0, 100, "%"),
                "required": False,
            },
            {
                "id": "color",
                "name": "Color",
                "desc": "",
                "mode": "rw",
                "define": {"type": "enum", "mapping": {"0": "red", "1": "green", "2": "blue"}},
                "required": False,
            },
            {
                "id": "temperature",
                "name": "Temperature",
                "desc": "",
                "mode": "r",
                "define": {"type": "float", **_num(min=-40, max=120, start=0, step=0.1)},
                "required": False,
            },
            {
                "id": "label",
                "name": "Label",
                "desc": "",
                "mode": "rw",
                "define": _string(32),
                "required": False,
            },
        ],
        "events": [
            {
                "id": "status_report",
                "name": "Status",
                "desc": "",
                "type": "info",
                "required": False,
                "params": [
                    {"id": "status", "name": "Status", "define": {"type": "bool"}},
                    {"id": "message", "name": "Message", "define": _string(64)},
                ],
            },
            {
                "id": "low_battery",
                "name": "Low battery",
                "desc": "",
                "type": "alert",
                "required": False,
                "params": [{"id": "battery", "name": "Battery", "define": _int(0, 100, "%")}],
            },
        ],
        "actions": [
            {
                "id": "blink",
                "name": "Blink",
                "desc": "",
                "required": False,
                "input": [{"id": "times", "name": "Times", "define": _int(1, 10)}],
                "output": [
                    {"id": "result", "name": "Result", "define": _int(0, 1)},
                    {"id": "message", "name": "Message", "define": _string(64)},
                ],
            }
        ],
    }


def interop_python() -> Path:
    if not INTEROP_PYTHON.exists():
        pytest.fail(
            f"{INTEROP_PYTHON} is missing: the Tencent device SDK interop venv has not been "
            "created. Run scripts/test (it builds .venv-interop with "
            "`pip install --no-deps tencent-iot-device==1.0.0 paho-mqtt==1.5.1 "
            "pycryptodome==4.4.0`), then re-run the tests.",
            pytrace=False,
        )
    return INTEROP_PYTHON


class DriverProcess:
    """Follows the driver's stdout; every failure message carries the full transcript."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: list[dict[str, Any]] = []

    def transcript(self) -> str:
        out = "\n".join(json.dumps(line, ensure_ascii=False) for line in self.lines)
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- driver stdout ---\n{out}\n--- driver stderr (tail) ---\n{err[-6000:]}"

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n{self.transcript()}", pytrace=False)

    async def _next_line(self, deadline: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not raw:
                return None
            try:
                line = json.loads(raw)
            except ValueError:
                self.lines.append({"step": "non-json", "text": raw.decode(errors="replace")})
                continue
            self.lines.append(line)
            return line  # type: ignore[no-any-return]

    async def expect(self, step: str, within: float = 15.0, **match: Any) -> dict[str, Any]:
        """The next line with ``step`` (and the given field values); fails on ``error``."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                line = await self._next_line(deadline)
            except TimeoutError:
                self.fail(f"no {step!r} line from the driver within {within:g} s")
                raise  # unreachable: pytest.fail raises
            if line is None:
                rc = await self.proc.wait()
                self.fail(f"driver exited (rc={rc}) before {step!r}")
                raise AssertionError  # unreachable
            if line.get("step") == "error":
                self.fail(f"driver failed while the test waited for {step!r}: {line['error']}")
            if line.get("step") == step and all(line.get(k) == v for k, v in match.items()):
                return line

    async def until_exit(self, within: float = DRIVER_TIMEOUT_S + 5) -> int:
        deadline = asyncio.get_running_loop().time() + within
        try:
            while await self._next_line(deadline) is not None:
                pass
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.fail("driver did not exit in time")
            raise

    def seen(self, step: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("step") == step]


@asynccontextmanager
async def run_driver(
    cfg: dict[str, Any], tmp_path: Path, script: Path = DRIVER
) -> AsyncIterator[DriverProcess]:
    """``script`` (this module's device driver, or another on the same stdin / JSON-lines
    contract, e.g. the gateway's) in the interop venv, configured with ``cfg``."""
    python = interop_python()
    stderr_path = tmp_path / "driver.stderr"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            str(python),
            "-I",  # isolated: only .venv-interop's site-packages (paho 1.5.1), no ivcloud
            str(script),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"timeout": DRIVER_TIMEOUT_S, **cfg}).encode())
    await proc.stdin.drain()
    proc.stdin.close()
    driver = DriverProcess(proc, stderr_path)
    try:
        yield driver
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def base_cfg(server: Ivcloud, product_id: str, device_name: str, secret: str) -> dict[str, Any]:
    assert server.endpoints is not None
    return {
        "host": server.endpoints.mqtt_host,
        "port": server.endpoints.mqtt_port,
        "product_id": product_id,
        "device_name": device_name,
        "secret": secret,
        "step_timeout": 10,
    }


async def _wait_online(admin: httpx.AsyncClient, dev: Provisioned, online: int) -> None:
    await poll(lambda: device_doc(admin, dev), lambda d: d["Online"] == online, deadline_s=5.0)


REPORT = {"power_switch": 1, "brightness": 42, "color": 2, "temperature": 21.5, "label": "hall"}
CONTROL = {"brightness": 77, "power_switch": 0}
STATUS_EVENT = {
    "eventId": "status_report",
    "type": "info",
    "params": {"status": 1, "message": "booted"},
}
BATTERY_EVENT = {"eventId": "low_battery", "type": "alert", "params": {"battery": 9}}
ACTION_RESPONSE = {"result": 1, "message": "blinked"}


async def test_tencent_sdk_data_template_roundtrip(
    server: Ivcloud, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    dev = await provision(admin, model="lock-video", category="lock", device_name="sdk_dev1")
    pid, dn = dev.product_id, dev.device_name
    resp = await admin.put(f"/products/{pid}/thing-model", json=thing_model(pid))
    assert resp.status_code == 200, resp.text
    exported = resp.json()

    cfg = base_cfg(server, pid, dn, dev.secret)
    cfg["thing_model"] = exported
    cfg["steps"] = [
        {"do": "subscribe"},
        {"do": "template_setup"},
        {
            "do": "report_info",
            "params": {"module_hardinfo": "ESP8266", "module_softinfo": "V1.0", "fw_ver": "3.1.4"},
        },
        {"do": "report", "label": "valid", "params": REPORT},
        {"do": "report", "label": "out_of_range", "params": {"brightness": 101}},
        {"do": "report", "label": "unknown_property", "params": {"no_such_property": 1}},
        {"do": "wait_control", "code": 0, "status": "ok"},
        {"do": "get_status"},
        {"do": "clear_control"},
        {"do": "event", "label": "single", "events": [STATUS_EVENT]},
        {"do": "event", "label": "multi", "events": [STATUS_EVENT, BATTERY_EVENT]},
        {"do": "wait_action", "code": 0, "status": "done", "response": ACTION_RESPONSE},
    ]

    async with run_driver(cfg, tmp_path) as drv:
        redirect = await drv.expect("tcp_redirect")
        assert redirect["sdk_target"] == f"{pid}.iotcloud.ivcloud.test:1883"
        connack = await drv.expect("connack")
        assert connack["rc"] == 0
        await drv.expect("connected", rc=0)

        sub = await drv.expect("subscribed")
        assert all(q in (0, 1) for q in sub["granted"]), f"SUBACK refused: {sub['granted']}"
        await _wait_online(admin, dev, 1)

        setup = await drv.expect("template_setup")
        assert setup["rc"] == 0, drv.transcript()
        assert setup["properties"] == [p["id"] for p in exported["properties"]]
        assert setup["events"] == ["status_report", "low_battery"]
        assert setup["actions"] == ["blink"]

        info = await drv.expect("report_info_reply")
        assert info["code"] == 0, drv.transcript()

        ok = await drv.expect("report_reply", label="valid")
        assert ok["code"] == 0, drv.transcript()
        for label in ("out_of_range", "unknown_property"):
            bad = await drv.expect("report_reply", label=label)
            assert bad["code"] == 406, drv.transcript()
            assert bad["status"] == "checkReportData fail"

        props = (await device_doc(admin, dev))["Properties"]
        assert {k: v["Value"] for k, v in props.items()} == REPORT

        await drv.expect("waiting", what="control")
        resp = await admin.post(
            f"/products/{pid}/devices/{dn}/control", json={"Params": CONTROL, "WaitSeconds": 5}
        )
        assert resp.status_code == 200, resp.text
        result = resp.json()
        control = await drv.expect("control")
        assert control["params"] == CONTROL
        assert control["clientToken"] == result["ClientToken"]
        sent = await drv.expect("control_reply_sent")
        # The SDK 1.0.0 quirk (spec §3.1): control_reply without "method".
        assert sent["payload"] == {"code": 0, "clientToken": result["ClientToken"], "status": "ok"}
        assert result["Delivered"] is True, f"{result}\n{drv.transcript()}"
        assert result["Code"] == 0, f"{result}\n{drv.transcript()}"

        status = await drv.expect("get_status_reply")
        assert status["code"] == 0
        assert status["data"]["reported"] == REPORT
        assert "control" not in status["data"], "control_reply code 0 must clear the control"

        cleared = await drv.expect("clear_control_reply")
        assert cleared["code"] == 0

        single = await drv.expect("event_reply", label="single")
        assert single["method_sent"] == "event_post"  # with a one-element "events" array
        assert single["code"] == 0, drv.transcript()
        multi = await drv.expect("event_reply", label="multi")
        assert multi["method_sent"] == "events_post"
        assert multi["code"] == 0, drv.transcript()

        # What the SDK actually posted (its millisecond timestamps included, spec §3.2).
        posted = [
            ev
            for line in drv.seen("sent")
            if line["topic"].startswith("$thing/up/event/")
            for ev in line["payload"]["events"]
        ]
        assert len(posted) == 3

        def key(event_id: str, type_: str, params: Any, ts: Any) -> str:
            return json.dumps([event_id, type_, params, ts], sort_keys=True)

        resp = await admin.get(f"/products/{pid}/devices/{dn}/events")
        assert resp.status_code == 200, resp.text
        stored = resp.json()["Events"]
        assert sorted(
            key(e["EventId"], e["Type"], e["Params"], e["Timestamp"]) for e in stored
        ) == sorted(key(e["eventId"], e["type"], e["params"], e["timestamp"]) for e in posted)

        await drv.expect("waiting", what="action")
        resp = await admin.post(
            f"/products/{pid}/devices/{dn}/actions/blink",
            json={"Params": {"times": 3}, "TimeoutSeconds": 10},
        )
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        action = await drv.expect("action")
        assert action["actionId"] == "blink"
        assert action["params"] == {"times": 3}
        assert answer == {
            "ClientToken": action["clientToken"],
            "Code": 0,
            "Status": "done",
            "Response": ACTION_RESPONSE,
        }

        await drv.expect("disconnected")
        await drv.expect("done")
        assert await drv.until_exit() == 0, drv.transcript()
        assert not drv.seen("unexpected_connection")

    await _wait_online(admin, dev, 0)


async def test_tencent_sdk_wrong_secret_is_refused(
    server: Ivcloud, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    dev = await provision(admin, model="camera", category="camera", device_name="sdk_dev2")
    wrong = base64.b64encode(b"not the real key").decode()
    assert wrong != dev.secret
    cfg = base_cfg(server, dev.product_id, dev.device_name, wrong)
    cfg["step_timeout"] = 3
    async with run_driver(cfg, tmp_path) as drv:
        connack = await drv.expect("connack")
        # MQTT 3.1 CONNACK 4 = bad user name or password
        assert connack["rc"] == 4, drv.transcript()
        assert await drv.until_exit() != 0
        assert not drv.seen("connected")
        errors = drv.seen("error")
        assert errors and "not connected" in errors[0]["error"], drv.transcript()
    assert (await device_doc(admin, dev))["Online"] == 0


async def test_tencent_sdk_sample_control_reply_gets_no_answer(
    server: Ivcloud, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The SDK's template sample (explorer/sample/template/example_template.py) calls
    ``templateControlReply`` from its property callback for *every* property downlink, with
    status ``"\\0"``; before any control/get_status the SDK's stored control token is None, so
    it publishes ``{"code":0,"clientToken":null,"status":"\\u0000"}``.  That is a reply: the
    cloud must not answer it (spec §3.1), or sample-based firmware loops forever."""
    dev = await provision(admin, model="camera", category="camera", device_name="sdk_dev3")
    cfg = base_cfg(server, dev.product_id, dev.device_name, dev.secret)
    cfg["steps"] = [
        {"do": "subscribe"},
        {"do": "control_reply"},
        {"do": "listen", "seconds": 1},
    ]
    async with run_driver(cfg, tmp_path) as drv:
        sent = await drv.expect("control_reply_sent")
        assert sent["payload"] == {"code": 0, "clientToken": None, "status": "\0"}
        listened = await drv.expect("listened")
        assert listened["received"] == [], drv.transcript()
        await drv.expect("done")
        assert await drv.until_exit() == 0

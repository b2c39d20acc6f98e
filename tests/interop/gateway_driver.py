"""Drive the official Python device SDK's *gateway* (``tencent-iot-device`` 1.0.0,
``hub/services/gateway/gateway.py``) against ivcloud; one JSON object per line on stdout.

Everything of ``tencent_driver.py`` applies (same config, redirect, taps, steps, output);
this adds the gateway and its sub-device::

    {..., "sub": {"product_id": "...", "device_name": "...", "secret": "..."}, "steps": [...]}

Extra steps: ``gateway_init`` (``gatewayInit``: subscribes ``$gateway/operation/result``,
waits for the SUBACK), ``bind`` (``gatewaySubdevBind`` with the sub-device's secret, or
``secret``/``device_name`` from the step; the SDK keeps a failed result per sub-device,
so a later bind of the same one in that session fails too), ``online``, ``offline``,
``unbind`` (each prints the SDK's ``rc``:
0 when the cloud answered ``result`` 0 within the SDK's 1.5 s), ``describe``
(``gatewaySubdevGetBindList``), ``as_sub`` (from here on the data-template steps —
``subscribe``, ``template_setup``, ``report``, ``wait_control`` … — act for the sub-device, as
the SDK's gateway sample calls ``templateInit``/``templateReport`` with the sub-device's ids),
``wait_gateway_msg`` (``type``: until the SDK has received such a ``$gateway`` message).

Two more observation-only taps: ``Gateway.handle_gateway`` is wrapped to print every
``$gateway/operation/result`` message the SDK receives (``gateway_msg``) before the SDK's own
code handles it unchanged, and the connection's ``publish`` prints every ``$gateway`` message
the SDK sends (``gateway_sent``: the gateway module bypasses the hub's ``publish``).  The
SDK reads the gateway's ``subDev`` block from ``device_info.json``; it is added to the parsed
file in memory (the base driver writes the file without it).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run with -I: no script dir on path

import tencent_driver as base
from hub.protocol import protocol as sdk_protocol
from hub.services.gateway import gateway as sdk_gateway

_gateway_msgs: queue.Queue[dict[str, Any]] = queue.Queue()


def install_gateway_tap() -> None:
    original = sdk_gateway.Gateway.handle_gateway
    original_publish = sdk_protocol.AsyncConnClient.publish

    def publish(self: Any, topic: Any, payload: Any, qos: Any = 0) -> Any:
        # The gateway module publishes on the connection itself, past the base driver's tap.
        if isinstance(topic, str) and topic.startswith("$gateway/"):
            base.emit("gateway_sent", topic=topic, payload=json.loads(payload))
        return original_publish(self, topic, payload, qos)

    sdk_protocol.AsyncConnClient.publish = publish

    def handle_gateway(self: Any, topic: str, message: Any) -> Any:
        base.emit("gateway_msg", topic=topic, payload=message)
        if isinstance(message, dict):
            _gateway_msgs.put(message)
        return original(self, topic, message)

    sdk_gateway.Gateway.handle_gateway = handle_gateway


class GatewayDriver(base.Driver):
    def __init__(self, cfg: dict[str, Any], workdir: Path) -> None:
        super().__init__(cfg, workdir)
        self.sub: dict[str, str] = cfg["sub"]
        self.gw_pid, self.gw_dn = self.pid, self.dn
        hub = self.qcloud._QcloudExplorer__hub  # type: ignore[attr-defined]
        info = hub._QcloudHubProvider__device_info
        info.json_data["subDev"] = {
            "subdev_num": 1,
            "subdev_list": [
                {"sub_productId": self.sub["product_id"], "sub_devName": self.sub["device_name"]}
            ],
        }

    def _sub_ids(self) -> tuple[str, str]:
        return self.sub["product_id"], self.sub["device_name"]

    @staticmethod
    def _rc(result: Any) -> Any:
        return result[0] if isinstance(result, tuple) else result

    def step_gateway_init(self, step: dict[str, Any]) -> None:
        self.check_rc("gatewayInit", self.qcloud.gatewayInit())
        try:
            granted = self.subacks.get(timeout=self.step_timeout)
        except queue.Empty:
            raise base.StepFailed("no SUBACK for $gateway/operation/result") from None
        base.emit("gateway_init", granted=granted)

    def step_bind(self, step: dict[str, Any]) -> None:
        pid, dn = self._sub_ids()
        dn = step.get("device_name", dn)  # another sub-device of the same product
        secret = step.get("secret", self.sub["secret"])
        base.emit(
            "bind",
            label=step.get("label", ""),
            rc=self._rc(self.qcloud.gatewaySubdevBind(pid, dn, secret)),
        )

    def step_online(self, step: dict[str, Any]) -> None:
        pid, dn = self._sub_ids()
        base.emit("online", rc=self._rc(self.qcloud.gatewaySubdevOnline(pid, dn)))

    def step_offline(self, step: dict[str, Any]) -> None:
        pid, dn = self._sub_ids()
        base.emit("offline", rc=self._rc(self.qcloud.gatewaySubdevOffline(pid, dn)))

    def step_unbind(self, step: dict[str, Any]) -> None:
        pid, dn = self._sub_ids()
        base.emit("unbind", rc=self._rc(self.qcloud.gatewaySubdevUnbind(pid, dn)))

    def step_describe(self, step: dict[str, Any]) -> None:
        rc, devices = self.qcloud._QcloudExplorer__hub.gatewaySubdevGetBindList(  # type: ignore[attr-defined]
            self.gw_pid, self.gw_dn
        )
        base.emit("describe", rc=rc, devices=[[d.product_id, d.device_name] for d in devices])

    def step_as_sub(self, step: dict[str, Any]) -> None:
        self.pid, self.dn = self._sub_ids()
        base.emit("as_sub", product_id=self.pid, device_name=self.dn)

    def step_wait_gateway_msg(self, step: dict[str, Any]) -> None:
        want = step["type"]
        base.emit("waiting", what=f"gateway {want}")
        deadline = time.monotonic() + self.step_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = _gateway_msgs.get(timeout=remaining)
            except queue.Empty:
                break
            if msg.get("type") == want:
                base.emit("gateway_seen", payload=msg)
                return
        raise base.StepFailed(f"no $gateway {want} message within {self.step_timeout:g} s")


def main() -> None:
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        base.die(f"config is not JSON: {exc}")
    timeout = float(cfg.get("timeout", 30))
    watchdog = threading.Timer(timeout, base.die, args=(f"driver timeout after {timeout:g} s", 3))
    watchdog.daemon = True
    watchdog.start()
    install_gateway_tap()
    with tempfile.TemporaryDirectory(prefix="tencent-gw-driver-") as tmp:
        try:
            GatewayDriver(cfg, Path(tmp)).run()
        except base.StepFailed as exc:
            base.die(str(exc))
        except Exception as exc:
            base.die(f"{type(exc).__name__}: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Drive the official Tencent IoT Explorer Python device SDK (``tencent-iot-device`` 1.0.0)
against an ivcloud broker and print what happens, one JSON object per line.

Run it with the interop venv's interpreter, never from the main venv (the SDK needs
paho-mqtt 1.5.1, ivcloud uses paho-mqtt 2.x)::

    .venv-interop/bin/python tests/interop/tencent_driver.py '<config JSON>'
    .venv-interop/bin/python tests/interop/tencent_driver.py < config.json

Config (argv[1], else stdin)::

    {"host": "127.0.0.1", "port": 41883,            # where ivcloud's MQTT listener is
     "product_id": "ABCDEFGHIJ", "device_name": "dev1", "secret": "<DeviceSecret>",
     "domain": ".iotcloud.ivcloud.test",             # optional, see "Pointing the SDK" below
     "thing_model": {...},                           # optional, for the "template_setup" step
     "timeout": 30,                                  # whole run, seconds (hard limit)
     "step_timeout": 10,                             # each wait, seconds
     "steps": [{"do": "subscribe"}, {"do": "report", "params": {...}}, ...]}

Steps (``do``): ``subscribe`` (``templateInit``: the four ``$thing/down/*`` topics, waits for
the SUBACKs), ``template_setup`` (``templateSetup`` with ``thing_model`` written to a file),
``report_info`` (``params``), ``report`` (``params``, optional ``label``), ``get_status``,
``wait_control`` (optional ``code``, ``status``: the ``control_reply`` to send),
``clear_control``, ``event`` (``events``: list of ``{eventId, type, params[, timestamp]}``;
one element → the SDK sends ``event_post``, more → ``events_post``), ``wait_action``
(``response``, optional ``code``, ``status``), ``control_reply`` (``templateControlReply``
with no control pending, as the SDK's sample does), ``listen`` (``seconds``: report every
downlink that arrives meanwhile), ``sleep`` (``seconds``).  Connecting is
implicit (before the first step); disconnecting is implicit (after the last one).

Output (stdout, flushed per line): ``{"step": ...}`` objects, e.g. ``connack``, ``connected``,
``subscribed``, ``sent`` (every PUBLISH the SDK makes, with its payload), ``recv`` (every
message the SDK hands to the application), ``report_reply``, ``waiting`` (the driver is now
waiting for a control/action), ``control``, ``control_reply_sent``, ``event_reply``,
``action``, ``action_reply_sent``, ``disconnected``, ``done``; on failure one
``{"step": "error", "error": ...}`` and a non-zero exit.  SDK and paho debug logs go to stderr.
The process always ends within ``timeout`` seconds.

Pointing the SDK at a local broker: 1.0.0 connects to ``<ProductId><domain>`` (``domain``
defaults to ``.iotcloud.tencentdevices.com``) on a hard-coded port — 1883 without TLS
(``AsyncConnClient.__mqtt_tcp_port``; there is no setter).  ``*.localhost`` does not resolve
here (nsswitch ``files dns``, no nss-myhostname, no usable DNS), and we may not edit
``/etc/hosts``.  So, in this process only, ``socket.create_connection`` is wrapped to send the
SDK's exact target ``(<ProductId><domain>, 1883)`` to ``host:port`` and to refuse anything
else — the in-process equivalent of the DNS entry plus port forward a real deployment would
use.  The SDK's own code runs unmodified.  Two observation-only taps are added as well:
``QcloudHubProvider.publish`` is wrapped to print each outgoing payload, and a logging
handler turns paho's "Received CONNACK" debug line into a ``connack`` record.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hub.hub as hub_module
from explorer.explorer import QcloudExplorer

DEFAULT_DOMAIN = ".iotcloud.ivcloud.test"
SDK_TCP_PORT = 1883  # AsyncConnClient.__mqtt_tcp_port in tencent-iot-device 1.0.0

_print_lock = threading.Lock()


def emit(step: str, **fields: Any) -> None:
    line = json.dumps({"step": step, **fields}, ensure_ascii=False, default=repr)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def die(error: str, code: int = 2) -> None:
    emit("error", error=error)
    sys.stderr.flush()
    os._exit(code)


class StepFailed(Exception):
    pass


def install_redirect(sdk_host: str, host: str, port: int) -> None:
    """Send the SDK's connection to (sdk_host, 1883) to (host, port); refuse anything else."""
    real_create_connection = socket.create_connection

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        target = (address[0], address[1])
        if target != (sdk_host, SDK_TCP_PORT):
            emit("unexpected_connection", target=f"{target[0]}:{target[1]}")
            raise OSError(f"driver: unexpected connection to {target[0]}:{target[1]}")
        emit("tcp_redirect", sdk_target=f"{sdk_host}:{SDK_TCP_PORT}", target=f"{host}:{port}")
        return real_create_connection((host, port), *args, **kwargs)

    socket.create_connection = create_connection


def install_publish_tap(record: Callable[[str, Any], None]) -> None:
    """Print every PUBLISH the SDK makes (topic, QoS and the payload object) and pass it to
    ``record``; the call itself is unchanged."""
    original = hub_module.QcloudHubProvider.publish

    def publish(self: Any, topic: str, payload: Any, qos: int) -> Any:
        emit("sent", topic=topic, qos=qos, payload=payload)
        record(topic, payload)
        return original(self, topic, payload, qos)

    hub_module.QcloudHubProvider.publish = publish


class ConnackTap(logging.Handler):
    """paho logs ``Received CONNACK (flags, result)``: surface the result code."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("Received CONNACK") and isinstance(record.args, tuple):
            flags, result = record.args[0], record.args[1]
            emit("connack", flags=flags, rc=result)  # the module-level emit


class Driver:
    def __init__(self, cfg: dict[str, Any], workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.pid: str = cfg["product_id"]
        self.dn: str = cfg["device_name"]
        self.step_timeout = float(cfg.get("step_timeout", 10))
        self.inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.backlog: list[tuple[str, dict[str, Any]]] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subacks: queue.Queue[int] = queue.Queue()
        self.last_sent: dict[str, dict[str, Any]] = {}

        device_file = workdir / "device_info.json"
        device_file.write_text(
            json.dumps(
                {
                    "auth_mode": "KEY",
                    "productId": self.pid,
                    "productSecret": "YOUR_PRODUCT_SECRET",
                    "deviceName": self.dn,
                    "key_deviceinfo": {"deviceSecret": cfg["secret"]},
                    "cert_deviceinfo": {
                        "devCaFile": "ca.crt",
                        "devCertFile": "dev.crt",
                        "devPrivateKeyFile": "dev.key",
                    },
                    "region": "china",
                }
            )
        )
        domain = cfg.get("domain", DEFAULT_DOMAIN)
        install_redirect(self.pid + domain, cfg["host"], int(cfg["port"]))
        install_publish_tap(self._record_sent)
        self.qcloud = QcloudExplorer(device_file=str(device_file), tls=False, domain=domain)
        self.qcloud.logInit(
            self.qcloud.LoggerLevel.DEBUG, str(workdir / "sdk.log"), 1 << 20, 1, enable=True
        )
        tap = ConnackTap(logging.DEBUG)
        logging.getLogger("TecentQcloud").addHandler(tap)
        self.qcloud.registerMqttCallback(
            self._on_connect,
            self._on_disconnect,
            self._on_message,
            self._on_publish,
            self._on_subscribe,
            self._on_unsubscribe,
        )

    def _record_sent(self, topic: str, payload: Any) -> None:
        """Remember the last payload sent per ``$thing/up/<channel>``, to match replies."""
        parts = topic.split("/")
        if len(parts) == 5 and parts[:2] == ["$thing", "up"] and isinstance(payload, dict):
            self.last_sent[parts[2]] = payload

    # -- SDK callbacks (run on the SDK's event thread) ---------------------------------

    def _on_connect(self, session_present: Any, rc: int, userdata: Any) -> None:
        emit("connected", rc=rc, session_present=session_present)
        self.connected.set()

    def _on_disconnect(self, rc: Any, userdata: Any) -> None:
        emit("on_disconnect", rc=rc)
        self.disconnected.set()

    def _on_message(self, topic: str, qos: int, payload: Any, userdata: Any) -> None:
        emit("recv", channel="other", topic=topic, payload=payload)

    def _on_publish(self, mid: int, userdata: Any) -> None:
        pass

    def _on_subscribe(self, qos: int, mid: int, userdata: Any) -> None:
        self.subacks.put(qos)

    def _on_unsubscribe(self, mid: int, userdata: Any) -> None:
        pass

    def _template_cb(self, channel: str) -> Any:
        def callback(topic: str, qos: int, payload: Any, userdata: Any) -> None:
            emit("recv", channel=channel, topic=topic, payload=payload)
            self.inbox.put((channel, payload))

        return callback

    # -- helpers -----------------------------------------------------------------------

    def wait_for(self, channel: str, method: str, token: str | None = None) -> dict[str, Any]:
        def matches(item: tuple[str, dict[str, Any]]) -> bool:
            ch, payload = item
            return (
                ch == channel
                and payload.get("method") == method
                and (token is None or payload.get("clientToken") == token)
            )

        for item in self.backlog:
            if matches(item):
                self.backlog.remove(item)
                return item[1]
        deadline = time.monotonic() + self.step_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepFailed(
                    f"no {method} on $thing/down/{channel} within {self.step_timeout:g} s"
                    + (f" (clientToken {token})" if token else "")
                )
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if matches(item):
                return item[1]
            self.backlog.append(item)

    def sent_token(self, topic_channel: str) -> str | None:
        payload = self.last_sent.get(topic_channel)
        return payload.get("clientToken") if payload else None

    @staticmethod
    def check_rc(what: str, result: Any) -> None:
        rc = result[0] if isinstance(result, tuple) else result
        if rc != 0:
            raise StepFailed(f"{what} returned rc={rc!r}")

    def reply_para(self, code: int, status: str) -> Any:
        para = self.qcloud.ReplyPara()
        para.code = code
        para.status_msg = status
        para.timeout_ms = int(self.step_timeout * 1000)
        return para

    # -- run ---------------------------------------------------------------------------

    def connect(self) -> None:
        emit(
            "connecting",
            sdk_host=self.pid + self.cfg.get("domain", DEFAULT_DOMAIN),
            sdk_port=SDK_TCP_PORT,
            target=f"{self.cfg['host']}:{self.cfg['port']}",
        )
        self.qcloud.connect()
        if not self.connected.wait(self.step_timeout):
            raise StepFailed(f"not connected within {self.step_timeout:g} s (see connack/stderr)")

    def run(self) -> None:
        self.connect()
        for step in self.cfg.get("steps", []):
            getattr(self, "step_" + step["do"])(step)
        self.qcloud.disconnect()
        if self.disconnected.wait(self.step_timeout):
            emit("disconnected")
        else:
            emit("disconnect_timeout")
        emit("done")

    # -- steps -------------------------------------------------------------------------

    def step_subscribe(self, step: dict[str, Any]) -> None:
        rc, _mid = self.qcloud.templateInit(
            self.pid,
            self.dn,
            self._template_cb("property"),
            self._template_cb("action"),
            self._template_cb("event"),
            self._template_cb("service"),
        )
        self.check_rc("templateInit", rc)
        granted = []
        for _ in range(4):  # property, action, event, service
            try:
                granted.append(self.subacks.get(timeout=self.step_timeout))
            except queue.Empty:
                raise StepFailed(f"only {len(granted)} of 4 SUBACKs arrived") from None
        emit("subscribed", granted=granted)

    def step_template_setup(self, step: dict[str, Any]) -> None:
        path = self.workdir / "template_config.json"
        path.write_text(json.dumps(self.cfg["thing_model"]), encoding="utf-8")
        rc = self.qcloud.templateSetup(self.pid, self.dn, str(path))
        emit(
            "template_setup",
            rc=rc,
            properties=[p.key for p in self.qcloud.getPropertyList(self.pid, self.dn)],
            events=[e.event_name for e in self.qcloud.getEventsList(self.pid, self.dn)],
            actions=[a.action_id for a in self.qcloud.getActionList(self.pid, self.dn)],
        )

    def step_report_info(self, step: dict[str, Any]) -> None:
        self.check_rc(
            "templateReportSysInfo",
            self.qcloud.templateReportSysInfo(self.pid, self.dn, step["params"]),
        )
        reply = self.wait_for("property", "report_info_reply", self.sent_token("property"))
        emit("report_info_reply", code=reply.get("code"), status=reply.get("status"))

    def step_report(self, step: dict[str, Any]) -> None:
        message = self.qcloud.templateJsonConstructReportArray(self.pid, self.dn, step["params"])
        self.check_rc("templateReport", self.qcloud.templateReport(self.pid, self.dn, message))
        reply = self.wait_for("property", "report_reply", message["clientToken"])
        emit(
            "report_reply",
            label=step.get("label", ""),
            code=reply.get("code"),
            status=reply.get("status"),
            clientToken=reply.get("clientToken"),
            reply=reply,
        )

    def step_get_status(self, step: dict[str, Any]) -> None:
        self.check_rc("templateGetStatus", self.qcloud.templateGetStatus(self.pid, self.dn))
        reply = self.wait_for("property", "get_status_reply", self.sent_token("property"))
        emit(
            "get_status_reply",
            code=reply.get("code"),
            type=reply.get("type"),
            data=reply.get("data"),
        )

    def step_wait_control(self, step: dict[str, Any]) -> None:
        emit("waiting", what="control")
        control = self.wait_for("property", "control")
        emit("control", params=control.get("params"), clientToken=control.get("clientToken"))
        para = self.reply_para(int(step.get("code", 0)), str(step.get("status", "ok")))
        self.check_rc(
            "templateControlReply", self.qcloud.templateControlReply(self.pid, self.dn, para)
        )
        emit("control_reply_sent", payload=self.last_sent.get("property"))

    def step_clear_control(self, step: dict[str, Any]) -> None:
        self.check_rc("clearControl", self.qcloud.clearControl(self.pid, self.dn))
        reply = self.wait_for("property", "clear_control_reply", self.sent_token("property"))
        emit("clear_control_reply", code=reply.get("code"), status=reply.get("status"))

    def step_event(self, step: dict[str, Any]) -> None:
        now_ms = round(time.time() * 1000)  # what the SDK's own sample sends
        events = [{"timestamp": now_ms, **ev} for ev in step["events"]]
        self.check_rc(
            "templateEventPost",
            self.qcloud.templateEventPost(self.pid, self.dn, {"events": events}),
        )
        sent = self.last_sent.get("event") or {}
        reply = self.wait_for("event", "event_reply", sent.get("clientToken"))
        emit(
            "event_reply",
            label=step.get("label", ""),
            method_sent=sent.get("method"),
            code=reply.get("code"),
            status=reply.get("status"),
            reply=reply,
        )

    def step_wait_action(self, step: dict[str, Any]) -> None:
        emit("waiting", what="action")
        action = self.wait_for("action", "action")
        token = action.get("clientToken")
        emit(
            "action",
            actionId=action.get("actionId"),
            params=action.get("params"),
            clientToken=token,
            timestamp=action.get("timestamp"),
        )
        para = self.reply_para(int(step.get("code", 0)), str(step.get("status", "ok")))
        self.check_rc(
            "templateActionReply",
            self.qcloud.templateActionReply(self.pid, self.dn, token, step["response"], para),
        )
        emit("action_reply_sent", payload=self.last_sent.get("action"))

    def step_control_reply(self, step: dict[str, Any]) -> None:
        """``templateControlReply`` without a preceding control, as the SDK's own sample
        does from its property callback for every downlink message (with status ``"\\0"``)."""
        para = self.reply_para(int(step.get("code", 0)), str(step.get("status", "\0")))
        self.check_rc(
            "templateControlReply", self.qcloud.templateControlReply(self.pid, self.dn, para)
        )
        emit("control_reply_sent", payload=self.last_sent.get("property"))

    def step_listen(self, step: dict[str, Any]) -> None:
        """Collect every downlink message for ``seconds`` and report them."""
        end = time.monotonic() + float(step.get("seconds", 1))
        received = [payload for _ch, payload in self.backlog]
        self.backlog.clear()
        while (remaining := end - time.monotonic()) > 0:
            try:
                received.append(self.inbox.get(timeout=remaining)[1])
            except queue.Empty:
                break
        emit("listened", label=step.get("label", ""), received=received)

    def step_sleep(self, step: dict[str, Any]) -> None:
        time.sleep(float(step.get("seconds", 1)))


def main() -> None:
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        die(f"config is not JSON: {exc}")
    timeout = float(cfg.get("timeout", 30))
    watchdog = threading.Timer(timeout, die, args=(f"driver timeout after {timeout:g} s", 3))
    watchdog.daemon = True
    watchdog.start()
    with tempfile.TemporaryDirectory(prefix="tencent-driver-") as tmp:
        try:
            Driver(cfg, Path(tmp)).run()
        except StepFailed as exc:
            die(str(exc))
        except Exception as exc:
            die(f"{type(exc).__name__}: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the SDK's threads are daemons, but do not wait on them


if __name__ == "__main__":
    main()

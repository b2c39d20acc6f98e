"""Process-level entry points behind ``ivcloud serve``, ``ivcloud demo`` and ``ivcloud sim``:
signals, port selection, demo provisioning and the start-up banner."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ivcloud.app import Ivcloud
from ivcloud.config import load_settings
from ivcloud.logs import configure
from ivcloud.protocol.qr import encode_provision_qr
from ivcloud.services.errors import NotFound

if TYPE_CHECKING:
    from ivcloud.device.simulators import SimulatorKind

console = Console()

DEMO_DEVICES = (
    # (simulator kind, product name, category, standard model, device name)
    ("camera", "Demo camera", "camera", "camera", "cam01"),
    ("lock-image", "Demo picture-stream lock", "lock", "lock-image", "lockimg01"),
    ("lock-video", "Demo video-stream lock", "lock", "lock-video", "lockvid01"),
)


def demo_sim_dir(data_dir: Path, device_name: str) -> Path:
    """A demo video device's own directory: its SD card is ``sdcard/ch0`` inside."""
    return data_dir / "sim" / device_name


def port_is_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:  # on UDP, SO_REUSEADDR would hide a taken port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, preferred: int, what: str, kind: int = socket.SOCK_STREAM) -> int:
    """The preferred port if free; else 0 (the OS picks) after saying so."""
    if preferred == 0 or port_is_free(host, preferred, kind):
        return preferred
    console.print(f"[yellow]port {preferred} ({what}) is in use; picking a free port[/yellow]")
    return 0


def _stop_on_signals() -> asyncio.Event:
    """Installed first thing, so an interrupt during start-up is a clean stop too."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def keep_gc_cheap(instance: Ivcloud, stop: asyncio.Event, every_s: float = 5.0) -> None:
    """Keep full garbage collections from stalling the event loop.

    Objects that live as long as the process (modules, compiled thing models, device
    records, connection sessions) are moved out of the collector's reach with
    ``gc.freeze()`` after start-up and again whenever the fleet has grown by 10 % (at least
    500 devices) since the last freeze; full collections then walk only young objects.
    Measured at 10k devices, 5k reports/s: p99 374 ms → 24 ms (docs/benchmarks.md).
    Closed sessions hold no reference cycles, so they are still freed after a freeze."""
    gc.collect()
    gc.freeze()
    frozen_at = instance.gateway.connected_count
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        connected = instance.gateway.connected_count
        if connected - frozen_at >= max(500, frozen_at // 10):
            gc.collect(1)
            gc.freeze()
            frozen_at = connected


async def run_server(config: Path | None, **overrides: Any) -> None:
    stop = _stop_on_signals()
    settings = load_settings(config, **overrides)
    configure(settings.log_level, settings.log_json)
    instance = Ivcloud(settings)
    endpoints = await instance.start()
    console.print(
        f"ivcloud is running: {endpoints.http_url}  mqtt://{endpoints.mqtt_host}:"
        f"{endpoints.mqtt_port}  (admin token in {settings.admin_token_file})"
    )
    if endpoints.stun_url:
        console.print(f"STUN (UDP): {endpoints.stun_url}")
    gc_task = asyncio.create_task(keep_gc_cheap(instance, stop))
    try:
        await stop.wait()
    finally:
        await gc_task
        await instance.stop()


async def provision_demo(instance: Ivcloud) -> list[dict[str, str]]:
    """Create (once) the demo products and devices; remembered in ``<data-dir>/demo.json``."""
    state_file = instance.settings.data_dir / "demo.json"
    saved: list[dict[str, str]] = json.loads(state_file.read_text()) if state_file.exists() else []
    result = []
    for kind, product_name, category, model, device_name in DEMO_DEVICES:
        entry = next((e for e in saved if e["kind"] == kind), None)
        rec = None
        if entry is not None:
            rec = await instance.devices.find(entry["product_id"], entry["device_name"])
        if rec is None:
            product = await instance.products.create(product_name, category, "wifi")
            await instance.products.import_standard_model(product.product_id, model)
            rec = await instance.devices.create(product.product_id, device_name)
        result.append(
            {
                "kind": kind,
                "product_id": rec.product_id,
                "device_name": rec.device_name,
                "secret": rec.secret,
            }
        )
    state_file.write_text(json.dumps(result, indent=2))
    return result


def _cli_name() -> str:
    """``ivcloud`` when that is what the shell finds, else the path of this very script
    (e.g. ``.venv/bin/ivcloud`` when the venv is not activated)."""
    me = Path(sys.argv[0]).resolve()
    found = shutil.which("ivcloud")
    if found and Path(found).resolve() == me:
        return "ivcloud"
    with contextlib.suppress(ValueError):
        return str(me.relative_to(Path.cwd().resolve()))
    return str(me)


def _banner(instance: Ivcloud, devices: list[dict[str, str]], *, record: bool) -> None:
    ep = instance.endpoints
    assert ep is not None
    data_dir = instance.settings.data_dir
    table = Table(title="ivcloud demo", show_header=False)
    table.add_row("Console API", ep.http_url + "/api/console/v1")
    table.add_row("API docs (OpenAPI)", ep.http_url + "/docs")
    table.add_row("MQTT (devices)", f"mqtt://{ep.mqtt_host}:{ep.mqtt_port}")
    if ep.mqtt_ws_url:
        table.add_row("MQTT over WebSocket", ep.mqtt_ws_url)
    if ep.stun_url:
        table.add_row("STUN (UDP, live view)", ep.stun_url)
    table.add_row("Admin token", f"{instance.admin_token}  (also in {data_dir}/admin-token)")
    cards = demo_sim_dir(data_dir, "<device>") / "sdcard" / "ch0"
    table.add_row(
        "SD card recording",
        f"on (camera, video lock; {cards})" if record else "off (no SD playback; see below)",
    )
    console.print(table)
    dev_table = Table(
        "Simulator", "ProductId", "DeviceName", "DeviceSecret", title="Simulated devices"
    )
    for d in devices:
        dev_table.add_row(d["kind"], d["product_id"], d["device_name"], d["secret"])
    console.print(dev_table)
    lock = next(d for d in devices if d["kind"] == "lock-video")
    ref = f"{lock['product_id']}/{lock['device_name']}"
    dd = f" --data-dir {data_dir}"
    cli = _cli_name()
    console.print("Try, in another terminal:")
    console.print(f"  {cli} device get {ref}{dd}")
    console.print(f"  {cli} device action {ref} unlock_remote{dd}")
    console.print(f"  {cli} device control {ref} '{{\"volume\": 2}}'{dd}")
    if not record:
        console.print("SD recording is off (SD playback finds nothing); to record, restart with:")
        console.print(f"  {cli} demo --record{dd}   (~14 % of a core per video device)")
    console.print("Press Ctrl-C to stop.")


async def run_sim(kind: SimulatorKind, **options: Any) -> None:
    """``ivcloud sim``: one simulated device until SIGINT/SIGTERM, then a clean stop (the SD
    card's open segment is finished, the MQTT session closed) rather than a traceback.
    ``options`` are :func:`~ivcloud.device.simulators.run_simulator`'s."""
    from ivcloud.device.simulators import run_simulator

    stop = _stop_on_signals()
    await run_simulator(kind, stop=stop, **options)


async def run_demo(
    data_dir: Path, *, http_port: int = 8080, mqtt_port: int = 1883, record: bool = False
) -> None:
    """The server and the three demo devices. The camera and the video lock each get an SD
    card (:func:`demo_sim_dir`), recorded onto only with ``record``: continuous recording
    costs ~14 % of a core per device (see ``run_simulator``)."""
    from ivcloud.device.simulators import VIDEO_KINDS, run_simulator

    stop = _stop_on_signals()
    host = "127.0.0.1"
    settings = load_settings(
        None,
        data_dir=data_dir,
        host=host,
        http_port=choose_port(host, http_port, "HTTP"),
        mqtt_port=choose_port(host, mqtt_port, "MQTT"),
        mqtt_ws_port=choose_port(host, 8083, "MQTT over WebSocket"),
        stun_port=choose_port(host, 3478, "STUN", socket.SOCK_DGRAM),
    )
    configure("warning", settings.log_json)
    instance = Ivcloud(settings)
    endpoints = await instance.start()
    sims_stop = asyncio.Event()
    sims: list[asyncio.Task[None]] = []
    try:
        try:
            devices = await provision_demo(instance)
        except NotFound:  # pragma: no cover - a half-deleted demo.json
            (data_dir / "demo.json").unlink(missing_ok=True)
            devices = await provision_demo(instance)
        for d in devices:
            qr = encode_provision_qr("demo-wifi", "demo-pass", f"demo-{d['device_name']}")
            video: dict[str, Any] = {}
            if d["kind"] in VIDEO_KINDS:
                video = {"data_dir": demo_sim_dir(data_dir, d["device_name"]), "record": record}
            sims.append(
                asyncio.create_task(
                    run_simulator(
                        d["kind"],  # type: ignore[arg-type]
                        host=endpoints.mqtt_host,
                        port=endpoints.mqtt_port,
                        product_id=d["product_id"],
                        device_name=d["device_name"],
                        secret=d["secret"],
                        qr=qr,
                        stop=sims_stop,
                        **video,
                    )
                )
            )
        _banner(instance, devices, record=record)
        await keep_gc_cheap(instance, stop)
    finally:
        sims_stop.set()
        for task in sims:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        await instance.stop()

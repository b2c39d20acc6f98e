"""``ivcloud`` command line: run the server or the demo, and drive the console API.

Every console command takes ``--server`` and ``--data-dir`` (to find the admin token and a
local server's address) and ``--json`` for scripting; the command names and their JSON
output are a stable interface."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import ivcloud.cli_app_extras  # adds `app config …` and `app feedback`
import ivcloud.cli_xp2p  # noqa: F401  (adds `app-user watch` and `app-user xp2p-command`)
from ivcloud.cli_app_user import app_user_app
from ivcloud.cli_apps import apps_app
from ivcloud.cli_common import (
    AsJson,
    DataDir,
    Server,
    call,
    emit,
    err,
    out,
    parse_json,
    split_device,
)
from ivcloud.cli_sim import sim
from ivcloud.client.console import ConsoleClient
from ivcloud.config import DEFAULT_DATA_DIR

app = typer.Typer(no_args_is_help=True, help="ivcloud: self-hosted cloud for cameras and locks.")
product_app = typer.Typer(no_args_is_help=True, help="Products.")
model_app = typer.Typer(no_args_is_help=True, help="Thing models.")
device_app = typer.Typer(no_args_is_help=True, help="Devices.")
fw_app = typer.Typer(no_args_is_help=True, help="Firmware and upgrade jobs.")
app.add_typer(product_app, name="product")
app.add_typer(model_app, name="thingmodel")
app.add_typer(device_app, name="device")
app.add_typer(fw_app, name="firmware")
app.add_typer(apps_app, name="app")
app.add_typer(app_user_app, name="app-user")

# -- server --------------------------------------------------------------------------------


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (default 8080).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT port (default 1883).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML configuration file.")] = None,
) -> None:
    """Run the server until interrupted."""
    from ivcloud.runner import run_server

    asyncio.run(
        run_server(config, data_dir=data_dir, http_port=http_port, mqtt_port=mqtt_port, host=host)
    )


@app.command()
def demo(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    http_port: Annotated[int, typer.Option(help="Preferred HTTP port.")] = 8080,
    mqtt_port: Annotated[int, typer.Option(help="Preferred MQTT port.")] = 1883,
    record: Annotated[
        bool,
        typer.Option(
            help="Record the camera and the video lock onto their SD cards (DATA_DIR/sim/"
            "<device>/sdcard/ch0) for SD playback; ~14 % of a core per device."
        ),
    ] = False,
) -> None:
    """Start the server with a simulated camera, picture lock and video lock."""
    from ivcloud.runner import run_demo

    asyncio.run(run_demo(data_dir, http_port=http_port, mqtt_port=mqtt_port, record=record))


app.command()(sim)


# -- products ------------------------------------------------------------------------------


@product_app.command("create")
def product_create(
    name: Annotated[str, typer.Option("--name", help="Product name.")],
    category: Annotated[str, typer.Option("--category", help="camera | lock | watch")],
    net: Annotated[str, typer.Option("--net", help="wifi | 4g | ble")] = "wifi",
    description: Annotated[str, typer.Option(help="Description.")] = "",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Create a product; prints its ProductId."""
    res = call(data_dir, server, lambda c: c.create_product(name, category, net, description))
    emit(res, as_json, "product")


@product_app.command("list")
def product_list(
    data_dir: DataDir = DEFAULT_DATA_DIR, server: Server = None, as_json: AsJson = False
) -> None:
    """List products."""
    res = call(data_dir, server, lambda c: c.request("GET", "/products"))
    if as_json:
        emit(res, True)
        return
    table = Table("ProductId", "Name", "Category", "NetType", "ThingModel")
    for p in res["Products"]:
        table.add_row(
            p["ProductId"],
            p["Name"],
            p["Category"],
            p["NetType"],
            "yes" if p["HasThingModel"] else "no",
        )
    out.print(table)


@product_app.command("delete")
def product_delete(
    product_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, server: Server = None
) -> None:
    """Delete a product with its devices and data."""
    call(data_dir, server, lambda c: c.request("DELETE", f"/products/{product_id}"))
    out.print(f"deleted {product_id}")


# -- thing models ---------------------------------------------------------------------------


@model_app.command("import")
def model_import(
    product_id: str,
    file: Annotated[Path | None, typer.Argument(help="Thing-model JSON file.")] = None,
    standard: Annotated[
        str | None, typer.Option("--standard", help="camera | lock-image | lock-video")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Import a thing model from a file or a standard template."""
    if (file is None) == (standard is None):
        err.print("[red]error[/red] give exactly one of FILE or --standard")
        raise typer.Exit(2)
    if standard is not None:
        res = call(data_dir, server, lambda c: c.import_standard_model(product_id, standard))
    else:
        assert file is not None
        doc = parse_json(file.read_text(encoding="utf-8"), str(file))
        res = call(data_dir, server, lambda c: c.import_thing_model(product_id, doc))
    if as_json:
        emit(res, True)
    else:
        out.print(
            f"imported: {len(res['properties'])} properties, {len(res['events'])} "
            f"events, {len(res['actions'])} actions"
        )


@model_app.command("export")
def model_export(
    product_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, server: Server = None
) -> None:
    """Print a product's thing model as JSON."""
    res = call(data_dir, server, lambda c: c.request("GET", f"/products/{product_id}/thing-model"))
    emit(res, True)


# -- devices -------------------------------------------------------------------------------


@device_app.command("create")
def device_create(
    product_id: str,
    device_name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Create a device; prints its DeviceSecret."""
    res = call(data_dir, server, lambda c: c.create_device(product_id, device_name))
    emit(res, as_json, "device")


@device_app.command("list")
def device_list(
    product_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """List a product's devices."""
    res = call(data_dir, server, lambda c: c.request("GET", f"/products/{product_id}/devices"))
    if as_json:
        emit(res, True)
        return
    table = Table("DeviceName", "Online", "LastSeen", "Firmware")
    for d in res["Devices"]:
        table.add_row(
            d["DeviceName"],
            "online" if d["Online"] else "offline",
            str(d["LastSeen"] or "-"),
            d["FirmwareVersion"] or "-",
        )
    out.print(table)


@device_app.command("get")
def device_get(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Online state, system info and latest property values."""
    pid, name = split_device(ref)
    emit(call(data_dir, server, lambda c: c.get_device(pid, name)), as_json, ref)


@device_app.command("delete")
def device_delete(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
) -> None:
    """Delete a device and its data."""
    pid, name = split_device(ref)
    call(data_dir, server, lambda c: c.request("DELETE", f"/products/{pid}/devices/{name}"))
    out.print(f"deleted {ref}")


@device_app.command("reset-secret")
def device_reset_secret(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Issue a new DeviceSecret (the device is disconnected)."""
    pid, name = split_device(ref)
    res = call(
        data_dir,
        server,
        lambda c: c.request("POST", f"/products/{pid}/devices/{name}/reset-secret"),
    )
    emit(res, as_json, ref)


@device_app.command("bind-code")
def device_bind_code(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    expire_seconds: Annotated[
        int, typer.Option(help="validity; 0 = never expires (a printed label)")
    ] = 600,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """A "scan to bind" code: the app sends it as AppSecureAddDeviceInFamily's
    DeviceSignature."""
    pid, name = split_device(ref)
    res = call(
        data_dir,
        server,
        lambda c: c.request(
            "POST",
            f"/products/{pid}/devices/{name}/bind-code",
            json={"ExpireSeconds": expire_seconds},
        ),
    )
    emit(res, as_json, ref)


@device_app.command("control")
def device_control(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    params: Annotated[str, typer.Argument(help="JSON object, e.g. '{\"volume\": 2}'")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for control_reply.")] = 0.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Set writable properties (queued if the device is offline)."""
    pid, name = split_device(ref)
    doc = parse_json(params, "params")
    emit(call(data_dir, server, lambda c: c.control(pid, name, doc, wait)), as_json, ref)


@device_app.command("action")
def device_action(
    ref: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    action_id: str,
    params: Annotated[str, typer.Argument(help="JSON object of input params.")] = "{}",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for action_reply.")] = 5.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Call an action and wait for the device's reply."""
    pid, name = split_device(ref)
    doc = parse_json(params, "params")
    res = call(data_dir, server, lambda c: c.action(pid, name, action_id, doc, timeout))
    emit(res, as_json, f"{ref} {action_id}")


# -- firmware --------------------------------------------------------------------------------


@fw_app.command("upload")
def fw_upload(
    product_id: str,
    version: str,
    file: Path,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Upload a firmware image for a product."""

    def upload(c: ConsoleClient) -> Any:
        with file.open("rb") as fh:
            return c.request(
                "POST",
                f"/products/{product_id}/firmware",
                data={"version": version},
                files={"file": (file.name, fh)},
            )

    emit(call(data_dir, server, upload), as_json, "firmware")


@fw_app.command("upgrade")
def fw_upgrade(
    product_id: str,
    version: str,
    device: Annotated[list[str] | None, typer.Option(help="Device name (repeatable).")] = None,
    gray: Annotated[int, typer.Option(help="Gray percentage 1-100.")] = 100,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Start an upgrade job for named devices or the whole product."""
    body = {"Version": version, "DeviceNames": device or None, "GrayPercent": gray}
    res = call(
        data_dir, server, lambda c: c.request("POST", f"/products/{product_id}/ota-jobs", json=body)
    )
    emit(res, as_json, "upgrade job")


@fw_app.command("job")
def fw_job(
    job_id: int,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Show an upgrade job and each device's progress."""
    res = call(data_dir, server, lambda c: c.request("GET", f"/ota-jobs/{job_id}"))
    if as_json:
        emit(res, True)
        return
    table = Table("DeviceName", "State", "Percent", "ResultCode", title=f"job {job_id}")
    for t in res["Tasks"]:
        table.add_row(t["DeviceName"], t["State"], str(t["Percent"]), str(t["ResultCode"]))
    out.print(table)


def main() -> None:
    app()

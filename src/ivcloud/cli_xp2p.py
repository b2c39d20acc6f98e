"""``ivcloud app-user watch`` and ``ivcloud app-user xp2p-command``: live video and XP2P
commands by hand, through the Python app SDK's XP2P client (:mod:`ivcloud.client.xp2p`),
with the session saved by ``ivcloud app-user login``.

``watch`` reads the camera's ``_sys_xp2p_info`` as an app does (``AppGetDeviceData``),
starts the XP2P service and prints the local proxy URL to give to a player (``ffplay``,
VLC), then the path that serves it as it is chosen (``path: hub``, later ``path: direct``).
The proxy lives as long as the command runs. Importing this module adds the commands to
``ivcloud app-user`` (``cli.py`` imports it once)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from ivcloud.cli_app_user import _load_session, app_user_app
from ivcloud.cli_common import DataDir, err
from ivcloud.client.app_sdk import AppClient
from ivcloud.client.xp2p import Xp2pClient
from ivcloud.client.xp2p_errors import Xp2pError
from ivcloud.config import DEFAULT_DATA_DIR
from ivcloud.logs import configure
from ivcloud.protocol.appapi import AppApiError

__all__ = ["watch", "xp2p_command"]

PATH_CHOICES = {"race": ("p2p", "hub"), "p2p": ("p2p",), "hub": ("hub",)}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _xp2p_info(app: AppClient, device_id: str) -> str:
    data = await app.request_api("AppGetDeviceData", {"DeviceId": device_id})
    doc = json.loads(str(data.get("Data") or "{}"))
    value = doc.get("_sys_xp2p_info", {}).get("Value") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        err.print("[red]error[/red] the device has not reported _sys_xp2p_info (offline?)")
        raise typer.Exit(1)
    return value


def _run(coro: Any) -> Any:
    configure("warning")  # to stderr: stdout carries the URL and the path
    try:
        return asyncio.run(coro)
    except Xp2pError as exc:
        err.print(f"[red]error[/red] {exc.code} {exc.name}: {exc.message}")
        raise typer.Exit(1) from None
    except AppApiError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        return None


@app_user_app.command("watch")
def watch(
    device_id: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    quality: Annotated[str, typer.Option(help="standard | high | super")] = "high",
    channel: Annotated[int, typer.Option(help="Channel (0 for a camera).")] = 0,
    path: Annotated[str, typer.Option(help="race (P2P and hub) | p2p | hub")] = "race",
    seconds: Annotated[float, typer.Option(help="Stop after this long (0: Ctrl-C).")] = 0.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Serve a camera's live video on a local URL for ffplay / VLC; print the chosen path."""
    if path not in PATH_CHOICES or quality not in ("standard", "high", "super"):
        err.print("[red]error[/red] --path race|p2p|hub, --quality standard|high|super")
        raise typer.Exit(2)
    session = _load_session(data_dir)

    def on_event(_device: str, event: str, detail: str) -> None:
        if event == "path":
            _say(f"path: {detail}")
        elif event in ("detect_error", "disconnect"):
            _say(f"p2p: {event} ({detail})")

    async def go() -> None:
        async with (
            AppClient(
                session["server"], app_key=session["app_key"], access_token=session["access_token"]
            ) as app,
            Xp2pClient(app, on_event=on_event) as client,
        ):
            info = await _xp2p_info(app, device_id)
            await client.start_service(device_id, info, paths=PATH_CHOICES[path])
            query = f"ipc.flv?action=live&channel={channel}&quality={quality}"
            url = client.delegate_http_flv(device_id) + query
            _say(f"url: {url}")
            _say(f"play it with: ffplay -fflags nobuffer '{url}'")
            if path == "p2p":
                await client.wait_p2p(device_id)  # prints "path: direct|turn"
            else:
                _say("path: chosen when a player connects (the first path with video wins)")
            if seconds > 0:
                await asyncio.sleep(seconds)
            else:
                await asyncio.Event().wait()

    _run(go())


@app_user_app.command("xp2p-command")
def xp2p_command(
    device_id: Annotated[str, typer.Argument(help="PRODUCT_ID/DEVICE_NAME")],
    command: Annotated[
        str, typer.Argument(help="e.g. 'action=inner_define&channel=0&cmd=get_device_st&type=live'")
    ],
    p2p: Annotated[
        bool, typer.Option("--p2p", help="Over a P2P tunnel (default: relayed).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Send an XP2P command (inner_define / user_define) and print the device's reply."""
    session = _load_session(data_dir)

    async def go() -> str:
        async with (
            AppClient(
                session["server"], app_key=session["app_key"], access_token=session["access_token"]
            ) as app,
            Xp2pClient(app) as client,
        ):
            info = await _xp2p_info(app, device_id)
            await client.start_service(device_id, info, paths=("p2p",) if p2p else ("hub",))
            if p2p:
                await client.wait_p2p(device_id)
            return await client.send_command(device_id, command)

    reply = _run(go())
    if reply is not None:
        _say(reply)

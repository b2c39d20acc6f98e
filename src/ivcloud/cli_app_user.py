"""``ivcloud app-user …``: try the App API by hand, as an app's user, through the Python App
SDK.  The session (server, AppKey, AccessToken) is kept in ``<data-dir>/app-session.json``
(owner-only permissions)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ivcloud.cli_common import DataDir, Server, err, parse_json
from ivcloud.client.app_sdk import AppClient
from ivcloud.client.console import DEFAULT_SERVER
from ivcloud.config import DEFAULT_DATA_DIR
from ivcloud.protocol.appapi import AppApiError

app_user_app = typer.Typer(no_args_is_help=True, help="Call the App API as an app user.")


def _server_url(data_dir: Path, server: str | None) -> str:
    if server:
        return server.rstrip("/")
    info = data_dir / "server.json"
    return json.loads(info.read_text())["http_url"] if info.exists() else DEFAULT_SERVER


def _session_file(data_dir: Path) -> Path:
    return data_dir / "app-session.json"


def _save_session(data_dir: Path, doc: dict[str, Any]) -> None:
    path = _session_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def _load_session(data_dir: Path) -> dict[str, Any]:
    path = _session_file(data_dir)
    if not path.exists():
        err.print("[red]error[/red] not logged in: run `ivcloud app-user login` first")
        raise typer.Exit(1)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _print(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except AppApiError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1) from None


@app_user_app.command("login")
def login(
    app_key: str = typer.Option(..., help="AppKey."),
    app_secret: str = typer.Option(..., help="AppSecret (signs the login call)."),
    phone: str | None = typer.Option(None, help="Phone number (with --country-code)."),
    country_code: str = typer.Option("86", help="Country code of --phone."),
    email: str | None = typer.Option(None, help="Email address."),
    wx_openid: str | None = typer.Option(None, help="WeChat OpenID (auto-registers)."),
    password: str | None = typer.Option(None, help="Password (or use --code)."),
    code: str | None = typer.Option(None, help="Verification code."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
) -> None:
    """Log in and keep the AccessToken for later calls."""
    url = _server_url(data_dir, server)

    async def go() -> str:
        async with AppClient(url, app_key=app_key, app_secret=app_secret) as client:
            if wx_openid:
                return await client.login_wechat(wx_openid)
            if phone:
                return await client.login_phone(country_code, phone, password=password, code=code)
            if email:
                return await client.login_email(email, password=password, code=code)
            raise AppApiError("ErrorRequiredParamNotFound", "give --phone, --email or --wx-openid")

    token = _run(go())
    _save_session(data_dir, {"server": url, "app_key": app_key, "access_token": token})
    err.print("logged in; session saved")


@app_user_app.command("call")
def call_action(
    action: str,
    params: str = typer.Argument("{}", help="JSON object of the action's parameters."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Call a tokenapi Action with the saved session; prints the answer's data."""
    doc = parse_json(params, "params")
    session = _load_session(data_dir)

    async def go() -> dict[str, Any]:
        async with AppClient(
            session["server"], app_key=session["app_key"], access_token=session["access_token"]
        ) as client:
            return await client.request_api(action, doc)

    _print(_run(go()))


@app_user_app.command("subscribe")
def subscribe(
    device_ids: Annotated[list[str], typer.Argument(help="PRODUCT_ID/DEVICE_NAME ...")],
    seconds: float = typer.Option(60.0, help="How long to listen."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print pushes (reports, controls, events, status changes) for some devices."""
    session = _load_session(data_dir)

    async def go() -> None:
        async with AppClient(
            session["server"], app_key=session["app_key"], access_token=session["access_token"]
        ) as client:
            client.on("ws_push", lambda frame: _print(frame))
            accepted = await client.subscribe_devices(device_ids)
            err.print(f"subscribed: {', '.join(accepted) or 'none'}")
            await asyncio.sleep(seconds)

    _run(go())

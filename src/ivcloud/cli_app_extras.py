"""``ivcloud app config …`` and ``ivcloud app feedback``: the per-app global configuration
read by ``AppGetGlobalConfig`` and the feedback app users sent (console API)."""

from __future__ import annotations

from urllib.parse import quote

import typer
from rich.table import Table

from ivcloud.cli_apps import apps_app
from ivcloud.cli_common import AsJson, DataDir, Server, call, emit, out
from ivcloud.config import DEFAULT_DATA_DIR

config_app = typer.Typer(no_args_is_help=True, help="Global config keys read by the apps.")
apps_app.add_typer(config_app, name="config")


def _path(app_id: str, key: str | None = None) -> str:
    base = f"/apps/{quote(app_id, safe='')}/config"
    return base if key is None else f"{base}/{quote(key, safe='')}"


@config_app.command("set")
def config_set(
    app_id: str,
    key: str,
    value: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Set KEY to VALUE for the app (a JSON text stays a string for the app to parse)."""
    res = call(
        data_dir, server, lambda c: c.request("PUT", _path(app_id, key), json={"Value": value})
    )
    emit(res, as_json, "config")


@config_app.command("list")
def config_list(
    app_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """List the app's keys and values."""
    res = call(data_dir, server, lambda c: c.request("GET", _path(app_id)))
    if as_json:
        emit(res, True)
        return
    table = Table("Key", "Value")
    for item in res["Configs"]:
        value = item["Value"]
        table.add_row(item["Key"], value if len(value) <= 80 else value[:77] + "...")
    out.print(table)


@config_app.command("unset")
def config_unset(
    app_id: str, key: str, data_dir: DataDir = DEFAULT_DATA_DIR, server: Server = None
) -> None:
    """Remove KEY from the app's configuration."""
    call(data_dir, server, lambda c: c.request("DELETE", _path(app_id, key)))
    out.print(f"{key} unset")


@apps_app.command("feedback")
def feedback_list(
    app_id: str = typer.Option(None, "--app", help="Only this app's feedback."),
    offset: int = typer.Option(0, "--offset", min=0),
    limit: int = typer.Option(20, "--limit", min=1, max=100),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Feedback sent by app users (AppUserFeedBack), newest first."""
    params: dict[str, str | int] = {"Offset": offset, "Limit": limit}
    if app_id:
        params["AppId"] = app_id
    res = call(data_dir, server, lambda c: c.request("GET", "/feedback", params=params))
    if as_json:
        emit(res, True)
        return
    table = Table("Id", "AppId", "UserID", "Type", "Contact", "Desc", title=f"Total {res['Total']}")
    for f in res["Feedback"]:
        table.add_row(str(f["Id"]), f["AppId"], f["UserID"], f["Type"], f["Contact"], f["Desc"])
    out.print(table)

"""``ivcloud app …``: apps and the products linked to them."""

from __future__ import annotations

import typer
from rich.table import Table

from ivcloud.cli_common import AsJson, DataDir, Server, call, emit, out
from ivcloud.config import DEFAULT_DATA_DIR

apps_app = typer.Typer(no_args_is_help=True, help="Apps: AppKey/AppSecret and linked products.")


@apps_app.command("create")
def app_create(
    name: str = typer.Option(..., "--name", help="App name."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Create an app; prints AppId, AppKey and AppSecret."""
    res = call(data_dir, server, lambda c: c.request("POST", "/apps", json={"Name": name}))
    emit(res, as_json, "app")


@apps_app.command("list")
def app_list(
    data_dir: DataDir = DEFAULT_DATA_DIR, server: Server = None, as_json: AsJson = False
) -> None:
    """List apps."""
    res = call(data_dir, server, lambda c: c.request("GET", "/apps"))
    if as_json:
        emit(res, True)
        return
    table = Table("AppId", "Name", "AppKey", "Products")
    for a in res["Apps"]:
        table.add_row(a["AppId"], a["Name"], a["AppKey"], ", ".join(a["ProductIds"]))
    out.print(table)


@apps_app.command("link")
def app_link(
    app_id: str,
    product_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Let the app's users bind and control a product's devices."""
    res = call(
        data_dir, server, lambda c: c.request("PUT", f"/apps/{app_id}/products/{product_id}")
    )
    emit(res, as_json, "app")


@apps_app.command("unlink")
def app_unlink(
    app_id: str,
    product_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Remove a product from an app."""
    res = call(
        data_dir, server, lambda c: c.request("DELETE", f"/apps/{app_id}/products/{product_id}")
    )
    emit(res, as_json, "app")


@apps_app.command("notify")
def app_notify(
    app_id: str,
    title: str = typer.Option(..., "--title", help="Message title (1-128 characters)."),
    content: str = typer.Option(..., "--content", help="Message text (1-1024 characters)."),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    server: Server = None,
    as_json: AsJson = False,
) -> None:
    """Send a notice to every user of an app (their message centre, Category 3)."""
    body = {"Title": title, "Content": content}
    res = call(data_dir, server, lambda c: c.request("POST", f"/apps/{app_id}/messages", json=body))
    emit(res, as_json, "notice")

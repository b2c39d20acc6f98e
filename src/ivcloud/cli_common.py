"""Helpers shared by the ``ivcloud`` command modules: options, output, error handling."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ivcloud.client.console import ConsoleClient, ConsoleError, discover

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="IVCLOUD_DATA_DIR",
        help="Data directory (admin token, server address).",
    ),
]
Server = Annotated[str | None, typer.Option("--server", help="Console server URL.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def client(data_dir: Path, server: str | None) -> ConsoleClient:
    url, token = discover(data_dir, server, None)
    return ConsoleClient(url, token)


def call(data_dir: Path, server: str | None, fn: Any) -> Any:
    try:
        with client(data_dir, server) as console_client:
            return fn(console_client)
    except ConsoleError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1) from None


def emit(result: Any, as_json: bool, title: str = "") -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        return
    if isinstance(result, dict):
        table = Table(title=title or None, show_header=False)
        for key, value in result.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            table.add_row(str(key), text)
        out.print(table)
    elif result is not None:
        out.print(result)


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error[/red] {what} is not valid JSON: {exc}")
        raise typer.Exit(2) from None


def split_device(ref: str) -> tuple[str, str]:
    product_id, sep, device_name = ref.partition("/")
    if not sep or not product_id or not device_name:
        err.print("[red]error[/red] device must be written PRODUCT_ID/DEVICE_NAME")
        raise typer.Exit(2)
    return product_id, device_name

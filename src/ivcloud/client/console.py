"""A small synchronous client of the console API, used by the CLI and by scripts.

It finds a local embedded server through ``<data-dir>/server.json`` (written at start-up,
so auto-picked ports work) and the admin token in ``<data-dir>/admin-token``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"


class ConsoleError(Exception):
    """An error answer of the console API (``code`` is its error code)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def discover(data_dir: Path, server: str | None, token: str | None) -> tuple[str, str]:
    """Resolve the server URL and admin token from options, environment and data dir."""
    if server is None:
        info = data_dir / "server.json"
        server = json.loads(info.read_text())["http_url"] if info.exists() else DEFAULT_SERVER
    token = token or os.environ.get("IVCLOUD_ADMIN_TOKEN")
    if token is None:
        path = data_dir / "admin-token"
        if not path.exists():
            raise ConsoleError(
                0,
                "AuthFailure",
                f"no admin token: {path} does not exist "
                "(pass --data-dir or set IVCLOUD_ADMIN_TOKEN)",
            )
        token = path.read_text().strip()
    return server.rstrip("/"), token


class ConsoleClient:
    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=server + "/api/console/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConsoleError(0, "ConnectionError", f"{exc} ({self._http.base_url})") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ConsoleError(resp.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ConsoleError(resp.status_code, "HttpError", resp.text[:200]) from None
        return None if resp.status_code == 204 else resp.json()

    # -- convenience wrappers (the CLI's vocabulary) ----------------------------------

    def create_product(
        self, name: str, category: str, net: str = "wifi", description: str = ""
    ) -> dict[str, Any]:
        body = {"Name": name, "Category": category, "NetType": net, "Description": description}
        result: dict[str, Any] = self.request("POST", "/products", json=body)
        return result

    def import_thing_model(self, product_id: str, doc: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/products/{product_id}/thing-model", json=doc
        )
        return result

    def import_standard_model(self, product_id: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/products/{product_id}/thing-model/standard/{name}"
        )
        return result

    def create_device(self, product_id: str, device_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/products/{product_id}/devices", json={"DeviceName": device_name}
        )
        return result

    def get_device(self, product_id: str, device_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/products/{product_id}/devices/{device_name}"
        )
        return result

    def control(
        self, product_id: str, device_name: str, params: dict[str, Any], wait_s: float = 0.0
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/products/{product_id}/devices/{device_name}/control",
            json={"Params": params, "WaitSeconds": wait_s},
        )
        return result

    def action(
        self,
        product_id: str,
        device_name: str,
        action_id: str,
        params: dict[str, Any],
        timeout_s: float = 5.0,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/products/{product_id}/devices/{device_name}/actions/{action_id}",
            json={"Params": params, "TimeoutSeconds": timeout_s},
            timeout=timeout_s + 10,
        )
        return result

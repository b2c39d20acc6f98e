"""A test client of the App API over real HTTP: signed appapi calls and tokenapi calls,
returning the parsed ``{code,msg,data}`` envelope unchanged so tests assert the wire."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ivcloud.app import Ivcloud
from ivcloud.protocol.appapi import sign

_nonce = itertools.count(int(time.time()))


@dataclass
class AppCreds:
    app_id: str
    app_key: str
    app_secret: str


class AppApiClient:
    def __init__(self, http: httpx.AsyncClient, creds: AppCreds) -> None:
        self.http = http
        self.creds = creds

    async def appapi(self, action: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Action": action,
            "RequestId": f"req-{action}",
            "AppKey": self.creds.app_key,
            "Timestamp": int(time.time()),
            "Nonce": next(_nonce),
            **params,
        }
        body["Signature"] = sign(self.creds.app_secret, body)
        return await self.raw("/api/exploreropen/appapi", body)

    async def tokenapi(self, token: str, action: str, **params: Any) -> dict[str, Any]:
        body = {"Action": action, "RequestId": f"req-{action}", "AccessToken": token, **params}
        return await self.raw("/api/exploreropen/tokenapi", body)

    async def raw(self, path: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        if isinstance(body, bytes):
            resp = await self.http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
        else:
            resp = await self.http.post(path, json=body)
        assert resp.status_code == 200, resp.text
        doc: dict[str, Any] = resp.json()
        assert set(doc) == {"code", "msg", "data"}, doc
        return doc


def ok_data(envelope: dict[str, Any]) -> dict[str, Any]:
    """``data`` of a successful envelope (fails the test with the error otherwise)."""
    assert envelope["code"] == 0, envelope
    data: dict[str, Any] = envelope["data"]
    return data


def error_code(envelope: dict[str, Any]) -> str:
    assert envelope["code"] == -1000, envelope
    code: str = envelope["data"]["Error"]["Code"]
    return code


async def create_app(admin: httpx.AsyncClient, *product_ids: str) -> AppCreds:
    resp = await admin.post("/apps", json={"Name": "test app"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    for pid in product_ids:
        linked = await admin.put(f"/apps/{body['AppId']}/products/{pid}")
        assert linked.status_code == 200, linked.text
    return AppCreds(body["AppId"], body["AppKey"], body["AppSecret"])


async def make_user(server: Ivcloud, creds: AppCreds, nick: str = "user") -> tuple[str, str]:
    """A user of the app and a valid AccessToken, made through the services (tests of
    other areas need users without depending on the registration flows)."""
    user = await server.users.create(creds.app_id, nick_name=nick)
    token, _ = await server.users.issue_token(user)
    return user.user_id, token

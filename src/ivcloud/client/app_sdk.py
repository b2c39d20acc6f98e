"""Python App SDK: the native counterpart of Tencent's App SDKs, over the same wire.

Mirrors the mini-program SDK's shape (spec §4): ``request_api(action, params)`` on tokenapi
with one automatic re-login on ``InvalidAccessToken``, login helpers (signed appapi calls,
for OEM back ends that hold the AppSecret), and ``subscribe_devices`` on the WebSocket long
connection with callbacks named after the SDK's events (``ws_report``, ``ws_control``,
``ws_status_change``, ``ws_event_report``, …), heartbeats and reconnection with back-off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ivcloud.protocol.appapi import INVALID_ACCESS_TOKEN, AppApiError, sign

log = structlog.get_logger("ivcloud.app_sdk")

Callback = Callable[[dict[str, Any]], Awaitable[None] | None]
TokenSource = Callable[[], Awaitable[str]]

#: push (Type, SubType) → SDK event name (spec §3.4).
PUSH_EVENTS = {
    ("Property", "Report"): "ws_report",
    ("Template", "Report"): "ws_report",
    ("Shadow", "Report"): "ws_report",
    ("Property", "Push"): "ws_control",
    ("Template", "Push"): "ws_control",
    ("Event", "Report"): "ws_event_report",
    ("Action", "Push"): "ws_action_push",
    ("Action", "Report"): "ws_action_report",
    ("StatusChange", "Online"): "ws_status_change",
    ("StatusChange", "Offline"): "ws_status_change",
    ("StatusChange", "Bind"): "ws_device_bind",
    ("StatusChange", "Unbind"): "ws_device_unbind",
}
EVENTS = frozenset({*PUSH_EVENTS.values(), "ws_push", "ws_error", "ws_close"})


def decode_payload(params: dict[str, Any]) -> dict[str, Any]:
    """The device's original message carried base64 in ``Payload`` (NULs stripped, as the
    SDK does)."""
    raw = base64.b64decode(str(params.get("Payload", "")) or b"")
    try:
        doc = json.loads(raw.replace(b"\0", b"") or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def push_event(frame: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Map a ``DeviceChange`` push to the SDK event name and its argument."""
    params = frame.get("params")
    if frame.get("action") != "DeviceChange" or not isinstance(params, dict):
        return None
    name = PUSH_EVENTS.get((str(params.get("Type")), str(params.get("SubType"))))
    if name is None:
        return None
    device_id = str(params.get("DeviceId", ""))
    payload = decode_payload(params)
    if name in ("ws_report", "ws_control"):
        seq = params.get("Seq")
        stamp = seq if isinstance(seq, int) else int(time.time() * 1000)
        values = payload.get("params") if isinstance(payload.get("params"), dict) else {}
        data = {k: {"Value": v, "LastUpdate": stamp} for k, v in (values or {}).items()}
        return name, {"deviceId": device_id, "deviceData": data}
    if name == "ws_status_change":
        online = 1 if params.get("SubType") == "Online" else 0
        return name, {"deviceId": device_id, "deviceStatus": online}
    return name, {"deviceId": device_id, "Payload": payload}


class AppClient:
    """One user's session against an ivcloud (or Tencent-compatible) App API."""

    def __init__(
        self,
        base_url: str,
        *,
        app_key: str = "",
        app_secret: str | None = None,
        access_token: str | None = None,
        get_access_token: TokenSource | None = None,
        platform: str = "python",
        heartbeat_s: float = 50.0,
        timeout_s: float = 20.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_key = app_key
        self._app_secret = app_secret
        self.access_token = access_token
        self._get_access_token = get_access_token
        self.platform = platform
        self._heartbeat_s = heartbeat_s
        self._timeout = timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._ids = itertools.count(1)
        self._callbacks: dict[str, list[Callback]] = {}
        self._devices: list[str] = []
        self._ws: ClientConnection | None = None
        self._ws_task: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subscribed = asyncio.Event()
        self.accepted_devices: list[str] = []

    async def close(self) -> None:
        if self._ws_task is not None:
            self._ws_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ws_task
            self._ws_task = None
        await self._http.aclose()

    async def __aenter__(self) -> AppClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _request_id(self) -> str:
        return secrets.token_urlsafe(7)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self._http.post(self.base_url + path, json=body)
        resp.raise_for_status()
        doc = resp.json()
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict):
            raise AppApiError("InternalError", f"malformed answer: {str(doc)[:200]}")
        if doc.get("code", 0) != 0:
            found = data.get("Error")
            err: dict[str, Any] = found if isinstance(found, dict) else {}
            raise AppApiError(
                str(err.get("Code", doc.get("code"))), str(err.get("Message", doc.get("msg")))
            )
        return data

    async def request_signed(
        self, action: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An appapi call signed with the AppSecret (OEM back ends only: an app shipped to
        users must never contain the AppSecret)."""
        if self._app_secret is None or not self.app_key:
            raise AppApiError("AuthFailure.SecretIdNotFound", "app_key/app_secret not set")
        body: dict[str, Any] = {
            "Action": action,
            "RequestId": self._request_id(),
            "AppKey": self.app_key,
            "Timestamp": int(time.time()),
            "Nonce": random.randint(1, 2**31 - 1),
            **(params or {}),
        }
        body["Signature"] = sign(self._app_secret, body)
        return await self._post(f"/api/exploreropen/appapi/{action}", body)

    async def request_api(
        self, action: str, params: dict[str, Any] | None = None, *, retry_login: bool = True
    ) -> dict[str, Any]:
        """A tokenapi call; on ``InvalidAccessToken`` fetch a new token once and retry."""
        if self.access_token is None:
            await self.relogin()
        body = {
            **(params or {}),
            "Action": action,
            "RequestId": self._request_id(),
            "AccessToken": self.access_token,
            "Platform": self.platform,
        }
        try:
            return await self._post("/api/exploreropen/tokenapi", body)
        except AppApiError as exc:
            if exc.code != INVALID_ACCESS_TOKEN or not retry_login or not self._get_access_token:
                raise
        await self.relogin()
        return await self.request_api(action, params, retry_login=False)

    async def relogin(self) -> None:
        if self._get_access_token is None:
            raise AppApiError(INVALID_ACCESS_TOKEN, "no access token and no way to get one")
        self.access_token = await self._get_access_token()

    # -- login helpers (signed) -----------------------------------------------------------

    async def _take_token(self, data: dict[str, Any]) -> str:
        token = str(data["Data"]["Token"])
        self.access_token = token
        return token

    async def login_wechat(self, open_id: str, nick: str = "", avatar: str = "") -> str:
        data = await self.request_signed(
            "AppGetTokenByWeiXin", {"WxOpenID": open_id, "NickName": nick, "Avatar": avatar}
        )
        return await self._take_token(data)

    async def login_phone(
        self,
        country_code: str,
        phone: str,
        *,
        password: str | None = None,
        code: str | None = None,
    ) -> str:
        params: dict[str, Any] = {
            "Type": "phone",
            "CountryCode": country_code,
            "PhoneNumber": phone,
        }
        params.update({"Password": password} if password else {"VerificationCode": code})
        return await self._take_token(await self.request_signed("AppGetToken", params))

    async def login_email(
        self, email: str, *, password: str | None = None, code: str | None = None
    ) -> str:
        params: dict[str, Any] = {"Type": "email", "Email": email}
        params.update({"Password": password} if password else {"VerificationCode": code})
        return await self._take_token(await self.request_signed("AppGetToken", params))

    async def get_default_family_id(self) -> str:
        """The SDK's ``FamilyId: "default"`` rule: the first family, created if none."""
        families = await self.request_api("AppGetFamilyList", {"Offset": 0, "Limit": 100})
        if families.get("Total", 0):
            return str(families["FamilyList"][0]["FamilyId"])
        created = await self.request_api("AppCreateFamily", {"Name": "My home"})
        return str(created["Data"]["FamilyId"])

    # -- push ------------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(sorted(EVENTS))}")
        self._callbacks.setdefault(event, []).append(callback)

    async def _emit(self, event: str, arg: dict[str, Any]) -> None:
        for cb in self._callbacks.get(event, []):
            result = cb(arg)
            if result is not None:
                await result

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + (
            "/ws/explorer"
        )

    async def subscribe_devices(self, device_ids: list[str]) -> list[str]:
        """Replace the subscription list; returns the device ids the server accepted."""
        self._devices = list(device_ids)
        if self.access_token is None:
            await self.relogin()
        if self._ws_task is None or self._ws_task.done():
            self._subscribed.clear()
            self._ws_task = asyncio.create_task(self._run_ws())
            await asyncio.wait_for(self._subscribed.wait(), self._timeout)
        else:
            await self._active_push()
        return self.accepted_devices

    async def send_ws(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one frame and wait for the reply with the same ``reqId``."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("the long connection is not open")
        req_id = secrets.token_urlsafe(7)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = fut
        try:
            frame = {"action": action, "reqId": req_id, "params": params or {}}
            await ws.send(json.dumps(frame))
            return await asyncio.wait_for(fut, self._timeout)
        finally:
            self._waiting.pop(req_id, None)

    async def _active_push(self) -> None:
        reply = await self.send_ws(
            "ActivePush",
            {
                "DeviceIds": self._devices,
                "AccessToken": self.access_token,
                "AppKey": self.app_key,
                "Platform": self.platform,
            },
        )
        data = reply.get("data") if isinstance(reply.get("data"), dict) else {}
        ids = (data or {}).get("deviceIds")
        self.accepted_devices = [str(i) for i in ids] if isinstance(ids, list) else []

    async def _heartbeat(self) -> dict[str, Any]:
        return await self.send_ws(
            "YunApi",
            {
                "Action": "AppDeviceTraceHeartBeat",
                "ActionParams": {
                    "Platform": self.platform,
                    "RequestId": self._request_id(),
                    "AccessToken": self.access_token,
                    "DeviceIds": self._devices,
                },
            },
        )

    async def _run_ws(self) -> None:
        delay = 1.0
        while True:
            try:
                async with connect(self.ws_url, open_timeout=self._timeout) as ws:
                    self._ws = ws
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        await self._active_push()
                        self._subscribed.set()
                        delay = 1.0
                        while not reader.done():
                            done, _ = await asyncio.wait({reader}, timeout=self._heartbeat_s)
                            if not done:
                                await self._heartbeat()
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, WebSocketException):
                            await reader
                        self._ws = None
            except (OSError, WebSocketException, TimeoutError) as exc:
                await self._emit("ws_error", {"error": str(exc)})
            await self._emit("ws_close", {})
            await asyncio.sleep(delay * (1 + random.random() / 4))
            delay = min(delay * 2, 30.0)

    async def _read(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                frame = json.loads(message)
            except (TypeError, json.JSONDecodeError):
                continue
            if not isinstance(frame, dict):
                continue
            if frame.get("push"):
                await self._emit("ws_push", frame)
                mapped = push_event(frame)
                if mapped is not None:
                    await self._emit(*mapped)
                continue
            fut = self._waiting.get(str(frame.get("reqId")))
            if fut is not None and not fut.done():
                fut.set_result(frame)

"""HTTP endpoints of the App API and the one place its errors are mapped.

Accepts every URL variant real clients use (spec §1.1): ``/api/exploreropen/appapi``,
``…/appapi/``, ``…/appapi/<Action>``, ``…/tokenapi``, ``…/tokenapi/``, any query string.
Always HTTP 200 with ``{"code","msg","data"}``; ``data.RequestId`` echoes the client's."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol import appapi
from ivcloud.protocol.appapi import AppApiError
from ivcloud.protocol.jsontext import BadJson, dumps_safe, loads_json, require_strict
from ivcloud.services.errors import DeviceOffline, DeviceTimeout, ServiceError

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud

log = structlog.get_logger("ivcloud.appapi")

MAX_BODY = 256 * 1024
#: Service errors whose App API code differs from the service's own code name.
_SERVICE_CODES = {
    DeviceOffline: "FailedOperation.DeviceOffline",
    DeviceTimeout: "FailedOperation.DeviceTimeout",
}


PREFIX = "/api/exploreropen/"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _ascii(value: object) -> TypeGuard[str]:
    """AppKeys and AccessTokens are ASCII; anything else cannot match one."""
    return isinstance(value, str) and value.isascii() and 0 < len(value) <= 256


def match(path: str) -> tuple[bool, str | None] | None:
    """``(signed, action in the path)`` for an App API path (spec §1.1); None otherwise."""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    if rest in ("appapi", "appapi/"):
        return True, None
    if rest.startswith("appapi/") and "/" not in rest[7:]:
        return True, rest[7:]
    if rest in ("tokenapi", "tokenapi/"):
        return False, None
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None once it passes ``MAX_BODY`` (the rest is not buffered)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # client went away
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AppApiEndpoints:
    """A plain ASGI endpoint, in front of the FastAPI app (see :func:`edge`): the App API
    is the busiest HTTP surface, and Starlette's request/response objects and middleware
    stack cost as much as a whole bare request (docs/benchmarks.md "App API")."""

    def __init__(self, instance: Ivcloud, registry: ActionRegistry) -> None:
        self._instance = instance
        self._registry = registry
        self._nonces = appapi.NonceCache()

    async def tokenapi_data(self, body: dict[str, Any]) -> dict[str, Any]:
        """Run a tokenapi call given as a parsed body; the envelope's ``data`` (the push
        socket's ``YunApi`` tunnel)."""
        envelope = json.loads(await self._answer(dumps_safe(body), False, None, b""))
        data: dict[str, Any] = envelope["data"]
        return data

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, signed: bool, path_action: str | None
    ) -> None:
        if scope["method"] != "POST":
            await _send(send, 405, b"Method Not Allowed", [(b"allow", b"POST")])
            return
        raw = await _read_body(receive)
        reply = await self._answer(raw, signed, path_action, scope.get("query_string", b""))
        await _send(send, 200, reply, _JSON_HEADERS)

    async def _answer(
        self, raw: bytes | None, signed: bool, path_action: str | None, query: bytes
    ) -> bytes:
        request_id = ""
        action = "?"
        try:
            if raw is None:
                raise AppApiError(appapi.INVALID_PARAMETER, "request body is too large")
            try:
                body = loads_json(raw)
            except BadJson as exc:
                raise AppApiError(appapi.INVALID_JSON, f"request body: {exc}") from None
            if not isinstance(body, dict):
                raise AppApiError(appapi.INVALID_JSON, "request body is not a JSON object")
            rid = body.get("RequestId", "")
            request_id = rid[:128] if isinstance(rid, str) else str(rid)[:128]
            cmd = dict(parse_qsl(query.decode("latin-1"))).get("cmd") if query else None
            action = appapi.action_name(body, path_action, cmd)
            result = await self._dispatch(action, request_id, body, signed)
            return appapi.ok_json(request_id, result)
        except AppApiError as exc:
            log.info("appapi_error", action=action, code=exc.code, error=exc.message)
            return dumps_safe(appapi.error(request_id, exc.code, exc.message))
        except ServiceError as exc:
            code = next((c for k, c in _SERVICE_CODES.items() if isinstance(exc, k)), exc.code)
            log.info("appapi_error", action=action, code=code, error=str(exc))
            return dumps_safe(appapi.error(request_id, code, str(exc)))
        except Exception:
            log.exception("appapi_internal_error", action=action)
            return dumps_safe(appapi.error(request_id, appapi.INTERNAL_ERROR, "internal error"))

    async def _dispatch(
        self, name: str, request_id: str, body: dict[str, Any], signed: bool
    ) -> dict[str, Any] | None:
        """Authenticate first (so an unauthenticated caller learns nothing, not even which
        actions exist), then run the action."""
        instance = self._instance
        if signed:
            app_key = body.get("AppKey")
            app = await instance.apps.by_key(app_key) if _ascii(app_key) else None
            if app is None:
                raise AppApiError(appapi.APP_KEY_NOT_FOUND, "unknown AppKey")
            now = int(time.time())
            appapi.check_timestamp(body.get("Timestamp"), now)
            if not appapi.verify_signature(app.app_secret, body):
                raise AppApiError(appapi.SIGNATURE_FAILURE, "signature does not match")
            if self._nonces.seen(app.app_key, str(body.get("Nonce")), now):
                raise AppApiError(appapi.REPLAY_ATTACK, "Nonce already used")
            user = None
            token = None
        else:
            raw_token = body.get("AccessToken")
            user = await instance.users.authenticate(raw_token) if _ascii(raw_token) else None
            if user is None:
                raise AppApiError(appapi.INVALID_ACCESS_TOKEN, "AccessToken is invalid or expired")
            app = await instance.apps.get(user.app_id)
            token = raw_token
        try:
            # After authentication, so a bad credential gets its own error code.
            require_strict(body)
        except BadJson as exc:
            raise AppApiError(appapi.INVALID_JSON, f"request body: {exc}") from None
        action = self._registry.get(name)
        if action is None or (action.auth == "sign") != signed:
            where = "appapi" if signed else "tokenapi"
            raise AppApiError(appapi.INVALID_ACTION, f"{name} is not an action of {where}")
        return await action.handler(Call(name, request_id, body, app, user, token, instance))


def edge(endpoints: AppApiEndpoints, fallback: ASGIApp) -> ASGIApp:
    """The HTTP application: App API paths straight to ``endpoints``, everything else
    (console, downloads, WebSockets, lifespan) to ``fallback``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            matched = match(scope["path"])
            if matched is not None:
                await endpoints.serve(scope, receive, send, *matched)
                return
        await fallback(scope, receive, send)

    return app

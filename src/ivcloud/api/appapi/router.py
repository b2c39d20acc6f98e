"""HTTP endpoints of the App API and the one place its errors are mapped.

Accepts every URL variant real clients use (spec §1.1): ``/api/exploreropen/appapi``,
``…/appapi/``, ``…/appapi/<Action>``, ``…/tokenapi``, ``…/tokenapi/``, any query string.
Always HTTP 200 with ``{"code","msg","data"}``; ``data.RequestId`` echoes the client's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeGuard

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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


def _ascii(value: object) -> TypeGuard[str]:
    """AppKeys and AccessTokens are ASCII; anything else cannot match one."""
    return isinstance(value, str) and value.isascii() and 0 < len(value) <= 256


def _reply(body: dict[str, Any]) -> Response:
    return Response(dumps_safe(body), status_code=200, media_type="application/json")


class AppApiEndpoints:
    def __init__(self, instance: Ivcloud, registry: ActionRegistry) -> None:
        self._instance = instance
        self._registry = registry
        self._nonces = appapi.NonceCache()

    def routes(self) -> list[Route]:
        base = "/api/exploreropen"
        return [
            Route(base + "/appapi", self.appapi, methods=["POST"]),
            Route(base + "/appapi/", self.appapi, methods=["POST"]),
            Route(base + "/appapi/{action}", self.appapi, methods=["POST"]),
            Route(base + "/tokenapi", self.tokenapi, methods=["POST"]),
            Route(base + "/tokenapi/", self.tokenapi, methods=["POST"]),
        ]

    async def appapi(self, request: Request) -> Response:
        return await self._serve(request, signed=True)

    async def tokenapi(self, request: Request) -> Response:
        return await self._serve(request, signed=False)

    async def _serve(self, request: Request, *, signed: bool) -> Response:
        request_id = ""
        action = "?"
        try:
            raw = await request.body()
            if len(raw) > MAX_BODY:
                raise AppApiError(appapi.INVALID_PARAMETER, "request body is too large")
            try:
                body = loads_json(raw)
            except BadJson as exc:
                raise AppApiError(appapi.INVALID_JSON, f"request body: {exc}") from None
            if not isinstance(body, dict):
                raise AppApiError(appapi.INVALID_JSON, "request body is not a JSON object")
            rid = body.get("RequestId", "")
            request_id = rid[:128] if isinstance(rid, str) else str(rid)[:128]
            action = appapi.action_name(
                body, request.path_params.get("action"), request.query_params.get("cmd")
            )
            result = await self._dispatch(action, request_id, body, signed)
            return _reply(appapi.ok(request_id, result))
        except AppApiError as exc:
            log.info("appapi_error", action=action, code=exc.code, error=exc.message)
            return _reply(appapi.error(request_id, exc.code, exc.message))
        except ServiceError as exc:
            code = next((c for k, c in _SERVICE_CODES.items() if isinstance(exc, k)), exc.code)
            log.info("appapi_error", action=action, code=code, error=str(exc))
            return _reply(appapi.error(request_id, code, str(exc)))
        except Exception:
            log.exception("appapi_internal_error", action=action)
            return _reply(appapi.error(request_id, appapi.INTERNAL_ERROR, "internal error"))

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

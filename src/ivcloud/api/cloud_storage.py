"""Device upload API of cloud storage (an ivcloud extension; docs/cloud-storage.md).

Plain Starlette routes: uploads are bytes in, a few rows out, so no request models. Each
request is authenticated by its ``Authorization: IvDevice …`` header
(:mod:`ivcloud.protocol.device_http_auth`), which signs method, path, query and body: a
device can only ever upload as itself. Bodies are read with a hard bound (a bigger one is
413 before it is buffered). Every error is a JSON ``{"error": {"code", "message"}}`` with a
4xx status, mapped here once; nothing is stored on any error.

=========================================================  ====================================
``PUT  /api/device/v1/cs/init?channel=``                   fMP4 init segment → its sha256
``PUT  /api/device/v1/cs/segments?channel=&start_ms=…``    one fMP4 media segment (a GOP)
``POST /api/device/v1/cs/events``                          event start (or a whole event)
``POST /api/device/v1/cs/events/stop``                     event end
``PUT  /api/device/v1/cs/thumbnails?channel=&event_id=…``  the event's JPEG
=========================================================  ====================================
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ivcloud.api.cloud_storage_playback import playback_routes
from ivcloud.api.errors import error_body
from ivcloud.protocol import device_http_auth as dha
from ivcloud.protocol.jsontext import BadJson, loads_json
from ivcloud.services.cloud_storage import MAX_INIT_BYTES, PayloadTooLarge
from ivcloud.services.devices import DeviceRecord
from ivcloud.services.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from ivcloud.app import Ivcloud

log = structlog.get_logger("ivcloud.api.cloud_storage")

PREFIX: Final[str] = "/api/device/v1/cs"
MAX_JSON_BYTES: Final[int] = 8 * 1024
_INT_RE: Final = re.compile(r"-?[0-9]{1,15}")
_SHA_RE: Final = re.compile(r"[0-9a-f]{64}")


class _Refused(Exception):
    """An HTTP error answer, raised from helpers and turned into JSON once per request."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, _Refused):
        status, code, message = exc.status, exc.code, exc.message
    elif isinstance(exc, dha.DeviceAuthError):
        status, code, message = 401, "AuthFailure", str(exc)
    elif isinstance(exc, PayloadTooLarge):
        status, code, message = 413, "RequestSizeLimitExceeded", str(exc)
    elif isinstance(exc, InvalidInput):
        status, code, message = 400, "InvalidParameterValue", str(exc)
    elif isinstance(exc, NotFound):
        status, code, message = 404, "ResourceNotFound", str(exc)
    elif isinstance(exc, Conflict):
        status, code, message = 409, "ResourceInUse", str(exc)
    else:
        raise exc
    return JSONResponse(error_body(code, message), status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _int(params: dict[str, Any], name: str, *, low: int = 0, high: int = 2**53) -> int:
    value = params.get(name)
    if isinstance(value, bool) or value is None:
        raise _Refused(400, "InvalidParameter", f"{name} must be an integer")
    if isinstance(value, str):
        if _INT_RE.fullmatch(value) is None:
            raise _Refused(400, "InvalidParameter", f"{name} must be an integer")
        value = int(value)
    if not isinstance(value, int):
        raise _Refused(400, "InvalidParameter", f"{name} must be an integer")
    if not low <= value <= high:
        raise _Refused(400, "InvalidParameterValue", f"{name} must be {low}..{high}")
    return value


def _query(request: Request) -> dict[str, str]:
    """The query as a dict; a repeated parameter is refused rather than guessed at."""
    pairs = request.query_params.multi_items()
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _Refused(400, "InvalidParameter", "a query parameter is repeated")
    return dict(pairs)


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        doc = loads_json(raw)
    except BadJson as exc:
        raise _Refused(400, "InvalidParameter", f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Refused(400, "InvalidParameter", "body must be a JSON object")
    return doc


Handler = Callable[[Request, DeviceRecord, bytes], Awaitable[dict[str, Any]]]


def cloud_storage_routes(instance: Ivcloud) -> list[BaseRoute]:
    """The device upload routes and the (signed) playback routes."""
    service = instance.cloud_storage
    limits = service.limits

    def endpoint(limit: Callable[[], int], handler: Handler) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                auth = dha.parse_authorization(request.headers.get("authorization"))
                rec = await instance.devices.find(auth.product_id, auth.device_name)
                body = await _read_body(request, limit())
                if rec is None:
                    raise dha.DeviceAuthRejected("bad signature")
                raw_path = request.scope.get("raw_path") or request.url.path.encode()
                query = request.scope.get("query_string", b"")
                target = raw_path.decode("latin-1") + (
                    "?" + query.decode("latin-1") if query else ""
                )
                now_s = instance.clock.now_ms() // 1000
                dha.verify(
                    auth,
                    rec.secret,
                    request.method,
                    target,
                    dha.body_digest(body),
                    now_s,
                    clock_skew_s=limits.clock_skew_s,
                )
                return JSONResponse(await handler(request, rec, body))
            except Exception as exc:
                response = _error(exc)
                log.info(
                    "cs_upload_refused",
                    path=request.url.path,
                    status=response.status_code,
                    error=str(exc),
                )
                return response

        return run

    async def put_init(request: Request, rec: DeviceRecord, body: bytes) -> dict[str, Any]:
        _int(_query(request), "channel", high=64)
        sha, created = await service.put_init(rec, body)
        return {"sha256": sha, "created": created}

    async def put_segment(request: Request, rec: DeviceRecord, body: bytes) -> dict[str, Any]:
        q = _query(request)
        init = q.get("init", "")
        if _SHA_RE.fullmatch(init) is None:
            raise _Refused(400, "InvalidParameter", "init must be the sha256 of the init segment")
        stored = await service.put_segment(
            rec, _int(q, "channel", high=64), _int(q, "start_ms"), _int(q, "end_ms"), init, body
        )
        return {"id": stored.id, "created": stored.created}

    async def post_event(_: Request, rec: DeviceRecord, body: bytes) -> dict[str, Any]:
        doc = _json_body(body)
        data = doc.get("data")
        if data is not None and not isinstance(data, dict):
            raise _Refused(400, "InvalidParameter", "data must be a JSON object")
        video = doc.get("video", True)
        if not isinstance(video, bool):
            raise _Refused(400, "InvalidParameter", "video must be true or false")
        end = None if doc.get("end_ms") is None else _int(doc, "end_ms")
        stored = await service.start_event(
            rec,
            _int(doc, "channel", high=64),
            _int(doc, "event_id", high=255),
            _int(doc, "start_ms"),
            end,
            data,
            video=video,
        )
        return {"created": stored.created}

    async def stop_event(_: Request, rec: DeviceRecord, body: bytes) -> dict[str, Any]:
        doc = _json_body(body)
        await service.stop_event(
            rec,
            _int(doc, "channel", high=64),
            _int(doc, "event_id", high=255),
            _int(doc, "start_ms"),
            _int(doc, "end_ms"),
        )
        return {}

    async def put_thumbnail(request: Request, rec: DeviceRecord, body: bytes) -> dict[str, Any]:
        q = _query(request)
        created = await service.put_thumbnail(
            rec,
            _int(q, "channel", high=64),
            _int(q, "event_id", high=255),
            _int(q, "start_ms"),
            body,
        )
        return {"created": created}

    routes: list[BaseRoute] = [
        Route(f"{PREFIX}/init", endpoint(lambda: MAX_INIT_BYTES, put_init), methods=["PUT"]),
        Route(
            f"{PREFIX}/segments",
            endpoint(lambda: limits.max_segment_bytes, put_segment),
            methods=["PUT"],
        ),
        Route(f"{PREFIX}/events", endpoint(lambda: MAX_JSON_BYTES, post_event), methods=["POST"]),
        Route(
            f"{PREFIX}/events/stop", endpoint(lambda: MAX_JSON_BYTES, stop_event), methods=["POST"]
        ),
        Route(
            f"{PREFIX}/thumbnails",
            endpoint(lambda: limits.max_thumbnail_bytes, put_thumbnail),
            methods=["PUT"],
        ),
    ]
    return routes + playback_routes(instance)

"""The one place service and validation errors become HTTP responses.

Console API errors are ``{"error": {"code": "...", "message": "..."}}`` with the code names
of Tencent Cloud API 3.0 (``ResourceNotFound``, ``InvalidParameterValue``, …)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ivcloud.services.errors import (
    Conflict,
    DeviceOffline,
    DeviceTimeout,
    InvalidInput,
    NotFound,
    ServiceError,
    Unavailable,
)

STATUS = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    DeviceOffline: 409,
    DeviceTimeout: 504,
    Unavailable: 503,
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


async def _service_error(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    status = next((v for k, v in STATUS.items() if isinstance(exc, k)), 500)
    return JSONResponse(error_body(exc.code, str(exc)), status_code=status)


async def _validation_error(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return JSONResponse(error_body("InvalidParameter", "; ".join(parts)), status_code=400)


async def _http_error(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        401: "AuthFailure",
        403: "UnauthorizedOperation",
        404: "ResourceNotFound",
        405: "UnsupportedOperation",
    }.get(exc.status_code, "InvalidRequest")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

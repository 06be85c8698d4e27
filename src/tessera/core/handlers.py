"""Render every error as `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tessera.core.errors import AppError
from tessera.core.observability.logging import get_logger

logger = get_logger("tessera.errors")
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side"

HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        item = {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg")),
            "type": error.get("type"),
        }
        cleaned.append(item)
    return cleaned


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, error: AppError) -> JSONResponse:
        if error.status_code >= 500:
            logger.error("request failed", code=error.code, message=error.message)
        return JSONResponse(
            error_body(error.code, error.message, error.details), status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if not error.connection_invalidated:
            return await unexpected_error(request, error)
        # The database closed the connection (restart, fail-over). SQLAlchemy has dropped it from
        # the pool, so a retry gets a fresh one: a 503, not a bug.
        logger.warning("database connection lost", path=request.url.path)
        return JSONResponse(
            error_body("database_unavailable", "The database connection was lost; retry the request"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        details = _clean_validation_errors(error.errors())
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(part for part in first["loc"] if part not in ("body",)) or "request"
        return JSONResponse(
            error_body("validation_error", f"{where}: {first['msg']}", details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "http_error")
        message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
        return JSONResponse(error_body(code, message), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error", path=request.url.path)
        request_id = getattr(request.state, "request_id", None)
        return JSONResponse(
            error_body("internal_error", INTERNAL_ERROR_MESSAGE, {"request_id": request_id}),
            status_code=500,
        )

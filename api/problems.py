"""RFC 9457 problem+json answers, with stable `type` URIs, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.persistence.db import OUTAGE_ERRORS, is_outage
from ledger.errors import (
    CorrectionError,
    HoldNotFoundError,
    IdempotencyConflictError,
    InsufficientStockError,
    InvalidCommandError,
    LedgerError,
    OrderConflictError,
    OrderNotFoundError,
    ReservationError,
    StockNotFoundError,
    VersionConflictError,
)
from ledger.writer import StorageError

log = logging.getLogger("ledger.api")

TYPE_BASE = "https://ledger.example/problems/"
RETRY_AFTER_SECONDS = "2"  # what a 503 `storage-unavailable` asks the caller to wait
PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: dict[type[LedgerError], int] = {
    InvalidCommandError: 422,
    InsufficientStockError: 409,
    ReservationError: 409,
    OrderConflictError: 409,
    CorrectionError: 409,
    VersionConflictError: 409,
    IdempotencyConflictError: 422,
    OrderNotFoundError: 404,
    HoldNotFoundError: 404,
    StockNotFoundError: 404,
    StorageError: 503,
}

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

SLUG_BY_STATUS = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    500: "internal-error",
    503: "unavailable",
}


class Problem(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(self, status: int, slug: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.extra = extra


def problem_response(
    status: int,
    slug: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def status_of(e: LedgerError) -> int:
    """The HTTP status of a ledger error (409 for a refusal with no status of its own)."""
    return next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(e, cls)), 409)


def ledger_error_response(e: LedgerError, instance: str | None = None) -> JSONResponse:
    status = status_of(e)
    headers = {"retry-after": RETRY_AFTER_SECONDS} if status == 503 else None
    return problem_response(status, e.code, e.message, instance, headers=headers, **_jsonable(e.details))


def storage_unavailable(instance: str | None = None) -> JSONResponse:
    """503 `storage-unavailable` with Retry-After: the database cannot be reached; nothing was stored."""
    return problem_response(
        503,
        "storage-unavailable",
        "the database cannot be reached; nothing was stored, retry later",
        instance,
        headers={"retry-after": RETRY_AFTER_SECONDS},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, e: Problem) -> JSONResponse:
        return problem_response(e.status, e.slug, e.detail, request.url.path, **e.extra)

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, e: LedgerError) -> JSONResponse:
        return ledger_error_response(e, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = []
        malformed = False
        for err in e.errors():
            if err.get("type") == "json_invalid":
                malformed = True
            errors.append(
                {
                    "loc": [str(x) for x in err.get("loc", ())],
                    "msg": str(err.get("msg", "")),
                    "type": str(err.get("type", "")),
                }
            )
        if malformed:
            return problem_response(400, "malformed-json", "the body is not valid JSON", request.url.path)
        return problem_response(
            422,
            "validation-error",
            "the request does not satisfy the schema",
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        slug = SLUG_BY_STATUS.get(e.status_code, "error")
        return problem_response(
            e.status_code, slug, str(e.detail), request.url.path, headers=getattr(e, "headers", None)
        )

    async def _outage(request: Request, e: Exception) -> JSONResponse:
        if not is_outage(e):
            return await _unexpected(request, e)
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, type(e).__name__)
        return storage_unavailable(request.url.path)

    for error in OUTAGE_ERRORS:
        app.add_exception_handler(error, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error(
            "unhandled error on %s %s: %s", request.method, request.url.path, type(e).__name__, exc_info=e
        )
        return problem_response(500, "internal-error", "an unexpected error occurred", request.url.path)


def validation_problem(e: ValidationError) -> Problem:
    errors = [
        {
            "loc": [str(x) for x in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in e.errors()
    ]
    return Problem(422, "validation-error", "the message does not satisfy the schema", errors=errors)

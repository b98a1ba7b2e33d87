"""One error model for the whole API: ``{"errors": [{"field": ..., "rule": ...}]}``.

Every non-2xx response, whether raised by our code, by FastAPI's request validation or by
Starlette's routing (404, 405), has this shape, so a caller can always tell which field was
wrong and which rule it broke.
"""
from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from clinops.privacy import (
    AuthenticationError,
    AuthorizationError,
    ConsentError,
    PrivacyError,
    PurposeError,
)

log = logging.getLogger("serving")

#: The rule text for a field the feature manifest does not list (pydantic's extra_forbidden).
UNLISTED_FIELD_RULE = "not in the feature manifest; data minimisation forbids sending it"

#: Most errors listed in one response, and the longest field name echoed: an error body stays
#: small whatever the request (100 000 unknown keys are not 100 000 errors).
MAX_ERRORS = 20
MAX_FIELD_CHARS = 120


class FieldError(BaseModel):
    """One broken rule."""

    field: str = Field(description="The request field, header or path parameter, dotted (features.map)")
    rule: str = Field(description="The rule that was broken, in words a caller can act on")


class ErrorBody(BaseModel):
    """Body of every error response."""

    errors: list[FieldError] = Field(min_length=1)


class ApiError(Exception):
    """An error our handlers raise on purpose.

    Parameters
    ----------
    status_code : int
        HTTP status.
    field, rule : str
        What was wrong and which rule it broke.
    """

    def __init__(self, status_code: int, field: str, rule: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status_code} {field}: {rule}")
        self.status_code = status_code
        self.field = field
        self.rule = rule
        self.headers = headers


def error_response(status_code: int, errors: list[tuple[str, str]], headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response from ``(field, rule)`` pairs, at most :data:`MAX_ERRORS` of them."""
    shown = [{"field": _clip(field), "rule": rule} for field, rule in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        shown.append({"field": "body", "rule": f"{len(errors) - MAX_ERRORS} more error(s) not listed"})
    return JSONResponse({"errors": shown}, status_code=status_code, headers=headers)


def _clip(field: str) -> str:
    return field if len(field) <= MAX_FIELD_CHARS else field[:MAX_FIELD_CHARS] + "..."


def internal_error_response() -> JSONResponse:
    """The 500 answer to an unexpected exception (logged with an incident id the body names)."""
    incident = uuid.uuid4().hex[:12]
    log.exception("unhandled error, incident %s", incident)
    return error_response(500, [("server", f"internal error; incident {incident} is in the server log")])


def status_for_privacy_error(exc: PrivacyError) -> int:
    """HTTP status for a privacy refusal: 401 unauthenticated, 403 forbidden, 422 malformed."""
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, (AuthorizationError, ConsentError)):
        return 403
    if isinstance(exc, PurposeError):
        return 422
    return 400


def _field_from_loc(loc: tuple) -> str:
    # FastAPI locations start with where the value came from (body, query, path, header)
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def _rule_from_pydantic(error: dict) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return UNLISTED_FIELD_RULE
    if kind == "json_invalid":
        return f"request body must be valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if kind == "missing":
        return "is required"
    message = str(error.get("msg", kind))
    return message.removeprefix("Value error, ")  # our validators' own rule text


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` an :class:`ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, [(exc.field, exc.rule)], exc.headers)

    @app.exception_handler(PrivacyError)
    async def _privacy_error(_: Request, exc: PrivacyError) -> JSONResponse:
        status = status_for_privacy_error(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, [(exc.field, exc.rule)], headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [("body" if e.get("type") == "json_invalid" else _field_from_loc(tuple(e.get("loc", ()))),
                   _rule_from_pydantic(e)) for e in exc.errors()]
        # a body of the wrong JSON type reports loc ('body',) only
        return error_response(422, errors or [("body", "invalid request")])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            field, rule = "path", f"no resource at {request.url.path}"
            if isinstance(exc.detail, str) and exc.detail != "Not Found":
                rule = exc.detail
        elif exc.status_code == 405:
            field, rule = "method", f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 413:
            field, rule = "body", str(exc.detail)
        else:
            field, rule = "request", str(exc.detail)
        return error_response(exc.status_code, [(field, rule)], getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # only what serving.gate.RequestGate cannot catch (an error in a middleware) gets here
        return internal_error_response()


#: ``responses=`` entry documenting the error body for the usual statuses.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing or unknown bearer token",
        403: "Role not allowed, or consent does not cover the purpose",
        404: "No such resource",
        422: "A field broke a rule (named in the body)",
    }.items()
}

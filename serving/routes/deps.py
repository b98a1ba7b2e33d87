"""What every route module shares: the runtime and role dependencies, the error responses it
documents, and the router class (strict JSON bodies).

Note: no ``from __future__ import annotations`` in the route modules: FastAPI reads the request
models, some built at run time from the feature manifest, from the handlers' annotations.
"""
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clinops.privacy import Principal, TokenRegistry
from serving.errors import ERROR_RESPONSES, ErrorBody
from serving.gate import StrictJSONRoute
from serving.runtime import ServingRuntime

__all__ = ["CONFLICT", "FORBIDDEN", "NOT_FOUND", "Runtime", "UNAVAILABLE", "new_router", "requires", "runtime_of"]

FORBIDDEN = {403: ERROR_RESPONSES[403]}
NOT_FOUND = {403: ERROR_RESPONSES[403], 404: ERROR_RESPONSES[404]}
CONFLICT = {409: {"model": ErrorBody, "description": "Not allowed in the current state"}}
UNAVAILABLE = {503: {"model": ErrorBody, "description": "The audit record could not be written"}}

bearer = HTTPBearer(auto_error=False, description="Bearer token mapped to a role in the token file")


# async on purpose (as every dependency here): a sync dependency costs a threadpool round trip
# per request, and none of these does any blocking work
async def runtime_of(request: Request) -> ServingRuntime:
    """The app's :class:`ServingRuntime` (``app.state.runtime``, set by :func:`serving.app.create_app`)."""
    return request.app.state.runtime


Runtime = Annotated[ServingRuntime, Depends(runtime_of)]


def requires(*roles: str):
    """A dependency that authenticates the bearer token and admits only ``roles`` (403 otherwise)."""
    allowed = tuple(roles)

    async def dependency(request: Request,
                         _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        principal = request.app.state.tokens.authenticate(request.headers.get("authorization"))
        TokenRegistry.require(principal, allowed)
        return principal

    return dependency


def new_router() -> APIRouter:
    """A router whose routes refuse duplicate JSON keys and NaN/Infinity (422), as the app's do."""
    return APIRouter(route_class=StrictJSONRoute)

"""What every request passes before a route sees it, and what every response carries.

:class:`RequestGate` (pure ASGI middleware, the outermost of the app's own):

- **no body is read from an unauthenticated caller**: a request that carries a body must
  present a valid bearer token first (401, connection closed, body never read); no open route
  takes a body;
- **a small body limit, enforced before reading**: a declared ``Content-Length`` above
  :data:`MAX_BODY_BYTES` is a 413 at once; a chunked body is counted as it arrives and cut off
  at the limit;
- **failed authentication is rate-limited** per client address (:class:`FailedAuthLimiter`):
  after too many 401s in a window, requests presenting an unknown token get 429 until it
  passes (valid tokens and the open routes are never held back);
- **an unexpected error answers only its own request**: a 500 with an incident id, and the
  connection stays open (Starlette's outermost handler re-raises, which makes uvicorn drop a
  keep-alive connection);
- **security headers** on every response: ``Cache-Control: no-store`` (answers carry patient
  data), a Content-Security-Policy allowing only this origin, ``X-Frame-Options: DENY``,
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, and HSTS over HTTPS.

:class:`StrictJSONRoute` makes FastAPI parse JSON bodies with :func:`strict_json_loads`:
duplicate keys and the non-standard constants ``NaN`` / ``Infinity`` (which Python's parser
accepts) are a 422 naming the rule.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from typing import Any, Callable

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinops.privacy import AuthenticationError, TokenRegistry
from serving.errors import error_response, internal_error_response

#: Largest request body, in bytes. A prediction is a few hundred bytes; the largest legitimate
#: body (a periodic review with 100 incidents of 2000 characters) stays under it only if the
#: incidents are short, which is the point: free text belongs in the clinical record.
MAX_BODY_BYTES = 64 * 1024

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")


class DuplicateKeyError(json.JSONDecodeError):
    """A JSON object names the same key twice (Python's parser would keep the last silently)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key[:60]!r}", "", 0)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON (numbers must be finite)", "", 0)


def strict_json_loads(body: bytes | str) -> Any:
    """Parse standard JSON only: no ``NaN``/``Infinity``, no duplicate keys.

    Raises
    ------
    json.JSONDecodeError
        Whose ``msg`` names the rule (FastAPI turns it into a 422 on ``body``).
    """
    return json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


class StrictJSONRequest(Request):
    """A request whose :meth:`json` is :func:`strict_json_loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route that parses its JSON body with :func:`strict_json_loads`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict_handler(request: Request):
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


class FailedAuthLimiter:
    """Sliding-window count of failed authentications per client address.

    Parameters
    ----------
    max_failures : int
        Failures allowed within ``window_seconds``; one more and the address is refused.
    window_seconds : float
    clock : callable, optional
        Monotonic seconds (tests).
    """

    def __init__(self, max_failures: int = 50, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_failures < 1 or window_seconds <= 0:
            raise ValueError("max_failures >= 1 and window_seconds > 0 are required")
        self.max_failures = int(max_failures)
        self.window_seconds = float(window_seconds)
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self.max_addresses = 10_000  # addresses tracked at once (memory stays bounded)

    def _recent(self, address: str) -> deque[float]:
        times = self._failures[address]
        cutoff = self._clock() - self.window_seconds
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: not blocked)."""
        if address not in self._failures:
            return 0.0
        times = self._recent(address)
        if not times:
            del self._failures[address]
            return 0.0
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window_seconds - self._clock())

    def failed(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= self.max_addresses:
            # many addresses at once: forget those with nothing in the window, then the oldest
            for other in [a for a in self._failures if not self._recent(a)]:
                del self._failures[other]
            while len(self._failures) >= self.max_addresses:
                del self._failures[next(iter(self._failures))]
        self._recent(address).append(self._clock())


class BodyTooLarge(HTTPException):
    """A streamed body passed the limit (an HTTPException, so FastAPI's body reader lets it through)."""

    def __init__(self, limit: int):
        super().__init__(413, f"larger than {limit} bytes; reading stopped there", headers={"Connection": "close"})


class RequestGate:
    """The checks and headers described in the module docstring.

    Parameters
    ----------
    app : ASGI application
    tokens : TokenRegistry
    max_body_bytes : int
    max_failed_auth : int
        Failed authentications per minute from one address before requests that present a
        token are refused with 429 (:class:`FailedAuthLimiter`).
    """

    def __init__(self, app: ASGIApp, tokens: TokenRegistry, max_body_bytes: int = MAX_BODY_BYTES,
                 max_failed_auth: int = 50):
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = int(max_body_bytes)
        self.limiter = FailedAuthLimiter(max_failures=max_failed_auth)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = SECURITY_HEADERS + ((HSTS,) if scope.get("scheme") == "https" else ())
        started = False
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((n, v) for n, v in extra if n not in present)]
            await send(message)

        headers = dict(scope["headers"])  # lower-case names (ASGI)
        address = (scope.get("client") or ("unknown",))[0]
        authorization = headers.get(b"authorization")
        refusal = self._authentication_error(authorization)
        if refusal is not None and authorization is not None:  # guessing tokens; open routes stay open
            wait = self.limiter.blocked(address)
            if wait:
                await self._refuse(scope, receive, send_with_headers, 429, "Authorization",
                                   f"too many failed authentications from this address; retry in {wait:.0f} s",
                                   {"Retry-After": str(int(wait) + 1)})
                return
        length = headers.get(b"content-length")
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        if has_body and refusal is not None:
            self.limiter.failed(address)
            # refused before the body is read (the same answer the route would give after)
            await self._refuse(scope, receive, send_with_headers, 401, refusal.field, refusal.rule,
                               {"WWW-Authenticate": "Bearer"})
            return
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._refuse(scope, receive, send_with_headers, 413, "body",
                               f"larger than {self.max_body_bytes} bytes; the body was not read")
            return
        received = 0

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, receive_bounded, send_with_headers)
        except BodyTooLarge as exc:  # read outside a route's own handlers
            if not started:
                await self._refuse(scope, receive, send_with_headers, 413, "body", exc.detail)
        except Exception:  # noqa: BLE001 -- answered here so that the connection survives
            if not started:
                await internal_error_response()(scope, receive, send_with_headers)
        finally:
            if status == 401:
                self.limiter.failed(address)

    def _authentication_error(self, authorization: bytes | None) -> AuthenticationError | None:
        """Why the Authorization header does not authenticate, or None when it does."""
        try:
            self.tokens.authenticate(None if authorization is None else authorization.decode("latin-1"))
        except AuthenticationError as exc:
            return exc
        return None

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status_code: int, field: str, rule: str,
                      headers: dict[str, str] | None = None) -> None:
        # the connection is closed after this answer: an unread body would otherwise be read
        # (and thrown away) before the next request on it
        response = error_response(status_code, [(field, rule)], {**(headers or {}), "Connection": "close"})
        await response(scope, receive, send)

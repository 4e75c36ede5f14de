"""Who may call what (bearer tokens) and the security headers every response carries.

- Admin routes need the admin token (`ServeConfig.admin_token`).
- Read routes (results, the experiment list, detailed readiness) need the read token
  (`ServeConfig.read_token`) or the admin token. With neither configured they are closed.
- `/metrics` needs the metrics token (`ServeConfig.metrics_token`) when one is set and
  is open otherwise; it carries the ids of running experiments, variant and model names.
- `/v1/recommend`, `/v1/events`, `/healthz`, `/readyz` (summary only) and `/openapi.json`
  are open; none of them reveals experiment ids, model names or database addresses.
- A 401 never says whether a token is configured on the server.

See docs/security.md.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abrec.serve.config import ADMIN_TOKEN_ENV, READ_TOKEN_ENV, ServeConfig
from abrec.serve.services import Config

_bearer = HTTPBearer(
    auto_error=False, description=f"{ADMIN_TOKEN_ENV} (admin and reads) or {READ_TOKEN_ENV}"
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def token_matches(cred: HTTPAuthorizationCredentials | None, *tokens: SecretStr | None) -> bool:
    """True when `cred` is a bearer credential equal to one of the configured `tokens`."""
    if cred is None or cred.scheme.lower() != "bearer":
        return False
    given = cred.credentials.encode("utf-8", "surrogatepass")
    ok = False
    for token in tokens:
        if token is not None:  # compare with every token: no early exit on a match
            ok |= secrets.compare_digest(given, token.get_secret_value().encode())
    return ok


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(
        401,
        f"{what} need 'Authorization: Bearer <token>' with a valid token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_admin(config: Config, cred: Credentials) -> None:
    """401 unless the request carries `Authorization: Bearer <admin token>`."""
    if not token_matches(cred, config.admin_token):
        raise _unauthorized("admin routes")


async def require_read(config: Config, cred: Credentials) -> None:
    """401 unless the request carries the read token or the admin token."""
    if not token_matches(cred, config.read_token, config.admin_token):
        raise _unauthorized("read routes")


def require_metrics(config: Config, cred: Credentials) -> None:
    """401 unless no metrics token is configured or the request carries it."""
    if config.metrics_token is not None and not token_matches(cred, config.metrics_token):
        raise _unauthorized("/metrics (ABREC_METRICS_TOKEN is set)")


async def may_read(request: Request, config: ServeConfig) -> bool:
    """Whether `request` carries the read or admin token (for routes open to all that
    show more to readers, such as `/readyz`)."""
    cred = await _bearer(request)
    return token_matches(cred, config.read_token, config.admin_token)


#: Content-Security-Policy of API replies (JSON: nothing may load, nothing may frame it).
CSP_API = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Content-Security-Policy of the Swagger UI page (`/docs`, only when `ServeConfig.docs`):
#: FastAPI's page loads its script and style from jsDelivr and runs one inline script.
CSP_DOCS = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: Content-Security-Policy of the dashboard page (`/ui`): its own script, style sheet and
#: read API only (same origin); no inline script or style, nothing from elsewhere.
CSP_UI = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding `SECURITY_HEADERS` and a Content-Security-Policy to
    every HTTP response (headers the app set itself are kept).

    The header lines are encoded once; a response gets those whose names it lacks."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths
        base = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()
        ]
        self._api = [*base, (b"content-security-policy", CSP_API.encode("latin-1"))]
        self._docs = [*base, (b"content-security-policy", CSP_DOCS.encode("latin-1"))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._docs if scope.get("path") in self.docs_paths else self._api

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {bytes(k).lower() for k, _ in headers}
                headers += [h for h in extra if h[0] not in have]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLargeError(HTTPException):
    """A request body went over `ServeConfig.max_body_bytes` while it streamed in."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, body_too_large_message(limit))


def body_too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes; send smaller requests"


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for a request body over `max_body_bytes`, before parsing.

    A `Content-Length` over the limit is answered at once, unread; a body without one
    (chunked) is counted as it streams and the read that crosses the limit raises
    `BodyTooLargeError` (an `HTTPException`, so FastAPI's handlers answer it).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"detail": body_too_large_message(self.max_body_bytes)}
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(
            scope, receive, send
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        digits = (declared or "").strip()
        if digits.isascii() and digits.isdigit() and int(digits) > self.max_body_bytes:
            await self._reject(scope, receive, send)
            return
        limit = self.max_body_bytes
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._reject(scope, receive, send)


__all__ = [
    "CSP_API",
    "CSP_DOCS",
    "CSP_UI",
    "SECURITY_HEADERS",
    "BodyLimitMiddleware",
    "BodyTooLargeError",
    "SecurityHeadersMiddleware",
    "may_read",
    "require_admin",
    "require_metrics",
    "require_read",
    "token_matches",
]

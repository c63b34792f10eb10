"""ASGI middleware around the whole app: security headers, and the guard in front of `/api/`.

`SecurityHeaders` adds the Content-Security-Policy and friends to every HTTP response.
`ApiGuard` checks every `/api/` request and WebSocket before it reaches a route: the
Origin of WebSockets and of requests that change state, a body-size ceiling, and the
device token from the cookie. Only `POST /api/pair` goes without a token. The session
it finds is in `scope["state"]["session"]`, which routes read as `request.state.session`.
"""

from __future__ import annotations

import json
import logging
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.auth import UNAUTHENTICATED_CLOSE_CODE, Authenticator, cookie_name
from agent.protocol import error_message

log = logging.getLogger("ringboard.http")

# Pyodide compiles WebAssembly, which needs 'wasm-unsafe-eval'; nothing else is relaxed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; worker-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    # Other sites may not load the agent's responses as images, scripts or media.
    "cross-origin-resource-policy": "same-origin",
}

# One year, the value browsers' HSTS preload rules ask for; sent over HTTPS only.
HSTS = "max-age=31536000"

API_PREFIX = "/api/"
PUBLIC_API_PATHS = frozenset({"/api/pair"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# No API request needs more; settings and CRM choices are small JSON objects.
MAX_API_BODY = 64 * 1024


class ApiError(Exception):
    """A rejected API request, with its HTTP status and protocol error code."""

    def __init__(self, status: int, code: str, **params: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.params = params

    def response(self) -> JSONResponse:
        """Return the JSON error response."""
        return error_response(self.status, self.code, **self.params)


def error_response(status: int, code: str, **params: Any) -> JSONResponse:
    """Return an `error` message of the protocol as an HTTP response."""
    headers = {"Retry-After": str(params["retry_after"])} if "retry_after" in params else None
    return JSONResponse(error_message(code, **params), status_code=status, headers=headers)


async def read_json(request: Request, limit: int) -> Any:
    """Read a request's JSON body of at most `limit` bytes, or raise ApiError."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", expected="application/json")

    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, "payload_too_large", limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", limit=limit)

    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_request", field="body", reason="invalid_json") from None


class SecurityHeaders:
    """Add the security headers to every HTTP response, and HSTS when served over TLS."""

    def __init__(self, app: ASGIApp, tls: bool) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
        if tls:
            self.headers.append((b"strict-transport-security", HSTS.encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope["path"].startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in self.headers if name not in present]
                if is_api and b"cache-control" not in present:
                    # Calls are personal data: no browser or proxy cache may keep them.
                    added.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ApiGuard:
    """Reject `/api/` requests from other origins or without a valid device token."""

    def __init__(self, app: ASGIApp, auth: Authenticator, tls: bool) -> None:
        self.app = app
        self.auth = auth
        self.cookie = cookie_name(tls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        client = _client(scope)

        if scope["type"] == "websocket":
            await self._guard_websocket(scope, receive, send, headers, client)
            return

        if scope["method"] not in SAFE_METHODS and not _same_origin(scope, headers):
            log.warning(
                "%s %s from %s rejected: Origin %s does not match this agent",
                scope["method"], scope["path"], client, headers.get("origin"),
            )
            await error_response(403, "origin_rejected")(scope, receive, send)
            return
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_API_BODY:
            await error_response(413, "payload_too_large", limit=MAX_API_BODY)(scope, receive, send)
            return

        session = None
        if scope["path"] not in PUBLIC_API_PATHS:
            session = self.auth.session(_cookie(headers, self.cookie))
            if session is None:
                log.info("%s %s from %s rejected: no valid device token", scope["method"], scope["path"], client)
                await error_response(401, "unauthenticated")(scope, receive, send)
                return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)

    async def _guard_websocket(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], client: str
    ) -> None:
        if not _same_origin(scope, headers):
            # Rejected before the handshake completes: the browser sees a failed connection.
            log.warning("WebSocket from %s rejected: Origin %s does not match this agent", client, headers.get("origin"))
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return

        session = self.auth.session(_cookie(headers, self.cookie))
        if session is None:
            # Browsers see a close code only after the handshake, so it is accepted first.
            log.info("WebSocket %s from %s closed: no valid device token", scope["path"], client)
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": UNAUTHENTICATED_CLOSE_CODE, "reason": "unauthenticated"})
            return
        scope.setdefault("state", {})["session"] = session
        await self.app(scope, receive, send)


def _cookie(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(scope: Scope, headers: dict[str, str]) -> bool:
    """Return whether the request's Origin is this agent; requests without one are not from a page."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    secure = scope.get("scheme") in ("https", "wss")
    return parts.scheme == ("https" if secure else "http") and parts.netloc == headers.get("host", "")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown client"

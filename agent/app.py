"""The Starlette application: the page, pairing, the event WebSocket, history and health.

`agent.middleware` wraps it: security headers on every response, and the device-token
and Origin checks in front of every `/api/` route except `POST /api/pair`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.auth import UNAUTHENTICATED_CLOSE_CODE, Authenticator, LiveConnection, Rejected, cookie_name, device_cookie
from agent.bus import EventBus
from agent.history import MAX_PAGE
from agent.middleware import API_PREFIX, ApiError, ApiGuard, SecurityHeaders, error_response, read_json
from agent.protocol import error_message, snapshot_message
from agent.service import CallService
from agent.user_settings import SettingsError, validate_settings, with_defaults
from agent.users import Session
from agent.webui import ensure_ui_zip

log = logging.getLogger("ringboard.http")

WEBAPP_DIR = Path(__file__).resolve().parent.parent / "webapp"


def _pinned_pyodide_version() -> str:
    """Read the Pyodide version from webapp/pyodide.lock, which scripts/setup installs."""
    for line in (WEBAPP_DIR / "pyodide.lock").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "PYODIDE_VERSION":
            return value.strip().strip('"')
    raise RuntimeError(f"PYODIDE_VERSION is missing from {WEBAPP_DIR / 'pyodide.lock'}")


PYODIDE_VERSION = _pinned_pyodide_version()
PYODIDE_DIR = WEBAPP_DIR / "vendor" / "pyodide" / PYODIDE_VERSION
PYODIDE_BASE = f"/vendor/pyodide/{PYODIDE_VERSION}/"
IMMUTABLE = "public, max-age=31536000, immutable"

# `{"pin": "123456789"}` is 18 bytes; a kilobyte leaves room for spacing and nothing more.
MAX_PAIR_BODY = 1024

# Calls per history page when the page gives no `limit`.
DEFAULT_HISTORY_PAGE = 50

# Event numbers are SQLite INTEGERs; a larger `since` or `before` is invalid, not a crash.
MAX_SEQ = 2**63 - 1

HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}

# Settings are five small fields; a kilobyte leaves room for spacing and nothing more.
MAX_SETTINGS_BODY = 1024

# An action's parameters hold at most a note (cut to 4000 characters by the runner).
MAX_ACTION_BODY = 16 * 1024


class ImmutableFiles(StaticFiles):
    """Static files under a versioned path, cached by browsers for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def create_app(
    service: CallService, bus: EventBus, data_dir: Path, auth: Authenticator, *, tls: bool = False
) -> Starlette:
    """Build the application around a running call service; `tls` when served over HTTPS."""
    ui_zip = ensure_ui_zip(data_dir)
    shell = (WEBAPP_DIR / "index.html").read_text(encoding="utf-8").replace("{{PYODIDE_BASE}}", PYODIDE_BASE)

    async def index(request: Request) -> Response:
        return Response(shell, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    def webapp_file(name: str, media_type: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return FileResponse(WEBAPP_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"})

        return Route(f"/app/{name}" if name != "sw.js" else "/sw.js", endpoint)

    async def ui_archive(request: Request) -> Response:
        return FileResponse(ui_zip, media_type="application/zip", headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        health = service.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    allowed = [ipaddress.ip_network(network) for network in service.config.http.metrics_allow]

    async def metrics(request: Request) -> Response:
        client = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is None or not any(address in network for network in allowed):
            log.warning("GET /metrics from %s rejected: not in [http] metrics_allow", client)
            return PlainTextResponse("forbidden\n", status_code=403)
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    async def pair(request: Request) -> Response:
        return await _pair(request, auth, tls)

    async def session_info(request: Request) -> Response:
        return JSONResponse(_session_json(request.state.session))

    async def history_page(request: Request) -> Response:
        session: Session = request.state.session
        try:
            before = _optional_int(request.query_params.get("before"), "before")
            limit = _optional_int(request.query_params.get("limit"), "limit")
        except ApiError as error:
            return error.response()
        if limit == 0:
            return error_response(400, "bad_request", field="limit", reason="out_of_range")
        page_size = min(limit or DEFAULT_HISTORY_PAGE, MAX_PAGE)
        calls = service.history.recent_calls(page_size, _visible_extensions(session), before)
        next_before = calls[-1]["_seq"] if len(calls) == page_size else None
        for call in calls:
            call.pop("_seq", None)
        return JSONResponse({"calls": calls, "next_before": next_before})

    async def settings_endpoint(request: Request) -> Response:
        session: Session = request.state.session
        if request.method == "GET":
            return JSONResponse(with_defaults(auth.store.settings(session.user_id)))

        try:
            settings = validate_settings(await read_json(request, MAX_SETTINGS_BODY))
        except ApiError as error:
            return error.response()
        except SettingsError as error:
            return error_response(400, "bad_request", field=error.field, reason=error.reason)

        auth.store.save_settings(session.user_id, settings)
        log.info("user %s saved page settings from device %s", session.user_name, session.device_id)
        bus.publish({"type": "settings", "settings": settings}, user=session.user_name)
        return JSONResponse(settings)

    async def run_action(request: Request) -> Response:
        session: Session = request.state.session
        call_id = request.path_params["call_id"]
        call = _visible_call(service, session, call_id)
        if call is None:
            return error_response(404, "not_found", path=request.url.path)

        try:
            body = await read_json(request, MAX_ACTION_BODY)
            contact_id, params = _action_body(body)
        except ApiError as error:
            return error.response()

        connector = request.path_params["connector"]
        action = request.path_params["action"]
        log.info("user %s runs %s of connector %s on call %s", session.user_name, action, connector, call_id)
        result = await service.actions.run_action(call, connector, action, contact_id, params)
        return JSONResponse(result.to_json())

    async def choose_contact(request: Request) -> Response:
        session: Session = request.state.session
        try:
            number, connector, contact = _choice_body(await read_json(request, MAX_SETTINGS_BODY))
        except ApiError as error:
            return error.response()

        try:
            service.lookup.choose(number, connector, contact)
        except ValueError as error:
            log.info("user %s: contact choice rejected: %s", session.user_name, error)
            return error_response(400, "bad_request", field="contact", reason="invalid")
        return JSONResponse({"number": number, "connector": connector, "contact": contact})

    async def mark_done(request: Request) -> Response:
        session: Session = request.state.session
        call_id = request.path_params["call_id"]
        call = _visible_call(service, session, call_id)
        if call is None:
            return error_response(404, "not_found", path=request.url.path)
        marked = service.mark_done(call_id, f"user {session.user_name}")
        return JSONResponse(marked or call)

    async def events(websocket: WebSocket) -> None:
        await _serve_events(websocket, service, bus, auth)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if request.url.path.startswith(API_PREFIX):
            code = HTTP_ERROR_CODES.get(error.status_code, "bad_request")
            return error_response(error.status_code, code, path=request.url.path)
        return PlainTextResponse(str(error.detail), status_code=error.status_code, headers=error.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Open WebSockets would keep uvicorn from stopping; end them first.
        bus.close_all()

    routes = [
        Route("/", index),
        webapp_file("boot.js", "text/javascript"),
        webapp_file("style.css", "text/css"),
        Route("/app/ui.zip", ui_archive),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/pair", pair, methods=["POST"]),
        Route("/api/session", session_info),
        Route("/api/history", history_page),
        Route("/api/settings", settings_endpoint, methods=["GET", "PUT"]),
        Route("/api/calls/{call_id}/actions/{connector}/{action}", run_action, methods=["POST"]),
        Route("/api/calls/{call_id}/done", mark_done, methods=["POST"]),
        Route("/api/contacts/choice", choose_contact, methods=["POST"]),
        WebSocketRoute("/api/events", events),
        Mount("/vendor/pyodide/" + PYODIDE_VERSION, ImmutableFiles(directory=PYODIDE_DIR, check_dir=False)),
    ]
    if (WEBAPP_DIR / "sw.js").is_file():
        routes.append(webapp_file("sw.js", "text/javascript"))
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders, tls=tls), Middleware(ApiGuard, auth=auth, tls=tls)],
        exception_handlers={HTTPException: http_error},
    )


async def _pair(request: Request, auth: Authenticator, tls: bool) -> Response:
    """Check the PIN of `POST /api/pair`; on success set the device cookie."""
    address = request.client.host if request.client else "unknown"
    try:
        body = await read_json(request, MAX_PAIR_BODY)
    except ApiError as error:
        return error.response()
    if not isinstance(body, dict):
        return error_response(400, "bad_request", field="body", reason="not_an_object")
    unknown = sorted(set(body) - {"pin"})
    if unknown:
        return error_response(400, "bad_request", field=unknown[0], reason="unknown_field")
    pin = body.get("pin")
    if pin is None:
        return error_response(400, "bad_request", field="pin", reason="missing")
    if not isinstance(pin, str):
        return error_response(400, "bad_request", field="pin", reason="wrong_type")

    result = await auth.pair(pin, address, request.headers.get("user-agent", ""))
    if isinstance(result, Rejected):
        return error_response(result.status, result.code, **result.params)

    # A browser that pairs again (for another user, say) gives up its old device.
    previous = request.cookies.get(cookie_name(tls))
    if previous:
        auth.revoke(previous)
    response = JSONResponse(_session_json(result.session), status_code=200)
    response.headers["set-cookie"] = device_cookie(result.token, tls)
    return response


async def _serve_events(websocket: WebSocket, service: CallService, bus: EventBus, auth: Authenticator) -> None:
    """Send a snapshot, then every live message of the user's extensions, until either side closes."""
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "unknown client"
    session: Session = websocket.state.session

    await websocket.accept()
    try:
        since = _optional_int(websocket.query_params.get("since"), "since")
    except ApiError:
        await websocket.send_json(error_message("bad_request", field="since"))
        await websocket.close(code=1008)
        return

    extensions = _visible_extensions(session)
    live = auth.connect(session)
    # Subscribe before reading the snapshot, so nothing falls between the two.
    subscriber = bus.subscribe(
        f"{client} (device {session.device_id}, user {session.user_name})", extensions, session.user_name
    )
    try:
        seq, active, history = service.snapshot_parts(since, extensions)
        snapshot = snapshot_message(seq, active, history, service.health())
        snapshot["cards"] = service.snapshot_cards(active + history)
        snapshot["settings"] = with_defaults(auth.store.settings(session.user_id))
        snapshot["caller_actions"] = service.actions.unknown_caller_actions()
        await websocket.send_json(snapshot)
        await _pump(websocket, subscriber.queue, seq, live)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        bus.unsubscribe(subscriber)
        auth.disconnect(live)


# Markers the connection's watchers put into its queue, so the pump awaits the queue
# alone instead of creating a task and an asyncio.wait per message.
_DISCONNECTED = object()
_REVOKED = object()


async def _pump(
    websocket: WebSocket, queue: asyncio.Queue[str | None], snapshot_seq: int, live: LiveConnection
) -> None:
    async def watch(awaitable: Any, marker: object) -> None:
        # The marker goes in however the awaitable ends, as asyncio.wait returned on an
        # exception too; otherwise the pump would wait for a message that never comes.
        try:
            await awaitable
        finally:
            while True:
                try:
                    queue.put_nowait(marker)  # type: ignore[arg-type]
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()  # The connection ends; an unsent message no longer matters.

    receiver = asyncio.create_task(watch(_drain_incoming(websocket), _DISCONNECTED))
    revoked = asyncio.create_task(watch(live.closed.wait(), _REVOKED))
    try:
        while True:
            message = await queue.get()
            if message is _DISCONNECTED:
                return
            if message is _REVOKED:
                await websocket.close(code=UNAUTHENTICATED_CLOSE_CODE, reason=live.reason)
                return
            if message is None:
                await websocket.close(code=1001)
                return
            if _seq_of(message) is not None and _seq_of(message) <= snapshot_seq:
                continue  # Already part of the snapshot.
            await websocket.send_text(message)
    finally:
        receiver.cancel()
        revoked.cancel()


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read and ignore what the page sends, so a close from its side is noticed."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _seq_of(encoded: str) -> int | None:
    # Messages are encoded by the bus with "seq" right after "type" for call events.
    marker = encoded.find('"seq":')
    if marker == -1 or not encoded.startswith('{"type":"call"'):
        return None
    end = encoded.find(",", marker)
    value = encoded[marker + 6 : end]
    return int(value) if value.isdigit() else None


def _visible_call(service: CallService, session: Session, call_id: str) -> dict[str, Any] | None:
    """Return a stored call of one of the user's extensions, or None (unknown and foreign calls look alike)."""
    call = service.history.call(call_id)
    if call is None:
        return None
    extensions = _visible_extensions(session)
    if extensions is not None and call["extension"] not in extensions:
        return None
    return call


def _action_body(body: Any) -> tuple[str | None, dict[str, Any]]:
    """Return (contact_id, params) of an action request body, or raise ApiError."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", field="body", reason="not_an_object")
    unknown = sorted(set(body) - {"contact_id", "params"})
    if unknown:
        raise ApiError(400, "bad_request", field=unknown[0], reason="unknown_field")
    contact_id = body.get("contact_id")
    if contact_id is not None and not isinstance(contact_id, str):
        raise ApiError(400, "bad_request", field="contact_id", reason="wrong_type")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", field="params", reason="wrong_type")
    return contact_id, params


def _choice_body(body: Any) -> tuple[str, str, str]:
    """Return (number, connector, contact) of a contact choice body, or raise ApiError."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", field="body", reason="not_an_object")
    unknown = sorted(set(body) - {"number", "connector", "contact"})
    if unknown:
        raise ApiError(400, "bad_request", field=unknown[0], reason="unknown_field")
    values = []
    for name in ("number", "connector", "contact"):
        value = body.get(name)
        if value is None:
            raise ApiError(400, "bad_request", field=name, reason="missing")
        if not isinstance(value, str) or not value:
            raise ApiError(400, "bad_request", field=name, reason="wrong_type")
        values.append(value)
    return values[0], values[1], values[2]


def _session_json(session: Session) -> dict[str, Any]:
    extensions = None if session.extensions is None else sorted(session.extensions)
    return {"user": session.user_name, "role": session.role, "extensions": extensions, "device": session.device_id}


def _visible_extensions(session: Session) -> set[str] | None:
    return None if session.extensions is None else set(session.extensions)


def _optional_int(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit():
        raise ApiError(400, "bad_request", field=field, reason="not_a_whole_number")
    if len(value) > len(str(MAX_SEQ)) or int(value) > MAX_SEQ:
        raise ApiError(400, "bad_request", field=field, reason="out_of_range")
    return int(value)

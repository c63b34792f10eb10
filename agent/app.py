"""The Starlette application: the page, the Pyodide runtime, the event WebSocket and health."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.bus import EventBus
from agent.history import MAX_PAGE
from agent.protocol import error_message, snapshot_message
from agent.service import CallService
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

# Pyodide compiles WebAssembly, which needs 'wasm-unsafe-eval'; nothing else is relaxed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; worker-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SHELL_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"


class ImmutableFiles(StaticFiles):
    """Static files under a versioned path, cached by browsers for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def create_app(service: CallService, bus: EventBus, data_dir: Path) -> Starlette:
    """Build the application around a running call service."""
    ui_zip = ensure_ui_zip(data_dir)
    shell = (WEBAPP_DIR / "index.html").read_text(encoding="utf-8").replace("{{PYODIDE_BASE}}", PYODIDE_BASE)

    async def index(request: Request) -> Response:
        return Response(shell, media_type="text/html; charset=utf-8", headers=SHELL_HEADERS)

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

    async def history_page(request: Request) -> Response:
        try:
            before = _optional_int(request.query_params.get("before"))
            limit = _optional_int(request.query_params.get("limit")) or 50
        except ValueError as error:
            return JSONResponse(error_message("bad_request", field=str(error)), status_code=400)
        calls = service.history.recent_calls(min(limit, MAX_PAGE), None, before)
        next_before = calls[-1]["_seq"] if len(calls) == min(limit, MAX_PAGE) else None
        for call in calls:
            call.pop("_seq", None)
        return JSONResponse({"calls": calls, "next_before": next_before})

    async def events(websocket: WebSocket) -> None:
        await _serve_events(websocket, service, bus)

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
        Route("/api/history", history_page),
        WebSocketRoute("/api/events", events),
        Mount("/vendor/pyodide/" + PYODIDE_VERSION, ImmutableFiles(directory=PYODIDE_DIR, check_dir=False)),
    ]
    if (WEBAPP_DIR / "sw.js").is_file():
        routes.append(webapp_file("sw.js", "text/javascript"))
    return Starlette(routes=routes, lifespan=lifespan)


async def _serve_events(websocket: WebSocket, service: CallService, bus: EventBus) -> None:
    """Send a snapshot, then every live message, until either side closes."""
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "unknown client"
    if not _same_origin(websocket):
        log.warning("WebSocket from %s rejected: Origin %s does not match this agent", client, websocket.headers.get("origin"))
        await websocket.close(code=1008)
        return

    await websocket.accept()
    try:
        since = _optional_int(websocket.query_params.get("since"))
    except ValueError:
        await websocket.send_json(error_message("bad_request", field="since"))
        await websocket.close(code=1008)
        return

    # Subscribe before reading the snapshot, so nothing falls between the two.
    subscriber = bus.subscribe(client)
    try:
        seq, active, history = service.snapshot_parts(since, None)
        await websocket.send_json(snapshot_message(seq, active, history, service.health()))
        await _pump(websocket, subscriber.queue, seq)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        bus.unsubscribe(subscriber)


async def _pump(websocket: WebSocket, queue: asyncio.Queue[str | None], snapshot_seq: int) -> None:
    receiver = asyncio.create_task(_drain_incoming(websocket))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                return
            message = getter.result()
            if message is None:
                await websocket.close(code=1001)
                return
            if _seq_of(message) is not None and _seq_of(message) <= snapshot_seq:
                continue  # Already part of the snapshot.
            await websocket.send_text(message)
    finally:
        receiver.cancel()


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


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # Not a browser; pairing will authenticate such clients.
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc == host


def _optional_int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise ValueError("not a whole number")
    return int(value)


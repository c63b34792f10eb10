"""The page in Debian's Chromium: shell, Pyodide start-up, live calls and reconnection.

A test-only Starlette app on 127.0.0.1 serves the shell (with the Pyodide path
filled in and the production Content-Security-Policy), /app/*, /sw.js, the vendored
Pyodide, a scripted /api/events WebSocket that the test drives message by message, and
a scripted POST /api/pair.
Run with `-s` to see the start-up timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
import uvicorn  # noqa: E402
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import FileResponse, JSONResponse, Response  # noqa: E402
from starlette.routing import Mount, Route, WebSocketRoute  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402

from agent.webui import build_ui_zip  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
WEBAPP_DIR = ROOT / "webapp"
PYODIDE_VERSION = "314.0.8"
PYODIDE_DIR = WEBAPP_DIR / "vendor" / "pyodide" / PYODIDE_VERSION
PYODIDE_BASE = f"/vendor/pyodide/{PYODIDE_VERSION}/"
CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# The policy the agent serves the shell with; the page must run under it unchanged.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:"
)

# Starting Python takes about 2-3 s on two cores; the margin is for a loaded machine.
UI_LIVE_TIMEOUT_MS = 20_000
STEP_TIMEOUT_MS = 5_000

CALL_ID = "c-8a7b6c5d4e3f2a1b"
EARLIER_CALL_ID = "c-1111111111111111"


def call_object(call_id: str, state: str, **changes: Any) -> dict[str, Any]:
    """Return a protocol call object for extension 201 from Max Muster."""
    call = {
        "id": call_id,
        "extension": "201",
        "direction": "inbound",
        "state": state,
        "remote": {
            "number": "+41441234567",
            "e164": "+41441234567",
            "display": "044 123 45 67",
            "name": "Max Muster",
            "uri": "sip:+41441234567@pbx.local",
            "withheld": False,
        },
        "called": None,
        "started_at": "2026-12-04T09:20:00.000Z",
        "answered_at": None,
        "ended_at": None,
        "duration": None,
        "outcome": None,
        "confidence": None,
        "outcome_reason": None,
        "answered_by": None,
        "transferred_to": None,
    }
    call.update(changes)
    return call


def snapshot(seq: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a snapshot with no live call and every subscription healthy."""
    return {
        "type": "snapshot",
        "version": 1,
        "seq": seq,
        "active": [],
        "history": history,
        "health": {
            "status": "ok",
            "subscriptions": [
                {"extension": "201", "state": "active", "since": "2026-12-04T09:00:00.000Z", "reason": None}
            ],
        },
    }


class EventScript:
    """The server side of /api/events, driven from the test thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reset()

    def reset(self) -> None:
        """Forget connections and start the next one with a fresh snapshot."""
        self.accepted_since: list[str | None] = []
        self.refused = 0
        self.refuse_next = 0
        self.next_snapshot: dict[str, Any] = snapshot(100, [])
        self.serve_ui_zip = True
        self.content_security_policy = CONTENT_SECURITY_POLICY
        self.paired = True
        self.pair_replies: list[tuple[int, dict[str, Any]]] = []
        self.pair_requests: list[Any] = []
        self.unauthenticated = 0
        self._current: WebSocket | None = None

    async def serve(self, websocket: WebSocket) -> None:
        if not self.paired:
            # As the agent does without a valid device token: accept, then close with 4401.
            self.unauthenticated += 1
            await websocket.accept()
            await websocket.close(code=4401, reason="unauthenticated")
            return

        if self.refuse_next > 0:
            self.refuse_next -= 1
            self.refused += 1
            await websocket.close(code=1013)  # Before accept: the handshake fails.
            return

        await websocket.accept()
        self.accepted_since.append(websocket.query_params.get("since"))
        self._current = websocket
        await websocket.send_json(self.next_snapshot)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass

    def send(self, message: dict[str, Any]) -> None:
        """Send one message on the open connection."""
        self._run(self._send(json.dumps(message)))

    def drop(self) -> None:
        """Close the open connection from the server side, as a restarting agent does."""
        self._run(self._close())

    def run_close(self, code: int) -> None:
        """Close the open connection with `code`, as the agent does for a revoked device."""
        self._run(self._close(code))

    async def _send(self, text: str) -> None:
        assert self._current is not None, "no open /api/events connection"
        await self._current.send_text(text)

    async def _close(self, code: int = 1012) -> None:
        assert self._current is not None, "no open /api/events connection"
        websocket, self._current = self._current, None
        await websocket.close(code=code)

    def _run(self, coroutine: Any) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=5)


def create_app(script: EventScript, ui_zip: Path) -> Starlette:
    """Serve the shell and the UI as the agent does, with `script` behind /api/events."""
    shell = (WEBAPP_DIR / "index.html").read_text(encoding="utf-8").replace("{{PYODIDE_BASE}}", PYODIDE_BASE)
    no_cache = {"Cache-Control": "no-cache"}

    async def index(request: Request) -> Response:
        headers = {"Content-Security-Policy": script.content_security_policy, **no_cache}
        return Response(shell, media_type="text/html; charset=utf-8", headers=headers)

    async def boot(request: Request) -> Response:
        return FileResponse(WEBAPP_DIR / "boot.js", media_type="text/javascript", headers=no_cache)

    async def style(request: Request) -> Response:
        return FileResponse(WEBAPP_DIR / "style.css", media_type="text/css", headers=no_cache)

    async def archive(request: Request) -> Response:
        if not script.serve_ui_zip:
            return Response("not found", status_code=404)
        return FileResponse(ui_zip, media_type="application/zip", headers=no_cache)

    async def service_worker(request: Request) -> Response:
        return FileResponse(WEBAPP_DIR / "sw.js", media_type="text/javascript", headers=no_cache)

    async def pair(request: Request) -> Response:
        script.pair_requests.append(await request.json())
        status, body = script.pair_replies.pop(0)
        response = JSONResponse(body, status_code=status)
        if status == 200:
            script.paired = True
            response.set_cookie("ringboard_device", "test-token", httponly=True, samesite="strict")
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        script.loop = asyncio.get_running_loop()
        yield

    return Starlette(
        routes=[
            Route("/", index),
            Route("/app/boot.js", boot),
            Route("/app/style.css", style),
            Route("/app/ui.zip", archive),
            Route("/sw.js", service_worker),
            Route("/api/pair", pair, methods=["POST"]),
            WebSocketRoute("/api/events", script.serve),
            Mount(PYODIDE_BASE.rstrip("/"), StaticFiles(directory=PYODIDE_DIR)),
        ],
        lifespan=lifespan,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EventScript]]:
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip(f"Pyodide {PYODIDE_VERSION} is not unpacked at {PYODIDE_DIR}; run scripts/setup")

    ui_zip = build_ui_zip(WEBAPP_DIR / "ui", tmp_path_factory.mktemp("ui") / "ui.zip")
    script = EventScript()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    config = uvicorn.Config(
        create_app(script, ui_zip), log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: uvicorn_server.started, 10, "the test server did not start")

    yield f"http://127.0.0.1:{port}/", script

    uvicorn_server.should_exit = True
    thread.join(timeout=10)
    listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def events(server: tuple[str, EventScript]) -> EventScript:
    script = server[1]
    script.reset()
    return script


# Playwright injects this before the page's own scripts, and the page's CSP does not
# apply to it, so it records every violation, including ones a library catches.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations of one page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def csp_violations(self) -> list[str]:
        logged = [text for text in self.errors if "Content Security Policy" in text]
        return logged + self.page.evaluate("window.__cspViolations ?? []")


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def open_page(browser: Browser, url: str, locale: str = "en-US") -> tuple[Page, PageProblems]:
    context = browser.new_context(locale=locale, timezone_id="Europe/Zurich")
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    problems = PageProblems(page)
    page.goto(url)
    return page, problems


def mark_ms(page: Page, name: str) -> float:
    return page.evaluate("(name) => performance.getEntriesByName(name)[0]?.startTime ?? -1", name)


def report_timings(label: str, page: Page) -> None:
    paint = mark_ms(page, "first-contentful-paint")
    pyodide = mark_ms(page, "ringboard:pyodide")
    live = mark_ms(page, "ringboard:live")
    print(f"\n{label}: shell painted {paint:.0f} ms, Pyodide loaded {pyodide:.0f} ms, UI live {live:.0f} ms")


def test_call_rings_connects_and_ends(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    url = server[0]
    events.next_snapshot = snapshot(
        100,
        [
            call_object(
                EARLIER_CALL_ID,
                "ended",
                started_at="2025-01-15T08:00:00.000Z",
                ended_at="2025-01-15T08:00:20.000Z",
                outcome="missed",
                confidence="certain",
            )
        ],
    )
    page, problems = open_page(browser, url)

    expect(page.locator("h1")).to_have_text("Ringboard")
    expect(page.locator("#status")).to_have_text("Connecting…")
    expect(page.locator("html[data-ringboard=live]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
    expect(page.locator("#loading")).to_be_hidden()
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    report_timings("first load", page)

    active = page.locator("#active-calls [data-call-id]")
    history = page.locator("#call-history [data-call-id]")
    expect(history).to_have_count(1)
    expect(history.first).to_have_attribute("data-outcome", "missed")
    # 08:00 UTC is 09:00 in Zurich in January: Python in the page uses the browser's zone.
    expect(history.first.locator(".call__time")).to_have_text("15.01.2025 09:00")

    events.send({"type": "call", "seq": 101, "event": "ringing", "call": call_object(CALL_ID, "ringing")})
    row = page.locator(f"#active-calls [data-call-id={CALL_ID}]")
    expect(row).to_have_attribute("data-state", "ringing", timeout=STEP_TIMEOUT_MS)
    expect(row).to_have_attribute("data-outcome", "")
    expect(row).to_contain_text("Max Muster")
    expect(row).to_contain_text("044 123 45 67")
    expect(row).to_contain_text("Ext. 201")
    expect(row).to_contain_text("Ringing")
    expect(page).to_have_title("(1) Ringboard")

    answered_at = "2026-12-04T09:20:04.500Z"
    connected = call_object(CALL_ID, "connected", answered_at=answered_at)
    # Answered three seconds ago, so the talk time is live and past 0:02.
    connected["answered_at"] = page.evaluate("new Date(Date.now() - 3000).toISOString()")
    events.send({"type": "call", "seq": 102, "event": "connected", "call": connected})
    expect(row).to_have_attribute("data-state", "connected", timeout=STEP_TIMEOUT_MS)
    expect(row).to_contain_text("Connected")
    duration = row.locator(".call__duration")
    expect(duration).to_have_text("0:03", timeout=STEP_TIMEOUT_MS)
    expect(duration).to_have_text("0:04", timeout=STEP_TIMEOUT_MS)

    ended = call_object(
        CALL_ID,
        "ended",
        answered_at=answered_at,
        ended_at="2026-12-04T09:21:09.780Z",
        duration=65.28,
        outcome="answered",
        confidence="certain",
    )
    events.send({"type": "call", "seq": 103, "event": "ended", "call": ended})
    expect(active).to_have_count(0, timeout=STEP_TIMEOUT_MS)
    expect(history).to_have_count(2)
    expect(history.first).to_have_attribute("data-call-id", CALL_ID)
    expect(history.first).to_have_attribute("data-outcome", "answered")
    expect(history.first).to_have_attribute("data-state", "ended")
    expect(history.first).to_contain_text("Answered")
    expect(history.first).to_contain_text("1:05")
    expect(page.locator("#active-empty")).to_be_visible()
    expect(page).to_have_title("Ringboard")

    # A duplicate of an older event changes nothing.
    events.send({"type": "call", "seq": 102, "event": "connected", "call": connected})
    page.wait_for_timeout(300)
    expect(active).to_have_count(0)

    assert problems.csp_violations() == []
    assert problems.errors == []

    # A second load in the same context, with Pyodide in the browser cache.
    page.reload()
    expect(page.locator("html[data-ringboard=live]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
    report_timings("reload, cached", page)
    page.context.close()


def test_reconnects_after_server_drop(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    url = server[0]
    page, problems = open_page(browser, url)
    status = page.locator("#status")
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)

    ringing = call_object(CALL_ID, "ringing")
    events.send({"type": "call", "seq": 101, "event": "ringing", "call": ringing})
    expect(page.locator(f"#active-calls [data-call-id={CALL_ID}]")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    ended = call_object(CALL_ID, "ended", ended_at="2026-12-04T09:20:30.000Z", outcome="missed", confidence="certain")
    events.send({"type": "call", "seq": 102, "event": "ended", "call": ended})
    expect(page.locator(f"#call-history [data-call-id={CALL_ID}]")).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    # The agent resumes from `since` and sends only what ended after it.
    events.next_snapshot = snapshot(102, [])
    events.drop()
    expect(status).to_have_attribute("data-connection", "offline", timeout=STEP_TIMEOUT_MS)
    expect(status).to_be_enabled()
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    assert events.accepted_since == [None, "102"]
    expect(page.locator(f"#call-history [data-call-id={CALL_ID}]")).to_have_count(1)
    expect(status).to_be_disabled()

    # Two refused attempts push the back-off to 4 s (3-4 s with jitter); a click on
    # the offline status reconnects well before that.
    events.refuse_next = 2
    events.drop()
    wait_until(lambda: events.refused == 2, 10, "the page did not retry twice")
    expect(status).to_have_attribute("data-connection", "offline", timeout=STEP_TIMEOUT_MS)
    clicked = time.monotonic()
    status.click()
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    reconnect_seconds = time.monotonic() - clicked
    assert reconnect_seconds < 2.5, f"reconnect after click took {reconnect_seconds:.1f} s"
    assert len(events.accepted_since) == 3

    assert problems.csp_violations() == []
    page.context.close()


def test_german_browser_gets_german_page(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    page, problems = open_page(browser, server[0], locale="de-CH")

    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator("#active-calls h2")).to_contain_text("Aktive Anrufe")
    expect(page.locator("html[data-ringboard=live]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
    expect(page.locator("#status")).to_have_text("Online", timeout=STEP_TIMEOUT_MS)

    events.send({"type": "call", "seq": 101, "event": "ringing", "call": call_object(CALL_ID, "ringing")})
    row = page.locator(f"#active-calls [data-call-id={CALL_ID}]")
    expect(row).to_contain_text("Klingelt", timeout=STEP_TIMEOUT_MS)
    expect(row).to_contain_text("Nst. 201")

    assert problems.errors == []
    page.context.close()


def test_missing_ui_zip_shows_failure(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    events.serve_ui_zip = False
    page, problems = open_page(browser, server[0])

    expect(page.locator("html[data-ringboard=failed]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
    expect(page.locator("#boot-error")).to_be_visible()
    expect(page.locator("#boot-error")).to_contain_text("Ringboard could not start")
    expect(page.locator("#boot-error-detail")).to_contain_text("HTTP 404")
    expect(page.locator("#loading")).to_be_hidden()
    assert problems.csp_violations() == []
    page.context.close()


def test_csp_without_wasm_shows_failure(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    events.content_security_policy = CONTENT_SECURITY_POLICY.replace(" 'wasm-unsafe-eval'", "")
    page, problems = open_page(browser, server[0])

    expect(page.locator("html[data-ringboard=failed]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
    expect(page.locator("#boot-error-detail")).to_contain_text("'wasm-unsafe-eval'")
    assert any("wasm-eval" in violation for violation in problems.csp_violations())
    page.context.close()


def test_unpaired_browser_pairs_with_pin(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    events.paired = False
    events.pair_replies = [
        (401, {"type": "error", "code": "pin_invalid", "params": {}}),
        (429, {"type": "error", "code": "pairing_locked", "params": {"retry_after": 90}}),
        (200, {"user": "anna", "role": "user", "extensions": ["201"], "device": "d-1a2b3c4d"}),
    ]
    page, problems = open_page(browser, server[0], locale="de-CH")
    form = page.locator("#pairing")
    error = page.locator("#pairing-error")
    status = page.locator("#status")

    expect(form).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
    expect(form.locator("h2")).to_have_text("Diesen Browser koppeln")
    expect(status).to_have_attribute("data-connection", "unpaired")
    expect(status).to_have_text("Nicht gekoppelt")
    expect(page.locator("#active-calls")).to_be_hidden()
    expect(page.locator("#pairing-pin")).to_be_focused()

    page.locator("#pairing-pin").fill("123 456 780")
    page.locator("#pairing-submit").click()
    expect(error).to_have_text("Diese PIN ist nicht gültig.", timeout=STEP_TIMEOUT_MS)

    page.locator("#pairing-pin").fill("123456781")
    page.locator("#pairing-pin").press("Enter")
    expect(error).to_contain_text("Zu viele falsche PINs. Versuchen Sie es nach ", timeout=STEP_TIMEOUT_MS)

    page.locator("#pairing-pin").fill("123456789")
    page.locator("#pairing-submit").click()
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(form).to_be_hidden()
    expect(page.locator("#active-calls")).to_be_visible()
    assert events.pair_requests == [{"pin": "123456780"}, {"pin": "123456781"}, {"pin": "123456789"}]
    assert events.unauthenticated == 1
    assert events.accepted_since == [None]

    events.send({"type": "call", "seq": 101, "event": "ringing", "call": call_object(CALL_ID, "ringing")})
    expect(page.locator(f"#active-calls [data-call-id={CALL_ID}]")).to_contain_text("Klingelt", timeout=STEP_TIMEOUT_MS)

    # Wrong and locked PINs are answers, not failures: the page logs no errors for them.
    assert [text for text in problems.errors if "401" not in text and "429" not in text] == []
    assert problems.csp_violations() == []
    page.context.close()


def test_revoked_browser_clears_calls(browser: Browser, server: tuple[str, EventScript], events: EventScript) -> None:
    page, problems = open_page(browser, server[0])
    expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
    events.send({"type": "call", "seq": 101, "event": "ringing", "call": call_object(CALL_ID, "ringing")})
    row = page.locator(f"[data-call-id={CALL_ID}]")
    expect(row).to_have_count(1, timeout=STEP_TIMEOUT_MS)

    # The agent closes a revoked device's socket with 4401 and refuses it from then on.
    events.paired = False
    events.run_close(4401)

    expect(page.locator("#pairing")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(row).to_have_count(0)
    expect(page.locator("#status")).to_have_attribute("data-connection", "unpaired")
    assert problems.csp_violations() == []
    page.context.close()

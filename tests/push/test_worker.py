"""The service worker webapp/sw.js in Debian's Chromium: push, notifications, clicks, offline shell.

Headless Chromium cannot subscribe to a real push service, so pushes are delivered with
the DevTools command ServiceWorker.deliverPushMessage, with payloads built by the
agent's own code, and the result is read with registration.getNotifications(). A
notification cannot be clicked headless, so the click logic runs inside the real
worker with stand-in clients.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
import uvicorn  # noqa: E402
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, Worker, expect, sync_playwright  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import FileResponse, HTMLResponse, Response  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from agent.protocol import format_time  # noqa: E402
from agent.push.payload import AlertMode, Caller, PushAction, call_payload  # noqa: E402
from agent.webui import build_ui_zip  # noqa: E402
from tests.push.helpers import CALL_ID, call_object  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
WEBAPP_DIR = ROOT / "webapp"
PYODIDE_VERSION = next(
    line.partition("=")[2].strip().strip('"')
    for line in (WEBAPP_DIR / "pyodide.lock").read_text(encoding="utf-8").splitlines()
    if line.partition("=")[0].strip() == "PYODIDE_VERSION"
)
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

# Starting Python in the page takes 2-3 s on two cores; the margin is for a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000
STEP_TIMEOUT = 5.0

# Headless Chromium 156 now and then loses a notification. The worker's push event runs
# and its showNotification() resolves, yet getNotifications() never lists it: 1-4 of 100
# pushes on a loaded two-core machine. So pushes that must show something are delivered
# once more after this long. Showing the same tag again replaces the notification, so
# the second delivery changes nothing else.
REDELIVER_AFTER = 2.0

# A page in the worker's scope with no script of its own, for the push tests.
BLANK_PAGE = "<!doctype html><html lang='en'><meta charset='utf-8'><link rel='icon' href='data:,'><title>blank</title><p>blank</p></html>"

# `ready` resolves while the worker may still be activating, and Chromium drops a push
# delivered through DevTools before activation ends; so this waits for "activated".
REGISTER_WORKER = """
async () => {
  await navigator.serviceWorker.register("/sw.js");
  const worker = (await navigator.serviceWorker.ready).active;
  if (worker.state !== "activated") {
    await new Promise((resolve) => {
      worker.addEventListener("statechange", () => worker.state === "activated" && resolve());
    });
  }
}
"""

READ_NOTIFICATIONS = """
async () => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications();
  return shown.map((n) => ({
    title: n.title, body: n.body, tag: n.tag, data: n.data, renotify: n.renotify,
    silent: n.silent, requireInteraction: n.requireInteraction, icon: n.icon,
  }));
}
"""


class WebappServer:
    """The webapp served as the agent serves it, on 127.0.0.1, in a thread; `stop()` takes it down."""

    def __init__(self, ui_zip: Path) -> None:
        shell = (WEBAPP_DIR / "index.html").read_text(encoding="utf-8").replace("{{PYODIDE_BASE}}", PYODIDE_BASE)
        no_cache = {"Cache-Control": "no-cache"}

        async def index(request: Request) -> Response:
            return HTMLResponse(shell, headers=no_cache)

        def file_route(path: str, file: Path, media_type: str) -> Route:
            async def endpoint(request: Request) -> Response:
                return FileResponse(file, media_type=media_type, headers=no_cache)

            return Route(path, endpoint)

        async def blank(request: Request) -> Response:
            return HTMLResponse(BLANK_PAGE)

        app = Starlette(
            routes=[
                Route("/", index),
                file_route("/app/boot.js", WEBAPP_DIR / "boot.js", "text/javascript"),
                file_route("/app/style.css", WEBAPP_DIR / "style.css", "text/css"),
                file_route("/app/ui.zip", ui_zip, "application/zip"),
                file_route("/sw.js", WEBAPP_DIR / "sw.js", "text/javascript"),
                Route("/blank.html", blank),
                Mount(PYODIDE_BASE.rstrip("/"), StaticFiles(directory=PYODIDE_DIR, check_dir=False)),
            ]
        )
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.origin = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._listener]}, daemon=True)
        self._thread.start()
        wait_until(lambda: self._server.started, 10, "the test server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._listener.close()


def wait_until(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ui_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ui_zip(WEBAPP_DIR / "ui", tmp_path_factory.mktemp("ui") / "ui.zip")


@pytest.fixture(scope="module")
def server(ui_zip: Path) -> Iterator[WebappServer]:
    running = WebappServer(ui_zip)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class WorkerPage:
    """A page with the worker registered, and a DevTools session to push to it."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.context = context
        self.origin = origin
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.goto(f"{origin}/blank.html")
        self.cdp: CDPSession = context.new_cdp_session(self.page)
        self._registrations: dict[str, str] = {}
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._on_registrations)
        self.cdp.send("ServiceWorker.enable")
        self.page.evaluate(REGISTER_WORKER)
        scope = f"{origin}/"
        self.registration_id = wait_until(lambda: self._registrations.get(scope), STEP_TIMEOUT, "no registration seen")
        self.worker: Worker = wait_until(
            lambda: next((item for item in context.service_workers if item.url.startswith(origin)), None),
            STEP_TIMEOUT,
            "the service worker did not start",
        )

    def _on_registrations(self, event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if not registration.get("isDeleted"):
                self._registrations[registration["scopeURL"]] = registration["registrationId"]

    def answer_has_call(self, shown: bool | None) -> None:
        """Make the page answer the worker's has-call question; None: the page does not answer."""
        if shown is None:
            self.page.evaluate("() => { navigator.serviceWorker.onmessage = null; }")
            return
        self.page.evaluate(
            """(shown) => {
              navigator.serviceWorker.onmessage = (event) => {
                if (event.data?.type === "has-call") event.ports[0].postMessage({shown});
              };
            }""",
            shown,
        )

    def deliver(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": self.origin, "registrationId": self.registration_id, "data": data},
        )

    def deliver_and_wait(
        self,
        payloads: list[dict[str, Any] | str],
        condition: Callable[[list[dict[str, Any]]], bool],
        message: str,
        before: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Deliver pushes that show notifications, and wait until `condition` holds.

        `before` is the push whose notification the pushes replace: should that one have
        been lost, it is shown again first, so the replacement finds it.
        """
        for payload in payloads:
            self.deliver(payload)
        try:
            return self.wait_for_notifications(condition, message, REDELIVER_AFTER)
        except AssertionError:
            if before is not None and not self.notifications():
                self.deliver_and_wait([before], lambda found: len(found) > 0, f"{message} (shown again first)")
            for payload in payloads:
                self.deliver(payload)
        return self.wait_for_notifications(condition, message)

    def notifications(self) -> list[dict[str, Any]]:
        return self.page.evaluate(READ_NOTIFICATIONS)

    def wait_for_notifications(
        self, condition: Callable[[list[dict[str, Any]]], bool], message: str, timeout: float = STEP_TIMEOUT
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = self.notifications()
            return condition(found)

        wait_until(check, timeout, f"{message}; notifications: {found}")
        return found

    def close(self) -> None:
        self.page.evaluate(
            "async () => { for (const r of await navigator.serviceWorker.getRegistrations()) await r.unregister(); }"
        )
        self.context.close()


@pytest.fixture
def worker_page(browser: Browser, server: WebappServer) -> Iterator[WorkerPage]:
    context = browser.new_context(locale="en-US", timezone_id="Europe/Zurich")
    context.grant_permissions(["notifications"], origin=server.origin)
    page = WorkerPage(context, server.origin)
    yield page
    page.close()


def push_for(state: str, action: PushAction, caller: Caller | None = None, alert: AlertMode = AlertMode.SYSTEM,
             **changes: Any) -> dict[str, Any]:
    """Return the payload the agent sends for this call state, for a call that started just now.

    The worker closes ringing notifications of calls that started more than ten minutes
    ago, so a fixed start time would make the tests depend on the date.
    """
    payload = call_payload(call_object(state, **changes), action, caller, alert, "CH")
    payload["call"]["started_at"] = format_time(datetime.now(timezone.utc))
    return payload


def test_ring_update_close(worker_page: WorkerPage) -> None:
    worker_page.answer_has_call(False)

    ring = push_for("ringing", PushAction.RING, Caller("Max Muster", "Muster AG"))
    [ringing] = worker_page.deliver_and_wait([ring], lambda found: len(found) == 1, "the ringing call was not shown")
    update = push_for("ringing", PushAction.UPDATE, Caller("Max Muster", "Muster Holding AG"))
    [updated] = worker_page.deliver_and_wait(
        [update],
        lambda found: len(found) == 1 and "Holding" in found[0]["body"],
        "the update did not replace the notification",
        before=ring,
    )
    worker_page.deliver(push_for("connected", PushAction.CLOSE))
    worker_page.wait_for_notifications(lambda found: found == [], "the answered call's notification stayed")

    assert ringing["title"] == "Max Muster"
    assert ringing["body"] == "Muster AG\n044 123 45 67\nIncoming call · via 044 555 10 00 · Ext. 201"
    assert ringing["tag"] == CALL_ID
    assert ringing["renotify"] is True
    assert ringing["requireInteraction"] is True
    assert ringing["icon"].startswith("data:image/png;base64,")
    assert ringing["data"]["call_id"] == CALL_ID
    assert updated["tag"] == CALL_ID
    assert updated["renotify"] is False
    assert updated["body"].startswith("Muster Holding AG\n")
    assert worker_page.errors == []


def test_missed_replaces_then_correction_closes(worker_page: WorkerPage) -> None:
    worker_page.answer_has_call(False)

    ring = push_for("ringing", PushAction.RING)
    worker_page.deliver_and_wait([ring], lambda found: len(found) == 1, "the ringing call was not shown")
    missed_push = push_for("ended", PushAction.MISSED, outcome="missed")
    [missed] = worker_page.deliver_and_wait(
        [missed_push],
        lambda found: len(found) == 1 and "Missed call" in found[0]["body"],
        "the missed call did not replace it",
        before=ring,
    )
    worker_page.deliver(push_for("ended", PushAction.CLOSE, outcome="answered_elsewhere"))
    worker_page.wait_for_notifications(lambda found: found == [], "the corrected call's notification stayed")

    assert missed["title"] == "Max Muster"
    assert missed["body"].startswith("044 123 45 67\nMissed call · ")
    assert missed["renotify"] is False
    assert missed["requireInteraction"] is False
    assert missed["data"]["ringing"] is False


def test_withheld_caller_and_update_without_ring(worker_page: WorkerPage) -> None:
    worker_page.answer_has_call(False)
    payload = push_for("ringing", PushAction.UPDATE, direction="internal", called=None)
    payload["call"]["remote"] = {"display": None, "name": None, "withheld": True}

    [shown] = worker_page.deliver_and_wait([payload], lambda found: len(found) == 1, "a first update was not shown")

    assert shown["title"] == "Withheld number"
    assert shown["body"] == "Internal call · Ext. 201"
    assert shown["renotify"] is False


def test_visible_page_showing_call_not_doubled(worker_page: WorkerPage) -> None:
    worker_page.answer_has_call(True)
    worker_page.deliver(push_for("ringing", PushAction.RING, call_id="c-shown"))
    worker_page.answer_has_call(None)
    worker_page.deliver(push_for("ringing", PushAction.RING, call_id="c-silent-page"))
    worker_page.answer_has_call(True)
    both = push_for("ringing", PushAction.RING, None, AlertMode.BOTH, call_id="c-both")

    found = worker_page.deliver_and_wait([both], lambda found: len(found) >= 1, "the call for both alerts was not shown")
    time.sleep(0.5)  # Room for a wrongly shown notification of the other two calls.

    assert [item["tag"] for item in worker_page.notifications()] == ["c-both"]
    assert found[0]["tag"] == "c-both"


def test_page_list_of_live_calls_closes_others(worker_page: WorkerPage) -> None:
    worker_page.answer_has_call(False)
    pushes = [push_for("ringing", PushAction.RING, call_id="c-live"), push_for("ringing", PushAction.RING, call_id="c-over")]
    worker_page.deliver_and_wait(pushes, lambda found: len(found) == 2, "the two calls were not shown")

    worker_page.page.evaluate(
        "async () => (await navigator.serviceWorker.ready).active.postMessage({type: 'active-calls', call_ids: ['c-live']})"
    )

    [left] = worker_page.wait_for_notifications(lambda found: len(found) == 1, "the ended call was not closed")
    assert left["tag"] == "c-live"


def test_test_and_unreadable_pushes(worker_page: WorkerPage) -> None:
    pushes = [{"push": "test", "version": 1, "sent_at": "2026-12-04T09:20:00.000Z"}, "not json"]

    found = worker_page.deliver_and_wait(pushes, lambda found: len(found) == 2, "test and fallback notifications missing")
    by_tag = {item["tag"]: item for item in found}

    assert by_tag["ringboard-test"]["title"] == "Ringboard"
    assert by_tag["ringboard-test"]["body"] == "Notifications work on this device."
    assert by_tag["ringboard-unreadable"]["body"] == "Open Ringboard to see the calls."


def test_texts_in_other_languages(worker_page: WorkerPage) -> None:
    payload = push_for("ringing", PushAction.RING, Caller(None, "Muster AG"))

    texts = worker_page.worker.evaluate(
        """(payload) => Object.fromEntries(
          ["de", "fr", "it", "xx"].map((language) => [language, notificationContent(payload, language)]))""",
        payload,
    )
    chosen = worker_page.worker.evaluate(
        "() => [chooseLanguage(['de-CH', 'en']), chooseLanguage(['pt-BR', 'fr-FR']), chooseLanguage([])]"
    )

    assert texts["de"] == {"title": "Max Muster", "body": "Muster AG\n044 123 45 67\nEingehender Anruf · über 044 555 10 00 · Nst. 201"}
    assert texts["fr"]["body"].endswith("Appel entrant · via 044 555 10 00 · Int. 201")
    assert texts["it"]["body"].endswith("Chiamata in arrivo · tramite 044 555 10 00 · Int. 201")
    assert texts["xx"]["body"].endswith("Incoming call · via 044 555 10 00 · Ext. 201")
    assert chosen == ["de", "fr", "en"]


def test_click_chooses_page(worker_page: WorkerPage) -> None:
    origin = worker_page.origin
    decisions = worker_page.worker.evaluate(
        """([origin, callId]) => {
          const scope = origin + "/";
          const page = (id, focused, visibilityState, url = scope) => ({id, url, focused, visibilityState});
          return {
            none: chooseClientAction([], callId, scope),
            foreign: chooseClientAction([page("x", true, "visible", "http://other.example/")], callId, scope),
            hidden: chooseClientAction([page("a", false, "hidden")], callId, scope),
            focused: chooseClientAction([page("a", false, "visible"), page("b", true, "visible")], callId, scope),
            visible: chooseClientAction([page("a", false, "hidden"), page("b", false, "visible")], callId, scope),
            test: chooseClientAction([page("a", false, "hidden")], null, scope),
          };
        }""",
        [origin, CALL_ID],
    )

    call_url = f"{origin}/#call={CALL_ID}"
    assert decisions["none"] == {"type": "open", "url": call_url}
    assert decisions["foreign"] == {"type": "open", "url": call_url}
    assert decisions["hidden"] == {
        "type": "focus", "clientId": "a", "url": call_url, "message": {"type": "show-call", "call_id": CALL_ID}
    }
    assert decisions["focused"]["clientId"] == "b"
    assert decisions["visible"]["clientId"] == "b"
    assert decisions["test"] == {"type": "focus", "clientId": "a", "url": f"{origin}/", "message": None}


def test_click_focuses_or_opens(worker_page: WorkerPage) -> None:
    results = worker_page.worker.evaluate(
        """async ([origin, callId]) => {
          const scope = origin + "/";
          const log = [];
          const client = (id, focusWorks) => ({
            id, url: scope, focused: false, visibilityState: "hidden",
            focus: async () => {
              if (!focusWorks) throw new Error("focus refused");
              log.push(`focus ${id}`);
              return {postMessage: (message) => log.push(`message ${id} ${JSON.stringify(message)}`)};
            },
          });
          const clientsApi = (windows) => ({
            matchAll: async (options) => { log.push(`matchAll ${JSON.stringify(options)}`); return windows; },
            openWindow: async (url) => { log.push(`open ${url}`); return null; },
          });
          const focused = await openCall(callId, clientsApi([client("a", true)]), scope);
          const refused = await openCall(callId, clientsApi([client("b", false)]), scope);
          const opened = await openCall(callId, clientsApi([]), scope);
          return {log, focused: focused.type, refused: refused.type, opened: opened.type};
        }""",
        [worker_page.origin, CALL_ID],
    )

    call_url = f"{worker_page.origin}/#call={CALL_ID}"
    all_windows = 'matchAll {"type":"window","includeUncontrolled":true}'
    assert results["log"] == [
        all_windows,
        "focus a",
        f'message a {{"type":"show-call","call_id":"{CALL_ID}"}}',
        all_windows,
        f"open {call_url}",
        all_windows,
        f"open {call_url}",
    ]
    assert [results["focused"], results["refused"], results["opened"]] == ["focus", "open", "open"]


def test_pure_rules_in_worker(worker_page: WorkerPage) -> None:
    results = worker_page.worker.evaluate(
        """(origin) => {
          const now = Date.parse("2026-12-04T10:00:00Z");
          const note = (callId, ringing, startedAt) => ({data: {kind: "call", call_id: callId, ringing, started_at: startedAt}});
          const notes = [
            note("old", true, "2026-12-04T09:40:00Z"),
            note("new", true, "2026-12-04T09:59:00Z"),
            note("missed", false, "2026-12-04T09:00:00Z"),
            {data: {kind: "test"}},
          ];
          return {
            stale: staleNotifications(notes, now).map((n) => n.data.call_id),
            ended: endedCallNotifications(notes, ["new"]).map((n) => n.data.call_id),
            pages: [pagesShowCall([]), pagesShowCall([false, false]), pagesShowCall([false, null]), pagesShowCall([true])],
            strategies: [
              cacheStrategy("GET", origin + "/", origin),
              cacheStrategy("GET", origin + "/?lang=de", origin),
              cacheStrategy("GET", origin + "/app/boot.js", origin),
              cacheStrategy("GET", origin + "/app/ui.zip", origin),
              cacheStrategy("GET", origin + "/vendor/pyodide/1.0/pyodide.mjs", origin),
              cacheStrategy("GET", origin + "/api/events", origin),
              cacheStrategy("GET", origin + "/api/history?limit=5", origin),
              cacheStrategy("GET", origin + "/healthz", origin),
              cacheStrategy("POST", origin + "/app/boot.js", origin),
              cacheStrategy("GET", "http://other.example/app/boot.js", origin),
              cacheStrategy("GET", origin + "/blank.html", origin),
            ],
            outdated: outdatedVendorUrls(
              [origin + "/vendor/pyodide/1.0/a.wasm", origin + "/vendor/pyodide/2.0/a.wasm", origin + "/vendor/other.js"],
              origin + "/vendor/pyodide/2.0/pyodide.mjs"),
            ringWhenClosed: planNotification({action: "ring", alert: "system", call: {id: "c", state: "connected", remote: {}}}, true, null, "en"),
          };
        }""",
        worker_page.origin,
    )

    assert results["stale"] == ["old"]
    assert results["ended"] == ["old"]
    assert results["pages"] == [False, False, True, True]
    assert results["strategies"] == [
        "network-first", "network-first", "network-first", "network-first", "cache-first",
        "none", "none", "none", "none", "none", "none",
    ]
    assert results["outdated"] == [f"{worker_page.origin}/vendor/pyodide/1.0/a.wasm"]
    assert results["ringWhenClosed"] == {"op": "close", "tag": "c"}


def test_shell_starts_offline_from_cache(browser: Browser, ui_zip: Path) -> None:
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip(f"Pyodide {PYODIDE_VERSION} is not unpacked at {PYODIDE_DIR}; run scripts/setup")
    server = WebappServer(ui_zip)
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{server.origin}/")
        page.evaluate(REGISTER_WORKER)
        wait_until(lambda: page.evaluate("() => navigator.serviceWorker.controller !== null"), STEP_TIMEOUT, "the worker took no control")
        # Loaded once under the worker, so Pyodide lands in its cache too.
        page.reload()
        expect(page.locator("html[data-ringboard=live]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
        cached = page.evaluate("async () => (await Promise.all((await caches.keys()).map(async (name) => (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname)))).flat()")

        server.stop()
        page.reload()

        expect(page.locator("h1")).to_have_text("Ringboard")
        expect(page.locator("html[data-ringboard=live]")).to_have_count(1, timeout=UI_LIVE_TIMEOUT_MS)
        expect(page.locator("#status")).to_have_attribute("data-connection", "offline", timeout=UI_LIVE_TIMEOUT_MS)
    finally:
        server.stop()
        context.close()

    assert {"/", "/app/boot.js", "/app/style.css", "/app/ui.zip"} <= set(cached)
    assert any(path.startswith(PYODIDE_BASE) for path in cached)
    assert not any(path.startswith("/api/") for path in cached)

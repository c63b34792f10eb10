"""The UI's entry point: `start()` wires state, view and the event connection in the page.

boot.js imports this module in Pyodide and calls `start()` once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .alerts import RENEW_SECONDS, CallAlerts, SoundLeader
from .connection import EventConnection, events_url
from .controls import SETTINGS_BUTTON_ID, PageControls
from .i18n import choose_language, load_catalog
from .page_alerts import PageAlerts, WorkerLink
from .pairing import PAIRING_FORM_ID, Pairing, PairingView
from .push_setup import NotifyPanel, PushSetup
from .state import BoardState, ProtocolError
from .view import HISTORY_FILTER_ID, HISTORY_SEARCH_ID, STATUS_ID, BoardView

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


class Board:
    """Applies WebSocket messages to the state and renders every change."""

    def __init__(self, view: BoardView, state: BoardState) -> None:
        self.view = view
        self.state = state
        # Called after a `settings` message or a snapshot, to switch the language.
        self.on_settings: Any = None

    def handle_text(self, text: str) -> str | None:
        """Apply one message; return its `type`, or None when it was invalid and ignored."""
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("ignored a WebSocket message that is not JSON: %.120r", text)
            return None

        kind = message.get("type") if isinstance(message, dict) else None
        try:
            changed = self.state.apply(message)
        except ProtocolError as error:
            log.warning("ignored an invalid %r message: %s", kind, error)
            return None

        if changed and kind in ("settings", "snapshot") and self.on_settings is not None:
            self.on_settings()
        elif changed:
            self.view.render(self.state, utc_now())
        return kind

    async def tick_forever(self) -> None:
        """Update live talk times once a second, just after each full second."""
        while True:
            now = utc_now()
            await asyncio.sleep(TICK_SECONDS - now.microsecond / 1_000_000 + 0.01)
            self.view.tick(utc_now())


@dataclass
class RunningPage:
    """The objects `start` created, kept so that the tasks and listener proxies stay referenced."""

    board: Board
    connection: EventConnection
    listeners: Any
    alerts: PageAlerts | None = None
    worker_listener: Any = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    submissions: set[asyncio.Task[bool]] = field(default_factory=set)


_page: RunningPage | None = None


def start() -> None:
    """Translate the shell, render the empty board and start the event connection."""
    global _page
    if _page is not None:
        log.warning("start() called again; the UI is already running")
        return

    from . import browser_alerts, dom

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    languages = dom.preferred_languages()
    texts = load_catalog(choose_language(languages))
    browser_dom = dom.BrowserDom()
    view = BoardView(browser_dom, texts)
    state = BoardState()
    board = Board(view, state)
    protocol, host = dom.page_location()
    page_alerts: PageAlerts | None = None

    def on_message(text: str) -> None:
        kind = board.handle_text(text)
        if kind == "snapshot":
            connection.confirm_live()
        if page_alerts is not None:
            page_alerts.after_message(kind)

    pairing_view = PairingView(browser_dom, texts)

    def on_unauthenticated() -> None:
        # A revoked device must stop showing calls at once, not only stop receiving them.
        state.reset()
        view.render(state, utc_now())
        if page_alerts is not None:
            page_alerts.after_message("reset")
        pairing_view.show()

    connection = EventConnection(
        url_for_next_attempt=lambda: events_url(protocol, host, state.resume_seq()),
        open_socket=dom.open_socket,
        on_message=on_message,
        on_status=view.show_connection,
        on_unauthenticated=on_unauthenticated,
    )
    pairing = Pairing(pairing_view, dom.post_json, on_paired=connection.paired)
    submissions: set[asyncio.Task[bool]] = set()

    def on_pairing_submit(event: Any) -> None:
        event.preventDefault()
        task = asyncio.ensure_future(pairing.submit())
        submissions.add(task)
        task.add_done_callback(submissions.discard)

    def on_keydown(event: Any) -> None:
        # Escape closes the settings panel and gives the focus back to the gear.
        if event.key == "Escape" and controls.settings_open():
            controls.toggle_settings(False)
            browser_dom.focus(browser_dom.element_by_id(SETTINGS_BUTTON_ID))

    def on_visibility_change(event: Any) -> None:
        if dom.page_visible():
            connection.reconnect_now()

    controls = PageControls(state, view, dom.request_json, lambda: view.render(state, utc_now()), languages)
    board.on_settings = controls.apply_settings
    settings_pin = PairingView(
        browser_dom, texts, pin_id="settings-pin", submit_id="settings-pin-submit", error_id="settings-pin-error"
    )
    settings_pairing = Pairing(settings_pin, dom.post_json, on_paired=dom.reload_page)

    def spawn(job: Any) -> None:
        task = asyncio.ensure_future(job)
        submissions.add(task)
        task.add_done_callback(submissions.discard)

    def on_click(event: Any) -> None:
        data = dom.action_target(event)
        if data is None:
            return
        action = data.get("action")
        if action == "run":
            spawn(controls.run_action(data))
        elif action == "done":
            spawn(controls.mark_done(data["for-call"]))
        elif action == "choose":
            spawn(controls.choose_contact(data))
        elif action == "settings":
            if controls.toggle_settings():
                page_alerts.render_panel()
        elif action == "settings-close":
            controls.toggle_settings(False)
        elif action == "history-more":
            spawn(controls.load_older())
        elif action == "alert-dismiss":
            page_alerts.dismiss(data["for-call"])
        elif action == "notify-permission":
            # Runs inside the click, which is the user gesture the permission request needs.
            spawn(page_alerts.request_permission())
        elif action == "notify-test":
            spawn(page_alerts.send_test())

    def on_settings_submit(event: Any) -> None:
        event.preventDefault()
        spawn(controls.save_settings(controls.read_settings_form()))

    def on_pin_submit(event: Any) -> None:
        event.preventDefault()
        spawn(settings_pairing.submit())

    def on_filter_change(event: Any) -> None:
        spawn(controls.save_settings({"history_filter": dom.input_value(event)}))

    def on_search(event: Any) -> None:
        view.search_text = dom.input_value(event)
        view.render(state, utc_now())

    def on_scroll(event: Any) -> None:
        if state.history and not state.history_complete and dom.near_page_end():
            spawn(controls.load_older())

    listeners = dom.Listeners()
    listeners.add(dom.document(), "click", on_click)
    listeners.add(browser_dom.element_by_id("settings-form"), "submit", on_settings_submit)
    listeners.add(browser_dom.element_by_id("settings-pin-form"), "submit", on_pin_submit)
    listeners.add(browser_dom.element_by_id(HISTORY_FILTER_ID), "change", on_filter_change)
    listeners.add(browser_dom.element_by_id(HISTORY_SEARCH_ID), "input", on_search)
    listeners.add(dom.window(), "scroll", on_scroll)
    listeners.add(browser_dom.element_by_id(STATUS_ID), "click", lambda event: connection.reconnect_now())
    listeners.add(dom.window(), "online", lambda event: connection.reconnect_now())
    listeners.add(dom.document(), "visibilitychange", on_visibility_change)
    listeners.add(dom.document(), "keydown", on_keydown)
    listeners.add(browser_dom.element_by_id(PAIRING_FORM_ID), "submit", on_pairing_submit)

    page_alerts = _start_alerts(browser_dom, view, state, connection, spawn)
    controls.on_applied = lambda: page_alerts.after_settings(view.texts)
    listeners.add(dom.window(), "pagehide", lambda event: page_alerts.alerts.leader.release())

    view.translate_shell()
    view.show_connection("connecting")
    view.render(state, utc_now())
    view.mark_live()

    page = RunningPage(board=board, connection=connection, listeners=listeners, submissions=submissions)
    page.alerts = page_alerts
    page.worker_listener = browser_alerts.listen_to_worker(page_alerts.on_worker_message)
    page_alerts.start(browser_alerts.location_hash())
    page.tasks.add(asyncio.ensure_future(connection.run()))
    page.tasks.add(asyncio.ensure_future(_refresh_leader_forever(page_alerts)))
    page.tasks.add(asyncio.ensure_future(board.tick_forever()))
    _page = page
    dom.mark("ringboard:live")
    log.info("Ringboard UI started in %s", texts.language)


def _start_alerts(browser_dom: Any, view: BoardView, state: BoardState, connection: EventConnection, spawn: Any) -> PageAlerts:
    """Build the in-page alert, the push setup and the service worker link."""
    from . import browser_alerts, dom

    storage = browser_alerts.LocalStorage()
    leader = SoundLeader(storage, browser_alerts.new_tab_id())
    call_alerts = CallAlerts(browser_dom, view.texts, leader, view.caller_label, browser_alerts.play_ring_sound)
    push_browser = browser_alerts.BrowserPush()
    worker = WorkerLink(
        post=browser_alerts.post_to_worker,
        reply=browser_alerts.reply_on_port,
        show_row=browser_alerts.show_call_row,
    )
    return PageAlerts(
        state,
        call_alerts,
        NotifyPanel(browser_dom, view.texts),
        PushSetup(push_browser, dom.request_json, storage),
        push_browser,
        worker,
        spawn,
        now=browser_alerts.now_seconds,
        is_online=lambda: connection.status == "online",
    )


async def _refresh_leader_forever(page_alerts: PageAlerts) -> None:
    """Renew or take the sound lock every RENEW_SECONDS."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        page_alerts.refresh_leader()


def stop() -> None:
    """Cancel the tasks, close the socket and free the listener proxies."""
    global _page
    page, _page = _page, None
    if page is None:
        return

    for task in [*page.tasks, *page.submissions]:
        task.cancel()
    page.listeners.dispose()

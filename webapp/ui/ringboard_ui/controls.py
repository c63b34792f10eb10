"""Handlers of the page's buttons and forms: CRM actions, "done", contact choices, settings, older history.

Plain Python with the HTTP request injected (`dom.request_json` in the browser), so
it runs under CPython. Each handler updates the state or the view and re-renders.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from .cards_view import ActionStatus, action_key, result_text
from .i18n import Catalog, choose_language, load_catalog
from .state import MAX_HISTORY_PAGE, BoardState
from .view import BoardView

log = logging.getLogger(__name__)

SETTINGS_URL = "/api/settings"
HISTORY_URL = "/api/history"
CHOICE_URL = "/api/contacts/choice"

# Ids of the settings form's fields in the HTML shell, by setting name.
SETTINGS_FIELDS = {
    "language": "settings-language",
    "show_history": "settings-show-history",
    "notifications": "settings-notifications",
    "notify_calls": "settings-notify-calls",
}
SETTINGS_PANEL_ID = "settings"
SETTINGS_BUTTON_ID = "settings-button"
SETTINGS_MESSAGE_ID = "settings-message"
BOOLEAN_SETTINGS = ("show_history", "notifications")

RequestJson = Callable[[str, str, Mapping[str, Any] | None], Awaitable[tuple[int, Any]]]


class PageControls:
    """Runs the page's requests; `render` redraws the board after a change."""

    def __init__(
        self,
        state: BoardState,
        view: BoardView,
        request_json: RequestJson,
        render: Callable[[], None],
        browser_languages: list[str],
    ) -> None:
        self.state = state
        self.view = view
        self._request = request_json
        self._render = render
        self._browser_languages = browser_languages
        self._loading_history = False
        # Called after the settings were applied, with no arguments.
        self.on_applied: Callable[[], None] | None = None

    # CRM actions, done and contact choice --------------------------------------------------

    async def run_action(self, data: Mapping[str, str]) -> None:
        """Run a card's action once; the button stays disabled while it runs."""
        call_id, connector, action_id = data["for-call"], data["connector"], data["action-id"]
        contact_id = data.get("contact-id") or None
        key = action_key(call_id, connector, action_id, contact_id)
        current = self.view.statuses.get(key)
        if current is not None and current.state in ("running", "ok"):
            return

        self.view.statuses[key] = ActionStatus("running")
        self._render()
        url = f"/api/calls/{quote(call_id, safe='')}/actions/{quote(connector, safe='')}/{quote(action_id, safe='')}"
        texts = self.view.texts
        label = data.get("label") or connector
        try:
            status, body = await self._request("POST", url, {"contact_id": contact_id, "params": {}})
        except Exception as error:  # The browser's fetch rejects on network failures.
            log.warning("POST %s failed: %s", url, error)
            self.view.statuses[key] = ActionStatus("failed", texts.text("action.failed"))
            self._render()
            return

        if status == 200 and isinstance(body, Mapping):
            state = "ok" if body.get("ok") else "failed"
            link = body.get("url") if isinstance(body.get("url"), str) and body["url"].startswith(("https://", "http://")) else None
            self.view.statuses[key] = ActionStatus(state, result_text(texts, body, label), link)
        else:
            log.warning("POST %s returned HTTP %d", url, status)
            self.view.statuses[key] = ActionStatus("failed", _error_text(texts, body))
        self._render()

    async def mark_done(self, call_id: str) -> None:
        """Mark a missed call done; the agent's `updated` event changes the row in every tab."""
        url = f"/api/calls/{quote(call_id, safe='')}/done"
        try:
            status, _ = await self._request("POST", url, None)
        except Exception as error:
            log.warning("POST %s failed: %s", url, error)
            return
        if status != 200:
            log.warning("POST %s returned HTTP %d", url, status)

    async def choose_contact(self, data: Mapping[str, str]) -> None:
        """Record that this card's contact is the right one for the number."""
        body = {"number": data["number"], "connector": data["connector"], "contact": data["contact-id"]}
        try:
            status, _ = await self._request("POST", CHOICE_URL, body)
        except Exception as error:
            log.warning("POST %s failed: %s", CHOICE_URL, error)
            return
        if status != 200:
            log.warning("POST %s returned HTTP %d", CHOICE_URL, status)

    # History pages -----------------------------------------------------------------------------

    async def load_older(self) -> None:
        """Fetch the next older page of history, once at a time."""
        if self._loading_history or self.state.history_complete:
            return
        self._loading_history = True
        try:
            if self.state.next_before is None:
                # The snapshot gives no page cursor, so the first page repeats the calls shown.
                limit = min(MAX_HISTORY_PAGE, len(self.state.history) + 50)
                url = f"{HISTORY_URL}?limit={limit}"
            else:
                url = f"{HISTORY_URL}?before={self.state.next_before}&limit=50"
            status, body = await self._request("GET", url, None)
            if status == 200 and isinstance(body, Mapping):
                self.state.add_older(body.get("calls"), body.get("next_before"))
                self._render()
            else:
                log.warning("GET %s returned HTTP %d", url, status)
        except Exception as error:
            log.warning("loading older history failed: %s", error)
        finally:
            self._loading_history = False

    # Settings --------------------------------------------------------------------------------

    def apply_settings(self) -> None:
        """Apply the state's settings: switch the language if it changed, then redraw."""
        language = self.state.settings.get("language") or choose_language(self._browser_languages)
        if language != self.view.texts.language:
            self.view.set_texts(load_catalog(language))
        self._render()
        if self.on_applied is not None:
            self.on_applied()

    async def save_settings(self, changes: Mapping[str, Any]) -> bool:
        """Store the settings with these changes on the agent; every tab of the user applies them."""
        settings = {**self.state.settings, **changes}
        texts: Catalog = self.view.texts
        try:
            status, body = await self._request("PUT", SETTINGS_URL, settings)
        except Exception as error:
            log.warning("PUT %s failed: %s", SETTINGS_URL, error)
            status, body = 0, None
        if status != 200:
            log.warning("PUT %s returned HTTP %d", SETTINGS_URL, status)
            self._settings_message(texts.text("settings.save_failed", code=_error_code(body, status)))
            return False

        self.state.settings = dict(body) if isinstance(body, Mapping) else settings
        self.apply_settings()
        self._settings_message(self.view.texts.text("settings.saved"))
        return True

    def read_settings_form(self) -> dict[str, Any]:
        """Return the settings the form shows."""
        dom = self.view.dom
        values: dict[str, Any] = {}
        for name, element_id in SETTINGS_FIELDS.items():
            value = dom.get_value(dom.element_by_id(element_id))
            if name in BOOLEAN_SETTINGS:
                values[name] = value == "true"
            elif name == "language":
                values[name] = value or None
            else:
                values[name] = value
        return values

    def fill_settings_form(self) -> None:
        """Show the current settings in the form."""
        dom = self.view.dom
        for name, element_id in SETTINGS_FIELDS.items():
            value = self.state.settings.get(name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = value or ""
            dom.set_value(dom.element_by_id(element_id), text)

    def settings_open(self) -> bool:
        """Return whether the settings panel is open."""
        dom = self.view.dom
        return dom.get_attribute(dom.element_by_id(SETTINGS_PANEL_ID), "hidden") is None

    def toggle_settings(self, show: bool | None = None) -> bool:
        """Open or close the settings panel; return whether it is open now."""
        dom = self.view.dom
        panel = dom.element_by_id(SETTINGS_PANEL_ID)
        opening = dom.get_attribute(panel, "hidden") is not None if show is None else show
        if opening:
            self.fill_settings_form()
            dom.remove_attribute(panel, "hidden")
        else:
            dom.set_attribute(panel, "hidden", "")
        dom.set_attribute(dom.element_by_id(SETTINGS_BUTTON_ID), "aria-expanded", "true" if opening else "false")
        return opening

    def _settings_message(self, text: str) -> None:
        dom = self.view.dom
        node = dom.element_by_id(SETTINGS_MESSAGE_ID)
        dom.set_text(node, text)
        dom.remove_attribute(node, "hidden")


def _error_code(body: Any, status: int) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("code"), str):
        params = body.get("params")
        field = params.get("field") if isinstance(params, Mapping) else None
        return f"{body['code']}: {field}" if field else body["code"]
    return f"HTTP {status}" if status else "network"


def _error_text(texts: Catalog, body: Any) -> str:
    if isinstance(body, Mapping) and body.get("code") == "not_found":
        return texts.text("error.unknown", code="not_found")
    return texts.text("action.failed")

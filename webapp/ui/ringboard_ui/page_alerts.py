"""Connects the alerts, push setup and service worker messages to the running page.

`PageAlerts` is called by `main` after every WebSocket message and settings change.
Its browser functions are injected (browser_alerts.py in the page), so the tests run it
in CPython with stand-ins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .alerts import CallAlerts, active_call_ids, call_id_from_fragment, has_call_reply
from .i18n import Catalog
from .push_setup import NotifyPanel, PushBrowser, PushSetup
from .state import BoardState

log = logging.getLogger(__name__)


@dataclass
class WorkerLink:
    """The page's side of the service worker messages."""

    post: Callable[[dict[str, Any]], Awaitable[bool]]
    reply: Callable[[Any, dict[str, Any]], None]
    show_row: Callable[[str], bool]


class PageAlerts:
    """Keeps the alert, the worker's view of the active calls and the push subscription current."""

    def __init__(
        self,
        state: BoardState,
        alerts: CallAlerts,
        panel: NotifyPanel,
        push: PushSetup,
        push_browser: PushBrowser,
        worker: WorkerLink,
        spawn: Callable[[Awaitable[Any]], None],
        now: Callable[[], float],
        is_online: Callable[[], bool],
    ) -> None:
        self.state = state
        self.alerts = alerts
        self.panel = panel
        self.push = push
        self._push_browser = push_browser
        self._worker = worker
        self._spawn = spawn
        self._now = now
        self._is_online = is_online
        self._posted_ids: list[str] | None = None
        self._synced_setting: bool | None = None
        self._pending_call: str | None = None

    def start(self, fragment: str) -> None:
        """Remember a `#call=<id>` to show once the calls arrived, and take the sound lock if free."""
        self._pending_call = call_id_from_fragment(fragment)
        self.alerts.refresh_leader(self._now())
        self.render_panel()

    def after_message(self, kind: str | None) -> None:
        """Update the alert and the worker after a WebSocket message of this `type`."""
        if kind is None:
            return
        self.alerts.update(self.state, self._now())
        ids = active_call_ids(self.state)
        if kind == "snapshot" or ids != self._posted_ids:
            self._posted_ids = ids
            self._spawn(self._post_active(ids))
        if kind in ("snapshot", "settings"):
            self.sync_push()
        if self._pending_call is not None and self._worker.show_row(self._pending_call):
            self._pending_call = None

    def after_settings(self, texts: Catalog) -> None:
        """Apply changed settings: the language, which calls alert, and the subscription."""
        if texts is not self.alerts.texts:
            self.alerts.set_texts(texts)
            self.panel.texts = texts
        self.alerts.update(self.state, self._now())
        self.render_panel()
        self.sync_push()

    def sync_push(self, force: bool = False) -> None:
        """Subscribe or unsubscribe when the `notifications` setting differs from the last sync."""
        notifications_on = self.state.settings.get("notifications", True) is not False
        if not force and notifications_on == self._synced_setting:
            return
        self._synced_setting = notifications_on
        self._spawn(self._sync(notifications_on))

    def render_panel(self) -> None:
        """Redraw the settings' notification section."""
        self.panel.render(self._push_browser.permission(), self.push.status, self.push.error_code)

    def refresh_leader(self) -> None:
        """Renew or take the sound lock; `main` calls this every few seconds."""
        self.alerts.refresh_leader(self._now())

    def dismiss(self, call_id: str) -> None:
        """Close one call's alert in this tab."""
        self.alerts.dismiss(call_id, self.state)

    def on_worker_message(self, data: Any, port: Any) -> None:
        """Answer `has-call` on its port and show the call of `show-call`."""
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "has-call" and port is not None:
            self._worker.reply(port, has_call_reply(data.get("call_id"), self.state, self._is_online()))
        elif kind == "show-call" and isinstance(data.get("call_id"), str):
            call_id = data["call_id"]
            self._pending_call = None if self._worker.show_row(call_id) else call_id

    async def request_permission(self) -> None:
        """Ask the browser for the notification permission, then subscribe when it was granted."""
        try:
            permission = await self._push_browser.request_permission()
        except Exception as error:
            log.warning("Notification.requestPermission failed: %s", error)
            permission = self._push_browser.permission()
        log.info("notification permission: %s", permission)
        self.render_panel()
        if permission == "granted":
            await self._sync(self.state.settings.get("notifications", True) is not False)

    async def send_test(self) -> None:
        """Send a test notification and show its result in the settings."""
        self.panel.show_test_result("notify.test.sending")
        key = await self.push.send_test()
        self.panel.show_test_result(key, self.push.error_code)

    async def _sync(self, notifications_on: bool) -> None:
        await self.push.sync(notifications_on)
        self.render_panel()

    async def _post_active(self, ids: list[str]) -> None:
        try:
            await self._worker.post({"type": "active-calls", "call_ids": ids})
        except Exception as error:  # No service worker: nothing to tell.
            log.warning("posting active-calls to the service worker failed: %s", error)

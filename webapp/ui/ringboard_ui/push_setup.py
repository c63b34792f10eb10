"""Web Push from the page: the subscription, the permission section and the test notification.

`PushSetup.sync` keeps this browser's push subscription in line with the user's
`notifications` setting (endpoints in docs/push-protocol.md). `NotifyPanel` renders
the settings' notification section: the permission, what to check when notifications
are blocked, and the result of a test notification.

Plain Python over the injected `PushBrowser` and HTTP request, so it runs in CPython.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from .alerts import KeyValueStorage
from .i18n import Catalog

log = logging.getLogger(__name__)

KEY_URL = "/api/push/key"
SUBSCRIPTIONS_URL = "/api/push/subscriptions"
TEST_URL = "/api/push/test"
# The id the agent gave this browser's subscription, kept to delete it when notifications are turned off.
SUBSCRIPTION_ID_KEY = "ringboard.push.subscription-id"

PERMISSIONS = ("granted", "default", "denied", "unsupported")
PUSH_STATUSES = ("subscribed", "unavailable", "failed", "off", "no_permission")
HELP_STEPS = ("notify.help.site", "notify.help.windows", "notify.help.macos")

RequestJson = Callable[[str, str, Mapping[str, Any] | None], Awaitable[tuple[int, Any]]]


class PushBrowser(Protocol):
    """The browser's Notification permission and the service worker's `pushManager`."""

    def permission(self) -> str:
        """Return `granted`, `default`, `denied`, or `unsupported` where the page has no Notification API."""
        ...

    async def request_permission(self) -> str: ...

    async def subscription(self) -> tuple[dict[str, Any] | None, str | None]:
        """Return the current subscription's `toJSON()` and its key in base64url, or (None, None)."""
        ...

    async def subscribe(self, public_key: str) -> dict[str, Any]:
        """Subscribe with `userVisibleOnly` and this key; raise when the browser cannot."""
        ...

    async def unsubscribe(self) -> bool: ...


class PushSetup:
    """Subscribes, re-subscribes on a new key, and unsubscribes this browser."""

    def __init__(self, browser: PushBrowser, request_json: RequestJson, storage: KeyValueStorage) -> None:
        self._browser = browser
        self._request = request_json
        self._storage = storage
        self.status: str | None = None
        self.error_code = ""

    async def sync(self, notifications_on: bool) -> str:
        """Subscribe or unsubscribe by the setting; return and keep one of PUSH_STATUSES."""
        try:
            if not notifications_on:
                self.status = await self._turn_off()
            elif self._browser.permission() != "granted":
                self.status = "no_permission"
            else:
                self.status = await self._turn_on()
        except Exception as error:  # fetch rejects on network failures.
            log.warning("setting up push failed: %s", error)
            self.error_code = "network"
            self.status = "failed"
        return self.status

    async def _turn_on(self) -> str:
        status, body = await self._request("GET", KEY_URL, None)
        key = body.get("public_key") if isinstance(body, Mapping) else None
        if status != 200 or not isinstance(key, str):
            log.warning("GET %s returned HTTP %d", KEY_URL, status)
            self.error_code = _error_code(body, status)
            return "failed"

        try:
            subscription, subscribed_key = await self._browser.subscription()
            if subscription is not None and subscribed_key != key:
                log.info("the agent's push key changed; subscribing again")
                await self._browser.unsubscribe()
                subscription = None
            if subscription is None:
                subscription = await self._browser.subscribe(key)
        except Exception as error:  # Headless browsers and browsers without a push service reject.
            log.warning("the browser's pushManager failed: %s", error)
            return "unavailable"

        status, body = await self._request("POST", SUBSCRIPTIONS_URL, subscription)
        if status not in (200, 201) or not isinstance(body, Mapping):
            log.warning("POST %s returned HTTP %d: %.200r", SUBSCRIPTIONS_URL, status, body)
            self.error_code = _error_code(body, status)
            return "failed"
        self._storage.set_item(SUBSCRIPTION_ID_KEY, str(body.get("id")))
        return "subscribed"

    async def _turn_off(self) -> str:
        subscription, _ = await self._browser.subscription()
        if subscription is not None:
            await self._browser.unsubscribe()
        subscription_id = self._storage.get_item(SUBSCRIPTION_ID_KEY)
        if subscription_id:
            url = f"{SUBSCRIPTIONS_URL}/{quote(subscription_id, safe='')}"
            status, _ = await self._request("DELETE", url, None)
            # 404: the agent deleted it already, for example after the push service reported it gone.
            if status not in (204, 404):
                log.warning("DELETE %s returned HTTP %d", url, status)
            self._storage.remove_item(SUBSCRIPTION_ID_KEY)
        return "off"

    async def send_test(self) -> str:
        """Ask the agent for a test notification to this browser; return the result's catalogue key."""
        try:
            status, body = await self._request("POST", TEST_URL, None)
        except Exception as error:
            log.warning("POST %s failed: %s", TEST_URL, error)
            self.error_code = "network"
            return "notify.test.error"
        if status == 404:
            return "notify.test.no_subscription"
        results = body.get("results") if isinstance(body, Mapping) else None
        if status != 200 or not isinstance(results, list) or not results:
            log.warning("POST %s returned HTTP %d", TEST_URL, status)
            self.error_code = _error_code(body, status)
            return "notify.test.error"

        outcomes = [item.get("outcome") for item in results if isinstance(item, Mapping)]
        if "sent" in outcomes:
            return "notify.test.sent"
        if "gone" in outcomes:
            return "notify.test.gone"
        failed = next((item for item in results if isinstance(item, Mapping)), {})
        self.error_code = str(failed.get("status") or "-")
        return "notify.test.failed"


class PanelDom(Protocol):
    """The `view.DomAdapter` methods the panel uses."""

    def element_by_id(self, element_id: str) -> Any: ...

    def create_element(self, tag: str) -> Any: ...

    def set_attribute(self, node: Any, name: str, value: str) -> None: ...

    def remove_attribute(self, node: Any, name: str) -> None: ...

    def set_text(self, node: Any, text: str) -> None: ...

    def replace_children(self, parent: Any, children: list[Any]) -> None: ...


class NotifyPanel:
    """The settings' `#notify-panel`: permission, help when blocked, push status and test result."""

    def __init__(self, dom: PanelDom, texts: Catalog) -> None:
        self._dom = dom
        self.texts = texts
        self.test_result: str | None = None
        self.test_code = ""

    def render(self, permission: str, push_status: str | None, error_code: str = "") -> None:
        """Show the permission, the request button while the browser may still ask, and the push status."""
        dom = self._dom
        texts = self.texts
        if permission not in PERMISSIONS:
            permission = "unsupported"

        dom.set_text(dom.element_by_id("notify-title"), texts.text("notify.title"))
        state = dom.element_by_id("notify-permission")
        dom.set_attribute(state, "data-permission", permission)
        dom.set_text(state, texts.text(f"notify.permission.{permission}"))

        request = dom.element_by_id("notify-request")
        dom.set_text(request, texts.text("notify.request"))
        self._set_hidden(request, permission != "default")

        help_box = dom.element_by_id("notify-help")
        self._set_hidden(help_box, permission != "denied")
        dom.set_text(dom.element_by_id("notify-help-intro"), texts.text("notify.help.intro"))
        steps = []
        for key in HELP_STEPS:
            item = dom.create_element("li")
            dom.set_text(item, texts.text(key))
            steps.append(item)
        dom.replace_children(dom.element_by_id("notify-help-steps"), steps)

        push = dom.element_by_id("notify-push")
        shown_status = push_status if push_status in ("subscribed", "unavailable", "failed") else None
        if shown_status is None:
            dom.set_attribute(push, "hidden", "")
        else:
            dom.set_attribute(push, "data-push", shown_status)
            dom.set_text(push, texts.text(f"notify.push.{shown_status}", code=error_code))
            dom.remove_attribute(push, "hidden")

        test = dom.element_by_id("notify-test")
        dom.set_text(test, texts.text("notify.test"))
        self._render_test_result()

    def show_test_result(self, key: str, code: str = "") -> None:
        """Show the outcome of the test notification; `key` is one of the `notify.test.*` keys."""
        self.test_result = key
        self.test_code = code
        self._render_test_result()

    def _render_test_result(self) -> None:
        node = self._dom.element_by_id("notify-test-result")
        if self.test_result is None:
            self._dom.set_attribute(node, "hidden", "")
            return
        self._dom.set_attribute(node, "data-result", self.test_result.rsplit(".", 1)[-1])
        self._dom.set_text(node, self.texts.text(self.test_result, status=self.test_code, code=self.test_code))
        self._dom.remove_attribute(node, "hidden")

    def _set_hidden(self, node: Any, hidden: bool) -> None:
        if hidden:
            self._dom.set_attribute(node, "hidden", "")
        else:
            self._dom.remove_attribute(node, "hidden")


def _error_code(body: Any, status: int) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("code"), str):
        return body["code"]
    return f"HTTP {status}" if status else "network"

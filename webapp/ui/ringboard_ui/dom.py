"""The thin adapter over the browser (`js`): DOM nodes, event listeners and WebSocket.

Only this module imports `js` and `pyodide`, so it runs in Pyodide alone. A Python
callable handed to `addEventListener` is destroyed after its first call unless it is
wrapped with `create_proxy`. So every listener here is such a proxy, kept until its
owner removes it and calls `destroy()`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, jsnull, to_js  # type: ignore[import-not-found]

from .connection import SocketHandlers

log = logging.getLogger(__name__)

Node = Any


class BrowserDom:
    """`view.DomAdapter` and `pairing.PairingDom` over the page's `document`."""

    def element_by_id(self, element_id: str) -> Node:
        node = js.document.getElementById(element_id)
        if node is None or node is jsnull:
            raise LookupError(
                f"element #{element_id} not found in the page; the served index.html does not match this UI"
            )
        return node

    def document_element(self) -> Node:
        return js.document.documentElement

    def elements_with_attribute(self, name: str) -> list[Node]:
        return list(js.document.querySelectorAll(f"[{name}]"))

    def create_element(self, tag: str) -> Node:
        return js.document.createElement(tag)

    def get_attribute(self, node: Node, name: str) -> str | None:
        # Pyodide 314 turns a JS null into `pyodide.ffi.jsnull`, not None.
        value = node.getAttribute(name)
        return value if isinstance(value, str) else None

    def set_attribute(self, node: Node, name: str, value: str) -> None:
        node.setAttribute(name, value)

    def remove_attribute(self, node: Node, name: str) -> None:
        node.removeAttribute(name)

    def set_text(self, node: Node, text: str) -> None:
        node.textContent = text

    def append(self, parent: Node, child: Node) -> None:
        parent.append(child)

    def replace_children(self, parent: Node, children: list[Node]) -> None:
        parent.replaceChildren(*children)

    def set_title(self, text: str) -> None:
        js.document.title = text

    def get_value(self, node: Node) -> str:
        return str(node.value)

    def set_value(self, node: Node, value: str) -> None:
        node.value = value

    def focus(self, node: Node) -> None:
        node.focus()


class Listeners:
    """Event listeners added through `create_proxy`, removed and destroyed together."""

    def __init__(self) -> None:
        self._entries: list[tuple[Any, str, Any]] = []

    def add(self, target: Any, event: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(event)` for every `event` on `target` until `dispose`."""
        proxy = create_proxy(callback)
        target.addEventListener(event, proxy)
        self._entries.append((target, event, proxy))

    def dispose(self) -> None:
        """Remove every listener and free its proxy."""
        entries, self._entries = self._entries, []
        for target, event, proxy in entries:
            target.removeEventListener(event, proxy)
            proxy.destroy()


class BrowserSocket:
    """One WebSocket whose events go to `SocketHandlers`; `dispose` frees its listeners.

    Call `dispose` after the close event was handled, never from inside a handler,
    because it destroys the proxy that is running.
    """

    def __init__(self, url: str, handlers: SocketHandlers) -> None:
        self._handlers = handlers
        self._listeners = Listeners()
        self._socket = js.WebSocket.new(url)
        self._listeners.add(self._socket, "open", self._on_open)
        self._listeners.add(self._socket, "message", self._on_message)
        self._listeners.add(self._socket, "close", self._on_close)

    def close(self) -> None:
        """Start the closing handshake unless the socket is already closing or closed."""
        if self._socket.readyState < js.WebSocket.CLOSING:
            self._socket.close(1000)

    def dispose(self) -> None:
        """Close the socket and free its listeners; no handler runs after this."""
        self.close()
        self._listeners.dispose()

    def _on_open(self, event: Any) -> None:
        self._handlers.on_open()

    def _on_message(self, event: Any) -> None:
        data = event.data
        if not isinstance(data, str):
            log.warning("ignored a binary WebSocket message; the event protocol sends text")
            return
        self._handlers.on_message(data)

    def _on_close(self, event: Any) -> None:
        self._handlers.on_close(int(event.code), str(event.reason))


def open_socket(url: str, handlers: SocketHandlers) -> BrowserSocket:
    """Open the event WebSocket at `url`."""
    return BrowserSocket(url, handlers)


async def post_json(url: str, body: Mapping[str, Any]) -> tuple[int, Any]:
    """POST `body` as JSON with the page's cookies; return the status and the decoded reply (None if not JSON)."""
    return await request_json("POST", url, body)


async def request_json(method: str, url: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
    """Send a request with an optional JSON body; return the status and the decoded reply (None if not JSON)."""
    init: dict[str, Any] = {"method": method, "credentials": "same-origin", "cache": "no-store"}
    if body is not None:
        init["headers"] = {"Content-Type": "application/json"}
        init["body"] = json.dumps(body)
    options = to_js(init, dict_converter=js.Object.fromEntries)
    response = await js.fetch(url, options)
    text = str(await response.text())
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    return int(response.status), reply


def page_location() -> tuple[str, str]:
    """Return the page's `location.protocol` ("https:") and `location.host`."""
    return str(js.location.protocol), str(js.location.host)


def preferred_languages() -> list[str]:
    """Return `navigator.languages`, or `[navigator.language]` where the list is empty."""
    languages = [str(tag) for tag in (js.navigator.languages or [])]
    if languages:
        return languages
    language = js.navigator.language
    return [str(language)] if language else []


def window() -> Any:
    """Return the page's `window`, the target of the `online` event."""
    return js.window


def document() -> Any:
    """Return the page's `document`, the target of `visibilitychange`."""
    return js.document


def page_visible() -> bool:
    """Return whether the page's tab is in view (`document.visibilityState`)."""
    return str(js.document.visibilityState) == "visible"


def mark(name: str) -> None:
    """Add a `performance.mark`, which start-up timings are read from."""
    js.performance.mark(name)


def action_target(event: Any) -> dict[str, str] | None:
    """Return the `data-*` attributes of the clicked element with `data-action`, or None."""
    target = event.target
    node = target.closest("[data-action]") if target is not None and hasattr(target, "closest") else None
    # Pyodide returns JavaScript's null from `closest` as a falsy `jsnull`, not as None.
    if node is None or node is jsnull or not node:
        return None
    return {str(name)[5:]: str(node.getAttribute(name)) for name in node.getAttributeNames() if str(name).startswith("data-")}


def input_value(event: Any) -> str:
    """Return the value of the input an `input` or `change` event came from."""
    return str(event.target.value)


def near_page_end(margin: float = 400.0) -> bool:
    """Return whether the page is scrolled to within `margin` pixels of its end."""
    return js.window.innerHeight + js.window.scrollY >= js.document.body.scrollHeight - margin


def reload_page() -> None:
    """Reload the page, as after pairing this browser again."""
    js.location.reload()

"""The browser side of alerts and push (`js`): service worker, Notification, localStorage, Web Audio.

Like dom.py, this module runs in Pyodide only; the logic that uses it is in alerts.py
and push_setup.py.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, jsnull, to_js  # type: ignore[import-not-found]

log = logging.getLogger(__name__)

# The ring: two short tones, as (frequency in Hz, start in s, length in s).
RING_TONES = ((880.0, 0.0, 0.18), (660.0, 0.25, 0.18), (880.0, 0.5, 0.18), (660.0, 0.75, 0.18))
RING_VOLUME = 0.2

_audio_context: Any = None


def _to_js(value: Any) -> Any:
    return to_js(value, dict_converter=js.Object.fromEntries)


class LocalStorage:
    """`alerts.KeyValueStorage` over `window.localStorage`; a blocked storage reads as empty."""

    def get_item(self, key: str) -> str | None:
        try:
            value = js.localStorage.getItem(key)
        except Exception as error:  # Storage may be disabled by the browser's settings.
            log.warning("localStorage is not available: %s", error)
            return None
        # Pyodide 314 turns a JS null into `pyodide.ffi.jsnull`, not None.
        return None if value is None or value is jsnull else str(value)

    def set_item(self, key: str, value: str) -> None:
        try:
            js.localStorage.setItem(key, value)
        except Exception as error:
            log.warning("localStorage is not available: %s", error)

    def remove_item(self, key: str) -> None:
        try:
            js.localStorage.removeItem(key)
        except Exception as error:
            log.warning("localStorage is not available: %s", error)


class BrowserPush:
    """`push_setup.PushBrowser` over `Notification` and the service worker registration."""

    def permission(self) -> str:
        if not hasattr(js, "Notification") or not hasattr(js.navigator, "serviceWorker"):
            return "unsupported"
        return str(js.Notification.permission)

    async def request_permission(self) -> str:
        if self.permission() == "unsupported":
            return "unsupported"
        return str(await js.Notification.requestPermission())

    async def _push_manager(self) -> Any:
        registration = await js.navigator.serviceWorker.ready
        return registration.pushManager

    async def subscription(self) -> tuple[dict[str, Any] | None, str | None]:
        manager = await self._push_manager()
        subscription = await manager.getSubscription()
        if subscription is None or subscription is jsnull:
            return None, None
        key_buffer = subscription.options.applicationServerKey
        key = None
        if key_buffer is not None:
            raw = bytes(js.Uint8Array.new(key_buffer).to_py())
            key = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return json.loads(str(js.JSON.stringify(subscription))), key

    async def subscribe(self, public_key: str) -> dict[str, Any]:
        manager = await self._push_manager()
        options = _to_js({"userVisibleOnly": True, "applicationServerKey": public_key})
        subscription = await manager.subscribe(options)
        return json.loads(str(js.JSON.stringify(subscription)))

    async def unsubscribe(self) -> bool:
        manager = await self._push_manager()
        subscription = await manager.getSubscription()
        if subscription is None:
            return False
        return bool(await subscription.unsubscribe())


def play_ring_sound() -> bool:
    """Play the ring with an oscillator; return False when Web Audio is missing or suspended."""
    global _audio_context
    if not hasattr(js, "AudioContext"):
        return False
    if _audio_context is None:
        _audio_context = js.AudioContext.new()
    context = _audio_context
    if str(context.state) == "suspended":
        # Browsers keep audio suspended until the user interacted with the page once.
        context.resume()
    start = context.currentTime + 0.05
    for frequency, offset, length in RING_TONES:
        oscillator = context.createOscillator()
        gain = context.createGain()
        oscillator.type = "sine"
        oscillator.frequency.value = frequency
        gain.gain.setValueAtTime(RING_VOLUME, start + offset)
        gain.gain.exponentialRampToValueAtTime(0.001, start + offset + length)
        oscillator.connect(gain)
        gain.connect(context.destination)
        oscillator.start(start + offset)
        oscillator.stop(start + offset + length)
    return True


def listen_to_worker(on_message: Callable[[Any, Any], None]) -> Any:
    """Call `on_message(data, reply_port)` for each message of the service worker; return the proxy."""
    container = getattr(js.navigator, "serviceWorker", None)
    if container is None:
        return None

    def handle(event: Any) -> None:
        data = event.data.to_py() if hasattr(event.data, "to_py") else event.data
        ports = event.ports
        port = ports[0] if ports is not None and ports.length > 0 else None
        on_message(data, port)

    proxy = create_proxy(handle)
    container.addEventListener("message", proxy)
    # Messages from the worker wait in a queue until the page starts it.
    container.startMessages()
    return proxy


def reply_on_port(port: Any, message: dict[str, Any]) -> None:
    """Post a reply on a MessagePort the worker sent."""
    port.postMessage(_to_js(message))


async def post_to_worker(message: dict[str, Any]) -> bool:
    """Post a message to the active service worker; return False when there is none."""
    container = getattr(js.navigator, "serviceWorker", None)
    if container is None:
        return False
    registration = await container.ready
    worker = registration.active
    if worker is None:
        return False
    worker.postMessage(_to_js(message))
    return True


def location_hash() -> str:
    """Return `location.hash`, for example `#call=c-1`."""
    return str(js.location.hash)


def show_call_row(call_id: str) -> bool:
    """Scroll to the call's row, highlight and focus it; return False when the page shows no such row."""
    for row in js.document.querySelectorAll(".call[data-call-id]"):
        if str(row.getAttribute("data-call-id")) != call_id:
            continue
        for other in js.document.querySelectorAll(".call[data-highlight]"):
            other.removeAttribute("data-highlight")
        row.setAttribute("data-highlight", "true")
        row.setAttribute("tabindex", "-1")
        row.scrollIntoView(_to_js({"block": "center", "behavior": "smooth"}))
        row.focus(_to_js({"preventScroll": True}))
        return True
    return False


def new_tab_id() -> str:
    """Return a random id for this tab's sound lock."""
    return str(js.crypto.randomUUID())


def now_seconds() -> float:
    """Return the wall-clock time in seconds, the same in every tab (`Date.now()`)."""
    return float(js.Date.now()) / 1000.0

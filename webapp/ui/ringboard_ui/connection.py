"""Keeps the event WebSocket open: reconnects with back-off and reports the status.

Pure asyncio with the socket injected, so it runs under CPython as well as in
Pyodide, where `dom.open_socket` provides the browser's WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .backoff import Backoff

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/events"

# The agent closes the socket with this code when the device token is missing, unknown
# or revoked. Reconnecting cannot help until the browser is paired again.
UNAUTHENTICATED_CLOSE_CODE = 4401


@dataclass(frozen=True, slots=True)
class SocketHandlers:
    """Callbacks for one socket's open, text message and close events."""

    on_open: Callable[[], None]
    on_message: Callable[[str], None]
    on_close: Callable[[int, str], None]


class Socket(Protocol):
    """An open WebSocket as the connection loop uses it."""

    def close(self) -> None: ...

    def dispose(self) -> None: ...


SocketOpener = Callable[[str, SocketHandlers], Socket]


def events_url(protocol: str, host: str, since: int | None) -> str:
    """Build the event URL for a page served over `protocol` ("http:" or "https:") from `host`."""
    scheme = "wss" if protocol == "https:" else "ws"
    url = f"{scheme}://{host}{EVENTS_PATH}"
    if since is not None:
        url += f"?since={since}"
    return url


class EventConnection:
    """Opens the event socket again whenever it closes, waiting per `Backoff` in between.

    The status goes `connecting` → `online` (when the caller calls `confirm_live`
    after the snapshot) → `offline` (closed, waiting to retry). `reconnect_now`
    cuts the wait short. A close with code 4401 sets `unpaired` and calls
    `on_unauthenticated`; the loop then waits for `paired()` instead of a delay.
    """

    def __init__(
        self,
        url_for_next_attempt: Callable[[], str],
        open_socket: SocketOpener,
        on_message: Callable[[str], None],
        on_status: Callable[[str], None],
        backoff: Backoff | None = None,
        on_unauthenticated: Callable[[], None] | None = None,
    ) -> None:
        self._url_for_next_attempt = url_for_next_attempt
        self._open_socket = open_socket
        self._on_message = on_message
        self._on_status = on_status
        self._on_unauthenticated = on_unauthenticated
        self._backoff = backoff or Backoff()
        self._retry_now = asyncio.Event()
        self._paired = asyncio.Event()
        self._socket: Socket | None = None
        self.status = "connecting"

    async def run(self) -> None:
        """Connect, wait for the close, wait the back-off delay, and repeat until cancelled."""
        try:
            while True:
                code = await self._connect_once()
                if code == UNAUTHENTICATED_CLOSE_CODE:
                    await self._wait_for_pairing()
                    continue

                delay = self._backoff.next_delay()
                log.info("event socket reconnects in %.1f s (attempt %d)", delay, self._backoff.failures)
                self._set_status("offline")
                await self._wait_before_retry(delay)
        finally:
            if self._socket is not None:
                self._socket.dispose()
                self._socket = None

    def confirm_live(self) -> None:
        """Record that the connection delivered its snapshot: online, back-off reset."""
        self._backoff.reset()
        self._set_status("online")

    def paired(self) -> None:
        """Connect again at once: the browser was paired and has a device token now."""
        self._paired.set()

    def reconnect_now(self) -> None:
        """Skip the rest of the back-off wait; does nothing unless offline."""
        if self.status == "offline":
            self._retry_now.set()

    async def _wait_for_pairing(self) -> None:
        self._paired.clear()
        self._backoff.reset()
        self._set_status("unpaired")
        if self._on_unauthenticated is not None:
            self._on_unauthenticated()
        await self._paired.wait()

    async def _connect_once(self) -> int | None:
        """Open one socket and wait for its close; return the close code, None if it never opened."""
        self._set_status("connecting")
        closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        def on_close(code: int, reason: str) -> None:
            if not closed.done():
                closed.set_result((code, reason))

        url = self._url_for_next_attempt()
        handlers = SocketHandlers(on_open=lambda: None, on_message=self._on_message, on_close=on_close)
        try:
            self._socket = self._open_socket(url, handlers)
        except Exception:
            # The browser throws at once for a malformed URL or a blocked port. That
            # counts as a failed attempt, so the back-off applies as after a close.
            log.exception("opening the event socket %s failed", url)
            return None

        try:
            code, reason = await closed
        finally:
            # Disposed here, after the close handler returned, not inside it.
            self._socket.dispose()
            self._socket = None

        log.warning("event socket %s closed with code %d %s", url, code, reason)
        return code

    async def _wait_before_retry(self, delay: float) -> None:
        self._retry_now.clear()
        try:
            await asyncio.wait_for(self._retry_now.wait(), timeout=delay)
        except asyncio.TimeoutError:
            return
        log.info("reconnecting at once on request")

    def _set_status(self, status: str) -> None:
        self.status = status
        self._on_status(status)

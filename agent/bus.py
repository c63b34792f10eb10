"""In-process fan-out of protocol messages to WebSocket clients.

Each client gets a bounded queue. A client that cannot keep up is disconnected rather
than allowed to grow the agent's memory; its page reconnects with `?since=` and misses
nothing, because every call event is in the history store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ringboard.bus")

# Messages waiting for one client. A busy office produces a few events per second, so
# this holds minutes of traffic for a client that is only slow, not stuck.
CLIENT_QUEUE_LIMIT = 1000


@dataclass(eq=False)
class Subscriber:
    """One WebSocket client's queue of encoded messages."""

    name: str
    extensions: set[str] | None
    # The user whose page this is; messages published for one user reach only that user's pages.
    user: str | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE_LIMIT))
    overflowed: bool = False


class EventBus:
    """Deliver each message to every client that may see its extension."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._overflows = 0

    @property
    def client_count(self) -> int:
        """The number of connected clients."""
        return len(self._subscribers)

    def subscribe(self, name: str, extensions: set[str] | None = None, user: str | None = None) -> Subscriber:
        """Add a client; `extensions` None means it sees every extension."""
        subscriber = Subscriber(name, extensions, user)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a client."""
        self._subscribers.discard(subscriber)

    def publish(self, message: dict[str, Any], extension: str | None = None, user: str | None = None) -> None:
        """Queue a message for every client that may see `extension` and belongs to `user`.

        `extension` None means the message concerns every extension, `user` None every user.
        """
        encoded = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        for subscriber in list(self._subscribers):
            if extension is not None and subscriber.extensions is not None and extension not in subscriber.extensions:
                continue
            if user is not None and subscriber.user != user:
                continue
            self._offer(subscriber, encoded)

    def close_all(self) -> None:
        """Tell every client's sender to finish, as on shutdown."""
        for subscriber in list(self._subscribers):
            self._offer(subscriber, None)

    def _offer(self, subscriber: Subscriber, encoded: str | None) -> None:
        try:
            subscriber.queue.put_nowait(encoded)
        except asyncio.QueueFull:
            subscriber.overflowed = True
            self._subscribers.discard(subscriber)
            self._overflows += 1
            log.warning(
                "client %s fell %d messages behind and is disconnected; %d such clients so far",
                subscriber.name, CLIENT_QUEUE_LIMIT, self._overflows,
            )
            # Make room for the end marker so the client's sender stops.
            while not subscriber.queue.empty():
                subscriber.queue.get_nowait()
            subscriber.queue.put_nowait(None)

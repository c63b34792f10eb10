"""Client-side rate limits: a sliding window per CRM, and the waits that 429 replies ask for."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

# A Retry-After longer than this is read as this: no request waits longer than an hour.
MAX_RETRY_AFTER = 3600.0

# A reset header above this many seconds is a Unix time, as some CRMs send, not a wait.
UNIX_TIME_THRESHOLD = 1_000_000_000


class RateLimited(Exception):
    """A request would have to wait `seconds` for its turn, longer than its caller allows."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited for {seconds:.1f} s")
        self.seconds = seconds


class RateLimiter:
    """At most `limit` requests per `period` seconds, and none while the server asked to wait."""

    def __init__(self, limit: int, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self.clock = clock
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    def delay(self) -> float:
        """Return the seconds until the next request may be sent (0 when it may go now)."""
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.period:
            self._sent.popleft()
        wait = max(0.0, self._blocked_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[0] + self.period - now)
        return wait

    async def acquire(self, max_wait: float) -> None:
        """Wait for a turn and take it; raise RateLimited when the wait exceeds `max_wait`."""
        while True:
            wait = self.delay()
            if wait <= 0:
                self._sent.append(self.clock())
                return
            if wait > max_wait:
                raise RateLimited(wait)
            await asyncio.sleep(wait)
            max_wait -= wait

    def block(self, seconds: float) -> None:
        """Send nothing for `seconds`, as a 429 reply asked."""
        self._blocked_until = max(self._blocked_until, self.clock() + seconds)


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Return the wait a 429 or 503 reply asks for, in seconds, or None when it names none.

    Reads `Retry-After` (seconds or an HTTP date, RFC 9110 section 10.2.3), then the
    `RateLimit-Reset` and `X-RateLimit-Reset` headers some CRMs send in seconds.
    """
    for name in ("retry-after", "ratelimit-reset", "x-ratelimit-reset"):
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            seconds = _seconds_until(value, now)
            if seconds is None:
                continue
        if seconds > UNIX_TIME_THRESHOLD:
            seconds -= (now or datetime.now(timezone.utc)).timestamp()
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def _seconds_until(http_date: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - (now or datetime.now(timezone.utc))).total_seconds()

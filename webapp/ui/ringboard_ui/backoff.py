"""Reconnect delays: 1 s doubling to 30 s, with jitter so pages do not reconnect in step."""

from __future__ import annotations

import random
from collections.abc import Callable

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0

# Each delay is cut by up to this fraction at random. When the agent restarts, every
# open page loses its socket at the same moment; the spread keeps them from all
# reconnecting in the same second. Cutting, not adding, keeps delays at or below the cap.
JITTER_FRACTION = 0.25


class Backoff:
    """Capped exponential back-off; `reset` after a connection delivered its snapshot."""

    def __init__(
        self,
        first: float = FIRST_DELAY_SECONDS,
        maximum: float = MAX_DELAY_SECONDS,
        jitter: float = JITTER_FRACTION,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.maximum = maximum
        self.jitter = jitter
        self._random_fraction = random_fraction
        self._failures = 0

    @property
    def failures(self) -> int:
        """Connection attempts that failed since the last reset."""
        return self._failures

    def next_delay(self) -> float:
        """Return the seconds to wait before the next attempt and count one failure."""
        # The exponent stops growing long before float overflow: a page offline all
        # night fails thousands of times, and 2.0**1024 raises OverflowError.
        exponent = min(self._failures, 32)
        base = min(self.maximum, self.first * 2.0**exponent)
        self._failures += 1
        return base * (1.0 - self.jitter * self._random_fraction())

    def reset(self) -> None:
        """Start again from the first delay."""
        self._failures = 0

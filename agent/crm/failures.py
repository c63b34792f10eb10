"""Logs repeated failures of actions and syncs once, then at most once per interval with a count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# A failure that repeats is logged again at most once per this many seconds.
REPEAT_LOG_INTERVAL = 300.0


class RepeatLog:
    """Counts failures per key (such as connector and error code) and logs each key sparingly."""

    def __init__(
        self, logger: logging.Logger, interval: float = REPEAT_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def failed(self, key: str, message: str, *args: object) -> bool:
        """Log `message` unless `key` was logged within the interval; return whether it was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        if skipped:
            self.logger.warning(message + "; %d more since the last report", *args, skipped)
        else:
            self.logger.warning(message, *args)
        return True

    def recovered(self, key: str) -> None:
        """Forget `key`, so its next failure is logged at once."""
        self._last.pop(key, None)
        self._skipped.pop(key, None)

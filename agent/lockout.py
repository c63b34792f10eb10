"""Lock-outs after failed pairings: a few free tries, then waits that double with each failure.

Two counters apply to every wrong PIN: one for the client address, kept in memory, and
one for the user the PIN's first digits name, stored with the user. The address limit
stops one machine quickly. The user limit stops guessing spread over many addresses.
Attempts made while locked are rejected without checking the PIN and are not counted.
A successful pairing is never counted, and it resets the user's counter but not the
address's, so knowing one's own PIN does not buy more guesses at another's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """How long a key is locked after its n-th failure."""

    free_failures: int
    first_lockout: float
    max_lockout: float

    def lockout_after(self, failures: int) -> float:
        """Return the seconds of lock-out after `failures` failed attempts in a row."""
        if failures <= self.free_failures:
            return 0.0
        exponent = min(failures - self.free_failures - 1, 32)
        return min(self.max_lockout, self.first_lockout * 2.0**exponent)


# Per address: 5 typos are free; then 30 s, 1 min, 2 min ... up to 1 h per further try,
# so one machine gets about 30 guesses in its first day and 24 a day after that.
ADDRESS_POLICY = LockoutPolicy(free_failures=5, first_lockout=30.0, max_lockout=3600.0)

# Per user: 5 free; then 1 min doubling up to 1 day, so about 16 guesses in the first day
# and 1 a day after that, however many addresses the guesses come from. Only pairing is
# locked, so the user's paired browsers keep working. `users reset-pin` lifts the lock.
USER_POLICY = LockoutPolicy(free_failures=5, first_lockout=60.0, max_lockout=86400.0)

# An address whose last failure is this old starts again from zero.
ADDRESS_FORGET_AFTER = 86400.0

# Addresses tracked at once; the oldest is dropped beyond this so the table cannot grow
# without bound. Dropping one frees its guesses, but the per-user limit still holds.
MAX_TRACKED_ADDRESSES = 10_000


@dataclass(slots=True)
class _AddressState:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class AddressLimiter:
    """Failed pairings per client address, in memory."""

    def __init__(self, policy: LockoutPolicy = ADDRESS_POLICY, forget_after: float = ADDRESS_FORGET_AFTER) -> None:
        self.policy = policy
        self.forget_after = forget_after
        self._states: OrderedDict[str, _AddressState] = OrderedDict()

    def remaining(self, address: str, now: float) -> float:
        """Return the seconds this address must still wait, 0 when it may try."""
        state = self._states.get(address)
        if state is None:
            return 0.0
        return max(0.0, state.locked_until - now)

    def failures(self, address: str, now: float) -> int:
        """Return the failures counted for this address."""
        state = self._current(address, now)
        return 0 if state is None else state.failures

    def record_failure(self, address: str, now: float) -> float:
        """Count a failure; return the lock-out it starts in seconds (0 for none)."""
        state = self._current(address, now) or _AddressState()
        state.failures += 1
        state.last_failure = now
        lockout = self.policy.lockout_after(state.failures)
        state.locked_until = now + lockout if lockout else 0.0
        self._states[address] = state
        self._states.move_to_end(address)
        while len(self._states) > MAX_TRACKED_ADDRESSES:
            self._states.popitem(last=False)
        return lockout

    def _current(self, address: str, now: float) -> _AddressState | None:
        state = self._states.get(address)
        if state is not None and now - state.last_failure > self.forget_after:
            del self._states[address]
            return None
        return state

"""Which push each call needs, as a state machine without I/O.

The push service feeds it call events and lookup results and carries out the steps it
returns. One push rings per call; later pushes only replace or close that notification,
so a notification never shows a call as ringing after it was answered or ended.

The first push of a call waits up to `PushTiming.cards_wait` for the caller lookup, so a
name from the address book or CRM is in the notification that alerts; a lookup that
answers later replaces the notification without alerting again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.push.payload import Caller, PushAction

# Calls remembered after their last push, so a late correction (an `updated` event that
# turns a missed call into one answered elsewhere) still closes the notification. Far
# more than the calls one office has in the minutes such corrections come.
TRACKED_CALLS = 5_000


class Stage(StrEnum):
    """The state of a call's notification."""

    WAITING = "waiting"  # Ringing; the first push waits briefly for the caller lookup.
    RINGING = "ringing"  # The ringing notification was sent.
    MISSED = "missed"  # It was replaced by a missed-call notification.
    CLOSED = "closed"  # It was closed, or the call stopped ringing before any push.


@dataclass(frozen=True, slots=True)
class Send:
    """Send a push with this action for the call."""

    call_id: str
    action: PushAction


@dataclass(frozen=True, slots=True)
class Wait:
    """Call `cards_wait_over(call_id)` after the cards wait, unless cards come first."""

    call_id: str


Step = Send | Wait


@dataclass
class TrackedCall:
    """The planner's record of one call."""

    call: dict[str, Any]
    stage: Stage
    caller: Caller | None = None
    sent_view: tuple[Any, ...] | None = None


class PushPlanner:
    """Decide the pushes of every call from its events and cards."""

    def __init__(self, memory: int = TRACKED_CALLS) -> None:
        self.memory = memory
        self._calls: OrderedDict[str, TrackedCall] = OrderedDict()

    def get(self, call_id: str) -> TrackedCall | None:
        """Return what is known of a call, or None."""
        return self._calls.get(call_id)

    def call_event(self, call: dict[str, Any]) -> list[Step]:
        """Take the call's new form after an event; return the steps it needs."""
        call_id = call["id"]
        state = call.get("state")
        tracked = self._calls.get(call_id)

        if tracked is None:
            if state != "ringing":
                return []
            self._remember(call_id, TrackedCall(call=call, stage=Stage.WAITING))
            return [Wait(call_id)]

        tracked.call = call
        self._calls.move_to_end(call_id)
        if tracked.stage is Stage.WAITING:
            if state != "ringing":
                tracked.stage = Stage.CLOSED  # It never rang on screen; nothing to close.
            return []
        if tracked.stage is Stage.RINGING:
            return self._after_ringing(tracked)
        if tracked.stage is Stage.MISSED and call.get("outcome") != "missed":
            tracked.stage = Stage.CLOSED  # A correction: it was answered elsewhere after all.
            return [Send(call_id, PushAction.CLOSE)]
        return []

    def cards(self, call_id: str, caller: Caller | None, complete: bool) -> list[Step]:
        """Take a lookup update of the call; `complete` when no connector is pending."""
        tracked = self._calls.get(call_id)
        if tracked is None:
            return []
        if caller is not None:
            tracked.caller = caller
        if tracked.stage is Stage.WAITING and complete:
            return self._ring(tracked)
        if tracked.stage is Stage.RINGING and self._view(tracked) != tracked.sent_view:
            return self._send(tracked, PushAction.UPDATE)
        return []

    def cards_wait_over(self, call_id: str) -> list[Step]:
        """Send the first push of a call whose lookup did not complete in time."""
        tracked = self._calls.get(call_id)
        if tracked is None or tracked.stage is not Stage.WAITING:
            return []
        return self._ring(tracked)

    def _after_ringing(self, tracked: TrackedCall) -> list[Step]:
        call = tracked.call
        call_id = call["id"]
        state = call.get("state")
        if state == "ringing":
            if self._view(tracked) != tracked.sent_view:
                return self._send(tracked, PushAction.UPDATE)
            return []
        if state == "ended" and call.get("outcome") == "missed":
            tracked.stage = Stage.MISSED
            return [Send(call_id, PushAction.MISSED)]
        tracked.stage = Stage.CLOSED
        return [Send(call_id, PushAction.CLOSE)]

    def _ring(self, tracked: TrackedCall) -> list[Step]:
        tracked.stage = Stage.RINGING
        return self._send(tracked, PushAction.RING)

    def _send(self, tracked: TrackedCall, action: PushAction) -> list[Step]:
        tracked.sent_view = self._view(tracked)
        return [Send(tracked.call["id"], action)]

    @staticmethod
    def _view(tracked: TrackedCall) -> tuple[Any, ...]:
        """Return what the notification shows, to tell whether an update changes it."""
        remote = tracked.call.get("remote") or {}
        caller = tracked.caller
        return (
            remote.get("display"),
            remote.get("name"),
            remote.get("withheld"),
            tracked.call.get("called"),
            caller.name if caller else None,
            caller.company if caller else None,
        )

    def _remember(self, call_id: str, tracked: TrackedCall) -> None:
        self._calls[call_id] = tracked
        while len(self._calls) > self.memory:
            self._calls.popitem(last=False)

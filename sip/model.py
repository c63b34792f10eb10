"""The call model: what one monitored extension sees of one call.

This module is the single definition of calls and call events. Sources and the
tracker produce these objects; the agent serialises them to the event protocol.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Direction(StrEnum):
    """Who placed the call, as seen from the monitored extension."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class CallState(StrEnum):
    """Where the call stands now."""

    RINGING = "ringing"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"


class Outcome(StrEnum):
    """How an ended call ended for the monitored extension."""

    ANSWERED = "answered"
    MISSED = "missed"
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    BUSY = "busy"
    REJECTED = "rejected"
    FAILED = "failed"
    TRANSFERRED = "transferred"


class Confidence(StrEnum):
    """Whether the source proved an outcome or the tracker inferred it."""

    CERTAIN = "certain"
    INFERRED = "inferred"


class EventKind(StrEnum):
    """The change a CallEvent reports."""

    RINGING = "ringing"
    CONNECTED = "connected"
    HELD = "held"
    RESUMED = "resumed"
    UPDATED = "updated"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class RemoteParty:
    """The other party of a call as the PBX presented it."""

    number: str | None = None
    display_name: str | None = None
    uri: str | None = None
    withheld: bool = False


@dataclass(slots=True)
class Call:
    """One call as one extension sees it; times are timezone-aware UTC."""

    id: str
    extension: str
    direction: Direction
    state: CallState
    started_at: datetime
    remote: RemoteParty = field(default_factory=RemoteParty)
    called: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    confidence: Confidence | None = None
    outcome_reason: str | None = None
    answered_by: str | None = None
    transferred_to: str | None = None
    # Who referred the other party to this extension (RFC 3892 Referred-By), as a
    # number or user, for a call that a transfer brought here.
    referred_by: str | None = None
    sip_call_id: str | None = None

    def snapshot(self) -> Call:
        """Return an independent copy, so later changes do not alter emitted events."""
        # A plain constructor call: dataclasses.replace looks every field up by name and
        # was the tracker's largest single cost.
        return Call(
            self.id, self.extension, self.direction, self.state, self.started_at, self.remote, self.called,
            self.answered_at, self.ended_at, self.outcome, self.confidence, self.outcome_reason,
            self.answered_by, self.transferred_to, self.referred_by, self.sip_call_id,
        )

    @property
    def duration_seconds(self) -> float | None:
        """Talk time: from answer to end (or to now for a live call is left to the reader)."""
        if self.answered_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.answered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A change of one call. The agent numbers events when it stores them."""

    kind: EventKind
    call: Call

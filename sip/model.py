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
    """The party that placed the call, seen from the monitored extension."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class CallState(StrEnum):
    """The call's current state."""

    RINGING = "ringing"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"


class Outcome(StrEnum):
    """The way an ended call ended for the monitored extension."""

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
        # Keywords keep the copy right if fields are added or reordered.
        return Call(
            id=self.id, extension=self.extension, direction=self.direction, state=self.state,
            started_at=self.started_at, remote=self.remote, called=self.called, answered_at=self.answered_at,
            ended_at=self.ended_at, outcome=self.outcome, confidence=self.confidence,
            outcome_reason=self.outcome_reason, answered_by=self.answered_by, transferred_to=self.transferred_to,
            referred_by=self.referred_by, sip_call_id=self.sip_call_id,
        )

    @property
    def duration_seconds(self) -> float | None:
        """Talk time in seconds, from the answer to the end; None until the call was answered and ended."""
        if self.answered_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.answered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A change of one call. The agent numbers events when it stores them."""

    kind: EventKind
    call: Call

"""The page's model: applies event-protocol messages to the calls the board shows.

Pure Python with no `js` import. The messages are the ones in docs/protocol.md
(version 1): `snapshot`, `call`, `crm`, `settings`, `health` and `error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any

from .cards import (
    CallCards,
    CallerActions,
    CardsError,
    DEFAULT_SETTINGS,
    parse_call_cards,
    parse_caller_actions,
    parse_settings,
)

PROTOCOL_VERSION = 1

# Ended calls kept in the page, newest first. A receptionist's page stays open all day,
# so the cap bounds the DOM; 200 is also the largest page `GET /api/history` returns.
HISTORY_LIMIT = 200

# The largest page `GET /api/history` returns.
MAX_HISTORY_PAGE = 200

LIVE_STATES = frozenset({"ringing", "connected", "held"})
UNANSWERED_OUTCOMES = frozenset({"missed", "busy", "rejected", "failed"})


# The number of ended calls in a snapshot without `since` (the event protocol's snapshot).
SNAPSHOT_HISTORY = 50


class ProtocolError(ValueError):
    """A message that does not follow the event protocol."""


class CallKind(Enum):
    """The call type a row's icon shows."""

    RINGING = "ringing"
    INCOMING_ANSWERED = "incoming-answered"
    INCOMING_MISSED = "incoming-missed"
    OUTGOING_ANSWERED = "outgoing-answered"
    OUTGOING_UNANSWERED = "outgoing-unanswered"
    ANSWERED_ELSEWHERE = "answered-elsewhere"
    TRANSFERRED = "transferred"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Remote:
    """The other party as the agent sent it; `display` is the number to show."""

    number: str | None = None
    e164: str | None = None
    display: str | None = None
    name: str | None = None
    uri: str | None = None
    withheld: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """One call object of the protocol, with its times parsed to aware datetimes."""

    id: str
    extension: str
    direction: str
    state: str
    started_at: datetime
    remote: Remote = field(default_factory=Remote)
    called: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration: float | None = None
    outcome: str | None = None
    confidence: str | None = None
    outcome_reason: str | None = None
    answered_by: str | None = None
    transferred_to: str | None = None
    # True once the office dealt with a missed call; None when the message has no `done` field.
    done: bool | None = None

    @property
    def is_missed(self) -> bool:
        """Whether the call is an incoming call that nobody answered."""
        return self.kind == CallKind.INCOMING_MISSED

    @property
    def is_open(self) -> bool:
        """Whether the call is a missed call still on the to-do list."""
        return self.is_missed and not self.done

    @property
    def is_live(self) -> bool:
        """Whether the call is ringing, connected or on hold."""
        return self.state in LIVE_STATES

    @property
    def kind(self) -> CallKind:
        """The call type for the row's icon."""
        return classify_call(self)


@dataclass(frozen=True, slots=True)
class SubscriptionHealth:
    """The agent's dialog subscription for one extension."""

    extension: str
    state: str
    since: datetime | None = None
    reason_code: str | None = None
    reason_status: int | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """Source health: `status` is `ok` when every subscription is active."""

    status: str
    subscriptions: tuple[SubscriptionHealth, ...] = ()

    @property
    def problems(self) -> tuple[SubscriptionHealth, ...]:
        """The subscriptions that are not active."""
        return tuple(item for item in self.subscriptions if item.state != "active")


@dataclass(frozen=True, slots=True)
class AgentError:
    """An `error` message: a code and its parameters, translated by the page."""

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)


def classify_call(call: Call) -> CallKind:
    """Return the icon type: ringing first, then hand-offs, internal, then direction."""
    if call.state == "ringing":
        return CallKind.RINGING

    if call.outcome == "transferred":
        return CallKind.TRANSFERRED

    if call.outcome == "answered_elsewhere":
        return CallKind.ANSWERED_ELSEWHERE

    if call.direction == "internal":
        return CallKind.INTERNAL

    unanswered = call.outcome in UNANSWERED_OUTCOMES
    if call.direction == "outbound":
        return CallKind.OUTGOING_UNANSWERED if unanswered else CallKind.OUTGOING_ANSWERED

    # Inbound and unknown directions: the PBX did not report the direction, and most
    # calls a receptionist watches are incoming.
    return CallKind.INCOMING_MISSED if unanswered else CallKind.INCOMING_ANSWERED


def parse_time(value: object, name: str) -> datetime | None:
    """Parse an ISO 8601 UTC time such as `2026-12-04T09:15:02.120Z`; None stays None."""
    if value is None:
        return None

    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string, got {value!r}")

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(f"{name} is not an ISO 8601 time: {value!r}") from None

    if parsed.tzinfo is None:
        raise ProtocolError(f"{name} has no time zone: {value!r}")
    return parsed


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string or null, got {value!r}")
    return value


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key} is missing or not a string: {value!r}")
    return value


def _seq(data: Mapping[str, Any]) -> int:
    value = data.get("seq")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"seq must be an integer, got {value!r}")
    return value


def parse_remote(data: object) -> Remote:
    """Build a Remote from the call's `remote` object."""
    if data is None:
        return Remote()

    if not isinstance(data, Mapping):
        raise ProtocolError(f"remote must be an object, got {data!r}")

    return Remote(
        number=_optional_str(data, "number"),
        e164=_optional_str(data, "e164"),
        display=_optional_str(data, "display"),
        name=_optional_str(data, "name"),
        uri=_optional_str(data, "uri"),
        withheld=bool(data.get("withheld", False)),
    )


def parse_call(data: object) -> Call:
    """Build a Call from a protocol call object; raise ProtocolError naming the bad field."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"call must be an object, got {data!r}")

    started_at = parse_time(data.get("started_at"), "started_at")
    if started_at is None:
        raise ProtocolError("started_at is missing")

    duration = data.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)):
        raise ProtocolError(f"duration must be a number or null, got {duration!r}")

    return Call(
        id=_required_str(data, "id"),
        extension=_required_str(data, "extension"),
        direction=_required_str(data, "direction"),
        state=_required_str(data, "state"),
        started_at=started_at,
        remote=parse_remote(data.get("remote")),
        called=_optional_str(data, "called"),
        answered_at=parse_time(data.get("answered_at"), "answered_at"),
        ended_at=parse_time(data.get("ended_at"), "ended_at"),
        duration=None if duration is None else float(duration),
        outcome=_optional_str(data, "outcome"),
        confidence=_optional_str(data, "confidence"),
        outcome_reason=_optional_str(data, "outcome_reason"),
        answered_by=_optional_str(data, "answered_by"),
        transferred_to=_optional_str(data, "transferred_to"),
        done=data["done"] if isinstance(data.get("done"), bool) else None,
    )


def parse_health(data: object) -> Health:
    """Build a Health from a `health` message or a snapshot's `health` object."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"health must be an object, got {data!r}")

    items = data.get("subscriptions")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ProtocolError(f"subscriptions must be a list, got {items!r}")

    subscriptions = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ProtocolError(f"subscription must be an object, got {item!r}")

        reason = item.get("reason")
        reason_code = None
        reason_status = None
        if isinstance(reason, Mapping):
            reason_code = _optional_str(reason, "code")
            status = reason.get("status")
            reason_status = status if isinstance(status, int) and not isinstance(status, bool) else None

        subscriptions.append(
            SubscriptionHealth(
                extension=_required_str(item, "extension"),
                state=_required_str(item, "state"),
                since=parse_time(item.get("since"), "since"),
                reason_code=reason_code,
                reason_status=reason_status,
            )
        )

    return Health(status=_required_str(data, "status"), subscriptions=tuple(subscriptions))


def _parse_calls(data: Mapping[str, Any], key: str) -> list[Call]:
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProtocolError(f"{key} must be a list, got {items!r}")
    return [parse_call(item) for item in items]


class BoardState:
    """Active calls by id, ended calls newest first, the last `seq` seen and health.

    `apply` takes one decoded message and returns whether anything the page shows
    changed. Call messages whose `seq` is not above the last one are duplicates or
    arrive out of order, and are ignored. A snapshot replaces the active calls and
    health. Its history replaces the page's on a fresh start, and is merged into it
    on a resumed connection.
    """

    def __init__(self, history_limit: int = HISTORY_LIMIT) -> None:
        self.history_limit = history_limit
        self.active: dict[str, Call] = {}
        self.history: list[Call] = []
        self.seq: int | None = None
        self.health: Health | None = None
        self.error: AgentError | None = None
        self.protocol_version: int | None = None
        self.cards: dict[str, CallCards] = {}
        self.settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self.caller_actions: tuple[CallerActions, ...] = ()
        # The `before` of the next history page; None when no older page exists.
        self.next_before: int | None = None
        self.history_complete = False

    def reset(self) -> None:
        """Forget every call, as when the agent no longer accepts this browser."""
        self.active = {}
        self.history = []
        self.seq = None
        self.health = None
        self.error = None
        self.cards = {}
        self.next_before = None
        self.history_complete = False

    def apply(self, message: object) -> bool:
        """Apply one protocol message; raise ProtocolError when it is malformed."""
        if not isinstance(message, Mapping):
            raise ProtocolError(f"message must be an object, got {message!r}")

        kind = message.get("type")
        if kind == "snapshot":
            return self._apply_snapshot(message)
        if kind == "call":
            return self._apply_call(message)
        if kind == "health":
            self.health = parse_health(message)
            return True
        if kind == "error":
            return self._apply_error(message)
        if kind == "crm":
            return self._apply_cards(message)
        if kind == "settings":
            self.settings = parse_settings(message.get("settings"))
            return True

        # Later protocol versions may add message types; older pages skip them.
        return False

    def active_calls(self) -> list[Call]:
        """Live calls in display order: ringing first, then newest started first."""
        newest_first = sorted(self.active.values(), key=lambda call: call.started_at, reverse=True)
        return sorted(newest_first, key=lambda call: call.state != "ringing")

    def ringing_count(self) -> int:
        """Count the calls ringing now."""
        return sum(1 for call in self.active.values() if call.state == "ringing")

    def cards_of(self, call_id: str) -> CallCards | None:
        """Return the cards of a call, or None before its first `crm` message."""
        return self.cards.get(call_id)

    def open_count(self) -> int:
        """Count the missed calls in the history that are not done."""
        return sum(1 for call in self.history if call.is_open)

    def add_older(self, calls: object, next_before: object) -> bool:
        """Append a `GET /api/history` page below the calls shown; return whether it added any."""
        older = _parse_calls({"calls": calls}, "calls")
        known = {call.id for call in self.history} | set(self.active)
        added = [call for call in older if call.id not in known]
        self.history.extend(added)
        # Older pages raise the cap: the user scrolled for them.
        self.history_limit = max(self.history_limit, len(self.history))
        self.next_before = next_before if isinstance(next_before, int) and not isinstance(next_before, bool) else None
        self.history_complete = self.next_before is None
        return bool(added)

    def resume_seq(self) -> int | None:
        """Return the `since` value for the next connection, or None for a fresh start."""
        return self.seq

    def _apply_snapshot(self, message: Mapping[str, Any]) -> bool:
        seq = _seq(message)
        active = _parse_calls(message, "active")
        history = _parse_calls(message, "history")
        health_data = message.get("health")
        health = None if health_data is None else parse_health(health_data)
        version = message.get("version")
        resumed = self.seq is not None

        self.protocol_version = version if isinstance(version, int) else None
        self.seq = seq
        self.active = {call.id: call for call in active if call.is_live}
        ended = [call for call in active if not call.is_live]

        # On a resumed connection (`?since=`) the agent may send only the calls that
        # ended after `since`, so the snapshot's history is merged over the rows the
        # page already has. A full history merges to the same list.
        kept = [call for call in self.history if call.id not in self.active] if resumed else []
        self.history = self._dedupe(ended + history + kept)[: self.history_limit]
        self.health = health
        self.error = None

        cards = message.get("cards")
        if isinstance(cards, list):
            if not resumed:
                self.cards = {}
            for item in cards:
                if isinstance(item, Mapping):
                    self._apply_cards(item)
        if "settings" in message:
            self.settings = parse_settings(message.get("settings"))
        self.caller_actions = parse_caller_actions(message.get("caller_actions"))
        if not resumed:
            # A first snapshot holds the newest SNAPSHOT_HISTORY ended calls; fewer means
            # there are no older ones to page in.
            self.history_complete = len(self.history) < SNAPSHOT_HISTORY
            self.next_before = None
        return True

    def _apply_cards(self, message: Mapping[str, Any]) -> bool:
        try:
            cards = parse_call_cards(message)
        except CardsError as error:
            raise ProtocolError(str(error)) from None
        self.cards[cards.call_id] = cards
        return True

    def _apply_call(self, message: Mapping[str, Any]) -> bool:
        # A null seq marks an event the agent could not store: show it, but keep the
        # last stored number for resuming.
        seq = None if message.get("seq") is None else _seq(message)
        if seq is not None and self.seq is not None and seq <= self.seq:
            return False

        call = parse_call(message.get("call"))
        event = message.get("event")
        if call.done is None:
            call = self._keep_done(call)
        if seq is not None:
            self.seq = seq

        if call.is_live:
            self.active[call.id] = call
            self.history = [item for item in self.history if item.id != call.id]
            return True

        self.active.pop(call.id, None)
        position = next((index for index, item in enumerate(self.history) if item.id == call.id), None)
        if position is not None and event == "updated":
            # A correction to an ended call keeps the row where the user saw it.
            self.history[position] = call
            return True

        if position is not None:
            del self.history[position]
        self.history.insert(0, call)
        del self.history[self.history_limit :]
        return True

    def _apply_error(self, message: Mapping[str, Any]) -> bool:
        params = message.get("params")
        self.error = AgentError(
            code=_required_str(message, "code"),
            params=dict(params) if isinstance(params, Mapping) else {},
        )

        # The agent closes the connection after an error. Resuming from the same
        # `seq` could repeat the same error, so the next connection starts afresh;
        # its snapshot brings the whole state anyway.
        self.seq = None
        return True

    def _keep_done(self, call: Call) -> Call:
        """Carry the `done` flag over from the row shown, because live events may leave it out."""
        previous = self.active.get(call.id) or next((item for item in self.history if item.id == call.id), None)
        if previous is None or previous.done is None:
            return call
        return replace(call, done=previous.done)

    @staticmethod
    def _dedupe(calls: list[Call]) -> list[Call]:
        seen: set[str] = set()
        unique = []
        for call in calls:
            if call.id not in seen:
                seen.add(call.id)
                unique.append(call)
        return unique

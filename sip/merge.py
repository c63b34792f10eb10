"""Merge the calls of the raw-SIP engine and the dialog-info tracker into one stream, without I/O.

With `[sip] sources` naming both a raw source (HEP or capture) and the dialog-event
subscription, each call of an extension is seen twice. The merger keeps one call per
extension and SIP Call-ID with a stable id of its own:
- raw SIP owns the call's state, identities, direction and outcome;
- dialog-info fills in what raw SIP left empty (a number, a display name, the called
  number), and drives the call alone until raw SIP has seen it.

So a dialog-info document that ends a call raw SIP still sees connected (Kamailio
before 5.6 reports a forked call `terminated` when the losing fork is cancelled) does
not end it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sip.model import Call, CallEvent, CallState, EventKind, RemoteParty

# Dialog-info documents without a Call-ID (Asterisk) are matched to the raw call of the
# same extension that started within this window. NOTIFYs follow the SIP event by
# milliseconds on a LAN, so two separate calls that close together are rare.
MATCH_WINDOW_SECONDS = 10.0

# An ended call is kept this long, so that late documents and messages about it are
# recognised rather than raising a new call.
LINGER_SECONDS = 120.0

_RANK = {CallState.RINGING: 0, CallState.CONNECTED: 1, CallState.HELD: 1, CallState.ENDED: 2}


@dataclass(eq=False)
class _Entry:
    """One merged call and the latest view of it from each source."""

    id: str
    extension: str
    started_at: datetime
    raw: Call | None = None
    dialog: Call | None = None
    emitted: Call | None = None


class CallMerger:
    """Merge CallEvents from the raw-SIP engine and from the dialog-info tracker."""

    def __init__(self, *, id_factory: Callable[[], str] | None = None) -> None:
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._by_raw: dict[str, _Entry] = {}
        self._by_dialog: dict[str, _Entry] = {}
        self._entries: list[_Entry] = []

    def raw(self, events: Iterable[CallEvent]) -> list[CallEvent]:
        """Take in the raw-SIP engine's events and return the merged events to publish."""
        merged: list[CallEvent] = []
        for event in events:
            call = event.call
            entry = self._by_raw.get(call.id) or self._match(call, want_raw=True)
            self._by_raw[call.id] = entry
            entry.raw = call
            merged.extend(self._emit(entry))
        return merged

    def dialog_info(self, events: Iterable[CallEvent]) -> list[CallEvent]:
        """Take in the dialog-info tracker's events and return the merged events to publish."""
        merged: list[CallEvent] = []
        for event in events:
            call = event.call
            entry = self._by_dialog.get(call.id) or self._match(call, want_raw=False)
            self._by_dialog[call.id] = entry
            entry.dialog = call
            merged.extend(self._emit(entry))
        return merged

    def active_calls(self) -> list[Call]:
        """Return the merged calls that have not ended, oldest first."""
        calls = [entry.emitted for entry in self._entries if entry.emitted and entry.emitted.state != CallState.ENDED]
        return sorted((call.snapshot() for call in calls), key=lambda call: call.started_at)

    def expire(self, now: datetime) -> None:
        """Forget calls that ended more than LINGER_SECONDS ago."""
        linger = timedelta(seconds=LINGER_SECONDS)
        keep: list[_Entry] = []
        for entry in self._entries:
            ended_at = entry.emitted.ended_at if entry.emitted else None
            if ended_at is not None and now - ended_at > linger:
                for index, view in ((self._by_raw, entry.raw), (self._by_dialog, entry.dialog)):
                    if view is not None:
                        index.pop(view.id, None)
                continue
            keep.append(entry)
        self._entries = keep

    # Matching ---------------------------------------------------------------------------

    def _match(self, call: Call, *, want_raw: bool) -> _Entry:
        """Find the entry the other source opened for this call, or open a new one."""
        window = timedelta(seconds=MATCH_WINDOW_SECONDS)
        for entry in self._entries:
            other = entry.dialog if want_raw else entry.raw
            own = entry.raw if want_raw else entry.dialog
            if own is not None or other is None or entry.extension != call.extension:
                continue
            if call.sip_call_id and other.sip_call_id:
                if call.sip_call_id == other.sip_call_id:
                    return entry
                continue
            # One side has no Call-ID: match a live call that started close by.
            live = entry.emitted is None or entry.emitted.state != CallState.ENDED
            if live and abs(call.started_at - other.started_at) <= window and _same_party(call.remote, other.remote):
                return entry
        entry = _Entry(id=self._new_id(), extension=call.extension, started_at=call.started_at)
        self._entries.append(entry)
        return entry

    # Composing --------------------------------------------------------------------------

    def _emit(self, entry: _Entry) -> list[CallEvent]:
        call = self._compose(entry)
        previous = entry.emitted
        kind = _event_kind(previous, call)
        if kind is None:
            return []
        entry.emitted = call
        return [CallEvent(kind, call.snapshot())]

    def _compose(self, entry: _Entry) -> Call:
        raw, dialog, previous = entry.raw, entry.dialog, entry.emitted
        base = dataclasses.replace(raw if raw is not None else dialog)  # type: ignore[arg-type]
        base.id = entry.id
        if raw is not None and dialog is not None:
            base.remote = _fill_party(raw.remote, dialog.remote)
            base.called = raw.called or dialog.called
            base.referred_by = raw.referred_by or dialog.referred_by
            base.sip_call_id = raw.sip_call_id or dialog.sip_call_id
        if previous is not None:
            # A fact a source gave once is kept when its next view leaves it out.
            base.remote = _fill_party(base.remote, previous.remote)
            base.called = base.called or previous.called
            base.referred_by = base.referred_by or previous.referred_by
        if previous is not None and previous.state != CallState.ENDED and _RANK[base.state] < _RANK[previous.state]:
            # A source that is behind the other must not move the call backwards.
            base.state, base.answered_at = previous.state, previous.answered_at
        if previous is not None and previous.state == CallState.ENDED:
            # Once ended, a call stays ended; raw SIP may still correct its outcome.
            if raw is None or raw.state != CallState.ENDED:
                return previous
        if previous is not None:
            base.started_at = min(base.started_at, previous.started_at)
        return base


def _event_kind(previous: Call | None, call: Call) -> EventKind | None:
    """Name the change from the last published call to this one; None for no change."""
    if previous is None:
        return {
            CallState.RINGING: EventKind.RINGING,
            CallState.CONNECTED: EventKind.CONNECTED,
            CallState.HELD: EventKind.HELD,
            CallState.ENDED: EventKind.ENDED,
        }[call.state]
    if call.state != previous.state:
        if call.state == CallState.ENDED:
            return EventKind.ENDED
        if call.state == CallState.HELD:
            return EventKind.HELD
        if previous.state == CallState.HELD:
            return EventKind.RESUMED
        return EventKind.CONNECTED
    if call != previous:
        return EventKind.UPDATED
    return None


def _fill_party(raw: RemoteParty, dialog: RemoteParty) -> RemoteParty:
    """Keep raw SIP's party, taking the number or name from dialog-info only where raw has none."""
    if raw.withheld:
        return raw
    if raw.number is None and dialog.number is not None and not dialog.withheld:
        return dialog if raw.display_name is None else dataclasses.replace(dialog, display_name=raw.display_name)
    if raw.display_name is None and dialog.display_name and dialog.number == raw.number:
        return dataclasses.replace(raw, display_name=dialog.display_name)
    return raw


def _same_party(first: RemoteParty, second: RemoteParty) -> bool:
    if first.number is None or second.number is None:
        return True
    return first.number == second.number

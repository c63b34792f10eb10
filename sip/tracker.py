"""Turn dialog-info documents into calls, without I/O.

Each document is the state of one extension (RFC 4235), not a stream of transitions.
The tracker keeps, per extension, the dialogs it has seen and the live calls they
belong to, and returns a CallEvent for every change. Times come from the caller:
nothing here reads a clock, so `expire` must be called every few seconds.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sip.dialoginfo import Dialog, DialogInfo
from sip.model import Call, CallEvent, CallState, Confidence, Direction, EventKind, Outcome, RemoteParty
from sip.profiles import PROFILES, PbxProfile
from sip.uri import UriError, parse_name_addr
from sip.uri import remote_party_from_uri as _uncached_remote_party

# Every document of a call repeats its caller's URI and the extension's own identity, so
# parsing them once per distinct value saves most of the URI parsing. RemoteParty is
# frozen, so sharing one instance between calls is safe.
REMOTE_PARTY_CACHE_SIZE = 4096
remote_party_from_uri = functools.lru_cache(maxsize=REMOTE_PARTY_CACHE_SIZE)(_uncached_remote_party)

# A dialog still `early` after this long is a phantom the PBX never ended (FreeSWITCH and
# Kamailio were both seen leaving one behind). Ring groups and queues rarely ring one
# phone for five minutes, so a genuine call is seldom closed by it.
PHANTOM_EARLY_SECONDS = 300.0

# How long an ended dialog's id is remembered while the PBX may still list it. Kamailio
# 5.6 keeps terminated dialogs in its documents for about 10 s, and partial notifiers
# do not report when they drop one. A listing within this time raises no new call.
LINGER_SECONDS = 120.0

# Each extension's NOTIFY travels on its own subscription, so the `confirmed` of the
# extension that answered a ring-group call can arrive after the `terminated` of the
# others. Within this window a missed call is corrected to answered elsewhere. Without
# real Call-IDs (Asterisk), a call that rang from the same caller number and was
# answered on another extension within this window counts too, as inferred.
RING_GROUP_WINDOW_SECONDS = 10.0

# Office dial plans use up to six digits for extensions (Avaya CM: 499701), while a
# public number in national form has at least seven. A remote number this short is
# internal.
MAX_INTERNAL_NUMBER_DIGITS = 6

# Asterisk chan_sip sends `call-id="pickup-<Call-ID of the SUBSCRIBE>"`.
FAKE_CALL_ID_PREFIX = "pickup-"

# Outcome reasons, as the page translates them. A bare SIP status code is also a reason.
REASON_CALLER_HANGUP = "caller_hangup"
REASON_NO_ANSWER = "no_answer"
REASON_REJECTED = "rejected"
REASON_PICKUP = "pickup"
REASON_RING_GROUP = "ring_group"
REASON_REPLACED = "replaced"
REASON_PHANTOM = "phantom"

# RFC 4235: a dialog's state only moves forward, and `proceeding` and `early` are peers.
_TRYING, _EARLY, _CONFIRMED, _TERMINATED = range(4)
_STATE_RANK = {
    "trying": _TRYING,
    "proceeding": _EARLY,
    "early": _EARLY,
    "confirmed": _CONFIRMED,
    "terminated": _TERMINATED,
}

_INTERNAL_NUMBER = re.compile(rf"[0-9]{{1,{MAX_INTERNAL_NUMBER_DIGITS}}}")
_BUSY_CODES = frozenset({486, 600})
_DECLINED_CODES = frozenset({603})
_NO_ANSWER_CODES = frozenset({408, 480})


@dataclass(eq=False)
class _CallRecord:
    """A call and the tracker's state for it beyond the Call itself."""

    call: Call
    key: str
    initiated_here: bool | None
    live_dialogs: set[str] = field(default_factory=set)
    replaced_call_ids: set[str] = field(default_factory=set)
    confirmed: bool = False
    replaced: bool = False
    end_event: str | None = None
    end_code: int | None = None


@dataclass(eq=False)
class _DialogEntry:
    """One dialog id of an extension. `record` is None for a dialog first seen ended."""

    record: _CallRecord | None
    rank: int
    last_seen: datetime
    ended: bool = False
    phantom: bool = False


@dataclass
class _ExtensionState:
    version: int | None = None
    # True until the first document of a new subscription, which lists every dialog.
    awaiting_first_document: bool = True
    dialogs: dict[str, _DialogEntry] = field(default_factory=dict)
    calls: dict[str, _CallRecord] = field(default_factory=dict)


class CallTracker:
    """Turn each extension's dialog-info documents into calls and call events."""

    def __init__(
        self,
        extensions: Iterable[str],
        profile: PbxProfile = PROFILES["generic"],
        *,
        id_factory: Callable[[], str] | None = None,
        phantom_early_seconds: float = PHANTOM_EARLY_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        if phantom_early_seconds <= 0:
            raise ValueError(f"invalid phantom_early_seconds {phantom_early_seconds}: expected a positive number")
        if linger_seconds < 0:
            raise ValueError(f"invalid linger_seconds {linger_seconds}: expected zero or more")
        self._extensions = frozenset(extensions)
        self._profile = profile
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._phantom_after = timedelta(seconds=phantom_early_seconds)
        self._linger = timedelta(seconds=linger_seconds)
        self._ring_group_window = timedelta(seconds=RING_GROUP_WINDOW_SECONDS)
        self._states: dict[str, _ExtensionState] = {}
        # Calls by real Call-ID and by the Call-IDs they replaced, across extensions, for
        # ring groups and pickups. Ended calls stay for RING_GROUP_WINDOW_SECONDS.
        self._by_call_id: dict[str, list[_CallRecord]] = {}
        # Calls without a real Call-ID by caller number, for the same purpose.
        self._by_caller: dict[str, list[_CallRecord]] = {}

    def new_subscription(self, extension: str) -> None:
        """Restart version counting for an extension: a new SUBSCRIBE dialog starts anew."""
        state = self._state(extension)
        state.version = None
        state.awaiting_first_document = True

    def active_calls(self) -> list[Call]:
        """Return copies of the live calls, oldest first."""
        calls = [record.call.snapshot() for state in self._states.values() for record in state.calls.values()]
        return sorted(calls, key=lambda call: call.started_at)

    def apply(self, extension: str, document: DialogInfo, now: datetime) -> list[CallEvent]:
        """Apply one document of an extension's subscription and return the events it causes.

        `now` must be timezone-aware. A document whose version is not above the last one
        of the subscription is stale or repeated and ignored, as RFC 4235 requires.
        """
        now = _utc(now)
        state = self._state(extension)
        # NOTE: a version gap (a lost document) is applied as it is. The RFC's remedy, a
        # refresh that brings a full document, is the subscription client's to request.
        if document.version is not None:
            if state.version is not None and document.version <= state.version:
                return []
            state.version = document.version

        # Ending dialogs go last, so a dialog replacing one of them in the same document
        # is already known when the ended call gets its outcome.
        dialogs = sorted(document.dialogs, key=lambda dialog: dialog.state == "terminated")
        events: list[CallEvent] = []
        for dialog in dialogs:
            events.extend(self._apply_dialog(extension, state, dialog, now))

        # `full` replaces the dialog set, so an unlisted dialog has ended. A one-leg
        # profile sends `full` with only the changed leg, unless the extension is idle or
        # the document is the first of a subscription (FreeSWITCH then lists all dialogs).
        one_leg = self._profile.full_is_one_leg and bool(document.dialogs) and not state.awaiting_first_document
        if document.state == "full" and not one_leg:
            listed = {dialog.id for dialog in document.dialogs}
            for dialog_id in [dialog_id for dialog_id in state.dialogs if dialog_id not in listed]:
                events.extend(self._vanish(state, dialog_id, now))

        state.awaiting_first_document = False
        self._forget_ended_dialogs(state, now)
        return events

    def expire(self, now: datetime) -> list[CallEvent]:
        """Close phantom rings and forget ended dialogs and calls that are no longer needed."""
        now = _utc(now)
        events: list[CallEvent] = []
        for state in self._states.values():
            for record in list(state.calls.values()):
                ringing_for = now - record.call.started_at
                if record.call.state == CallState.RINGING and ringing_for >= self._phantom_after:
                    events.extend(self._close_phantom(state, record, now))
            self._forget_ended_dialogs(state, now)

        for index in (self._by_call_id, self._by_caller):
            for key, records in list(index.items()):
                recent = [record for record in records if not self._outside_window(record, now)]
                if recent:
                    index[key] = recent
                else:
                    del index[key]
        return events

    # Dialogs ------------------------------------------------------------------------

    def _apply_dialog(self, extension: str, state: _ExtensionState, dialog: Dialog, now: datetime) -> list[CallEvent]:
        rank = _STATE_RANK.get(dialog.state)
        if rank is None:
            return []

        entry = state.dialogs.get(dialog.id)
        if entry is not None and entry.ended:
            entry.last_seen = now
            if rank == _TERMINATED:
                # Still listed after its end: no new event.
                entry.phantom = False
                return []
            if entry.phantom:
                # The PBX still lists a ring that was closed as a phantom.
                return []
            # The id is in use again for a new call: Asterisk names its one dialog after
            # the extension.
            entry = None

        if entry is None:
            return self._open_dialog(extension, state, dialog, rank, now)
        return self._advance_dialog(state, entry, dialog, rank, now)

    def _open_dialog(
        self, extension: str, state: _ExtensionState, dialog: Dialog, rank: int, now: datetime
    ) -> list[CallEvent]:
        if rank == _TERMINATED:
            # NOTE: a dialog first seen ended raises no call. It may have ended before the
            # subscription started, so a ring shorter than one NOTIFY goes unseen.
            state.dialogs[dialog.id] = _DialogEntry(record=None, rank=rank, last_seen=now, ended=True)
            return []

        call_id = self._real_call_id(dialog.call_id)
        key = f"call-id:{call_id}" if call_id else f"dialog:{dialog.id}"
        state.dialogs[dialog.id] = entry = _DialogEntry(record=None, rank=rank, last_seen=now)

        # Dialogs of one extension with the same Call-ID are forks of one call, such as
        # two phones of one user ringing at once.
        record = state.calls.get(key)
        if record is None:
            entry.record = record = self._start_call(extension, state, dialog, key, call_id, now)
            if rank == _CONFIRMED:
                events = self._confirm(record, now, first_seen=True)
                events.extend(self._update_hold(record, dialog.rendering))
                return events
            return [CallEvent(EventKind.RINGING, record.call.snapshot())]

        entry.record = record
        record.live_dialogs.add(dialog.id)
        changed = self._refresh(record, dialog)
        events: list[CallEvent] = []
        if rank == _CONFIRMED:
            events.extend(self._confirm(record, now))
            events.extend(self._update_hold(record, dialog.rendering))
        if changed and not events:
            events.append(CallEvent(EventKind.UPDATED, record.call.snapshot()))
        return events

    def _advance_dialog(
        self, state: _ExtensionState, entry: _DialogEntry, dialog: Dialog, rank: int, now: datetime
    ) -> list[CallEvent]:
        entry.last_seen = now
        record = entry.record
        if record is None or rank < entry.rank:
            # States only move forward: a lower state for a known dialog is stale.
            # FreeSWITCH was seen sending `early` again for a dialog already in a call.
            return []

        if rank == entry.rank == _EARLY and self._profile.dialog_per_extension and _new_caller(record, dialog):
            events = self._end_dialog(state, record, dialog.id, None, now)
            del state.dialogs[dialog.id]
            return events + self._open_dialog(record.call.extension, state, dialog, rank, now)

        changed = self._refresh(record, dialog)
        events: list[CallEvent] = []
        if rank > entry.rank:
            entry.rank = rank
            if rank == _CONFIRMED:
                events.extend(self._confirm(record, now))
            elif rank == _TERMINATED:
                entry.ended = True
                events.extend(self._end_dialog(state, record, dialog.id, dialog, now))
        if rank == _CONFIRMED:
            events.extend(self._update_hold(record, dialog.rendering))
        if changed and not events:
            events.append(CallEvent(EventKind.UPDATED, record.call.snapshot()))
        return events

    def _vanish(self, state: _ExtensionState, dialog_id: str, now: datetime) -> list[CallEvent]:
        entry = state.dialogs.pop(dialog_id)
        if entry.ended or entry.record is None:
            return []
        return self._end_dialog(state, entry.record, dialog_id, None, now)

    def _forget_ended_dialogs(self, state: _ExtensionState, now: datetime) -> None:
        for dialog_id, entry in list(state.dialogs.items()):
            if entry.ended and now - entry.last_seen > self._linger:
                del state.dialogs[dialog_id]

    # Calls ------------------------------------------------------------------------

    def _start_call(
        self, extension: str, state: _ExtensionState, dialog: Dialog, key: str, call_id: str | None, now: datetime
    ) -> _CallRecord:
        initiated_here = _initiated_here(dialog) if not self._profile.direction_unreliable else None
        remote = _remote_party(dialog) or RemoteParty()
        call = Call(
            id=self._new_id(),
            extension=extension,
            direction=self._direction(initiated_here, remote),
            state=CallState.RINGING,
            started_at=now,
            remote=remote,
            sip_call_id=call_id,
        )
        record = _CallRecord(call=call, key=key, initiated_here=initiated_here, live_dialogs={dialog.id})
        state.calls[key] = record
        if call_id:
            self._index(call_id, record)
        self._note_replaces(record, dialog)
        self._note_parties(record, dialog)
        return record

    def _refresh(self, record: _CallRecord, dialog: Dialog) -> bool:
        """Take in newer identity and direction details, and return True when the call changed."""
        self._note_replaces(record, dialog)
        call = record.call
        before = (call.remote, call.direction, call.called, call.referred_by)

        if record.initiated_here is None and not self._profile.direction_unreliable:
            record.initiated_here = _initiated_here(dialog)
        # A listing without a remote identity keeps the known one: Asterisk drops it
        # once the call is answered.
        remote = _remote_party(dialog)
        if remote is not None:
            call.remote = remote
        call.direction = self._direction(record.initiated_here, call.remote)
        self._note_parties(record, dialog)
        return (call.remote, call.direction, call.called, call.referred_by) != before

    def _note_parties(self, record: _CallRecord, dialog: Dialog) -> None:
        """Take the called number and the referrer from a listing, and index the caller."""
        call = record.call
        # For a call to this extension, the local identity is the address the caller
        # dialled: a ring group or a DID when it is not the extension itself (Kamailio
        # shows the ring group's `sip:600@...` on each member's dialog).
        if record.initiated_here is not True and dialog.local_identity:
            called = _party_number(dialog.local_identity)
            if called is not None and called != call.extension:
                call.called = called
        if dialog.referred_by:
            call.referred_by = _party_number(dialog.referred_by) or call.referred_by
        if call.sip_call_id is None and call.remote.number is not None:
            records = self._by_caller.setdefault(call.remote.number, [])
            if record not in records:
                records.append(record)

    def _confirm(self, record: _CallRecord, now: datetime, *, first_seen: bool = False) -> list[CallEvent]:
        if record.confirmed:
            return []
        record.confirmed = True
        call = record.call
        call.state = CallState.CONNECTED
        # A profile whose `confirmed` also means "outgoing call still ringing" proves no
        # answer time for a call first seen confirmed.
        if not (first_seen and self._profile.outgoing_confirmed_at_once):
            call.answered_at = now
        events = [CallEvent(EventKind.CONNECTED, call.snapshot())]
        events.extend(self._correct_missed_elsewhere(record, now))
        return events

    def _update_hold(self, record: _CallRecord, rendering: bool | None) -> list[CallEvent]:
        call = record.call
        if rendering is False and call.state == CallState.CONNECTED:
            call.state = CallState.HELD
            return [CallEvent(EventKind.HELD, call.snapshot())]
        if rendering is not False and call.state == CallState.HELD:
            call.state = CallState.CONNECTED
            return [CallEvent(EventKind.RESUMED, call.snapshot())]
        return []

    def _end_dialog(
        self, state: _ExtensionState, record: _CallRecord, dialog_id: str, dialog: Dialog | None, now: datetime
    ) -> list[CallEvent]:
        record.live_dialogs.discard(dialog_id)
        if dialog is not None:
            record.end_event = dialog.state_event or record.end_event
            record.end_code = dialog.state_code or record.end_code
            record.replaced = record.replaced or dialog.state_event == "replaced"
        if record.live_dialogs:
            return []
        self._set_outcome(record, now)
        return self._end_call(state, record, now)

    def _close_phantom(self, state: _ExtensionState, record: _CallRecord, now: datetime) -> list[CallEvent]:
        for dialog_id in record.live_dialogs:
            entry = state.dialogs.get(dialog_id)
            if entry is not None:
                entry.ended = True
                entry.phantom = True
                entry.last_seen = now
        record.live_dialogs.clear()
        call = record.call
        call.outcome = Outcome.FAILED if record.initiated_here else Outcome.MISSED
        call.confidence = Confidence.INFERRED
        call.outcome_reason = REASON_PHANTOM
        return self._end_call(state, record, now)

    def _end_call(self, state: _ExtensionState, record: _CallRecord, now: datetime) -> list[CallEvent]:
        state.calls.pop(record.key, None)
        record.call.state = CallState.ENDED
        record.call.ended_at = now
        return [CallEvent(EventKind.ENDED, record.call.snapshot())]

    # Outcomes ---------------------------------------------------------------------

    def _set_outcome(self, record: _CallRecord, now: datetime) -> None:
        call = record.call
        certainty = Confidence.INFERRED if self._profile.outcomes_inferred else Confidence.CERTAIN

        if record.confirmed:
            if record.replaced:
                # RFC 4235 `replaced`: another dialog took this call over (RFC 3891).
                call.outcome, call.confidence = Outcome.TRANSFERRED, Confidence.CERTAIN
                call.outcome_reason = REASON_REPLACED
                call.transferred_to = self._replacement_party(record)
            else:
                # A call first seen confirmed on a profile that cannot time the answer
                # has no answer time, and its answer is inferred.
                call.outcome = Outcome.ANSWERED
                call.confidence = certainty if call.answered_at is not None else Confidence.INFERRED
            return

        if not record.initiated_here:
            answerer, confidence = self._answerer_elsewhere(record, now)
            if answerer is not None or record.replaced:
                call.outcome, call.confidence = Outcome.ANSWERED_ELSEWHERE, confidence
                call.answered_by = answerer.call.extension if answerer is not None else None
                call.outcome_reason = self._elsewhere_reason(record, answerer)
                return

        event, code = record.end_event, record.end_code
        if record.initiated_here:
            call.outcome, call.confidence = _failed_outcome(code), certainty
            call.outcome_reason = _failure_reason(event, code)
            return

        call.outcome = Outcome.MISSED
        # Without a direction the ring may have been an outgoing attempt.
        call.confidence = certainty if record.initiated_here is False else Confidence.INFERRED
        call.outcome_reason = _failure_reason(event, code)

    def _answerer_elsewhere(self, record: _CallRecord, now: datetime) -> tuple[_CallRecord | None, Confidence]:
        """Find the monitored extension that answered this call, and how sure that is."""
        # NOTE: only a monitored extension's answer counts. The caller's own `confirmed`
        # does not, because a proxy that forwards to voicemail on no answer confirms the
        # caller's dialog with the same Call-ID.
        call_id = record.call.sip_call_id
        if call_id is not None:
            for other in self._by_call_id.get(call_id, []):
                if other.call.extension == record.call.extension or not other.confirmed:
                    continue
                if other.initiated_here is True or self._outside_window(other, now):
                    continue
                return other, Confidence.CERTAIN
            return None, Confidence.CERTAIN

        for other in self._same_caller(record):
            if other.confirmed and self._answered_near(other, now):
                return other, Confidence.INFERRED
        return None, Confidence.CERTAIN

    def _correct_missed_elsewhere(self, answerer: _CallRecord, now: datetime) -> list[CallEvent]:
        """Turn calls of other extensions that ended missed moments ago into answered elsewhere."""
        if answerer.initiated_here is True:
            return []
        call_ids = set(answerer.replaced_call_ids)
        if answerer.call.sip_call_id:
            call_ids.add(answerer.call.sip_call_id)
        candidates: list[tuple[_CallRecord, Confidence]] = []
        for call_id in sorted(call_ids):
            candidates.extend((other, Confidence.CERTAIN) for other in self._by_call_id.get(call_id, []))
        if self._answered_near(answerer, now):
            candidates.extend((other, Confidence.INFERRED) for other in self._same_caller(answerer))

        events: list[CallEvent] = []
        for other, confidence in candidates:
            call = other.call
            if call.extension == answerer.call.extension or call.outcome != Outcome.MISSED:
                continue
            if call.ended_at is None or now - call.ended_at > self._ring_group_window:
                continue
            call.outcome, call.confidence = Outcome.ANSWERED_ELSEWHERE, confidence
            call.answered_by = answerer.call.extension
            call.outcome_reason = self._elsewhere_reason(other, answerer)
            events.append(CallEvent(EventKind.UPDATED, call.snapshot()))
        return events

    def _same_caller(self, record: _CallRecord) -> list[_CallRecord]:
        """Return the calls of other extensions without a Call-ID that rang from the same caller."""
        number = record.call.remote.number
        if record.call.sip_call_id is not None or number is None or record.initiated_here is True:
            return []
        return [
            other
            for other in self._by_caller.get(number, [])
            if other.call.extension != record.call.extension and other.initiated_here is not True
        ]

    def _answered_near(self, record: _CallRecord, now: datetime) -> bool:
        # Only a call seen ringing, then answered, counts: a call first seen connected may
        # be an outgoing call on a profile whose `confirmed` covers those too.
        answered_at = record.call.answered_at
        return answered_at is not None and abs(now - answered_at) <= self._ring_group_window

    def _elsewhere_reason(self, record: _CallRecord, answerer: _CallRecord | None) -> str:
        if record.replaced:
            return REASON_PICKUP
        if answerer is not None and record.call.sip_call_id in answerer.replaced_call_ids:
            return REASON_PICKUP
        return REASON_RING_GROUP

    def _replacement_party(self, record: _CallRecord) -> str | None:
        """Name who took over a replaced call: the new party on this extension, or the other extension."""
        call_id = record.call.sip_call_id
        for other in self._by_call_id.get(call_id or "", []):
            if other is record or call_id not in other.replaced_call_ids:
                continue
            if other.call.extension != record.call.extension:
                return other.call.extension
            return other.call.remote.number
        return None

    # Helpers ------------------------------------------------------------------------

    def _state(self, extension: str) -> _ExtensionState:
        return self._states.setdefault(extension, _ExtensionState())

    def _real_call_id(self, call_id: str | None) -> str | None:
        if call_id and self._profile.fake_call_ids and call_id.startswith(FAKE_CALL_ID_PREFIX):
            return None
        return call_id or None

    def _index(self, call_id: str, record: _CallRecord) -> None:
        records = self._by_call_id.setdefault(call_id, [])
        if record not in records:
            records.append(record)

    def _note_replaces(self, record: _CallRecord, dialog: Dialog) -> None:
        if dialog.replaces is None:
            return
        call_id = self._real_call_id(dialog.replaces.call_id)
        if call_id and call_id not in record.replaced_call_ids:
            record.replaced_call_ids.add(call_id)
            self._index(call_id, record)

    def _outside_window(self, record: _CallRecord, now: datetime) -> bool:
        ended_at = record.call.ended_at
        return ended_at is not None and now - ended_at > self._ring_group_window

    def _direction(self, initiated_here: bool | None, remote: RemoteParty) -> Direction:
        if remote.number is not None and self._is_internal(remote.number):
            return Direction.INTERNAL
        if initiated_here is True:
            return Direction.OUTBOUND
        if initiated_here is False:
            return Direction.INBOUND
        return Direction.UNKNOWN

    def _is_internal(self, number: str) -> bool:
        return number in self._extensions or _INTERNAL_NUMBER.fullmatch(number) is not None


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError(f"invalid time {now.isoformat()}: expected a timezone-aware datetime")
    return now.astimezone(timezone.utc)


def _initiated_here(dialog: Dialog) -> bool | None:
    # RFC 4235: `initiator` means the observed user sent the INVITE.
    if dialog.direction == "initiator":
        return True
    if dialog.direction == "recipient":
        return False
    return None


def _remote_party(dialog: Dialog) -> RemoteParty | None:
    if dialog.remote_identity and "<" in dialog.remote_identity:
        # Some notifiers write a whole name-addr where RFC 4235 puts a bare URI.
        try:
            name_addr = parse_name_addr(dialog.remote_identity)
        except UriError:
            pass
        else:
            return remote_party_from_uri(name_addr.uri, dialog.remote_display or name_addr.display)
    if dialog.remote_identity:
        return remote_party_from_uri(dialog.remote_identity, dialog.remote_display)
    if dialog.remote_target:
        return remote_party_from_uri(dialog.remote_target, dialog.remote_display)
    if dialog.remote_display:
        return remote_party_from_uri(None, dialog.remote_display)
    return None


def _new_caller(record: _CallRecord, dialog: Dialog) -> bool:
    """Return True when a listing names another caller than the one the call already has."""
    known = record.call.remote
    listed = _remote_party(dialog)
    if listed is None or (known.number is None and not known.withheld):
        return False
    return (listed.number, listed.withheld) != (known.number, known.withheld)


def _party_number(uri: str) -> str | None:
    """Return the number or user a URI (or name-addr) presents, None when withheld or unreadable."""
    if "<" in uri:
        try:
            uri = parse_name_addr(uri).uri
        except UriError:
            return None
    party = remote_party_from_uri(uri, None)
    return None if party.withheld else party.number


def _failed_outcome(code: int | None) -> Outcome:
    if code in _BUSY_CODES:
        return Outcome.BUSY
    if code in _DECLINED_CODES:
        return Outcome.REJECTED
    return Outcome.FAILED


def _failure_reason(event: str | None, code: int | None) -> str | None:
    """Name why a call ended unanswered, from the RFC 4235 state event and code."""
    if event == "cancelled":
        return REASON_CALLER_HANGUP
    if event == "timeout" or code in _NO_ANSWER_CODES:
        return REASON_NO_ANSWER
    if code is not None:
        return str(code)
    if event == "rejected":
        return REASON_REJECTED
    return None

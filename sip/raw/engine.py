"""Rebuild calls from raw SIP messages (HEP mirrors and captures), without I/O.

The engine follows every INVITE it is shown: its legs (Call-ID and From-tag), the early
and confirmed dialogs of each fork (To-tag), CANCEL with its Reason, BYE, hold
re-INVITEs, REFER and Replaces. A monitored extension takes part in a leg as the callee
(the Request-URI names it or one of its DIDs) or as the caller (its number is the
asserted identity or From). Each extension gets one Call per call, and the engine
returns the same CallEvents as the dialog-info tracker.

Times come from the caller, usually the capture time of each message, so `expire`
must be called every few seconds with the current time.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sip.message import Request, Response, SipParseError, parse_via
from sip.model import Call, CallEvent, CallState, Confidence, Direction, EventKind, Outcome, RemoteParty
from sip.raw.headers import (
    InviteInfo,
    Replaces,
    answered_elsewhere,
    caller_party,
    offer_holds,
    read_invite,
    refer_target,
    sipfrag_status,
    uri_user,
)
from sip.tracker import (
    MAX_INTERNAL_NUMBER_DIGITS,
    PHANTOM_EARLY_SECONDS,
    REASON_CALLER_HANGUP,
    REASON_NO_ANSWER,
    REASON_PHANTOM,
    REASON_PICKUP,
    REASON_REPLACED,
    REASON_RING_GROUP,
)

Address = tuple[str, int]

# RFC 3261 §17.1.1.2: a transaction lives at most 64*T1 = 32 s (Timer B), so every
# retransmission, and every copy of a message seen at a later hop, arrives within it.
TRANSACTION_SECONDS = 32.0

# After a 401/407 challenge or a 3xx redirect the phone sends its next INVITE at once,
# on the same Call-ID. Without one within a transaction's lifetime, the attempt failed.
RETRY_WAIT_SECONDS = TRANSACTION_SECONDS

# A call still ringing after this long lost its end on the way (UDP HEP drops packets),
# as the dialog-info tracker assumes for an `early` dialog.
PHANTOM_RING_SECONDS = PHANTOM_EARLY_SECONDS

# A connected call with no SIP message for this long lost its BYE. Session timers
# (RFC 4028) refresh a live call every 30 minutes by default, and calls without them
# rarely last four hours.
STALE_CALL_SECONDS = 4 * 3600.0

# A B2BUA gives each leg its own Call-ID. Without a link header, a leg that presents
# the same caller to the same extension within this window is the same call.
LEG_MATCH_WINDOW_SECONDS = 10.0

# Bounds memory against a flood of INVITEs: an office PBX runs hundreds of legs at
# most, and legs are forgotten a transaction's lifetime after they end.
MAX_LEGS = 20_000

# Retransmissions and copies remembered for de-duplication, one per message, so that
# a burst of traffic cannot grow the cache without bound between two `expire` calls.
MAX_REMEMBERED_MESSAGES = 200_000

# A DID matches a called number when their last digits agree, so `+41447654321`,
# `0041447654321` and `0447654321` are one number. Eight digits is what the caller
# lookup uses by default; shorter numbers must match in full.
DID_MATCH_DIGITS = 8

# RFC 3261 §21.4: 486 Busy Here and 600 Busy Everywhere; 603 Decline.
BUSY_CODES = frozenset({486, 600})
DECLINED_CODES = frozenset({603})
# 408 Request Timeout and 480 Temporarily Unavailable end a call nobody answered.
NO_ANSWER_CODES = frozenset({408, 480})
# 401 and 407 challenge the caller, who sends the INVITE again with credentials.
CHALLENGE_CODES = frozenset({401, 407})

_INTERNAL_NUMBER = re.compile(rf"[0-9]{{1,{MAX_INTERNAL_NUMBER_DIGITS}}}")
_EARLY, _CONFIRMED, _TERMINATED = range(3)


class Role(enum.Enum):
    """The part a monitored extension plays in a leg."""

    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters for logs and metrics."""

    messages: int
    duplicates: int
    legs_dropped: int
    live_legs: int


@dataclass(eq=False)
class _Transfer:
    """A REFER sent in a dialog by the side whose tag is `by_tag`."""

    by_tag: str
    target: str | None
    replaces: Replaces | None


@dataclass(eq=False)
class _Dialog:
    """One fork of a leg: the dialog its To-tag names."""

    leg: _Leg
    to_tag: str
    owner: str | None
    last_seen: datetime
    state: int = _EARLY
    hold_tags: set[str] = field(default_factory=set)
    transfer: _Transfer | None = None
    replaced_by: _Leg | None = None


@dataclass(eq=False)
class _Leg:
    """One INVITE and its forks, keyed by Call-ID and From-tag."""

    call_id: str
    from_tag: str
    group: str
    info: InviteInfo
    origin_branch: str | None
    started_at: datetime
    last_seen: datetime
    invite_cseq: int
    branches: dict[str, str | None] = field(default_factory=dict)
    callee_exts: dict[str, bool] = field(default_factory=dict)
    dialogs: dict[str, _Dialog] = field(default_factory=dict)
    calls: list[_CallRecord] = field(default_factory=list)
    offers: dict[tuple[str, int], bool] = field(default_factory=dict)
    seen_at_origin: bool = False
    cancelled: bool = False
    elsewhere: set[str] = field(default_factory=set)
    elsewhere_all: bool = False
    retry: tuple[int, datetime] | None = None
    ended_at: datetime | None = None
    replaces: _Dialog | None = None


@dataclass(eq=False)
class _CallRecord:
    """A Call of one extension and the legs that carry it."""

    call: Call
    role: Role
    legs: list[_Leg]
    announced: bool = True
    dialog: _Dialog | None = None

    @property
    def ended(self) -> bool:
        return self.call.state == CallState.ENDED

    @property
    def connected(self) -> bool:
        return self.call.state in (CallState.CONNECTED, CallState.HELD)


class RawCallEngine:
    """Turn raw SIP messages into calls of the monitored extensions."""

    def __init__(
        self,
        extensions: Iterable[str],
        *,
        dids: Mapping[str, str] | None = None,
        link_header: str | None = None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self._extensions = frozenset(extensions)
        dids = dict(dids or {})
        unknown = sorted(extension for extension in dids.values() if extension not in self._extensions)
        if unknown:
            raise ValueError(f"DIDs map to unmonitored extensions {unknown}: add them to the extensions")
        self._did_digits = {_digits(number): extension for number, extension in dids.items() if _digits(number)}
        self._did_suffixes = _unique_suffixes(self._did_digits)
        self._link_header = link_header
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)

        self._legs: dict[tuple[str, str], _Leg] = {}
        self._legs_by_call_id: dict[str, list[_Leg]] = {}
        self._legs_by_group: dict[str, list[_Leg]] = {}
        self._records: dict[tuple[str, str, Role], _CallRecord] = {}
        self._live: list[_CallRecord] = []
        self._seen: dict[tuple[object, ...], datetime] = {}
        self._messages = 0
        self._duplicates = 0
        self._legs_dropped = 0

    @property
    def stats(self) -> EngineStats:
        """Messages observed, duplicates skipped, legs dropped at MAX_LEGS, legs tracked."""
        return EngineStats(self._messages, self._duplicates, self._legs_dropped, len(self._legs))

    def active_calls(self) -> list[Call]:
        """Return copies of the announced calls that have not ended, oldest first."""
        calls = [record.call.snapshot() for record in self._live if record.announced and not record.ended]
        return sorted(calls, key=lambda call: call.started_at)

    def extension_of(self, user: str | None) -> tuple[str, bool] | None:
        """Return the extension a called user or number reaches, and whether it named the extension itself."""
        if not user:
            return None
        if user in self._extensions:
            return user, True
        digits = _digits(user)
        if not digits:
            return None
        if digits in self._did_digits:
            return self._did_digits[digits], False
        if len(digits) >= DID_MATCH_DIGITS:
            extension = self._did_suffixes.get(digits[-DID_MATCH_DIGITS:])
            if extension is not None:
                return extension, False
        return None

    # Input ------------------------------------------------------------------------------

    def observe(
        self,
        message: Request | Response,
        source: Address | None,
        destination: Address | None,
        timestamp: datetime,
    ) -> list[CallEvent]:
        """Take in one SIP message seen on the wire and return the call events it causes.

        `source` and `destination` name the hop (from HEP chunks or IP headers), so that a
        retransmission on the same hop is skipped. `timestamp` must be timezone-aware.
        """
        now = _utc(timestamp)
        self._messages += 1
        try:
            if self._seen_before(message, source, destination, now):
                self._duplicates += 1
                return []
            if isinstance(message, Request):
                return self._request(message, now)
            return self._response(message, now)
        except SipParseError:
            # parse_message checked the headers every call reads; a Via lower in the
            # list may still be malformed, and such a message changes no call.
            return []

    def expire(self, now: datetime) -> list[CallEvent]:
        """End attempts nobody retried, phantom rings and stale calls, and forget old legs."""
        now = _utc(now)
        events: list[CallEvent] = []

        for leg in list(self._legs.values()):
            if leg.retry is not None and now - leg.retry[1] >= timedelta(seconds=RETRY_WAIT_SECONDS):
                status = leg.retry[0]
                leg.retry = None
                leg.ended_at = now
                events.extend(self._fail_leg(leg, status, now))

        for record in list(self._live):
            events.extend(self._expire_record(record, now))

        self._forget(now)
        return events

    # Requests ---------------------------------------------------------------------------

    def _request(self, request: Request, now: datetime) -> list[CallEvent]:
        method = request.method.upper()
        if method == "INVITE":
            return self._invite(request, now) if request.to_tag is None else self._reinvite(request, now)
        if method == "UPDATE" and request.to_tag is not None:
            return self._reinvite(request, now)
        if method == "CANCEL":
            return self._cancel(request, now)
        if method == "BYE":
            return self._bye(request, now)
        if method == "REFER":
            self._refer(request, now)
        elif method == "NOTIFY":
            self._notify(request, now)
        return []

    def _invite(self, request: Request, now: datetime) -> list[CallEvent]:
        vias = request.headers.get_all("Via")
        top_branch = parse_via(vias[0]).branch
        key = (request.call_id, request.from_tag or "")
        cseq = request.cseq[0]
        events: list[CallEvent] = []

        leg = self._legs.get(key)
        if leg is None:
            if len(self._legs) >= MAX_LEGS:
                self._legs_dropped += 1
                return []
            leg = self._new_leg(request, parse_via(vias[-1]).branch, now)
            events.extend(self._open_caller(leg, now))
        elif cseq > leg.invite_cseq:
            # The same call tried again after a challenge or a redirect (RFC 3261 §22.2),
            # as a new transaction with its own branch.
            leg.invite_cseq = cseq
            leg.origin_branch = parse_via(vias[-1]).branch
            leg.retry = None
        elif cseq < leg.invite_cseq:
            return []

        leg.last_seen = now
        if top_branch is not None and top_branch == leg.origin_branch:
            leg.seen_at_origin = True
        target = self.extension_of(uri_user(request.uri))
        if top_branch is not None:
            leg.branches.setdefault(top_branch, target[0] if target else None)
        if target is not None:
            events.extend(self._open_callee(leg, target[0], target[1], now))
        return events

    def _new_leg(self, request: Request, origin_branch: str | None, now: datetime) -> _Leg:
        info = read_invite(request)
        group = request.call_id
        if self._link_header:
            linked = (request.headers.get(self._link_header) or "").strip()
            group = linked or group
        leg = _Leg(
            call_id=request.call_id,
            from_tag=request.from_tag or "",
            group=group,
            info=info,
            origin_branch=origin_branch,
            started_at=now,
            last_seen=now,
            invite_cseq=info.cseq,
        )
        if info.replaces is not None:
            replaces = info.replaces
            leg.replaces = self._find_dialog(replaces.call_id, replaces.to_tag, replaces.from_tag)
        self._legs[(leg.call_id, leg.from_tag)] = leg
        self._legs_by_call_id.setdefault(leg.call_id, []).append(leg)
        self._legs_by_group.setdefault(leg.group, []).append(leg)
        return leg

    def _reinvite(self, request: Request, now: datetime) -> list[CallEvent]:
        dialog = self._find_dialog(request.call_id, request.from_tag, request.to_tag)
        if dialog is None:
            # NOTE: a call already in progress when observation started stays unseen:
            # an in-dialog request cannot tell who placed the call.
            return []
        dialog.last_seen = now
        dialog.leg.last_seen = now
        holds = offer_holds(request.body, request.headers.get("Content-Type"))
        if holds is not None:
            dialog.leg.offers[(request.from_tag or "", request.cseq[0])] = holds
        return self._update_identity(dialog, request)

    def _cancel(self, request: Request, now: datetime) -> list[CallEvent]:
        leg = self._legs.get((request.call_id, request.from_tag or ""))
        # RFC 3261 §9.1: a CANCEL carries the CSeq number of the INVITE it cancels.
        if leg is None or request.cseq[0] != leg.invite_cseq:
            return []
        leg.last_seen = now
        branch = request.top_via.branch
        at_origin = branch is not None and branch == leg.origin_branch
        elsewhere = answered_elsewhere(request)
        if at_origin:
            leg.cancelled = True

        if not at_origin and branch in leg.branches:
            extensions = [leg.branches[branch]] if leg.branches[branch] else []
        else:
            extensions = list(leg.callee_exts)
        if elsewhere:
            if at_origin or branch not in leg.branches:
                leg.elsewhere_all = True
            leg.elsewhere.update(extension for extension in extensions if extension)

        events: list[CallEvent] = []
        for record in self._callee_records(leg, extensions):
            events.extend(self._end_unanswered(record, leg, now))
        return events

    def _bye(self, request: Request, now: datetime) -> list[CallEvent]:
        dialog = self._find_dialog(request.call_id, request.from_tag, request.to_tag)
        if dialog is None or dialog.state == _TERMINATED:
            return []
        dialog.state = _TERMINATED
        dialog.last_seen = now
        leg = dialog.leg
        leg.last_seen = now
        if all(other.state != _CONFIRMED for other in leg.dialogs.values()):
            leg.ended_at = now

        events: list[CallEvent] = []
        for record in list(leg.calls):
            if record.dialog is not dialog or record.ended:
                continue
            events.extend(self._hang_up(record, dialog, now))
        return events

    def _refer(self, request: Request, now: datetime) -> None:
        dialog = self._find_dialog(request.call_id, request.from_tag, request.to_tag)
        refer_to = request.headers.get("Refer-To")
        if dialog is None or not refer_to:
            return
        dialog.last_seen = now
        target, replaces = refer_target(refer_to)
        extension = self.extension_of(target)
        dialog.transfer = _Transfer(request.from_tag or "", extension[0] if extension else target, replaces)

    def _notify(self, request: Request, now: datetime) -> None:
        # RFC 3515 §2.4.5: the transferee reports the outcome of the REFER in NOTIFYs
        # with a message/sipfrag body. A final status of 300 or more means it failed.
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            return
        status = sipfrag_status(request.body)
        if status is None or status < 300:
            return
        dialog = self._find_dialog(request.call_id, request.from_tag, request.to_tag)
        if dialog is not None:
            dialog.transfer = None

    # Responses --------------------------------------------------------------------------

    def _response(self, response: Response, now: datetime) -> list[CallEvent]:
        cseq, method = response.cseq
        method = method.upper()
        if method == "REFER":
            if response.status >= 300:
                dialog = self._find_dialog(response.call_id, response.from_tag, response.to_tag)
                if dialog is not None and dialog.transfer and dialog.transfer.by_tag == response.from_tag:
                    dialog.transfer = None
            return []
        if method not in ("INVITE", "UPDATE"):
            return []

        leg = self._legs.get((response.call_id, response.from_tag or ""))
        if method == "INVITE" and leg is not None and cseq == leg.invite_cseq:
            leg.last_seen = now
            return self._invite_response(leg, response, now)
        return self._reinvite_response(response, now)

    def _invite_response(self, leg: _Leg, response: Response, now: datetime) -> list[CallEvent]:
        status = response.status
        if status < 101:
            # A 100 Trying may carry a To-tag, but it creates no dialog (RFC 3261 §12.1).
            return []
        branch = response.top_via.branch
        at_origin = branch is not None and branch == leg.origin_branch
        to_tag = response.to_tag

        if status < 300:
            if to_tag is None:
                return []
            dialog = self._dialog(leg, to_tag, response, branch, now)
            if status < 200:
                return []
            if dialog.state == _EARLY:
                dialog.state = _CONFIRMED
            return self._answered(leg, dialog, now)

        if to_tag is not None:
            dialog = self._dialog(leg, to_tag, response, branch, now)
            dialog.state = _TERMINATED
        return self._failed(leg, response, at_origin, branch, now)

    def _reinvite_response(self, response: Response, now: datetime) -> list[CallEvent]:
        dialog = self._find_dialog(response.call_id, response.from_tag, response.to_tag)
        if dialog is None:
            return []
        holds = dialog.leg.offers.pop((response.from_tag or "", response.cseq[0]), None)
        if holds is None or not 200 <= response.status < 300:
            return []
        dialog.last_seen = now
        if holds:
            dialog.hold_tags.add(response.from_tag or "")
        else:
            dialog.hold_tags.discard(response.from_tag or "")

        events: list[CallEvent] = []
        for record in dialog.leg.calls:
            if record.dialog is dialog and not record.ended:
                events.extend(self._set_hold(record, bool(dialog.hold_tags)))
        return events

    def _dialog(self, leg: _Leg, to_tag: str, response: Response, branch: str | None, now: datetime) -> _Dialog:
        dialog = leg.dialogs.get(to_tag)
        if dialog is None:
            dialog = leg.dialogs[to_tag] = _Dialog(leg=leg, to_tag=to_tag, owner=None, last_seen=now)
        if dialog.owner is None:
            dialog.owner = self._owner(leg, response, branch)
        dialog.last_seen = now
        return dialog

    def _owner(self, leg: _Leg, response: Response, branch: str | None) -> str | None:
        """Name the monitored extension that sent a response, if the engine can tell."""
        if branch is not None and branch != leg.origin_branch and branch in leg.branches:
            # The branch of a hop below the caller: the INVITE on it named its target.
            return leg.branches[branch]
        if len(leg.callee_exts) == 1:
            return next(iter(leg.callee_exts))
        contact = uri_user(_contact_uri(response))
        if contact in leg.callee_exts:
            return contact
        return None

    def _answered(self, leg: _Leg, dialog: _Dialog, now: datetime) -> list[CallEvent]:
        events: list[CallEvent] = []
        for record in list(leg.calls):
            if record.ended:
                continue
            if record.role is Role.CALLER or record.call.extension == dialog.owner:
                if self._governs(record, leg, ending=False):
                    events.extend(self._connect(record, dialog, now))
            elif dialog.owner is not None and not record.connected and self._governs(record, leg):
                # A forking proxy CANCELs the other forks at once; their ring ends here.
                events.extend(self._end(
                    record, now, Outcome.ANSWERED_ELSEWHERE, REASON_RING_GROUP, answered_by=dialog.owner,
                ))
        events.extend(self._take_over(leg, now))
        return events

    def _failed(
        self, leg: _Leg, response: Response, at_origin: bool, branch: str | None, now: datetime
    ) -> list[CallEvent]:
        status = response.status
        if status in CHALLENGE_CODES or 300 <= status < 400:
            if at_origin:
                leg.retry = (status, now)
            if status in CHALLENGE_CODES:
                return []

        if not at_origin and branch in leg.branches:
            extensions = [leg.branches[branch]] if leg.branches[branch] else []
        elif at_origin or len(leg.callee_exts) == 1:
            extensions = list(leg.callee_exts)
        else:
            extensions = []

        events: list[CallEvent] = []
        for record in self._callee_records(leg, extensions):
            if 300 <= status < 400:
                target = uri_user(_contact_uri(response))
                events.extend(self._end(record, now, Outcome.TRANSFERRED, str(status), transferred_to=target))
            elif status == 487:
                events.extend(self._end_unanswered(record, leg, now))
            else:
                outcome, reason = _callee_failure(status)
                events.extend(self._end(record, now, outcome, reason))

        if at_origin and leg.retry is None:
            leg.ended_at = now
            events.extend(self._fail_leg(leg, status, now))
        return events

    # Calls ------------------------------------------------------------------------------

    def _open_caller(self, leg: _Leg, now: datetime) -> list[CallEvent]:
        extension = leg.info.caller_user if leg.info.caller_user in self._extensions else None
        if extension is None:
            return []
        number = leg.info.target_user
        display = leg.info.to_display if leg.info.to_user == number else None
        remote = RemoteParty(number=number, display_name=display)
        return self._open(leg, extension, Role.CALLER, remote, None, now)

    def _open_callee(self, leg: _Leg, extension: str, direct: bool, now: datetime) -> list[CallEvent]:
        if extension in leg.callee_exts:
            leg.callee_exts[extension] = leg.callee_exts[extension] or direct
            return []
        if extension == leg.info.caller_user:
            return []
        leg.callee_exts[extension] = direct
        original = leg.info.original_called or leg.info.target_user
        called = original if original != extension else None
        return self._open(leg, extension, Role.CALLEE, leg.info.caller, called, now)

    def _open(
        self, leg: _Leg, extension: str, role: Role, remote: RemoteParty, called: str | None, now: datetime
    ) -> list[CallEvent]:
        key = (leg.group, extension, role)
        record = self._records.get(key) or self._twin(leg, extension, role, remote, now)
        if record is not None:
            # Another leg of the same call: a B2BUA's leg, linked by header or by caller.
            record.legs.append(leg)
            leg.calls.append(record)
            if record.call.called is None and called is not None:
                record.call.called = called
                return [CallEvent(EventKind.UPDATED, record.call.snapshot())] if record.announced else []
            return []

        direction = Direction.OUTBOUND if role is Role.CALLER else Direction.INBOUND
        if remote.number is not None and self._is_internal(remote.number):
            direction = Direction.INTERNAL
        call = Call(
            id=self._new_id(),
            extension=extension,
            direction=direction,
            state=CallState.RINGING,
            started_at=now,
            remote=remote,
            called=called,
            referred_by=leg.info.referred_by,
            sip_call_id=leg.call_id,
        )
        # An INVITE that replaces a connected dialog (attended transfer) rings no phone:
        # its call is announced when it connects.
        announced = leg.replaces is None or leg.replaces.state != _CONFIRMED
        record = _CallRecord(call=call, role=role, legs=[leg], announced=announced)
        leg.calls.append(record)
        self._records[key] = record
        self._live.append(record)
        return [CallEvent(EventKind.RINGING, call.snapshot())] if announced else []

    def _twin(self, leg: _Leg, extension: str, role: Role, remote: RemoteParty, now: datetime) -> _CallRecord | None:
        """Find a live call of the extension that another leg of this call opened moments ago."""
        for record in self._live:
            call = record.call
            if record.ended or call.extension != extension or record.role is not role:
                continue
            if any(other.group == leg.group or other.ended_at is not None for other in record.legs):
                continue
            if now - call.started_at > timedelta(seconds=LEG_MATCH_WINDOW_SECONDS):
                continue
            if call.remote.number == remote.number and call.remote.withheld == remote.withheld:
                if remote.number is not None or remote.withheld:
                    return record
        return None

    def _connect(self, record: _CallRecord, dialog: _Dialog, now: datetime) -> list[CallEvent]:
        if record.connected or record.ended:
            return []
        record.dialog = dialog
        record.announced = True
        record.call.state = CallState.CONNECTED
        record.call.answered_at = now
        return [CallEvent(EventKind.CONNECTED, record.call.snapshot())]

    def _set_hold(self, record: _CallRecord, held: bool) -> list[CallEvent]:
        call = record.call
        if held and call.state == CallState.CONNECTED:
            call.state = CallState.HELD
            return [CallEvent(EventKind.HELD, call.snapshot())]
        if not held and call.state == CallState.HELD:
            call.state = CallState.CONNECTED
            return [CallEvent(EventKind.RESUMED, call.snapshot())]
        return []

    def _update_identity(self, dialog: _Dialog, request: Request) -> list[CallEvent]:
        """Take in a new party a B2BUA presents in a re-INVITE or UPDATE (connected line)."""
        if "P-Asserted-Identity" not in request.headers and "Remote-Party-ID" not in request.headers:
            return []
        party = caller_party(request.headers)
        sender_is_caller = request.from_tag == dialog.leg.from_tag
        events: list[CallEvent] = []
        for record in dialog.leg.calls:
            if record.dialog is not dialog or record.ended:
                continue
            # The callee's remote is the caller, so only the caller's side can change it.
            if (record.role is Role.CALLEE) != sender_is_caller or party == record.call.remote:
                continue
            record.call.remote = party
            events.append(CallEvent(EventKind.UPDATED, record.call.snapshot()))
        return events

    def _take_over(self, leg: _Leg, now: datetime) -> list[CallEvent]:
        """Apply an answered INVITE with Replaces (RFC 3891) to the dialog it replaces."""
        replaced = leg.replaces
        if replaced is None or replaced.replaced_by is leg:
            return []
        replaced.replaced_by = leg
        if replaced.state != _EARLY:
            return []
        # Replacing a ringing dialog is a pickup: the ringing extension did not miss it.
        picker = leg.info.caller_user if leg.info.caller_user in self._extensions else leg.info.caller.number
        events: list[CallEvent] = []
        for record in replaced.leg.calls:
            if record.role is Role.CALLEE and record.call.extension == replaced.owner and not record.ended:
                events.extend(self._end(record, now, Outcome.ANSWERED_ELSEWHERE, REASON_PICKUP, answered_by=picker))
        return events

    # Endings ----------------------------------------------------------------------------

    def _end_unanswered(self, record: _CallRecord, leg: _Leg, now: datetime) -> list[CallEvent]:
        """End a callee's ring that was CANCELled: answered elsewhere or missed (RFC 3326)."""
        extension = record.call.extension
        answered, answerer = self._answered_elsewhere(record)
        if answered or leg.elsewhere_all or extension in leg.elsewhere:
            return self._end(record, now, Outcome.ANSWERED_ELSEWHERE, REASON_RING_GROUP, answered_by=answerer)
        reason = REASON_CALLER_HANGUP if self._caller_gave_up(record, leg) else REASON_NO_ANSWER
        return self._end(record, now, Outcome.MISSED, reason)

    def _answered_elsewhere(self, record: _CallRecord) -> tuple[bool, str | None]:
        """Tell whether another party answered this call, on its own legs or on linked legs."""
        legs = {id(leg): leg for leg in record.legs}
        for leg in record.legs:
            legs.update((id(other), other) for other in self._legs_by_group.get(leg.group, []))
        found = False
        for leg in legs.values():
            for dialog in leg.dialogs.values():
                if dialog.state == _EARLY or dialog.owner == record.call.extension:
                    continue
                if dialog.state == _CONFIRMED or dialog.replaced_by is not None:
                    if dialog.owner is not None:
                        return True, dialog.owner
                    found = True
        return found, None

    def _caller_gave_up(self, record: _CallRecord, leg: _Leg) -> bool:
        others = [other for other in record.legs if other is not leg]
        if others:
            # A B2BUA CANCELs its leg to the phone when the caller's leg ends, or on its
            # own no-answer timer while the caller's leg stays up.
            return all(other.cancelled or other.ended_at is not None for other in others)
        if leg.cancelled:
            return True
        # A CANCEL below the caller's hop with none from the caller: the proxy's timer.
        # Without a view of the caller's hop, RFC 3326 reads a CANCEL without Reason as
        # the caller giving up.
        return not leg.seen_at_origin

    def _fail_leg(self, leg: _Leg, status: int, now: datetime) -> list[CallEvent]:
        """End the calls a leg's final failure ends: its caller's call and its ringing callees."""
        events: list[CallEvent] = []
        for record in list(leg.calls):
            if record.ended or record.connected or not self._governs(record, leg):
                continue
            if record.role is Role.CALLER:
                outcome, reason = _caller_failure(status, leg.cancelled)
                events.extend(self._end(record, now, outcome, reason))
            elif status == 487:
                events.extend(self._end_unanswered(record, leg, now))
            else:
                outcome, reason = _callee_failure(status)
                events.extend(self._end(record, now, outcome, reason))
        return events

    def _hang_up(self, record: _CallRecord, dialog: _Dialog, now: datetime) -> list[CallEvent]:
        own_tag = dialog.to_tag if record.role is Role.CALLEE else dialog.leg.from_tag
        transfer = dialog.transfer
        if transfer is not None and transfer.by_tag == own_tag:
            # This extension sent the REFER: it handed the call on (RFC 3515).
            return self._end(record, now, Outcome.TRANSFERRED, None, transferred_to=transfer.target)
        replacing = dialog.replaced_by
        if replacing is not None and record.call.extension not in self._parties(replacing):
            # An attended transfer joined this extension's peer to someone else.
            target = replacing.info.caller.number
            return self._end(record, now, Outcome.TRANSFERRED, REASON_REPLACED, transferred_to=target)
        return self._end(record, now, Outcome.ANSWERED, None)

    def _end(
        self,
        record: _CallRecord,
        now: datetime,
        outcome: Outcome,
        reason: str | None,
        *,
        answered_by: str | None = None,
        transferred_to: str | None = None,
        confidence: Confidence = Confidence.CERTAIN,
    ) -> list[CallEvent]:
        if record.ended:
            return []
        call = record.call
        call.state = CallState.ENDED
        call.ended_at = now
        call.outcome = outcome
        call.confidence = confidence
        call.outcome_reason = reason
        call.answered_by = answered_by
        call.transferred_to = transferred_to
        for key, known in list(self._records.items()):
            if known is record:
                del self._records[key]
        self._live.remove(record)
        return [CallEvent(EventKind.ENDED, call.snapshot())] if record.announced else []

    def _expire_record(self, record: _CallRecord, now: datetime) -> list[CallEvent]:
        call = record.call
        if call.state == CallState.RINGING:
            if now - call.started_at < timedelta(seconds=PHANTOM_RING_SECONDS):
                return []
            outcome = Outcome.FAILED if record.role is Role.CALLER else Outcome.MISSED
            return self._end(record, now, outcome, REASON_PHANTOM, confidence=Confidence.INFERRED)
        last_seen = max(leg.last_seen for leg in record.legs)
        if record.dialog is not None:
            last_seen = max(last_seen, record.dialog.last_seen)
        if now - last_seen < timedelta(seconds=STALE_CALL_SECONDS):
            return []
        return self._end(record, now, Outcome.ANSWERED, None, confidence=Confidence.INFERRED)

    # Helpers ----------------------------------------------------------------------------

    def _governs(self, record: _CallRecord, leg: _Leg, *, ending: bool = True) -> bool:
        """Tell whether a leg decides a call's state when the call runs on several legs.

        A caller's call is ended only by its first leg, the phone's own. A callee's call
        follows the legs that named the extension itself (the phone's leg of a B2BUA),
        not one that reached it through a DID, because the PBX may answer that one with
        voicemail.
        """
        if record.role is Role.CALLER:
            return not ending or leg is record.legs[0]
        extension = record.call.extension
        direct = [other for other in record.legs if other.callee_exts.get(extension)]
        return not direct or leg in direct

    def _callee_records(self, leg: _Leg, extensions: list[str | None]) -> list[_CallRecord]:
        wanted = {extension for extension in extensions if extension}
        return [
            record for record in leg.calls
            if record.role is Role.CALLEE and record.call.extension in wanted
            and not record.ended and not record.connected and self._governs(record, leg)
        ]

    def _parties(self, leg: _Leg) -> set[str]:
        parties = set(leg.callee_exts)
        if leg.info.caller_user:
            parties.add(leg.info.caller_user)
        return parties

    def _find_dialog(self, call_id: str, tag: str | None, other_tag: str | None) -> _Dialog | None:
        """Find a dialog by Call-ID and its two tags in either order (RFC 3261 §12)."""
        if not tag or not other_tag:
            return None
        for leg in self._legs_by_call_id.get(call_id, []):
            if leg.from_tag == tag and other_tag in leg.dialogs:
                return leg.dialogs[other_tag]
            if leg.from_tag == other_tag and tag in leg.dialogs:
                return leg.dialogs[tag]
        return None

    def _is_internal(self, number: str) -> bool:
        return number in self._extensions or _INTERNAL_NUMBER.fullmatch(number) is not None

    def _seen_before(
        self, message: Request | Response, source: Address | None, destination: Address | None, now: datetime
    ) -> bool:
        first = (message.method, message.uri) if isinstance(message, Request) else (message.status,)
        key = (
            source, destination, *first, message.call_id, message.cseq,
            message.top_via.branch, message.from_tag, message.to_tag,
        )
        if key in self._seen:
            return True
        self._seen[key] = now
        while len(self._seen) > MAX_REMEMBERED_MESSAGES:
            del self._seen[next(iter(self._seen))]
        return False

    def _forget(self, now: datetime) -> None:
        transaction = timedelta(seconds=TRANSACTION_SECONDS)
        stale: list[tuple[object, ...]] = []
        for key, seen_at in self._seen.items():
            if now - seen_at <= transaction:
                break  # Entries are in arrival order.
            stale.append(key)
        for key in stale:
            del self._seen[key]

        for key, leg in list(self._legs.items()):
            if any(not record.ended for record in leg.calls):
                continue
            idle = now - leg.last_seen
            # A leg that never ended is kept longer: a transfer may still name its dialog.
            if idle <= transaction or (leg.ended_at is None and idle <= timedelta(seconds=STALE_CALL_SECONDS)):
                continue
            del self._legs[key]
            _remove(self._legs_by_call_id, leg.call_id, leg)
            _remove(self._legs_by_group, leg.group, leg)


def _callee_failure(status: int) -> tuple[Outcome, str]:
    if status in BUSY_CODES:
        return Outcome.BUSY, str(status)
    if status in DECLINED_CODES:
        return Outcome.REJECTED, str(status)
    if status in NO_ANSWER_CODES:
        return Outcome.MISSED, REASON_NO_ANSWER
    return Outcome.MISSED, str(status)


def _caller_failure(status: int, cancelled: bool) -> tuple[Outcome, str]:
    if cancelled or status == 487:
        return Outcome.FAILED, REASON_CALLER_HANGUP
    if status in BUSY_CODES:
        return Outcome.BUSY, str(status)
    if status in DECLINED_CODES:
        return Outcome.REJECTED, str(status)
    return Outcome.FAILED, str(status)


def _contact_uri(message: Request | Response) -> str | None:
    value = message.headers.get("Contact")
    if not value:
        return None
    start, end = value.find("<"), value.find(">")
    if 0 <= start < end:
        return value[start + 1:end]
    return value.split(";")[0].strip()


def _digits(number: str) -> str:
    return "".join(char for char in number if char.isdigit())


def _unique_suffixes(dids: Mapping[str, str]) -> dict[str, str]:
    """Map the last DID_MATCH_DIGITS digits of each long DID to its extension, when unambiguous."""
    suffixes: dict[str, str | None] = {}
    for digits, extension in dids.items():
        if len(digits) < DID_MATCH_DIGITS:
            continue
        suffix = digits[-DID_MATCH_DIGITS:]
        suffixes[suffix] = extension if suffixes.get(suffix, extension) == extension else None
    return {suffix: extension for suffix, extension in suffixes.items() if extension is not None}


def _remove(index: dict[str, list[_Leg]], key: str, leg: _Leg) -> None:
    legs = index.get(key)
    if legs is None:
        return
    legs[:] = [other for other in legs if other is not leg]
    if not legs:
        del index[key]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"invalid time {moment.isoformat()}: expected a timezone-aware datetime")
    return moment.astimezone(timezone.utc)

"""The call tracker: dialog-info documents in, call events out."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from sip.dialoginfo import DialogInfo, parse_dialog_info
from sip.model import CallState, Confidence, Direction, EventKind, Outcome
from sip.profiles import PROFILES, PbxProfile
from sip.tracker import LINGER_SECONDS, RING_GROUP_WINDOW_SECONDS, CallTracker

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
CALLER = "sip:+41441234567@pbx.example.com"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tracker(extensions=("201", "202"), pbx: str = "generic", **options) -> CallTracker:
    counter = itertools.count(1)
    return CallTracker(extensions, PROFILES[pbx], id_factory=lambda: f"call-{next(counter)}", **options)


def dialog(
    dialog_id: str,
    state: str,
    *,
    call_id: str | None = None,
    direction: str | None = "recipient",
    remote: str | None = CALLER,
    display: str | None = None,
    event: str | None = None,
    code: int | None = None,
    rendering: str | None = None,
    replaces: str | None = None,
) -> str:
    attributes = f'id="{dialog_id}"'
    if call_id:
        attributes += f' call-id="{call_id}"'
    if direction:
        attributes += f' direction="{direction}"'
    state_attributes = ""
    if event:
        state_attributes += f' event="{event}"'
    if code:
        state_attributes += f' code="{code}"'
    parts = [f"<dialog {attributes}>", f"<state{state_attributes}>{state}</state>"]
    if replaces:
        parts.append(f'<replaces call-id="{replaces}" local-tag="l" remote-tag="r"/>')
    if rendering:
        param = f'<param pname="+sip.rendering" pval="{rendering}"/>'
        parts.append(f'<local><target uri="sip:me@pbx">{param}</target></local>')
    if remote:
        display_attribute = f' display="{display}"' if display else ""
        parts.append(f"<remote><identity{display_attribute}>{remote}</identity></remote>")
    parts.append("</dialog>")
    return "".join(parts)


def doc(version: int, *dialogs: str, state: str = "full") -> DialogInfo:
    body = (
        f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="{state}" '
        f'entity="sip:ext@pbx.example.com">{"".join(dialogs)}</dialog-info>'
    )
    return parse_dialog_info(body.encode())


def kinds(events) -> list[EventKind]:
    return [event.kind for event in events]


# Life of a call -------------------------------------------------------------------------


def test_call_answered_then_ended():
    calls = tracker()

    ringing = calls.apply("201", doc(1, dialog("d1", "early", call_id="c1")), at(0))
    connected = calls.apply("201", doc(2, dialog("d1", "confirmed", call_id="c1")), at(4))
    ended = calls.apply("201", doc(3, dialog("d1", "terminated", call_id="c1", event="remote-bye")), at(64))

    assert kinds(ringing + connected + ended) == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]
    call = ended[0].call
    assert (call.id, call.extension, call.sip_call_id) == ("call-1", "201", "c1")
    assert (call.started_at, call.answered_at, call.ended_at) == (at(0), at(4), at(64))
    assert call.duration_seconds == 60.0
    assert (call.outcome, call.confidence) == (Outcome.ANSWERED, Confidence.CERTAIN)
    assert call.remote.number == "+41441234567"
    assert call.direction == Direction.INBOUND
    assert calls.active_calls() == []


def test_events_carry_snapshots():
    calls = tracker()

    ringing = calls.apply("201", doc(1, dialog("d1", "early")), at(0))
    calls.apply("201", doc(2, dialog("d1", "confirmed")), at(3))

    assert ringing[0].call.state == CallState.RINGING
    assert ringing[0].call.answered_at is None


def test_trying_is_ringing():
    events = tracker().apply("201", doc(0, dialog("d1", "trying", direction="initiator", remote=None)), at(0))

    assert kinds(events) == [EventKind.RINGING]
    assert events[0].call.direction == Direction.OUTBOUND


def test_proceeding_then_confirmed():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "proceeding")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "confirmed")), at(2))

    assert kinds(events) == [EventKind.CONNECTED]


def test_first_seen_confirmed_connected():
    events = tracker().apply("201", doc(1, dialog("d1", "confirmed")), at(0))

    assert kinds(events) == [EventKind.CONNECTED]
    assert events[0].call.answered_at == at(0)


def test_first_seen_confirmed_on_asterisk():
    document = doc(1, dialog("201", "confirmed", direction=None, remote=None))

    events = tracker(pbx="asterisk").apply("201", document, at(0))

    assert kinds(events) == [EventKind.CONNECTED]
    assert events[0].call.answered_at is None
    assert events[0].call.direction == Direction.UNKNOWN


def test_untimed_answer_inferred():
    calls = CallTracker(["201"], PbxProfile(name="test", outgoing_confirmed_at_once=True))
    calls.apply("201", doc(1, dialog("d1", "confirmed")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "terminated")), at(30))

    assert (events[0].call.outcome, events[0].call.confidence) == (Outcome.ANSWERED, Confidence.INFERRED)


def test_hold_and_resume():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "confirmed", rendering="yes")), at(0))

    held = calls.apply("201", doc(2, dialog("d1", "confirmed", rendering="no")), at(10))
    still_held = calls.apply("201", doc(3, dialog("d1", "confirmed", rendering="no")), at(11))
    resumed = calls.apply("201", doc(4, dialog("d1", "confirmed")), at(20))

    assert kinds(held) == [EventKind.HELD]
    assert held[0].call.state == CallState.HELD
    assert still_held == []
    assert kinds(resumed) == [EventKind.RESUMED]
    assert resumed[0].call.state == CallState.CONNECTED


def test_held_call_ends_answered():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "confirmed", rendering="no")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "terminated")), at(30))

    assert events[0].call.outcome == Outcome.ANSWERED


# Versions and document kinds -------------------------------------------------------------


def test_stale_version_ignored():
    calls = tracker()
    calls.apply("201", doc(5, dialog("d1", "early")), at(0))

    repeated = calls.apply("201", doc(5, dialog("d1", "confirmed")), at(1))
    older = calls.apply("201", doc(4, dialog("d1", "terminated")), at(2))
    newer = calls.apply("201", doc(6, dialog("d1", "confirmed")), at(3))

    assert repeated == []
    assert older == []
    assert kinds(newer) == [EventKind.CONNECTED]


def test_new_subscription_restarts_versions():
    calls = tracker()
    calls.apply("201", doc(9, dialog("d1", "early")), at(0))
    calls.new_subscription("201")

    events = calls.apply("201", doc(0, dialog("d1", "confirmed")), at(1))

    assert kinds(events) == [EventKind.CONNECTED]


def test_versions_per_extension():
    calls = tracker()
    calls.apply("201", doc(50, dialog("d1", "early")), at(0))

    events = calls.apply("202", doc(1, dialog("d2", "early")), at(1))

    assert kinds(events) == [EventKind.RINGING]


def test_document_without_version_applied():
    calls = tracker()
    calls.apply("201", doc(3, dialog("d1", "early")), at(0))

    events = calls.apply("201", DialogInfo(version=None, state="full", entity=None), at(1))

    assert kinds(events) == [EventKind.ENDED]
    assert events[0].call.outcome == Outcome.MISSED


def test_states_only_move_forward():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "confirmed")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "early", remote="sip:0449876543@pbx")), at(1))

    assert events == []
    assert [call.state for call in calls.active_calls()] == [CallState.CONNECTED]
    assert [call.remote.number for call in calls.active_calls()] == ["+41441234567"]


def test_partial_keeps_unlisted_dialogs():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "confirmed"), dialog("d2", "early", remote="sip:0449876543@pbx")), at(0))

    events = calls.apply("201", doc(2, dialog("d2", "terminated", event="cancelled"), state="partial"), at(5))

    assert kinds(events) == [EventKind.ENDED]
    assert events[0].call.outcome_reason == "caller_hangup"
    assert [call.remote.number for call in calls.active_calls()] == ["+41441234567"]


def test_full_ends_unlisted_dialogs():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "confirmed"), dialog("d2", "early")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "confirmed")), at(5))

    assert kinds(events) == [EventKind.ENDED]
    assert events[0].call.outcome == Outcome.MISSED
    assert events[0].call.outcome_reason is None


def test_one_leg_profile_keeps_unlisted():
    generic, freeswitch = tracker(), tracker(pbx="freeswitch")
    for calls in (generic, freeswitch):
        calls.apply("201", doc(1, dialog("leg-1", "confirmed")), at(0))

    generic_events = generic.apply("201", doc(2, dialog("leg-2", "early")), at(5))
    freeswitch_events = freeswitch.apply("201", doc(2, dialog("leg-2", "early")), at(5))

    assert kinds(generic_events) == [EventKind.RINGING, EventKind.ENDED]
    assert kinds(freeswitch_events) == [EventKind.RINGING]
    assert len(freeswitch.active_calls()) == 2


def test_one_leg_profile_first_document_full():
    calls = tracker(pbx="freeswitch")
    calls.apply("201", doc(1, dialog("leg-1", "confirmed"), dialog("leg-2", "confirmed")), at(0))
    calls.new_subscription("201")

    probe = calls.apply("201", doc(0, dialog("leg-2", "confirmed")), at(60))
    later = calls.apply("201", doc(1, dialog("leg-3", "early")), at(70))

    assert kinds(probe) == [EventKind.ENDED]
    assert kinds(later) == [EventKind.RINGING]
    assert len(calls.active_calls()) == 2


def test_one_leg_profile_empty_full_is_idle():
    calls = tracker(pbx="freeswitch")
    calls.apply("201", doc(1, dialog("leg-1", "confirmed"), dialog("leg-2", "early")), at(0))

    events = calls.apply("201", doc(2), at(5))

    assert sorted(event.call.outcome for event in events) == [Outcome.ANSWERED, Outcome.MISSED]
    assert calls.active_calls() == []


# Dialog ids -----------------------------------------------------------------------------


def test_terminated_listing_ignored():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early")), at(0))
    calls.apply("201", doc(2, dialog("d1", "terminated")), at(5))

    again = calls.apply("201", doc(3, dialog("d1", "terminated"), dialog("d2", "early")), at(8))
    vanished = calls.apply("201", doc(4, dialog("d2", "early")), at(15))

    assert kinds(again) == [EventKind.RINGING]
    assert vanished == []


def test_first_seen_terminated_ignored():
    events = tracker().apply("201", doc(1, dialog("d1", "terminated", event="cancelled")), at(0))

    assert events == []


def test_reused_id_starts_new_call():
    calls = tracker(pbx="asterisk")
    first = calls.apply("201", doc(1, dialog("201", "early")), at(0))
    calls.apply("201", doc(2, dialog("201", "terminated", direction=None, remote=None)), at(5))

    second = calls.apply("201", doc(3, dialog("201", "early")), at(60))

    assert kinds(second) == [EventKind.RINGING]
    assert second[0].call.id != first[0].call.id


def test_ended_ids_forgotten_after_linger():
    calls = tracker(linger_seconds=30)
    calls.apply("201", doc(1, dialog("d1", "early"), state="partial"), at(0))
    calls.apply("201", doc(2, dialog("d1", "terminated"), state="partial"), at(5))

    calls.expire(at(40))
    late = calls.apply("201", doc(3, dialog("d1", "terminated"), state="partial"), at(41))

    assert late == []
    assert LINGER_SECONDS > 30


def test_forks_share_one_call():
    calls = tracker()

    both_ring = doc(1, dialog("fork-1", "early", call_id="c1"), dialog("fork-2", "early", call_id="c1"))
    one_answers = doc(
        2,
        dialog("fork-1", "confirmed", call_id="c1"),
        dialog("fork-2", "terminated", call_id="c1", event="cancelled"),
    )

    ringing = calls.apply("201", both_ring, at(0))
    answered = calls.apply("201", one_answers, at(4))
    ended = calls.apply("201", doc(3, dialog("fork-1", "terminated", call_id="c1")), at(30))

    assert kinds(ringing) == [EventKind.RINGING]
    assert kinds(answered) == [EventKind.CONNECTED]
    assert kinds(ended) == [EventKind.ENDED]
    assert ended[0].call.outcome == Outcome.ANSWERED


# Remote party and direction -------------------------------------------------------------


def test_identity_arrives_later():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early", remote=None)), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "early", remote="sip:7040@pbx", display="Reception")), at(1))

    assert kinds(events) == [EventKind.UPDATED]
    assert events[0].call.remote.number == "7040"
    assert events[0].call.remote.display_name == "Reception"
    assert events[0].call.direction == Direction.INTERNAL


def test_identity_kept_after_answer():
    calls = tracker(pbx="asterisk")
    calls.apply("201", doc(1, dialog("201", "early", display="Alice Example")), at(0))

    events = calls.apply("201", doc(2, dialog("201", "confirmed", direction=None, remote=None)), at(3))

    assert kinds(events) == [EventKind.CONNECTED]
    assert events[0].call.remote.number == "+41441234567"
    assert events[0].call.remote.display_name == "Alice Example"
    assert events[0].call.direction == Direction.INBOUND


def test_remote_target_when_no_identity():
    body = doc(1, dialog("d1", "early", remote=None)).dialogs[0]
    body.remote_target = "sip:0449876543@192.0.2.7"
    document = DialogInfo(version=1, state="full", entity=None, dialogs=[body])

    events = tracker().apply("201", document, at(0))

    assert events[0].call.remote.number == "0449876543"


@pytest.mark.parametrize(
    ("direction", "remote", "expected"),
    [
        ("recipient", CALLER, Direction.INBOUND),
        ("initiator", CALLER, Direction.OUTBOUND),
        (None, CALLER, Direction.UNKNOWN),
        ("recipient", None, Direction.INBOUND),
        ("recipient", "sip:202@pbx", Direction.INTERNAL),
        ("initiator", "sip:499701@pbx", Direction.INTERNAL),
        ("recipient", "sip:bob@pbx", Direction.INTERNAL),
        ("recipient", "sip:1234567@pbx", Direction.INBOUND),
        ("recipient", "sip:**201@pbx", Direction.INBOUND),
    ],
)
def test_direction_from_dialog(direction, remote, expected):
    calls = tracker(extensions=("201", "bob"))

    events = calls.apply("201", doc(1, dialog("d1", "early", direction=direction, remote=remote)), at(0))

    assert events[0].call.direction == expected


def test_untrusted_direction_ignored():
    innovaphone = tracker(pbx="innovaphone")
    generic = tracker()

    untrusted = innovaphone.apply("201", doc(1, dialog("1", "early", direction="initiator")), at(0))
    trusted = generic.apply("201", doc(1, dialog("1", "early", direction="initiator")), at(0))

    assert untrusted[0].call.direction == Direction.UNKNOWN
    assert trusted[0].call.direction == Direction.OUTBOUND


def test_withheld_caller():
    document = doc(1, dialog("d1", "early", remote="sip:anonymous@anonymous.invalid", display="Anonymous"))

    events = tracker().apply("201", document, at(0))

    assert events[0].call.remote.withheld is True
    assert events[0].call.remote.number is None
    assert events[0].call.direction == Direction.INBOUND


# Outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "code", "reason"),
    [
        ("cancelled", None, "caller_hangup"),
        ("timeout", None, "no_answer"),
        ("rejected", 480, "no_answer"),
        ("rejected", 486, "486"),
        ("rejected", None, "rejected"),
        (None, None, None),
    ],
)
def test_missed_reason(event, code, reason):
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "terminated", event=event, code=code)), at(20))

    call = events[0].call
    assert (call.outcome, call.confidence) == (Outcome.MISSED, Confidence.CERTAIN)
    assert call.outcome_reason == reason
    assert call.answered_at is None


@pytest.mark.parametrize(
    ("event", "code", "outcome", "reason"),
    [
        ("rejected", 486, Outcome.BUSY, "486"),
        ("rejected", 600, Outcome.BUSY, "600"),
        ("rejected", 603, Outcome.REJECTED, "603"),
        ("rejected", 404, Outcome.FAILED, "404"),
        ("cancelled", None, Outcome.FAILED, "caller_hangup"),
        ("timeout", None, Outcome.FAILED, "no_answer"),
    ],
)
def test_outbound_not_connected(event, code, outcome, reason):
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early", direction="initiator")), at(0))

    ended = dialog("d1", "terminated", direction="initiator", event=event, code=code)

    events = calls.apply("201", doc(2, ended), at(20))

    assert (events[0].call.outcome, events[0].call.outcome_reason) == (outcome, reason)


def test_missed_without_direction_inferred():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early", direction=None)), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "terminated", direction=None)), at(20))

    assert (events[0].call.outcome, events[0].call.confidence) == (Outcome.MISSED, Confidence.INFERRED)


def test_asterisk_outcomes_inferred():
    calls = tracker(pbx="asterisk")
    calls.apply("201", doc(1, dialog("201", "early")), at(0))

    events = calls.apply("201", doc(2, dialog("201", "terminated", direction=None, remote=None)), at(20))

    assert (events[0].call.outcome, events[0].call.confidence) == (Outcome.MISSED, Confidence.INFERRED)


def test_replaced_unanswered_is_pickup():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early", call_id="c1")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "terminated", call_id="c1", event="replaced")), at(5))

    call = events[0].call
    assert (call.outcome, call.confidence, call.outcome_reason) == (
        Outcome.ANSWERED_ELSEWHERE,
        Confidence.CERTAIN,
        "pickup",
    )
    assert call.answered_by is None


# Phantoms -------------------------------------------------------------------------------


def test_phantom_ring_closed():
    calls = tracker(phantom_early_seconds=300)
    calls.apply("201", doc(1, dialog("d1", "early")), at(0))

    early = calls.expire(at(299))
    closed = calls.expire(at(300))
    repeated = calls.apply("201", doc(2, dialog("d1", "early")), at(310))
    ended = calls.apply("201", doc(3, dialog("d1", "terminated")), at(320))
    fresh = calls.apply("201", doc(4, dialog("d1", "early")), at(400))

    assert early == []
    assert kinds(closed) == [EventKind.ENDED]
    call = closed[0].call
    assert (call.outcome, call.confidence, call.outcome_reason) == (Outcome.MISSED, Confidence.INFERRED, "phantom")
    assert repeated == []
    assert ended == []
    assert kinds(fresh) == [EventKind.RINGING]


def test_phantom_outbound_failed():
    calls = tracker(phantom_early_seconds=60)
    calls.apply("201", doc(1, dialog("d1", "trying", direction="initiator")), at(0))

    events = calls.expire(at(61))

    assert (events[0].call.outcome, events[0].call.outcome_reason) == (Outcome.FAILED, "phantom")


def test_connected_call_not_phantom():
    calls = tracker(phantom_early_seconds=60)
    calls.apply("201", doc(1, dialog("d1", "confirmed")), at(0))

    assert calls.expire(at(3600)) == []
    assert len(calls.active_calls()) == 1


# Ring groups and pickups ------------------------------------------------------------------


def ring_both(calls: CallTracker) -> None:
    calls.apply("201", doc(1, dialog("a1", "early", call_id="group-call")), at(0))
    calls.apply("202", doc(1, dialog("b1", "early", call_id="group-call")), at(0))


def test_ring_group_answer_before_end():
    calls = tracker()
    ring_both(calls)

    answered = calls.apply("202", doc(2, dialog("b1", "confirmed", call_id="group-call")), at(5))
    others = calls.apply("201", doc(2, dialog("a1", "terminated", call_id="group-call", event="cancelled")), at(5.1))

    assert kinds(answered) == [EventKind.CONNECTED]
    assert kinds(others) == [EventKind.ENDED]
    call = others[0].call
    assert (call.outcome, call.confidence) == (Outcome.ANSWERED_ELSEWHERE, Confidence.CERTAIN)
    assert (call.answered_by, call.outcome_reason) == ("202", "ring_group")


def test_ring_group_end_before_answer():
    calls = tracker()
    ring_both(calls)

    missed = calls.apply("201", doc(2, dialog("a1", "terminated", call_id="group-call")), at(5))
    answered = calls.apply("202", doc(2, dialog("b1", "confirmed", call_id="group-call")), at(5.2))

    assert kinds(missed) == [EventKind.ENDED]
    assert missed[0].call.outcome == Outcome.MISSED
    assert kinds(answered) == [EventKind.CONNECTED, EventKind.UPDATED]
    corrected = answered[1].call
    assert corrected.id == missed[0].call.id
    assert corrected.extension == "201"
    assert (corrected.outcome, corrected.answered_by, corrected.outcome_reason) == (
        Outcome.ANSWERED_ELSEWHERE,
        "202",
        "ring_group",
    )


def test_ring_group_late_answer_not_linked():
    calls = tracker()
    ring_both(calls)
    calls.apply("201", doc(2, dialog("a1", "terminated", call_id="group-call")), at(5))

    answered = calls.apply(
        "202", doc(2, dialog("b1", "confirmed", call_id="group-call")), at(5 + RING_GROUP_WINDOW_SECONDS + 1)
    )

    assert kinds(answered) == [EventKind.CONNECTED]


def test_ring_group_caller_side_not_answerer():
    calls = tracker(extensions=("201", "203"))
    calls.apply("203", doc(1, dialog("c1", "confirmed", call_id="group-call", direction="initiator")), at(0))
    calls.apply("201", doc(1, dialog("a1", "early", call_id="group-call")), at(0))

    events = calls.apply("201", doc(2, dialog("a1", "terminated", call_id="group-call")), at(5))

    assert events[0].call.outcome == Outcome.MISSED


def test_pickup_answer_before_end():
    calls = tracker()
    calls.apply("201", doc(1, dialog("a1", "early", call_id="ringing-call")), at(0))

    pickup = dialog("b1", "confirmed", call_id="pickup-leg", replaces="ringing-call")
    picked = calls.apply("202", doc(1, pickup), at(5))
    ended = calls.apply("201", doc(2, dialog("a1", "terminated", call_id="ringing-call")), at(5.1))

    assert kinds(picked) == [EventKind.CONNECTED]
    call = ended[0].call
    assert (call.outcome, call.answered_by, call.outcome_reason) == (Outcome.ANSWERED_ELSEWHERE, "202", "pickup")


def test_pickup_end_before_answer():
    calls = tracker()
    calls.apply("201", doc(1, dialog("a1", "early", call_id="ringing-call")), at(0))

    calls.apply("201", doc(2, dialog("a1", "terminated", call_id="ringing-call")), at(5))
    pickup = dialog("b1", "confirmed", call_id="pickup-leg", replaces="ringing-call")
    picked = calls.apply("202", doc(1, pickup), at(5.1))

    assert kinds(picked) == [EventKind.CONNECTED, EventKind.UPDATED]
    assert (picked[1].call.outcome, picked[1].call.answered_by, picked[1].call.outcome_reason) == (
        Outcome.ANSWERED_ELSEWHERE,
        "202",
        "pickup",
    )


def test_fake_call_ids_not_linked():
    calls = tracker(pbx="asterisk")
    calls.apply("201", doc(1, dialog("201", "early", call_id="pickup-sub-1")), at(0))
    other_caller = dialog("202", "early", call_id="pickup-sub-1", remote="sip:0449876543@pbx")
    calls.apply("202", doc(1, other_caller), at(0))
    calls.apply("202", doc(2, dialog("202", "confirmed", call_id="pickup-sub-1", remote=None)), at(5))

    events = calls.apply("201", doc(2, dialog("201", "terminated", call_id="pickup-sub-1")), at(5.1))

    assert events[0].call.outcome == Outcome.MISSED
    assert events[0].call.sip_call_id is None


def test_same_caller_answer_inferred_on_asterisk():
    calls = tracker(pbx="asterisk")
    calls.apply("201", doc(1, dialog("201", "early", call_id="pickup-sub-1")), at(0))
    calls.apply("202", doc(1, dialog("202", "early", call_id="pickup-sub-2")), at(0))
    calls.apply("202", doc(2, dialog("202", "confirmed", direction=None, remote=None)), at(5))

    events = calls.apply("201", doc(2, dialog("201", "terminated", direction=None, remote=None)), at(5.1))

    call = events[0].call
    assert (call.outcome, call.confidence) == (Outcome.ANSWERED_ELSEWHERE, Confidence.INFERRED)
    assert (call.answered_by, call.outcome_reason) == ("202", "ring_group")


def test_same_caller_late_answer_corrects_missed():
    calls = tracker(pbx="asterisk")
    calls.apply("201", doc(1, dialog("201", "early")), at(0))
    calls.apply("202", doc(1, dialog("202", "early")), at(0))
    missed = calls.apply("201", doc(2, dialog("201", "terminated", direction=None, remote=None)), at(5))

    answered = calls.apply("202", doc(2, dialog("202", "confirmed", direction=None, remote=None)), at(5.3))

    assert (missed[0].call.outcome, missed[0].call.confidence) == (Outcome.MISSED, Confidence.INFERRED)
    assert kinds(answered) == [EventKind.CONNECTED, EventKind.UPDATED]
    corrected = answered[1].call
    assert (corrected.extension, corrected.outcome, corrected.confidence) == (
        "201",
        Outcome.ANSWERED_ELSEWHERE,
        Confidence.INFERRED,
    )
    assert corrected.answered_by == "202"


def test_same_caller_busy_line_not_answerer():
    calls = tracker(pbx="asterisk")
    calls.apply("202", doc(1, dialog("202", "confirmed", direction=None)), at(0))
    calls.apply("201", doc(1, dialog("201", "early")), at(30))

    events = calls.apply("201", doc(2, dialog("201", "terminated", direction=None, remote=None)), at(40))

    assert events[0].call.outcome == Outcome.MISSED


def test_expire_keeps_recent_ring_group_calls():
    calls = tracker()
    ring_both(calls)
    calls.apply("201", doc(2, dialog("a1", "terminated", call_id="group-call")), at(5))
    calls.expire(at(6))

    answered = calls.apply("202", doc(2, dialog("b1", "confirmed", call_id="group-call")), at(7))

    assert kinds(answered) == [EventKind.CONNECTED, EventKind.UPDATED]


# Inputs ---------------------------------------------------------------------------------


def test_active_calls_are_copies():
    calls = tracker()
    calls.apply("202", doc(1, dialog("b1", "early")), at(5))
    calls.apply("201", doc(1, dialog("a1", "early")), at(0))

    active = calls.active_calls()
    active[0].state = CallState.ENDED

    assert [call.extension for call in active] == ["201", "202"]
    assert [call.state for call in calls.active_calls()] == [CallState.RINGING, CallState.RINGING]


def test_naive_time_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        tracker().apply("201", doc(1), datetime(2026, 12, 4, 9, 0))


def test_times_converted_to_utc():
    zurich = timezone(timedelta(hours=1))

    events = tracker().apply("201", doc(1, dialog("d1", "early")), datetime(2026, 12, 4, 10, 0, tzinfo=zurich))

    assert events[0].call.started_at == T0
    assert events[0].call.started_at.tzinfo == timezone.utc


@pytest.mark.parametrize(("option", "value"), [("phantom_early_seconds", 0), ("linger_seconds", -1)])
def test_invalid_options_rejected(option, value):
    with pytest.raises(ValueError, match=option):
        CallTracker(["201"], **{option: value})


# Parties ---------------------------------------------------------------------------------


def with_local(dialog_xml: str, local: str) -> str:
    return dialog_xml.replace("</dialog>", f"<local><identity>{local}</identity></local></dialog>")


def test_called_ring_group_from_local_identity():
    calls = tracker()

    events = calls.apply("201", doc(1, with_local(dialog("d1", "early"), "sip:600@pbx.local")), at(0))

    assert events[0].call.called == "600"


def test_called_not_set_to_own_extension():
    calls = tracker()

    events = calls.apply("201", doc(1, with_local(dialog("d1", "early"), "sip:201@pbx.local")), at(0))

    assert events[0].call.called is None


def test_called_not_set_for_outgoing():
    calls = tracker()
    outgoing = with_local(dialog("d1", "early", direction="initiator"), "sip:201@pbx.local;user=phone")

    events = calls.apply("201", doc(1, outgoing), at(0))

    assert events[0].call.called is None


def test_referred_by_recorded():
    referred = dialog("d1", "confirmed").replace("</dialog>", "<referred-by> sip:bob@example.net </referred-by></dialog>")

    events = tracker().apply("201", doc(1, referred), at(0))

    assert events[0].call.referred_by == "bob"


def test_name_addr_identity_read():
    body = dialog("d1", "early", remote='"Alice Example" &lt;sip:+41441234567@pbx;user=phone&gt;')

    events = tracker().apply("201", doc(1, body), at(0))

    remote = events[0].call.remote
    assert (remote.number, remote.display_name) == ("+41441234567", "Alice Example")


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sips:+41441234567@pbx.example.com", "+41441234567"),
        ("tel:+41441234567", "+41441234567"),
        ("tel:0441234567;phone-context=+41", "0441234567"),
        ("sip:0441234567;phone-context=+41@pbx.example.com;user=phone", "0441234567"),
    ],
)
def test_remote_uri_schemes(uri, number):
    events = tracker().apply("201", doc(1, dialog("d1", "early", remote=uri)), at(0))

    assert events[0].call.remote.number == number


@pytest.mark.parametrize(
    ("uri", "display"),
    [
        ("sip:anonymous@anonymous.invalid", "anonymous"),
        ("sip:invalid@192.0.2.10", None),
        ("sip:anonymous@pbx.example.com", "Anonymous"),
        ("sip:restricted@pbx.example.com", None),
        ("sip:pbx.example.com", None),
    ],
)
def test_withheld_forms(uri, display):
    events = tracker().apply("201", doc(1, dialog("d1", "early", remote=uri, display=display)), at(0))

    remote = events[0].call.remote
    assert remote.withheld is True
    assert remote.number is None
    assert remote.display_name is None


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("&quot;Zürich Empfang&quot;", "Zürich Empfang"),
        ("&quot;Al \\&quot;the\\&quot; Caller&quot;", 'Al "the" Caller'),
        ("Цюрих, Офис-5", "Цюрих, Офис-5"),
        ("O'Brien", "O'Brien"),
    ],
)
def test_display_names_unquoted(display, expected):
    events = tracker().apply("201", doc(1, dialog("d1", "early", display=display)), at(0))

    assert events[0].call.remote.display_name == expected


# Profiles ---------------------------------------------------------------------------------


def test_profiles_name_their_quirks():
    quirks = {name: profile.quirks for name, profile in PROFILES.items()}

    assert quirks == {
        "asterisk": ("fake_call_ids", "outgoing_confirmed_at_once", "dialog_per_extension", "outcomes_inferred"),
        "freeswitch": ("full_is_one_leg",),
        "kamailio": (),
        "3cx": (),
        "innovaphone": ("reads_unsolicited_notify", "direction_unreliable"),
        "generic": (),
    }


def test_new_caller_on_reused_dialog_is_new_call():
    calls = tracker(pbx="asterisk")
    first = calls.apply("201", doc(1, dialog("201", "early")), at(0))

    events = calls.apply("201", doc(2, dialog("201", "early", remote="sip:0449876543@pbx")), at(4))

    assert kinds(events) == [EventKind.ENDED, EventKind.RINGING]
    assert events[0].call.id == first[0].call.id
    assert (events[0].call.outcome, events[0].call.confidence) == (Outcome.MISSED, Confidence.INFERRED)
    assert events[1].call.remote.number == "0449876543"


def test_new_caller_on_real_dialog_is_update():
    calls = tracker()
    calls.apply("201", doc(1, dialog("d1", "early")), at(0))

    events = calls.apply("201", doc(2, dialog("d1", "early", remote="sip:0449876543@pbx")), at(4))

    assert kinds(events) == [EventKind.UPDATED]


def test_several_live_calls_per_extension():
    calls = tracker()
    first = dialog("d1", "confirmed", call_id="c1")
    waiting = dialog("d2", "early", call_id="c2", remote="sip:0449876543@pbx")
    calls.apply("201", doc(1, first), at(0))

    ringing = calls.apply("201", doc(2, first, waiting), at(10))
    consult = dialog("d3", "confirmed", call_id="c3", direction="initiator", remote="sip:202@pbx")
    held = dialog("d1", "confirmed", call_id="c1", rendering="no")
    during = calls.apply("201", doc(3, held, dialog("d2", "terminated", call_id="c2"), consult), at(20))

    assert kinds(ringing) == [EventKind.RINGING]
    assert sorted(kinds(during)) == sorted([EventKind.HELD, EventKind.CONNECTED, EventKind.ENDED])
    states = sorted((call.sip_call_id, call.state) for call in calls.active_calls())
    assert states == [("c1", CallState.HELD), ("c3", CallState.CONNECTED)]

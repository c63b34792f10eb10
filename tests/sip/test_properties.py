"""Properties of the call tracker and the dialog-info reader, over generated inputs.

The scripts are sequences of dialog-info documents for two extensions, as any notifier
might send them: any states in any order, full and partial documents, shared Call-IDs,
replaced dialogs, hold, and pauses long enough to close phantom rings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sip.dialoginfo import Dialog, DialogInfo, DialogInfoError, Replaces, parse_dialog_info
from sip.model import CallEvent, CallState, EventKind
from sip.profiles import PROFILES
from sip.tracker import PHANTOM_EARLY_SECONDS, CallTracker
from tests.sip.corpus import FIXTURES

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
EXTENSIONS = ("201", "202")

_STATE_ORDER = {CallState.RINGING: 0, CallState.CONNECTED: 1, CallState.HELD: 1, CallState.ENDED: 2}


@dataclass(frozen=True)
class Step:
    """One input: a document for an extension, or a call to `expire`, after a pause."""

    pause: float
    extension: str | None
    document: DialogInfo | None


dialogs = st.builds(
    Dialog,
    id=st.sampled_from(["d1", "d2", "d3", "201"]),
    state=st.sampled_from(["trying", "proceeding", "early", "confirmed", "terminated"]),
    call_id=st.sampled_from([None, "c1", "c2", "pickup-sub"]),
    direction=st.sampled_from([None, "initiator", "recipient"]),
    state_event=st.sampled_from([None, "cancelled", "replaced", "rejected", "timeout", "remote-bye"]),
    state_code=st.sampled_from([None, 486, 603, 480]),
    local_identity=st.sampled_from([None, "sip:600@pbx.local"]),
    remote_identity=st.sampled_from(
        [None, "sip:+41441234567@pbx.local", "sip:0449876543@pbx.local", "sip:202@pbx.local", "sip:anonymous@anonymous.invalid"]
    ),
    rendering=st.sampled_from([None, True, False]),
    replaces=st.sampled_from([None, Replaces("c1", None, None), Replaces("c2", "l", "r")]),
)


def unique_dialogs(items: list[Dialog]) -> list[Dialog]:
    seen: dict[str, Dialog] = {}
    for item in items:
        seen.setdefault(item.id, item)
    return list(seen.values())


documents = st.builds(
    lambda state, items: DialogInfo(version=None, state=state, entity=None, dialogs=unique_dialogs(items)),
    st.sampled_from(["full", "partial"]),
    st.lists(dialogs, max_size=3),
)

steps = st.builds(
    lambda pause, extension, document, expire: Step(pause, None if expire else extension, None if expire else document),
    st.sampled_from([0.0, 1.0, 5.0, PHANTOM_EARLY_SECONDS + 1]),
    st.sampled_from(EXTENSIONS),
    documents,
    # About one step in six closes phantom rings instead of applying a document.
    st.integers(min_value=0, max_value=5).map(lambda draw: draw == 0),
)

scripts = st.lists(steps, min_size=1, max_size=12)
profiles = st.sampled_from(sorted(PROFILES))


def numbered(script: list[Step]) -> list[tuple[datetime, Step]]:
    """Give every document the next version of its extension and every step its time."""
    versions = {extension: itertools.count(1) for extension in EXTENSIONS}
    now = T0
    result = []
    for step in script:
        now += timedelta(seconds=step.pause)
        if step.document is not None:
            document = DialogInfo(
                version=next(versions[step.extension]),
                state=step.document.state,
                entity=None,
                dialogs=step.document.dialogs,
            )
            step = Step(step.pause, step.extension, document)
        result.append((now, step))
    return result


def new_tracker(profile: str) -> CallTracker:
    counter = itertools.count(1)
    return CallTracker(EXTENSIONS, PROFILES[profile], id_factory=lambda: f"call-{next(counter)}")


def run(tracker: CallTracker, timeline: list[tuple[datetime, Step]]) -> list[CallEvent]:
    events: list[CallEvent] = []
    for now, step in timeline:
        if step.document is None:
            events += tracker.expire(now)
        else:
            events += tracker.apply(step.extension, step.document, now)
    return events


def finish(tracker: CallTracker, timeline: list[tuple[datetime, Step]]) -> list[CallEvent]:
    """End every extension's calls with an empty `full` document, as an idle PBX sends."""
    now = timeline[-1][0] + timedelta(seconds=1)
    events: list[CallEvent] = []
    for extension in EXTENSIONS:
        last = max((step.document.version for _, step in timeline if step.extension == extension), default=0)
        events += tracker.apply(extension, DialogInfo(version=last + 1, state="full", entity=None), now)
    return events


def by_call(events: list[CallEvent]) -> dict[str, list[CallEvent]]:
    grouped: dict[str, list[CallEvent]] = {}
    for event in events:
        grouped.setdefault(event.call.id, []).append(event)
    return grouped


# Properties ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(scripts, profiles)
def test_states_never_move_backwards(script, profile):
    tracker = new_tracker(profile)
    timeline = numbered(script)

    events = run(tracker, timeline) + finish(tracker, timeline)

    for call_events in by_call(events).values():
        ranks = [_STATE_ORDER[event.call.state] for event in call_events]
        assert ranks == sorted(ranks), [event.kind for event in call_events]
        assert call_events[0].kind in (EventKind.RINGING, EventKind.CONNECTED)
        for event in call_events:
            assert (event.call.outcome is not None) == (event.call.state == CallState.ENDED)
            assert event.call.answered_at is None or event.call.state != CallState.RINGING


@settings(max_examples=300, deadline=None, database=None)
@given(scripts, profiles)
def test_every_call_ends_exactly_once(script, profile):
    tracker = new_tracker(profile)
    timeline = numbered(script)

    events = run(tracker, timeline) + finish(tracker, timeline)

    for call_id, call_events in by_call(events).items():
        kinds = [event.kind for event in call_events]
        assert kinds.count(EventKind.ENDED) == 1, (call_id, kinds)
        after_end = kinds[kinds.index(EventKind.ENDED) + 1:]
        assert set(after_end) <= {EventKind.UPDATED}, (call_id, kinds)
        ended = call_events[kinds.index(EventKind.ENDED)].call
        assert ended.ended_at is not None
        assert ended.confidence is not None
    assert tracker.active_calls() == []


@settings(max_examples=300, deadline=None, database=None)
@given(scripts, profiles)
def test_repeated_document_changes_nothing(script, profile):
    tracker = new_tracker(profile)

    for now, step in numbered(script):
        if step.document is None:
            tracker.expire(now)
            continue
        tracker.apply(step.extension, step.document, now)
        before = tracker.active_calls()

        assert tracker.apply(step.extension, step.document, now + timedelta(seconds=1)) == []
        assert tracker.active_calls() == before


@settings(max_examples=300, deadline=None, database=None)
@given(scripts, profiles, st.randoms(use_true_random=False))
def test_out_of_order_document_changes_nothing(script, profile, random):
    timeline = numbered(script)
    times = [now for now, _ in timeline]
    arrivals = [step for _, step in timeline]
    random.shuffle(arrivals)

    # The same arrivals, less every document older than one already applied.
    newest: dict[str, int] = {}
    fresh: list[tuple[datetime, Step]] = []
    for now, step in zip(times, arrivals):
        if step.document is not None:
            if step.document.version <= newest.get(step.extension, 0):
                continue
            newest[step.extension] = step.document.version
        fresh.append((now, step))

    shuffled, filtered = new_tracker(profile), new_tracker(profile)

    assert run(shuffled, list(zip(times, arrivals))) == run(filtered, fresh)
    assert shuffled.active_calls() == filtered.active_calls()


@settings(max_examples=500, deadline=None, database=None)
@given(st.sampled_from(sorted(FIXTURES.glob("*.txt"))), st.integers(min_value=0), st.binary(max_size=8))
def test_reader_raises_only_its_error(path, cut, junk):
    data = path.read_bytes()
    start = data.find(b"<?xml")
    body = data[start:] if start >= 0 else data
    cut = cut % (len(body) + 1)

    for candidate in (body[:cut], body[:cut] + junk + body[cut:]):
        try:
            parse_dialog_info(candidate)
        except DialogInfoError as error:
            assert error.reason

"""The UI's pure model under CPython: protocol messages applied to the board state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

UI_DIR = Path(__file__).resolve().parents[2] / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.backoff import Backoff  # noqa: E402
from ringboard_ui.connection import events_url  # noqa: E402
from ringboard_ui.state import BoardState, CallKind, ProtocolError, parse_call  # noqa: E402


def call(call_id: str = "c-1", state: str = "ringing", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": call_id,
        "extension": "201",
        "direction": "inbound",
        "state": state,
        "remote": {
            "number": "+41441234567",
            "e164": "+41441234567",
            "display": "044 123 45 67",
            "name": "Max Muster",
            "uri": "sip:+41441234567@pbx.local",
            "withheld": False,
        },
        "called": None,
        "started_at": "2026-12-04T09:20:00.000Z",
        "answered_at": None,
        "ended_at": None,
        "duration": None,
        "outcome": None,
        "confidence": None,
        "outcome_reason": None,
        "answered_by": None,
        "transferred_to": None,
    }
    data.update(changes)
    return data


def ended(call_id: str = "c-1", outcome: str = "answered", **changes: Any) -> dict[str, Any]:
    return call(call_id, "ended", outcome=outcome, confidence="certain", ended_at="2026-12-04T09:21:00.000Z", **changes)


def snapshot(seq: int, active: list[Any] | None = None, history: list[Any] | None = None) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "version": 1,
        "seq": seq,
        "active": active or [],
        "history": history or [],
        "health": {"status": "ok", "subscriptions": []},
    }


def event(seq: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "call", "seq": seq, "event": kind, "call": data}


def history_ids(state: BoardState) -> list[str]:
    return [item.id for item in state.history]


def test_snapshot_fills_state() -> None:
    state = BoardState()

    changed = state.apply(snapshot(1042, active=[call("c-live")], history=[ended("c-old")]))

    assert changed is True
    assert state.seq == 1042
    assert list(state.active) == ["c-live"]
    assert history_ids(state) == ["c-old"]
    assert state.health is not None
    assert state.health.status == "ok"
    assert state.protocol_version == 1


def test_ringing_call_becomes_active() -> None:
    state = BoardState()
    state.apply(snapshot(10))

    assert state.apply(event(11, "ringing", call("c-1")))

    assert state.active["c-1"].state == "ringing"
    assert state.active["c-1"].remote.name == "Max Muster"
    assert state.ringing_count() == 1
    assert state.seq == 11


def test_connected_replaces_ringing() -> None:
    state = BoardState()
    state.apply(snapshot(10))
    state.apply(event(11, "ringing", call("c-1")))

    state.apply(event(12, "connected", call("c-1", "connected", answered_at="2026-12-04T09:20:04.500Z")))

    assert state.active["c-1"].state == "connected"
    assert state.active["c-1"].answered_at is not None
    assert state.ringing_count() == 0


def test_ended_call_moves_to_history_top() -> None:
    state = BoardState()
    state.apply(snapshot(10, history=[ended("c-old")]))
    state.apply(event(11, "ringing", call("c-1")))

    state.apply(event(12, "ended", ended("c-1", duration=65.28)))

    assert state.active == {}
    assert history_ids(state) == ["c-1", "c-old"]
    assert state.history[0].outcome == "answered"
    assert state.history[0].duration == 65.28


def test_duplicate_seq_is_ignored() -> None:
    state = BoardState()
    state.apply(snapshot(10))
    state.apply(event(11, "ringing", call("c-1")))

    changed = state.apply(event(11, "ringing", call("c-1", remote={"name": "Someone else"})))

    assert changed is False
    assert state.active["c-1"].remote.name == "Max Muster"


def test_out_of_order_event_is_ignored() -> None:
    state = BoardState()
    state.apply(snapshot(10))
    state.apply(event(11, "ringing", call("c-1")))
    state.apply(event(13, "ended", ended("c-1")))

    changed = state.apply(event(12, "connected", call("c-1", "connected")))

    assert changed is False
    assert state.active == {}
    assert history_ids(state) == ["c-1"]
    assert state.seq == 13


def test_event_older_than_snapshot_is_ignored() -> None:
    state = BoardState()
    state.apply(snapshot(20, active=[call("c-1", "connected")]))

    assert state.apply(event(19, "ringing", call("c-1"))) is False
    assert state.active["c-1"].state == "connected"


def test_updated_keeps_history_position() -> None:
    state = BoardState()
    state.apply(snapshot(10, history=[ended("c-new"), ended("c-mid", "missed"), ended("c-old")]))

    state.apply(event(11, "updated", ended("c-mid", "answered_elsewhere", answered_by="202")))

    assert history_ids(state) == ["c-new", "c-mid", "c-old"]
    assert state.history[1].outcome == "answered_elsewhere"
    assert state.history[1].answered_by == "202"


def test_updated_unknown_call_goes_on_top() -> None:
    state = BoardState()
    state.apply(snapshot(10, history=[ended("c-old")]))

    state.apply(event(11, "updated", ended("c-unknown", "missed")))

    assert history_ids(state) == ["c-unknown", "c-old"]


def test_repeated_end_moves_call_to_top() -> None:
    state = BoardState()
    state.apply(snapshot(10, history=[ended("c-a"), ended("c-b")]))

    state.apply(event(11, "ended", ended("c-b", "missed")))

    assert history_ids(state) == ["c-b", "c-a"]
    assert state.history[0].outcome == "missed"


def test_live_state_moves_call_back_to_active() -> None:
    state = BoardState()
    state.apply(snapshot(10, history=[ended("c-1")]))

    state.apply(event(11, "resumed", call("c-1", "connected")))

    assert list(state.active) == ["c-1"]
    assert state.history == []


def test_history_is_capped() -> None:
    state = BoardState(history_limit=3)
    state.apply(snapshot(0))

    for seq in range(1, 6):
        state.apply(event(seq, "ended", ended(f"c-{seq}")))

    assert history_ids(state) == ["c-5", "c-4", "c-3"]


def test_snapshot_history_is_capped() -> None:
    state = BoardState(history_limit=2)

    state.apply(snapshot(5, history=[ended("c-3"), ended("c-2"), ended("c-1")]))

    assert history_ids(state) == ["c-3", "c-2"]


def test_fresh_snapshot_replaces_everything() -> None:
    state = BoardState()
    state.apply(snapshot(10, active=[call("c-live")], history=[ended("c-old")]))
    state.apply({"type": "error", "code": "bad_request", "params": {"field": "since"}})

    state.apply(snapshot(30, history=[ended("c-new")]))

    assert state.active == {}
    assert history_ids(state) == ["c-new"]
    assert state.error is None


def test_resumed_snapshot_merges_history() -> None:
    state = BoardState()
    state.apply(snapshot(10, active=[call("c-live")], history=[ended("c-old")]))

    # With ?since=10 the agent sends only the calls that ended after event 10.
    state.apply(snapshot(14, history=[ended("c-live", "missed"), ended("c-other")]))

    assert state.active == {}
    assert history_ids(state) == ["c-live", "c-other", "c-old"]
    assert state.history[0].outcome == "missed"
    assert state.seq == 14


def test_resumed_snapshot_replaces_active() -> None:
    state = BoardState()
    state.apply(snapshot(10, active=[call("c-a"), call("c-b")]))

    state.apply(snapshot(12, active=[call("c-b", "connected")]))

    assert list(state.active) == ["c-b"]
    assert state.active["c-b"].state == "connected"


def test_ended_call_in_snapshot_active_goes_to_history() -> None:
    state = BoardState()

    state.apply(snapshot(10, active=[ended("c-1")]))

    assert state.active == {}
    assert history_ids(state) == ["c-1"]


def test_health_message_replaces_health() -> None:
    state = BoardState()
    state.apply(snapshot(10))

    changed = state.apply(
        {
            "type": "health",
            "status": "degraded",
            "subscriptions": [
                {"extension": "201", "state": "active", "since": "2026-12-04T09:00:00.000Z", "reason": None},
                {
                    "extension": "202",
                    "state": "failing",
                    "since": "2026-12-04T09:05:00.000Z",
                    "reason": {"code": "rejected", "status": 403},
                },
            ],
        }
    )

    assert changed is True
    assert state.health is not None
    assert state.health.status == "degraded"
    assert [item.extension for item in state.health.problems] == ["202"]
    assert state.health.problems[0].reason_code == "rejected"
    assert state.health.problems[0].reason_status == 403


def test_error_is_kept_and_resume_restarts() -> None:
    state = BoardState()
    state.apply(snapshot(10))

    state.apply({"type": "error", "code": "bad_request", "params": {"field": "since"}})

    assert state.error is not None
    assert state.error.code == "bad_request"
    assert state.error.params == {"field": "since"}
    assert state.resume_seq() is None


def test_resume_seq_is_last_seq() -> None:
    state = BoardState()
    assert state.resume_seq() is None

    state.apply(snapshot(10))
    state.apply(event(11, "ringing", call("c-1")))

    assert state.resume_seq() == 11


def test_unknown_message_type_is_ignored() -> None:
    state = BoardState()

    assert state.apply({"type": "presence", "cards": []}) is False
    assert state.seq is None


@pytest.mark.parametrize(
    "message",
    [
        "not an object",
        {"type": "call", "seq": "11", "event": "ringing", "call": call()},
        {"type": "call", "seq": True, "event": "ringing", "call": call()},
        {"type": "call", "seq": 11, "event": "ringing", "call": None},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(id="")},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(started_at="yesterday")},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(started_at="2026-12-04T09:20:00")},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(started_at=None)},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(duration="65")},
        {"type": "call", "seq": 11, "event": "ringing", "call": call(remote=["+41"])},
        {"type": "snapshot", "seq": 1, "active": {}, "history": []},
        {"type": "health", "status": "ok", "subscriptions": "none"},
        {"type": "error", "params": {}},
    ],
)
def test_malformed_message_raises(message: Any) -> None:
    state = BoardState()

    with pytest.raises(ProtocolError):
        state.apply(message)


def test_malformed_call_leaves_state_alone() -> None:
    state = BoardState()
    state.apply(snapshot(10, active=[call("c-1")]))

    with pytest.raises(ProtocolError):
        state.apply(event(11, "connected", call("c-1", "connected", started_at="noon")))

    assert state.seq == 10
    assert state.active["c-1"].state == "ringing"


def test_times_parse_as_utc() -> None:
    parsed = parse_call(call(answered_at="2026-12-04T09:20:04.500Z"))

    assert parsed.started_at.utcoffset() is not None
    assert parsed.started_at.utcoffset().total_seconds() == 0
    assert parsed.answered_at is not None
    assert parsed.answered_at.microsecond == 500_000


def test_active_calls_ringing_first_then_newest() -> None:
    state = BoardState()
    state.apply(
        snapshot(
            10,
            active=[
                call("c-old-talk", "connected", started_at="2026-12-04T09:00:00.000Z"),
                call("c-old-ring", "ringing", started_at="2026-12-04T09:10:00.000Z"),
                call("c-new-talk", "held", started_at="2026-12-04T09:30:00.000Z"),
                call("c-new-ring", "ringing", started_at="2026-12-04T09:40:00.000Z"),
            ],
        )
    )

    assert [item.id for item in state.active_calls()] == ["c-new-ring", "c-old-ring", "c-new-talk", "c-old-talk"]


@pytest.mark.parametrize(
    ("direction", "state", "outcome", "kind"),
    [
        ("inbound", "ringing", None, CallKind.RINGING),
        ("outbound", "ringing", None, CallKind.RINGING),
        ("inbound", "connected", None, CallKind.INCOMING_ANSWERED),
        ("inbound", "ended", "answered", CallKind.INCOMING_ANSWERED),
        ("inbound", "ended", "missed", CallKind.INCOMING_MISSED),
        ("unknown", "ended", "missed", CallKind.INCOMING_MISSED),
        ("inbound", "ended", "busy", CallKind.INCOMING_MISSED),
        ("outbound", "held", None, CallKind.OUTGOING_ANSWERED),
        ("outbound", "ended", "answered", CallKind.OUTGOING_ANSWERED),
        ("outbound", "ended", "failed", CallKind.OUTGOING_UNANSWERED),
        ("outbound", "ended", "rejected", CallKind.OUTGOING_UNANSWERED),
        ("outbound", "ended", "missed", CallKind.OUTGOING_UNANSWERED),
        ("inbound", "ended", "answered_elsewhere", CallKind.ANSWERED_ELSEWHERE),
        ("inbound", "ended", "transferred", CallKind.TRANSFERRED),
        ("internal", "ended", "transferred", CallKind.TRANSFERRED),
        ("internal", "connected", None, CallKind.INTERNAL),
        ("internal", "ended", "missed", CallKind.INTERNAL),
    ],
)
def test_call_kind(direction: str, state: str, outcome: str | None, kind: CallKind) -> None:
    parsed = parse_call(call(direction=direction, state=state, outcome=outcome))

    assert parsed.kind is kind


def test_backoff_doubles_to_cap() -> None:
    backoff = Backoff(random_fraction=lambda: 0.0)

    delays = [backoff.next_delay() for _ in range(8)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.failures == 8


def test_backoff_jitter_cuts_up_to_quarter() -> None:
    backoff = Backoff(random_fraction=lambda: 1.0)

    assert backoff.next_delay() == 0.75
    assert backoff.next_delay() == 1.5


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(random_fraction=lambda: 0.0)
    for _ in range(4):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() == 1.0


def test_backoff_survives_long_outage() -> None:
    backoff = Backoff(random_fraction=lambda: 0.5)

    for _ in range(5000):
        delay = backoff.next_delay()

    assert delay == 30.0 * 0.875


@pytest.mark.parametrize(
    ("protocol", "since", "url"),
    [
        ("http:", None, "ws://127.0.0.1:8080/api/events"),
        ("https:", None, "wss://127.0.0.1:8080/api/events"),
        ("https:", 1042, "wss://127.0.0.1:8080/api/events?since=1042"),
        ("http:", 0, "ws://127.0.0.1:8080/api/events?since=0"),
    ],
)
def test_events_url(protocol: str, since: int | None, url: str) -> None:
    assert events_url(protocol, "127.0.0.1:8080", since) == url


def test_unstored_event_shown_without_seq():
    state = BoardState()
    state.apply({"type": "snapshot", "version": 1, "seq": 7, "active": [], "history": [],
                 "health": {"status": "ok", "subscriptions": []}})
    message = {"type": "call", "seq": None, "event": "ringing", "call": _unstored_call()}
    assert state.apply(message)
    assert "c-unstored" in state.active
    assert state.seq == 7


def _unstored_call():
    return {
        "id": "c-unstored", "extension": "201", "direction": "inbound", "state": "ringing",
        "remote": {"number": "+41441234567", "e164": "+41441234567", "display": "044 123 45 67",
                   "name": None, "uri": "sip:+41441234567@pbx.local", "withheld": False},
        "called": None, "started_at": "2026-12-04T09:20:00.000Z", "answered_at": None, "ended_at": None,
        "duration": None, "outcome": None, "confidence": None, "outcome_reason": None,
        "answered_by": None, "transferred_to": None,
    }

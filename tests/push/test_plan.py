"""The sans-I/O parts of Web Push: the per-call plan, response classification, payload rules."""

from __future__ import annotations

import re

import pytest

from agent.push.audience import PushPreferences
from agent.push.delivery import Outcome, PushReply, RetryPolicy, classify, parse_retry_after
from agent.push.payload import (
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_LENGTH,
    AlertMode,
    Caller,
    PushAction,
    call_payload,
    encode_payload,
    topic_for,
)
from agent.push.plan import PushPlanner, Send, Wait
from tests.push.helpers import CALL_ID, call_object, crm_message

POLICY = RetryPolicy(initial_delay=1.0, max_delay=60.0, max_attempts=5)


def actions(steps: list) -> list[str]:
    return [str(step.action) if isinstance(step, Send) else "wait" for step in steps]


def test_plan_ring_after_wait_then_close() -> None:
    planner = PushPlanner()

    assert actions(planner.call_event(call_object("ringing"))) == ["wait"]
    assert actions(planner.call_event(call_object("ringing"))) == []
    assert actions(planner.cards_wait_over(CALL_ID)) == ["ring"]
    assert actions(planner.cards_wait_over(CALL_ID)) == []
    assert actions(planner.call_event(call_object("connected"))) == ["close"]
    assert actions(planner.call_event(call_object("held"))) == []
    assert actions(planner.call_event(call_object("ended", outcome="answered"))) == []


def test_plan_complete_cards_ring_at_once() -> None:
    planner = PushPlanner()
    planner.call_event(call_object("ringing"))

    assert actions(planner.cards(CALL_ID, Caller.from_cards(crm_message(pending=["crm"])), complete=False)) == []
    assert actions(planner.cards(CALL_ID, Caller.from_cards(crm_message()), complete=True)) == ["ring"]
    assert planner.get(CALL_ID).caller == Caller("Max Muster", "Muster AG")
    assert actions(planner.cards_wait_over(CALL_ID)) == []


def test_plan_changed_caller_updates() -> None:
    planner = PushPlanner()
    planner.call_event(call_object("ringing"))
    planner.cards_wait_over(CALL_ID)

    assert actions(planner.cards(CALL_ID, Caller("Max Muster", None), complete=False)) == ["update"]
    assert actions(planner.cards(CALL_ID, Caller("Max Muster", None), complete=True)) == []
    assert actions(planner.cards(CALL_ID, None, complete=True)) == []


def test_plan_missed_and_correction() -> None:
    planner = PushPlanner()
    planner.call_event(call_object("ringing"))
    planner.cards_wait_over(CALL_ID)

    assert actions(planner.call_event(call_object("ended", outcome="missed"))) == ["missed"]
    assert actions(planner.call_event(call_object("ended", outcome="missed"))) == []
    assert actions(planner.call_event(call_object("ended", outcome="answered_elsewhere"))) == ["close"]


def test_plan_never_rang_sends_nothing() -> None:
    planner = PushPlanner()

    assert planner.call_event(call_object("connected")) == []
    assert planner.call_event(call_object("ringing", call_id="c-2")) == [Wait("c-2")]
    assert planner.call_event(call_object("ended", call_id="c-2", outcome="missed")) == []
    assert planner.cards_wait_over("c-2") == []
    assert planner.cards("c-unknown", Caller("X"), complete=True) == []


def test_plan_memory_bounded() -> None:
    planner = PushPlanner(memory=3)
    for number in range(5):
        planner.call_event(call_object("ringing", call_id=f"c-{number}"))

    assert planner.get("c-0") is None
    assert planner.get("c-4") is not None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(201, Outcome.SENT), (202, Outcome.SENT), (404, Outcome.GONE), (410, Outcome.GONE),
     (400, Outcome.FAILED), (403, Outcome.FAILED), (413, Outcome.FAILED)],
)
def test_classify_final_answers(status: int, outcome: Outcome) -> None:
    decision = classify(PushReply(status), attempt=1, seconds_left=60, policy=POLICY)

    assert decision.outcome is outcome
    assert decision.retry is False


@pytest.mark.parametrize("status", [429, 500, 502, 503, None])
def test_classify_retries_with_backoff(status: int | None) -> None:
    first = classify(PushReply(status, detail="ConnectionError"), attempt=1, seconds_left=60, policy=POLICY)
    third = classify(PushReply(status, detail="ConnectionError"), attempt=3, seconds_left=60, policy=POLICY)

    assert first.retry is True
    assert first.delay == 1.0
    assert third.delay == 4.0


def test_classify_honours_retry_after() -> None:
    decision = classify(PushReply(429, retry_after="7"), attempt=1, seconds_left=60, policy=POLICY)

    assert decision.retry is True
    assert decision.delay == 7.0


def test_classify_gives_up() -> None:
    last = classify(PushReply(500), attempt=5, seconds_left=60, policy=POLICY)
    beyond_ttl = classify(PushReply(429, retry_after="120"), attempt=1, seconds_left=60, policy=POLICY)
    unusable = classify(PushReply(None, detail="bad key", not_sent=True), attempt=1, seconds_left=60, policy=POLICY)

    assert last.outcome is Outcome.FAILED
    assert "5 attempts" in last.reason
    assert beyond_ttl.outcome is Outcome.FAILED
    assert "TTL" in beyond_ttl.reason
    assert unusable.outcome is Outcome.FAILED


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0

    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now) == 20.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_topic_is_short_base64url() -> None:
    topic = topic_for(CALL_ID)

    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)
    assert topic_for(CALL_ID) == topic
    assert topic_for("c-other") != topic


def test_payload_cuts_long_names() -> None:
    call = call_object("ringing")
    call["remote"]["name"] = "N" * 5000
    payload = call_payload(call, PushAction.RING, Caller("A" * 5000, "B" * 5000), AlertMode.SYSTEM, "CH")

    data = encode_payload(payload)

    assert len(data) < MAX_PAYLOAD_BYTES
    assert len(payload["caller"]["name"]) == MAX_TEXT_LENGTH
    assert payload["caller"]["name"].endswith("…")


def test_payload_of_withheld_caller() -> None:
    call = call_object("ringing")
    call["remote"] = {"number": None, "e164": None, "display": None, "name": None, "uri": None, "withheld": True}
    call["called"] = None

    payload = call_payload(call, PushAction.RING, None, AlertMode.BOTH, "CH")

    assert payload["call"]["remote"] == {"display": None, "name": None, "withheld": True}
    assert payload["call"]["called"] is None
    assert payload["alert"] == "both"


def test_oversized_payload_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        encode_payload({"push": "call", "padding": "x" * MAX_PAYLOAD_BYTES})


@pytest.mark.parametrize(
    ("settings", "internal", "outgoing", "enabled"),
    [
        ({"notifications": True, "notify_calls": "incoming"}, False, False, True),
        ({"notifications": True, "notify_calls": "incoming_internal"}, True, False, True),
        ({"notifications": True, "notify_calls": "all"}, True, True, True),
        ({"notifications": False, "notify_calls": "all"}, True, True, False),
        ({}, False, False, True),
    ],
)
def test_preferences_from_user_settings(settings: dict, internal: bool, outgoing: bool, enabled: bool) -> None:
    preferences = PushPreferences.from_user_settings(settings)

    assert preferences.internal is internal
    assert preferences.outgoing is outgoing
    assert preferences.enabled is enabled
    assert preferences.wants("inbound") is enabled
    assert preferences.wants("unknown") is enabled
    assert preferences.wants("internal") is (enabled and internal)
    assert preferences.wants("outbound") is (enabled and outgoing)

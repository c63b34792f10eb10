"""Calls, lookup messages and an agent push service for the push tests."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.metrics import Registry
from agent.protocol import call_json
from agent.push import EndpointPolicy, PushService, PushTiming, StaticAudience
from agent.push.delivery import RetryPolicy
from sip.model import Call, CallState, Direction, Outcome, RemoteParty
from tests.support.push_service import LocalPushService

CALL_ID = "c-8a7b6c5d4e3f2a1b"
STARTED = datetime(2026, 12, 4, 9, 20, tzinfo=timezone.utc)

# Short waits so the whole suite runs in seconds; the production values are in PushTiming.
FAST_TIMING = PushTiming(cards_wait=0.2, retry=RetryPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=3))


def call_object(state: str = "ringing", call_id: str = CALL_ID, **changes: Any) -> dict[str, Any]:
    """Return the protocol form of a call to extension 201 from Max Muster, as the agent builds it."""
    call = Call(
        id=call_id,
        extension=changes.pop("extension", "201"),
        direction=Direction(changes.pop("direction", "inbound")),
        state=CallState(state),
        started_at=STARTED,
        remote=RemoteParty(number="+41441234567", display_name="Max Muster", uri="sip:+41441234567@pbx.local"),
        called=changes.pop("called", "+41445551000"),
    )
    if "outcome" in changes:
        call.outcome = Outcome(changes.pop("outcome"))
        call.ended_at = STARTED
    assert not changes, f"unknown changes {changes}"
    return call_json(call, "CH")


def crm_message(call_id: str = CALL_ID, *, name: str | None = "Max Muster", company: str | None = "Muster AG",
                pending: list[str] | None = None) -> dict[str, Any]:
    """Return a `crm` message with one card, as the lookup sends it."""
    cards = [] if name is None and company is None else [{"name": name, "company": company, "connector": "contacts"}]
    return {"type": "crm", "call_id": call_id, "number": "+41441234567", "skipped": None,
            "cards": cards, "pending": pending or [], "errors": [], "labels": {}}


def make_push(data_dir: Path, local_push: LocalPushService, audience: StaticAudience | None = None,
              timing: PushTiming = FAST_TIMING) -> PushService:
    """Return the agent's push service for user anna on extension 201, allowed to reach the local service only."""
    push = PushService(
        data_dir,
        audience or StaticAudience({"anna": ["201"]}),
        metrics=Registry(),
        contact="mailto:it@office.example",
        policy=EndpointPolicy(hosts=("127.0.0.1",), allow_http=True),
        timing=timing,
    )
    local_push.expected_key = push.public_key
    return push

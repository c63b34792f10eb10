"""The agent's pushes as a push service receives them: VAPID, encryption, headers, retries.

Every push goes to a local push service on 127.0.0.1 that verifies the VAPID token and
decrypts the payload with the test subscription's keys (tests/support/push_service.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.push import Outcome, PushPreferences, PushService, StaticAudience
from agent.push.payload import topic_for
from tests.push.helpers import CALL_ID, call_object, crm_message, make_push
from tests.support.push_service import PushResponse, BrowserSubscription, LocalPushService


def subscribe(push: PushService, local_push: LocalPushService, user: str = "anna", device: str = "laptop") -> BrowserSubscription:
    browser = local_push.new_subscription()
    push.subscribe(user, device, browser.to_json())
    return browser


def metric(push: PushService, outcome: str) -> float:
    return push.metrics.counter("ringboard_push_total", "").value(outcome=outcome)


async def wait_for(local_push: LocalPushService, browser: BrowserSubscription, count: int, timeout: float = 5.0):
    return await asyncio.to_thread(local_push.wait_for, browser, count, timeout)


async def settle(push: PushService, timeout: float = 5.0) -> None:
    """Wait until no push is queued or being sent."""
    deadline = time.monotonic() + timeout
    while push._tasks or push._timers:
        assert time.monotonic() < deadline, "pushes still pending"
        await asyncio.sleep(0.02)


async def test_ringing_then_answered(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)

    push.on_call_event(call_object("ringing"), "ringing")
    [ringing] = await wait_for(local_push, browser, 1)
    push.on_call_event(call_object("connected"), "connected")
    [_, answered] = await wait_for(local_push, browser, 2)

    assert local_push.errors == []
    assert ringing.payload["push"] == "call"
    assert ringing.payload["version"] == 1
    assert ringing.payload["action"] == "ring"
    assert ringing.payload["alert"] == "system"
    assert ringing.payload["call"]["id"] == CALL_ID
    assert ringing.payload["call"]["state"] == "ringing"
    assert ringing.payload["call"]["extension"] == "201"
    assert ringing.payload["call"]["called"] == "044 555 10 00"
    assert ringing.payload["call"]["remote"] == {"display": "044 123 45 67", "name": "Max Muster", "withheld": False}
    assert ringing.payload["caller"] is None
    assert int(ringing.headers["ttl"]) <= 60
    assert ringing.headers["urgency"] == "high"
    assert ringing.headers["topic"] == topic_for(CALL_ID)
    assert ringing.claims["sub"] == "mailto:it@office.example"
    assert ringing.claims["aud"] == local_push.origin

    assert answered.payload["action"] == "close"
    assert answered.payload["call"]["state"] == "connected"
    assert answered.headers["topic"] == ringing.headers["topic"]
    assert 60 < int(answered.headers["ttl"]) <= 3600
    assert answered.headers["urgency"] == "high"
    await settle(push)
    assert metric(push, "sent") == 2


async def test_card_known_at_ring_time(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)

    push.on_call_event(call_object("ringing"), "ringing")
    push.on_cards(crm_message(name="Maximilian Muster", company="Muster AG"))
    [ringing] = await wait_for(local_push, browser, 1)
    push.on_cards(crm_message(name="Maximilian Muster", company="Muster Holding AG"))
    [_, update] = await wait_for(local_push, browser, 2)

    assert ringing.payload["action"] == "ring"
    assert ringing.payload["caller"] == {"name": "Maximilian Muster", "company": "Muster AG"}
    assert update.payload["action"] == "update"
    assert update.payload["caller"] == {"name": "Maximilian Muster", "company": "Muster Holding AG"}
    assert update.headers["topic"] == ringing.headers["topic"]


async def test_slow_card_follows_as_update(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)

    push.on_call_event(call_object("ringing"), "ringing")
    push.on_cards(crm_message(name=None, company=None, pending=["crm"]))
    [ringing] = await wait_for(local_push, browser, 1)
    push.on_cards(crm_message(name="Max Muster", company="Muster AG"))
    [_, update] = await wait_for(local_push, browser, 2)
    push.on_cards(crm_message(name="Max Muster", company="Muster AG"))
    await settle(push)

    assert ringing.payload["caller"] is None
    assert update.payload["action"] == "update"
    assert update.payload["caller"] == {"name": "Max Muster", "company": "Muster AG"}
    assert len(local_push.messages(browser)) == 2, "an unchanged card must not push again"


async def test_missed_then_answered_elsewhere(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)

    push.on_call_event(call_object("ringing"), "ringing")
    await wait_for(local_push, browser, 1)
    push.on_call_event(call_object("ended", outcome="missed"), "ended")
    await wait_for(local_push, browser, 2)
    push.on_call_event(call_object("ended", outcome="answered_elsewhere"), "updated")
    messages = await wait_for(local_push, browser, 3)

    assert [item.payload["action"] for item in messages] == ["ring", "missed", "close"]
    assert messages[1].payload["call"]["outcome"] == "missed"


async def test_call_answered_before_first_push(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)

    push.on_call_event(call_object("ringing"), "ringing")
    push.on_call_event(call_object("connected"), "connected")
    push.on_call_event(call_object("ended", outcome="answered"), "ended")
    await asyncio.sleep(0.3)
    await settle(push)

    assert local_push.messages(browser) == []


async def test_preferences_choose_calls(tmp_path: Path, local_push: LocalPushService) -> None:
    audience = StaticAudience(
        {"anna": ["201"], "ben": ["201"], "carla": ["201"]},
        {
            "ben": PushPreferences(internal=True, outgoing=True, page_and_system=True),
            "carla": PushPreferences(enabled=False),
        },
    )
    push = make_push(tmp_path, local_push, audience)
    await push.start()
    try:
        anna = subscribe(push, local_push, "anna", "laptop")
        ben = subscribe(push, local_push, "ben", "desktop")
        carla = subscribe(push, local_push, "carla", "desktop")

        push.on_call_event(call_object("ringing", call_id="c-in"), "ringing")
        push.on_call_event(call_object("ringing", call_id="c-internal", direction="internal"), "ringing")
        push.on_call_event(call_object("ringing", call_id="c-out", direction="outbound"), "ringing")
        push.on_call_event(call_object("ringing", call_id="c-other", extension="202"), "ringing")
        await wait_for(local_push, ben, 3)
        await settle(push)
    finally:
        await push.stop()

    assert [item.payload["call"]["id"] for item in local_push.messages(anna)] == ["c-in"]
    assert local_push.messages(anna)[0].payload["alert"] == "system"
    assert sorted(item.payload["call"]["id"] for item in local_push.messages(ben)) == ["c-in", "c-internal", "c-out"]
    assert {item.payload["alert"] for item in local_push.messages(ben)} == {"both"}
    assert local_push.messages(carla) == []


async def test_gone_subscription_removed(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)
    local_push.script(browser, PushResponse(410))

    push.on_call_event(call_object("ringing"), "ringing")
    await wait_for(local_push, browser, 1)
    await settle(push)
    push.on_call_event(call_object("connected"), "connected")
    await settle(push)

    assert len(push.store) == 0
    assert len(local_push.messages(browser)) == 1
    assert metric(push, "gone") == 1
    assert 'ringboard_push_total{outcome="gone"} 1' in push.metrics.render()
    assert "ringboard_push_subscriptions 0" in push.metrics.render()


async def test_too_many_requests_retried_after(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)
    local_push.script(browser, PushResponse(429, {"Retry-After": "1"}))

    push.on_call_event(call_object("ringing"), "ringing")
    first, second = await wait_for(local_push, browser, 2)
    await settle(push)

    assert first.status == 429
    assert second.status == 201
    assert second.at - first.at >= 0.9, "Retry-After: 1 was not honoured"
    assert second.payload == first.payload
    assert int(second.headers["ttl"]) < int(first.headers["ttl"]), "a retry must carry the TTL that is left"
    assert metric(push, "sent") == 1
    assert push.metrics.counter("ringboard_push_retries_total", "").value(status="429") == 1


async def test_server_error_retried_then_failed(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)
    local_push.script(browser, PushResponse(500), PushResponse(503), PushResponse(500))

    push.on_call_event(call_object("ringing"), "ringing")
    attempts = await wait_for(local_push, browser, 3)
    await settle(push)

    assert [item.status for item in attempts] == [500, 503, 500]
    assert attempts[1].at > attempts[0].at
    assert metric(push, "failed") == 1
    assert metric(push, "sent") == 0
    assert len(push.store) == 1, "a failing push service must not remove the subscription"


async def test_close_supersedes_waiting_retry(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)
    local_push.script(browser, PushResponse(429, {"Retry-After": "2"}))

    push.on_call_event(call_object("ringing"), "ringing")
    await wait_for(local_push, browser, 1)
    push.on_call_event(call_object("connected"), "connected")
    await wait_for(local_push, browser, 2)
    await settle(push)

    assert [item.payload["action"] for item in local_push.messages(browser)] == ["ring", "close"]
    assert metric(push, "superseded") == 1
    assert metric(push, "sent") == 1


async def test_slow_push_service_never_blocks(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push)
    local_push.script(browser, PushResponse(201, delay=1.0))

    started = time.perf_counter()
    push.on_call_event(call_object("ringing"), "ringing")
    push.on_cards(crm_message())
    elapsed = time.perf_counter() - started
    await wait_for(local_push, browser, 1)
    await settle(push)

    assert elapsed < 0.05, f"on_call_event and on_cards took {elapsed:.3f} s"
    assert metric(push, "sent") == 1


async def test_test_notification(push: PushService, local_push: LocalPushService) -> None:
    browser = subscribe(push, local_push, "anna", "laptop")

    results = await push.send_test("anna", "laptop")
    none = await push.send_test("anna", "phone")

    [message] = local_push.messages(browser)
    assert message.payload["push"] == "test"
    assert message.payload["version"] == 1
    assert [item.outcome for item in results] == [Outcome.SENT]
    assert none == []


@pytest.mark.parametrize("contact", ["it@office.example", "ringboard"])
def test_invalid_contact_rejected(tmp_path: Path, contact: str) -> None:
    with pytest.raises(ValueError, match="push contact"):
        PushService(tmp_path, StaticAudience({}), contact=contact)

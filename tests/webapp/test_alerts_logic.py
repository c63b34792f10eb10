"""The page's alert decisions under CPython: which calls alert, the sound lock, the worker's replies."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.alerts import (  # noqa: E402
    LOCK_SECONDS,
    CallAlerts,
    SoundLeader,
    call_id_from_fragment,
    has_call_reply,
    wants_alert,
)
from ringboard_ui.i18n import load_catalog  # noqa: E402
from ringboard_ui.push_setup import SUBSCRIPTION_ID_KEY, NotifyPanel, PushSetup  # noqa: E402
from ringboard_ui.state import BoardState, parse_call  # noqa: E402
from ringboard_ui.view import BoardView  # noqa: E402
from tests.support.fake_dom import FakeDom  # noqa: E402

HTML = (ROOT / "webapp" / "index.html").read_text(encoding="utf-8")
KEY = "BHfJ36_nn-CaogoaRRxfjOLPu8AuIzRvvZ3tt4A9nHDiSDi3psv4xWUAQJ2Kpfh42ZUQtQAvGWN3ufIYS37M5Ho"


def make_call(call_id: str = "c-1", state: str = "ringing", direction: str = "inbound") -> Any:
    return parse_call(
        {
            "id": call_id,
            "extension": "201",
            "direction": direction,
            "state": state,
            "remote": {"number": "+41441234567", "display": "044 123 45 67", "name": "Max Muster", "withheld": False},
            "started_at": "2026-12-04T09:20:00.000Z",
        }
    )


def board(*calls: Any, **settings: Any) -> BoardState:
    state = BoardState()
    state.active = {call.id: call for call in calls}
    state.settings.update(settings)
    return state


class MemoryStorage:
    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def get_item(self, key: str) -> str | None:
        return self.items.get(key)

    def set_item(self, key: str, value: str) -> None:
        self.items[key] = value

    def remove_item(self, key: str) -> None:
        self.items.pop(key, None)


@pytest.mark.parametrize(
    ("direction", "notify_calls", "expected"),
    [
        ("inbound", "incoming", True),
        ("unknown", "incoming", True),
        ("internal", "incoming", False),
        ("internal", "incoming_internal", True),
        ("outbound", "incoming_internal", False),
        ("outbound", "all", True),
        ("internal", "all", True),
    ],
)
def test_wants_alert_by_direction(direction: str, notify_calls: str, expected: bool) -> None:
    settings = {"notifications": True, "notify_calls": notify_calls}

    assert wants_alert(make_call(direction=direction), settings) is expected


def test_wants_alert_off_or_not_ringing() -> None:
    assert not wants_alert(make_call(), {"notifications": False, "notify_calls": "all"})
    assert not wants_alert(make_call(state="connected"), {"notifications": True, "notify_calls": "all"})


def test_leader_one_tab_at_a_time() -> None:
    storage = MemoryStorage()
    first, second = SoundLeader(storage, "tab-a"), SoundLeader(storage, "tab-b")

    assert first.refresh(100.0)
    assert not second.refresh(100.5)
    assert first.refresh(102.0)
    assert not second.refresh(102.5)
    assert first.is_leader(103.0)
    assert not second.is_leader(103.0)


def test_leader_taken_over_after_expiry() -> None:
    storage = MemoryStorage()
    first, second = SoundLeader(storage, "tab-a"), SoundLeader(storage, "tab-b")
    first.refresh(100.0)

    assert not second.refresh(100.0 + LOCK_SECONDS - 0.1)
    assert second.refresh(100.0 + LOCK_SECONDS)
    assert not first.is_leader(100.0 + LOCK_SECONDS)
    assert not first.refresh(100.0 + LOCK_SECONDS + 1)


def test_leader_release_and_unreadable_lock() -> None:
    storage = MemoryStorage()
    first, second = SoundLeader(storage, "tab-a"), SoundLeader(storage, "tab-b")
    first.refresh(100.0)
    second.release()
    assert first.is_leader(100.0)

    first.release()
    assert second.refresh(100.1)

    storage.items["ringboard.sound-leader"] = "not json"
    assert first.refresh(100.2)


def test_has_call_reply() -> None:
    state = board(make_call("c-1"))

    assert has_call_reply("c-1", state, online=True) == {"shown": True}
    assert has_call_reply("c-2", state, online=True) == {"shown": False}
    assert has_call_reply("c-1", state, online=False) == {"shown": False}
    assert has_call_reply(None, state, online=True) == {"shown": False}


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [("#call=c-8a7b", "c-8a7b"), ("#call=c%2D1", "c-1"), ("#call=", None), ("", None), ("#other=1", None)],
)
def test_call_id_from_fragment(fragment: str, expected: str | None) -> None:
    assert call_id_from_fragment(fragment) == expected


def make_alerts(storage: MemoryStorage, tab: str) -> tuple[CallAlerts, FakeDom, list[str]]:
    dom = FakeDom(HTML)
    texts = load_catalog("en")
    view = BoardView(dom, texts)
    played: list[str] = []

    def play() -> bool:
        played.append(tab)
        return True

    return CallAlerts(dom, texts, SoundLeader(storage, tab), view.caller_label, play), dom, played


def test_alert_rings_once_in_leader_only() -> None:
    storage = MemoryStorage()
    leader, leader_dom, leader_played = make_alerts(storage, "tab-a")
    follower, follower_dom, follower_played = make_alerts(storage, "tab-b")
    assert leader.refresh_leader(100.0)
    assert not follower.refresh_leader(100.0)
    empty = board()
    leader.update(empty, 100.0)
    follower.update(empty, 100.0)

    ringing = board(make_call("c-1"))
    assert leader.update(ringing, 101.0) == ["c-1"]
    assert follower.update(ringing, 101.0) == ["c-1"]
    assert leader.update(ringing, 101.5) == []

    assert leader_played == ["tab-a"]
    assert follower_played == []
    assert leader_dom.document_element().attributes["data-sound-played"] == "c-1"
    assert "data-sound-played" not in follower_dom.document_element().attributes
    for dom in (leader_dom, follower_dom):
        alert = dom.element_by_id("call-alert")
        assert "hidden" not in alert.attributes
        assert "Max Muster (044 123 45 67) is calling" in alert.text

    answered = board(make_call("c-1", state="connected"))
    leader.update(answered, 102.0)
    follower.update(answered, 102.0)
    for dom in (leader_dom, follower_dom):
        assert "hidden" in dom.element_by_id("call-alert").attributes


def test_alert_silent_for_calls_at_start_and_when_off() -> None:
    alerts, dom, played = make_alerts(MemoryStorage(), "tab-a")
    alerts.refresh_leader(100.0)

    assert alerts.update(board(make_call("c-1")), 100.0) == []
    assert "hidden" not in dom.element_by_id("call-alert").attributes
    assert alerts.update(board(make_call("c-1"), make_call("c-2"), notifications=False), 101.0) == []
    assert "hidden" in dom.element_by_id("call-alert").attributes
    assert played == []


def test_alert_dismiss_hides_in_this_tab() -> None:
    alerts, dom, _ = make_alerts(MemoryStorage(), "tab-a")
    state = board(make_call("c-1"))
    alerts.update(state, 100.0)

    alerts.dismiss("c-1", state)

    assert "hidden" in dom.element_by_id("call-alert").attributes
    alerts.update(state, 101.0)
    assert "hidden" in dom.element_by_id("call-alert").attributes


class FakePushBrowser:
    def __init__(self, permission: str = "granted", can_subscribe: bool = True) -> None:
        self._permission = permission
        self.can_subscribe = can_subscribe
        self.current: tuple[dict[str, Any] | None, str | None] = (None, None)
        self.unsubscribed = 0

    def permission(self) -> str:
        return self._permission

    async def request_permission(self) -> str:
        return self._permission

    async def subscription(self) -> tuple[dict[str, Any] | None, str | None]:
        return self.current

    async def subscribe(self, public_key: str) -> dict[str, Any]:
        if not self.can_subscribe:
            raise RuntimeError("AbortError: Registration failed - push service not available")
        subscription = {"endpoint": "https://fcm.googleapis.com/fcm/send/x", "keys": {"p256dh": "p", "auth": "a"}}
        self.current = (subscription, public_key)
        return subscription

    async def unsubscribe(self) -> bool:
        self.current = (None, None)
        self.unsubscribed += 1
        return True


class FakeAgent:
    def __init__(self, test_reply: tuple[int, Any] = (404, {"code": "no_subscription"})) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.test_reply = test_reply

    async def __call__(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, url, body))
        if url == "/api/push/key":
            return 200, {"public_key": KEY}
        if url == "/api/push/subscriptions":
            return 201, {"id": "s-1", "created": True}
        if method == "DELETE":
            return 204, None
        return self.test_reply


def test_push_subscribes_and_unsubscribes() -> None:
    browser, agent, storage = FakePushBrowser(), FakeAgent(), MemoryStorage()
    setup = PushSetup(browser, agent, storage)

    assert asyncio.run(setup.sync(True)) == "subscribed"
    assert [request[:2] for request in agent.requests] == [("GET", "/api/push/key"), ("POST", "/api/push/subscriptions")]
    assert storage.items[SUBSCRIPTION_ID_KEY] == "s-1"

    assert asyncio.run(setup.sync(False)) == "off"
    assert agent.requests[-1][:2] == ("DELETE", "/api/push/subscriptions/s-1")
    assert browser.unsubscribed == 1
    assert SUBSCRIPTION_ID_KEY not in storage.items


def test_push_resubscribes_on_new_key() -> None:
    browser, agent = FakePushBrowser(), FakeAgent()
    browser.current = ({"endpoint": "https://fcm.googleapis.com/fcm/send/old"}, "old-key")

    assert asyncio.run(PushSetup(browser, agent, MemoryStorage()).sync(True)) == "subscribed"
    assert browser.unsubscribed == 1
    assert browser.current[1] == KEY
    assert agent.requests[-1][2]["endpoint"].endswith("/x")


def test_push_unavailable_without_push_service() -> None:
    setup = PushSetup(FakePushBrowser(can_subscribe=False), FakeAgent(), MemoryStorage())

    assert asyncio.run(setup.sync(True)) == "unavailable"


def test_push_waits_for_permission() -> None:
    agent = FakeAgent()

    assert asyncio.run(PushSetup(FakePushBrowser("default"), agent, MemoryStorage()).sync(True)) == "no_permission"
    assert agent.requests == []


@pytest.mark.parametrize(
    ("reply", "key"),
    [
        ((404, {"code": "no_subscription"}), "notify.test.no_subscription"),
        ((200, {"results": [{"subscription": "s-1", "outcome": "sent", "status": 201}]}), "notify.test.sent"),
        ((200, {"results": [{"subscription": "s-1", "outcome": "gone", "status": 410}]}), "notify.test.gone"),
        ((200, {"results": [{"subscription": "s-1", "outcome": "failed", "status": None}]}), "notify.test.failed"),
        ((500, None), "notify.test.error"),
    ],
)
def test_push_test_result(reply: tuple[int, Any], key: str) -> None:
    setup = PushSetup(FakePushBrowser(), FakeAgent(reply), MemoryStorage())

    assert asyncio.run(setup.send_test()) == key


@pytest.mark.parametrize("language", ["en", "de", "fr", "it"])
def test_panel_shows_help_when_denied(language: str) -> None:
    dom = FakeDom(HTML)
    panel = NotifyPanel(dom, load_catalog(language))

    panel.render("denied", "unavailable")

    assert dom.element_by_id("notify-permission").attributes["data-permission"] == "denied"
    assert "hidden" not in dom.element_by_id("notify-help").attributes
    assert "hidden" in dom.element_by_id("notify-request").attributes
    assert len(dom.element_by_id("notify-help-steps").element_children()) == 3
    assert "notify." not in dom.element_by_id("notify-push").text


def test_panel_offers_request_while_undecided() -> None:
    dom = FakeDom(HTML)
    panel = NotifyPanel(dom, load_catalog("en"))

    panel.render("default", None)
    panel.show_test_result("notify.test.failed", "503")

    assert "hidden" not in dom.element_by_id("notify-request").attributes
    assert "hidden" in dom.element_by_id("notify-help").attributes
    assert "hidden" in dom.element_by_id("notify-push").attributes
    assert dom.element_by_id("notify-test-result").text.endswith("(status 503).")

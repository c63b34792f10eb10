"""The UI's view under CPython, rendering into a fake DOM built from the real index.html."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.formatting import format_duration, format_when  # noqa: E402
from ringboard_ui.i18n import load_catalog  # noqa: E402
from ringboard_ui.state import BoardState  # noqa: E402
from ringboard_ui.view import BoardView  # noqa: E402
from tests.support.fake_dom import FakeDom, FakeNode  # noqa: E402

ZURICH_WINTER = timezone(timedelta(hours=1))
NOW = datetime(2026, 12, 4, 9, 30, 0, tzinfo=timezone.utc)


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
    fields: dict[str, Any] = {
        "outcome": outcome,
        "confidence": "certain",
        "answered_at": "2026-12-04T09:20:04.500Z",
        "ended_at": "2026-12-04T09:21:09.780Z",
        "duration": 65.28,
    }
    fields.update(changes)
    return call(call_id, "ended", **fields)


def snapshot(active: list[Any] | None = None, history: list[Any] | None = None, seq: int = 10) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "version": 1,
        "seq": seq,
        "active": active or [],
        "history": history or [],
        "health": {"status": "ok", "subscriptions": []},
    }


@pytest.fixture
def dom() -> FakeDom:
    return FakeDom((ROOT / "webapp" / "index.html").read_text(encoding="utf-8"))


def make_view(dom: FakeDom, language: str = "en") -> BoardView:
    return BoardView(dom, load_catalog(language), zone=ZURICH_WINTER)


def rows(dom: FakeDom, section_id: str) -> list[FakeNode]:
    return dom.element_by_id(section_id).find_class("call")


def render(view: BoardView, *messages: dict[str, Any], now: datetime = NOW) -> BoardState:
    state = BoardState()
    for message in messages:
        state.apply(message)
    view.render(state, now)
    return state


def test_ringing_row_attributes(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(active=[call("c-1")]))

    [row] = rows(dom, "active-calls")
    assert row.tag == "li"
    assert row.attributes["data-call-id"] == "c-1"
    assert row.attributes["data-state"] == "ringing"
    assert row.attributes["data-outcome"] == ""
    assert row.attributes["data-kind"] == "ringing"
    assert row.attributes["data-direction"] == "inbound"


def test_ringing_row_texts(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(active=[call("c-1", called="+41445550000")]))

    [row] = rows(dom, "active-calls")
    assert row.one("call__name").text == "Max Muster"
    assert row.one("call__number").text == "044 123 45 67"
    assert row.one("call__called").text == "via +41445550000"
    assert row.one("call__extension").text == "Ext. 201"
    assert row.one("call__time").text == "10:20"
    assert row.one("call__time").attributes["datetime"] == "2026-12-04T09:20:00+00:00"
    assert row.one("call__state").text == "Ringing"
    assert row.one("call__duration").text == ""
    assert row.one("icon--ringing").attributes["aria-label"] == "Ringing call"
    assert row.find_class("call__outcome") == []


def test_page_counts_and_title(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(active=[call("c-1"), call("c-2", "connected")]))

    assert dom.element_by_id("active-count").text == "2"
    assert "hidden" in dom.element_by_id("active-empty").attributes
    assert "hidden" not in dom.element_by_id("history-empty").attributes
    assert dom.title == "(1) Ringboard"


def test_empty_board(dom: FakeDom) -> None:
    render(make_view(dom), snapshot())

    assert rows(dom, "active-calls") == []
    assert "hidden" not in dom.element_by_id("active-empty").attributes
    assert dom.element_by_id("active-count").text == "0"
    assert dom.title == "Ringboard"


def test_connected_duration_ticks(dom: FakeDom) -> None:
    view = make_view(dom)
    render(view, snapshot(active=[call("c-1", "connected", answered_at="2026-12-04T09:29:00.000Z")]))
    [row] = rows(dom, "active-calls")
    assert row.one("call__duration").text == "1:00"
    assert row.one("call__state").text == "Connected"

    view.tick(NOW + timedelta(seconds=5))

    [ticked] = rows(dom, "active-calls")
    assert ticked is row
    assert row.one("call__duration").text == "1:05"


def test_held_call_shows_on_hold(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(active=[call("c-1", "held", answered_at="2026-12-04T08:29:00.000Z")]))

    [row] = rows(dom, "active-calls")
    assert row.one("call__state").text == "On hold"
    assert row.one("call__duration").text == "1:01:00"


def test_ended_row_in_history(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(history=[ended("c-1")]))

    assert rows(dom, "active-calls") == []
    [row] = rows(dom, "call-history")
    assert row.attributes["data-state"] == "ended"
    assert row.attributes["data-outcome"] == "answered"
    assert row.attributes["data-kind"] == "incoming-answered"
    assert row.one("call__outcome").text == "Answered"
    assert row.one("call__duration").text == "1:05"
    assert row.find_class("call__state") == []


def test_call_moves_between_lists(dom: FakeDom) -> None:
    view = make_view(dom)
    state = render(view, snapshot(active=[call("c-1")]))

    state.apply({"type": "call", "seq": 11, "event": "ended", "call": ended("c-1", "missed", answered_at=None, duration=None)})
    view.render(state, NOW)

    assert rows(dom, "active-calls") == []
    [row] = rows(dom, "call-history")
    assert row.attributes["data-outcome"] == "missed"
    assert row.attributes["data-kind"] == "incoming-missed"
    assert row.one("call__duration").text == ""


def test_unchanged_rows_are_reused(dom: FakeDom) -> None:
    view = make_view(dom)
    state = render(view, snapshot(active=[call("c-1")], history=[ended("c-0")]))
    first_active = rows(dom, "active-calls")[0]
    first_history = rows(dom, "call-history")[0]

    state.apply({"type": "call", "seq": 11, "event": "connected", "call": call("c-1", "connected")})
    created = dom.created
    view.render(state, NOW)

    assert rows(dom, "call-history")[0] is first_history
    assert rows(dom, "active-calls")[0] is not first_active
    assert dom.created > created


def test_render_without_changes_creates_nothing(dom: FakeDom) -> None:
    view = make_view(dom)
    state = render(view, snapshot(active=[call("c-1")], history=[ended("c-0")]))
    created = dom.created

    view.render(state, NOW)

    # Only the banner is rebuilt, and it is empty.
    assert dom.created == created


def test_history_order_follows_state(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(history=[ended("c-3"), ended("c-2"), ended("c-1")]))

    assert [row.attributes["data-call-id"] for row in rows(dom, "call-history")] == ["c-3", "c-2", "c-1"]


def test_withheld_caller(dom: FakeDom) -> None:
    withheld = {"number": None, "e164": None, "display": None, "name": None, "uri": None, "withheld": True}
    render(make_view(dom), snapshot(active=[call("c-1", remote=withheld)]))

    [row] = rows(dom, "active-calls")
    assert row.one("call__name").text == "Withheld number"
    assert "call__name--placeholder" in row.one("call__name").attributes["class"]
    assert row.find_class("call__number") == []


def test_caller_without_name(dom: FakeDom) -> None:
    remote = {"number": "0791234567", "display": "079 123 45 67", "name": None, "withheld": False}
    render(make_view(dom), snapshot(active=[call("c-1", remote=remote)]))

    [row] = rows(dom, "active-calls")
    assert row.one("call__name").text == "Unknown"
    assert row.one("call__number").text == "079 123 45 67"


def test_caller_without_display_shows_number(dom: FakeDom) -> None:
    remote = {"number": "203", "display": None, "name": "Reception", "withheld": False}
    render(make_view(dom), snapshot(active=[call("c-1", remote=remote, direction="internal")]))

    [row] = rows(dom, "active-calls")
    assert row.one("call__number").text == "203"


def test_markup_in_name_stays_text(dom: FakeDom) -> None:
    remote = {"number": "+41441234567", "name": "<img src=x onerror=alert(1)>", "withheld": False}
    render(make_view(dom), snapshot(active=[call("c-1", remote=remote)]))

    [row] = rows(dom, "active-calls")
    name = row.one("call__name")
    assert name.children == ["<img src=x onerror=alert(1)>"]


def test_package_never_uses_inner_html() -> None:
    for path in (UI_DIR / "ringboard_ui").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert ".innerHTML" not in source, path.name
        assert ".outerHTML" not in source, path.name
        assert ".insertAdjacentHTML" not in source, path.name


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"outcome": "answered"}, "Answered"),
        ({"outcome": "missed"}, "Missed"),
        ({"outcome": "missed", "outcome_reason": "caller_hangup"}, "Missed (caller hung up)"),
        ({"outcome": "missed", "confidence": "inferred"}, "Missed (probably)"),
        ({"outcome": "answered_elsewhere", "answered_by": "202"}, "Answered by 202"),
        ({"outcome": "answered_elsewhere"}, "Answered elsewhere"),
        ({"outcome": "busy"}, "Busy"),
        ({"outcome": "rejected"}, "Rejected"),
        ({"outcome": "failed", "outcome_reason": "486"}, "Not connected (SIP 486)"),
        ({"outcome": "transferred", "transferred_to": "203"}, "Transferred to 203"),
        ({"outcome": "transferred"}, "Transferred"),
        ({"outcome": "answered", "outcome_reason": "agent_restarted"}, "Answered"),
        ({"outcome": None}, "Ended"),
        ({"outcome": "a_future_outcome"}, "Ended"),
    ],
)
def test_outcome_text(dom: FakeDom, changes: dict[str, Any], text: str) -> None:
    render(make_view(dom), snapshot(history=[ended("c-1", **changes)]))

    [row] = rows(dom, "call-history")
    assert row.one("call__outcome").text == text


def test_outcome_text_german(dom: FakeDom) -> None:
    render(make_view(dom, "de"), snapshot(history=[ended("c-1", "answered_elsewhere", answered_by="202")]))

    [row] = rows(dom, "call-history")
    assert row.one("call__outcome").text == "Angenommen von 202"
    assert row.one("call__extension").text == "Nst. 201"


def test_yesterday_label_after_midnight(dom: FakeDom) -> None:
    view = make_view(dom)
    render(view, snapshot(history=[ended("c-1")]))
    [row] = rows(dom, "call-history")
    assert row.one("call__time").text == "10:20"

    view.tick(datetime(2026, 12, 5, 0, 30, tzinfo=timezone.utc))

    assert row.one("call__time").text == "Yesterday 10:20"


def test_translate_shell_german(dom: FakeDom) -> None:
    view = make_view(dom, "de")

    view.translate_shell()

    assert dom.document_element().attributes["lang"] == "de"
    assert "Aktive Anrufe" in dom.element_by_id("active-title").text
    assert dom.element_by_id("history-title").text == "Anrufliste"
    assert dom.element_by_id("active-empty").text == "Keine aktiven Anrufe"
    assert dom.element_by_id("status").attributes["title"] == "Verbindung zum Ringboard-Server wird aufgebaut"


def test_translate_shell_keeps_count(dom: FakeDom) -> None:
    view = make_view(dom, "fr")

    view.translate_shell()

    assert dom.element_by_id("active-count").text == "0"


@pytest.mark.parametrize(
    ("status", "text", "disabled"),
    [("connecting", "Connecting…", True), ("online", "Online", True), ("offline", "Offline", False)],
)
def test_connection_status(dom: FakeDom, status: str, text: str, disabled: bool) -> None:
    view = make_view(dom)

    view.show_connection(status)

    button = dom.element_by_id("status")
    assert button.attributes["data-connection"] == status
    assert button.text == text
    assert ("disabled" in button.attributes) is disabled


def test_connection_status_unknown_raises(dom: FakeDom) -> None:
    with pytest.raises(ValueError, match="unknown connection status"):
        make_view(dom).show_connection("sleeping")


def test_mark_live(dom: FakeDom) -> None:
    make_view(dom).mark_live()

    assert "hidden" in dom.element_by_id("loading").attributes
    assert dom.document_element().attributes["data-ringboard"] == "live"


def test_banner_hidden_when_healthy(dom: FakeDom) -> None:
    render(make_view(dom), snapshot())

    banner = dom.element_by_id("banner")
    assert "hidden" in banner.attributes
    assert banner.element_children() == []


def test_banner_shows_failing_subscription(dom: FakeDom) -> None:
    health = {
        "type": "health",
        "status": "degraded",
        "subscriptions": [
            {"extension": "201", "state": "active", "since": None, "reason": None},
            {"extension": "202", "state": "failing", "since": None, "reason": {"code": "rejected", "status": 403}},
            {"extension": "203", "state": "pending", "since": None, "reason": None},
            {"extension": "204", "state": "failing", "since": None, "reason": {"code": "something_new"}},
        ],
    }
    render(make_view(dom), snapshot(), health)

    banner = dom.element_by_id("banner")
    assert "hidden" not in banner.attributes
    assert [paragraph.text for paragraph in banner.element_children()] == [
        "Extension 202 is not monitored: the phone system rejected the subscription (SIP 403).",
        "Extension 203: connecting to the phone system…",
        "Extension 204 is not monitored: the reason is unknown.",
    ]


def test_banner_shows_agent_error(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(), {"type": "error", "code": "bad_request", "params": {"field": "since"}})

    [paragraph] = dom.element_by_id("banner").element_children()
    assert "“since” is not valid" in paragraph.text


def test_banner_shows_unknown_error_code(dom: FakeDom) -> None:
    render(make_view(dom), snapshot(), {"type": "error", "code": "too_many_clients", "params": {"key": "x"}})

    [paragraph] = dom.element_by_id("banner").element_children()
    assert paragraph.text == "The server reported an error (too_many_clients)."


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (-3, "0:00"), (5.9, "0:05"), (65.28, "1:05"), (600, "10:00"), (3600, "1:00:00"), (3725, "1:02:05")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 12, 4, 8, 5, tzinfo=timezone.utc), "09:05"),
        (datetime(2026, 12, 3, 23, 30, tzinfo=timezone.utc), "00:30"),
        (datetime(2026, 12, 3, 22, 59, tzinfo=timezone.utc), "Yesterday 23:59"),
        (datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc), "30.11.2026 13:00"),
    ],
)
def test_format_when(moment: datetime, text: str) -> None:
    assert format_when(moment, NOW, load_catalog("en"), ZURICH_WINTER) == text

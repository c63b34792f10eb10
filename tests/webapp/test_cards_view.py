"""Caller cards, actions, filters and settings of the page, under CPython with the fake DOM."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.controls import PageControls  # noqa: E402
from ringboard_ui.i18n import load_catalog  # noqa: E402
from ringboard_ui.state import BoardState  # noqa: E402
from ringboard_ui.view import BoardView  # noqa: E402
from tests.support.fake_dom import FakeDom  # noqa: E402
from tests.webapp.test_view import call, ended  # noqa: E402

NOW = datetime(2026, 12, 4, 9, 21, tzinfo=timezone.utc)
HOSTILE_NAME = '<img src=x onerror="alert(1)"> مرحبا 📞 ' + "x" * 200


def card(**changes: Any) -> dict[str, Any]:
    base = {
        "connector": "crm", "label": "Sugar CRM", "logo": None, "contact_id": "4711",
        "name": "Max Muster", "company": "Muster AG",
        "url": "https://crm.example.com/contacts/4711", "company_url": "https://crm.example.com/accounts/815",
        "match": {"code": "e164", "params": {"number": "044 123 45 67", "stored": "+41 44 123 45 67", "label": "Sugar CRM"}},
        "details": [], "actions": [{"id": "log_call", "label": "crm.action.log_call"}], "score": 100, "chosen": False,
    }
    base.update(changes)
    return base


def crm(call_id: str = "c-1", cards: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    message = {"type": "crm", "call_id": call_id, "number": "+41441234567", "skipped": None,
               "cards": [card()] if cards is None else cards, "pending": [], "errors": [], "labels": {}}
    message.update(changes)
    return message


def board(language: str = "en") -> tuple[FakeDom, BoardState, BoardView]:
    dom = FakeDom((ROOT / "webapp" / "index.html").read_text(encoding="utf-8"))
    state = BoardState()
    state.apply({"type": "snapshot", "version": 1, "seq": 1, "active": [call()], "history": []})
    return dom, state, BoardView(dom, load_catalog(language), timezone.utc)


def row(dom: FakeDom, call_id: str = "c-1"):
    return next(node for node in dom.root.iter() if node.attributes.get("data-call-id") == call_id and node.tag == "li")


def test_best_card_names_call() -> None:
    dom, state, view = board()
    state.apply(crm())
    view.render(state, NOW)

    assert row(dom).one("call__name").text == "Max Muster"


def test_card_links_open_new_tab() -> None:
    dom, state, view = board()
    state.apply(crm())
    view.render(state, NOW)

    name = row(dom).one("card__name")
    assert name.tag == "a"
    assert name.attributes["href"] == "https://crm.example.com/contacts/4711"
    assert name.attributes["target"] == "_blank"
    assert name.attributes["rel"] == "noopener noreferrer"
    assert row(dom).one("card__company").attributes["href"] == "https://crm.example.com/accounts/815"


def test_script_link_not_used() -> None:
    dom, state, view = board()
    state.apply(crm(cards=[card(url="javascript:alert(1)")]))
    view.render(state, NOW)

    assert row(dom).one("card__name").tag == "span"


def test_hostile_name_stays_text() -> None:
    dom, state, view = board()
    state.apply(crm(cards=[card(name=HOSTILE_NAME)]))
    view.render(state, NOW)

    name = row(dom).one("call__name")
    assert name.text == HOSTILE_NAME
    assert name.attributes["dir"] == "auto"
    assert not [node for node in dom.root.iter() if node.tag == "img" and node.attributes.get("src") == "x"]


def test_match_translated() -> None:
    dom, state, view = board("de")
    state.apply(crm())
    view.render(state, NOW)

    assert row(dom).one("card__match").text == "044 123 45 67 passt zu «+41 44 123 45 67» in Sugar CRM (gleiche Nummer)"


def test_pending_and_errors_shown() -> None:
    dom, state, view = board()
    state.apply(crm(cards=[], pending=["directory"], errors=[{"connector": "crm", "code": "timeout", "params": {"seconds": 1.5}}],
                    labels={"directory": "Company directory", "crm": "CRM"}))
    view.render(state, NOW)

    assert row(dom).one("cards__pending").text == "Looking up in Company directory…"
    assert row(dom).one("cards__error").text == "CRM: no answer within 1.5 s"
    assert row(dom).attributes["aria-busy"] == "true"


def test_unknown_caller_gets_create_contact() -> None:
    dom, state, view = board()
    state.caller_actions = ()
    state.apply({"type": "snapshot", "version": 1, "seq": 1, "active": [call()], "history": [],
                 "caller_actions": [{"connector": "hubspot", "label": "HubSpot",
                                     "actions": [{"id": "create_contact", "label": "crm.action.create_contact", "kind": "run"}]}]})
    state.apply(crm(cards=[]))
    view.render(state, NOW)

    button = row(dom).one("card__action")
    assert button.text == "Create contact in HubSpot"
    assert button.attributes["data-action-id"] == "create_contact"
    assert button.attributes["data-contact-id"] == ""


def test_choose_offered_for_several_cards() -> None:
    dom, state, view = board()
    state.apply(crm(cards=[card(), card(contact_id="4712", name="Maxi Muster")]))
    view.render(state, NOW)

    buttons = row(dom).find_class("card__choose")
    assert [button.attributes["data-contact-id"] for button in buttons] == ["4711", "4712"]
    assert buttons[0].attributes["data-number"] == "+41441234567"


def test_crm_message_replaces_cards() -> None:
    dom, state, view = board()
    state.apply(crm())
    state.apply(crm(cards=[card(name="Erika Muster")]))
    view.render(state, NOW)

    assert row(dom).one("call__name").text == "Erika Muster"


class FakeAgent:
    """A stand-in for the agent that returns one reply to every request and records the requests."""

    def __init__(self, reply: tuple[int, Any]) -> None:
        self.reply = reply
        self.requests: list[tuple[str, str, Any]] = []

    async def __call__(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, url, body))
        await asyncio.sleep(0)
        return self.reply


def controls(reply: tuple[int, Any]) -> tuple[FakeDom, BoardState, BoardView, PageControls, FakeAgent]:
    dom, state, view = board()
    state.apply(crm())
    agent = FakeAgent(reply)
    page = PageControls(state, view, agent, lambda: view.render(state, NOW), ["en"])
    view.render(state, NOW)
    return dom, state, view, page, agent


ACTION = {"action": "run", "for-call": "c-1", "connector": "crm", "action-id": "log_call", "contact-id": "4711", "label": "Sugar CRM"}


def test_action_double_click_runs_once() -> None:
    dom, state, view, page, agent = controls((200, {"ok": True, "url": "https://crm.example.com/calls/9", "code": None, "params": {}}))

    async def click_twice() -> None:
        await asyncio.gather(page.run_action(ACTION), page.run_action(ACTION))

    asyncio.run(click_twice())

    assert len(agent.requests) == 1
    assert agent.requests[0][1] == "/api/calls/c-1/actions/crm/log_call"
    assert agent.requests[0][2] == {"contact_id": "4711", "params": {}}
    result = row(dom).one("card__result--ok")
    assert result.one("card__result-link").attributes["href"] == "https://crm.example.com/calls/9"
    assert "disabled" in row(dom).one("card__action").attributes


def test_action_error_translated() -> None:
    dom, state, view, page, agent = controls(
        (200, {"ok": False, "code": "crm.timeout", "params": {"label": "Sugar CRM", "crm": "SugarCRM"}})
    )

    asyncio.run(page.run_action(ACTION))

    assert row(dom).one("card__result--failed").text == "SugarCRM did not answer “Sugar CRM” in time."
    assert "disabled" not in row(dom).one("card__action").attributes


def test_settings_saved_switch_language() -> None:
    dom, state, view, page, agent = controls((200, {"show_history": False, "history_filter": "all", "notifications": True,
                                                    "notify_calls": "incoming", "language": "fr"}))

    asyncio.run(page.save_settings({"language": "fr", "show_history": False}))

    assert agent.requests[0][0] == "PUT"
    assert agent.requests[0][2]["language"] == "fr"
    assert view.texts.language == "fr"
    assert dom.element_by_id("call-history").attributes["data-hidden-by-user"] == "true"
    assert dom.document_element().attributes["lang"] == "fr"


def test_settings_message_applies() -> None:
    dom, state, view = board()
    state.apply({"type": "settings", "settings": {"show_history": False}})

    assert state.settings["show_history"] is False
    assert state.settings["history_filter"] == "all"


def test_filter_open_and_text() -> None:
    dom, state, view = board()
    state.apply({"type": "snapshot", "version": 1, "seq": 5, "active": [], "history": [
        ended("c-2", "missed", done=False), ended("c-3", "missed", done=True), ended("c-4", "answered"),
    ]})
    state.apply(crm("c-4", cards=[card(company="Beispiel AG")]))
    state.settings["history_filter"] = "open"
    view.render(state, NOW)
    shown = [node.attributes["data-call-id"] for node in dom.element_by_id("history-list").element_children()]
    assert shown == ["c-2"]

    state.settings["history_filter"] = "all"
    view.search_text = "beispiel"
    view.render(state, NOW)
    shown = [node.attributes["data-call-id"] for node in dom.element_by_id("history-list").element_children()]
    assert shown == ["c-4"]


def test_done_kept_over_live_update() -> None:
    state = BoardState()
    state.apply({"type": "snapshot", "version": 1, "seq": 5, "active": [], "history": [ended("c-2", "missed", done=True)]})
    state.apply({"type": "call", "seq": 6, "event": "updated", "call": ended("c-2", "missed")})

    assert state.history[0].done is True


def test_older_page_appended() -> None:
    state = BoardState()
    state.apply({"type": "snapshot", "version": 1, "seq": 5, "active": [], "history": [ended("c-2")]})

    added = state.add_older([ended("c-2"), ended("c-1")], None)

    assert added is True
    assert [item.id for item in state.history] == ["c-2", "c-1"]
    assert state.history_complete is True

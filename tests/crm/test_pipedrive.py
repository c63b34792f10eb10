"""Pipedrive against its contract server: search terms, verified cards, activities and persons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.crm.base import ActionRequest
from agent.crm.calls import CallSummary
from agent.crm.pipedrive import PipedriveConnector
from agent.lookup.numbers import MatchReason
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, call_json, crm_settings, pipedrive_server, reset
from tests.support.crm_servers import PIPEDRIVE_TOKEN, CrmServer

__all__ = ["pipedrive_server"]


@pytest.fixture
async def pipedrive(pipedrive_server: CrmServer, tmp_path: Path) -> AsyncIterator[PipedriveConnector]:
    reset(pipedrive_server)
    connector = PipedriveConnector(crm_settings("pipedrive", pipedrive_server.url, tmp_path), timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()


async def test_search_terms_and_token(pipedrive: PipedriveConnector, pipedrive_server: CrmServer) -> None:
    await pipedrive.lookup(ANNA)

    searches = pipedrive_server.state.calls("GET", "/v1/persons/search")
    assert sorted(request.query["term"] for request in searches) == ["044 555 01 23", "445550123"]
    for request in searches:
        assert request.query["fields"] == "phone"
        assert request.headers["x-api-token"] == PIPEDRIVE_TOKEN
        assert "api_token" not in request.query


async def test_cards_verified_and_deduplicated(pipedrive: PipedriveConnector) -> None:
    cards = await pipedrive.lookup(ANNA)

    by_name = {card.name: card for card in cards}
    assert sorted(by_name) == ["Anna Muster", "Anna Muster (Handy)"]
    assert len(cards) == 2
    anna = by_name["Anna Muster"]
    assert anna.company == "Beispiel AG"
    assert anna.url == "https://beispiel.pipedrive.com/person/17"
    assert anna.company_url == "https://beispiel.pipedrive.com/organization/5"
    assert anna.match.reason is MatchReason.E164
    assert by_name["Anna Muster (Handy)"].contact_id == "19"


async def test_web_url_setting_skips_users_me(pipedrive_server: CrmServer, tmp_path: Path) -> None:
    reset(pipedrive_server)
    settings = crm_settings("pipedrive", pipedrive_server.url, tmp_path, web_url="https://crm.beispiel.example")
    connector = PipedriveConnector(settings, timeout=LOOKUP_TIMEOUT)
    try:
        cards = await connector.lookup(ANNA)
    finally:
        await connector.stop()
    assert cards[0].url.startswith("https://crm.beispiel.example/person/")
    assert pipedrive_server.state.calls("GET", "/v1/users/me") == []


async def test_log_call_activity(pipedrive: PipedriveConnector, pipedrive_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json())
    outcome = await pipedrive.run_action("log_call", ActionRequest(call, "17"))

    body = pipedrive_server.state.calls("POST", "/v1/activities")[0].body
    assert body["type"] == "call"
    assert body["done"] == 1
    assert body["person_id"] == 17
    assert body["due_date"] == "2026-12-04"
    assert body["due_time"] == "09:00"
    assert body["duration"] == "00:04"
    assert body["subject"] == "Incoming call from 044 555 01 23"
    assert outcome.url == "https://beispiel.pipedrive.com/person/17"
    assert outcome.record_id is not None


async def test_task_is_undone_activity(pipedrive: PipedriveConnector, pipedrive_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json(outcome="missed", answered_at=None))
    await pipedrive.run_action("create_task", ActionRequest(call, "17"))

    body = pipedrive_server.state.calls("POST", "/v1/activities")[0].body
    assert body["done"] == 0
    assert body["subject"] == "Call back 044 555 01 23"
    assert "duration" not in body


async def test_create_person(pipedrive: PipedriveConnector, pipedrive_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json(remote={"e164": "+41445559900", "display": "044 555 99 00", "withheld": False}))
    outcome = await pipedrive.run_action("create_contact", ActionRequest(call, None))

    body = pipedrive_server.state.calls("POST", "/v1/persons")[0].body
    assert body == {"name": "044 555 99 00", "phone": [{"value": "+41445559900", "primary": True, "label": "work"}]}
    assert outcome.url == f"https://beispiel.pipedrive.com/person/{outcome.contact_id}"

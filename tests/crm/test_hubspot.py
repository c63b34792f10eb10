"""HubSpot against its contract server: the search request, verified cards, and the actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.crm.base import ActionRequest
from agent.crm.calls import CallSummary
from agent.crm.hubspot import HubSpotConnector
from agent.lookup.numbers import MatchReason, parse_caller
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, RULES, call_json, crm_settings, hubspot_server, reset
from tests.support.crm_servers import HUBSPOT_TOKEN, CrmServer

__all__ = ["hubspot_server"]


@pytest.fixture
async def hubspot(hubspot_server: CrmServer, tmp_path: Path) -> AsyncIterator[HubSpotConnector]:
    reset(hubspot_server)
    connector = HubSpotConnector(crm_settings("hubspot", hubspot_server.url, tmp_path), timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()


async def test_search_request_shape(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    await hubspot.lookup(ANNA)

    search = hubspot_server.state.calls("POST", "/crm/v3/objects/contacts/search")[0]
    assert search.headers["authorization"] == f"Bearer {HUBSPOT_TOKEN}"
    groups = search.body["filterGroups"]
    assert groups[0]["filters"] == [
        {"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": "445550123"}
    ]
    assert groups[1]["filters"][0]["propertyName"] == "hs_searchable_calculated_mobile_number"
    assert groups[2]["filters"][0] == {
        "propertyName": "phone", "operator": "IN", "values": ["+41445550123", "0041445550123", "044 555 01 23", "+41 44 555 01 23", "0445550123"]
    }
    assert groups[3]["filters"][0]["propertyName"] == "mobilephone"
    assert "associatedcompanyid" in search.body["properties"]


async def test_search_cards_verified(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    cards = await hubspot.lookup(ANNA)

    assert [card.name for card in cards] == ["Anna Muster"]
    card = cards[0]
    assert card.company == "Beispiel AG"
    assert card.contact_id == "51234"
    assert card.url == "https://app-eu1.hubspot.com/contacts/4711/record/0-1/51234"
    assert card.company_url == "https://app-eu1.hubspot.com/contacts/4711/record/0-2/90817"
    assert card.match.reason is MatchReason.E164
    assert [action.id for action in card.actions] == ["log_call", "create_task"]
    assert len(hubspot_server.state.calls("GET", "/account-info/v3/details")) == 1


async def test_mobile_found_by_normalised_copy(hubspot: HubSpotConnector) -> None:
    cards = await hubspot.lookup(parse_caller("+41795550011", RULES))

    assert [(card.name, card.match.reason) for card in cards] == [("Luca Bernasconi", MatchReason.E164)]


async def test_portal_read_once(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    await hubspot.lookup(ANNA)
    await hubspot.lookup(ANNA)

    assert len(hubspot_server.state.calls("GET", "/account-info/v3/details")) == 1
    assert len(hubspot_server.state.calls("POST", "/crm/v3/objects/contacts/search")) == 2


async def test_log_call_engagement(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json())
    outcome = await hubspot.run_action("log_call", ActionRequest(call, "51234", {"note": "Wants an offer"}))

    created = hubspot_server.state.calls("POST", "/crm/v3/objects/calls")[0].body
    properties = created["properties"]
    assert properties["hs_timestamp"] == "2026-12-04T09:00:00.000Z"
    assert properties["hs_call_direction"] == "INBOUND"
    assert properties["hs_call_duration"] == "192000"
    assert properties["hs_call_status"] == "COMPLETED"
    assert properties["hs_call_from_number"] == "+41445550123"
    assert properties["hs_call_disposition"] == "f240bbac-87c9-4f6e-bf70-924b57d47db7"
    assert properties["hs_call_title"] == "Incoming call from 044 555 01 23"
    assert "Wants an offer" in properties["hs_call_body"]
    assert created["associations"] == [
        {"to": {"id": "51234"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}
    ]
    assert outcome.url == "https://app-eu1.hubspot.com/contacts/4711/record/0-1/51234"
    assert outcome.record_id in hubspot_server.state.data["calls"]


async def test_missed_call_task(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json(outcome="missed", answered_at=None))
    await hubspot.run_action("create_task", ActionRequest(call, "51234"))

    created = hubspot_server.state.calls("POST", "/crm/v3/objects/tasks")[0].body
    assert created["properties"]["hs_task_subject"] == "Call back 044 555 01 23"
    assert created["properties"]["hs_task_type"] == "CALL"
    assert created["properties"]["hs_task_priority"] == "HIGH"
    assert created["associations"][0]["types"][0]["associationTypeId"] == 204


async def test_log_call_in_german(hubspot_server: CrmServer, tmp_path: Path) -> None:
    reset(hubspot_server)
    connector = HubSpotConnector(crm_settings("hubspot", hubspot_server.url, tmp_path, language="de"), timeout=1.0)
    try:
        call = CallSummary.from_json(call_json(outcome="missed", answered_at=None))
        await connector.run_action("log_call", ActionRequest(call, "51234"))
    finally:
        await connector.stop()

    properties = hubspot_server.state.calls("POST", "/crm/v3/objects/calls")[0].body["properties"]
    assert properties["hs_call_title"] == "Verpasster Anruf von 044 555 01 23"
    assert properties["hs_call_status"] == "NO_ANSWER"
    assert properties["hs_call_disposition"] == "73a0d17f-1163-4015-bdd5-ec830791da20"


async def test_create_contact(hubspot: HubSpotConnector, hubspot_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json(remote={"e164": "+41445559900", "display": "044 555 99 00", "withheld": False}))
    outcome = await hubspot.run_action("create_contact", ActionRequest(call, None, {"name": "Neu Kunde"}))

    body = hubspot_server.state.calls("POST", "/crm/v3/objects/contacts")[0].body
    assert body == {"properties": {"phone": "+41445559900", "firstname": "Neu", "lastname": "Kunde"}}
    assert outcome.contact_id is not None
    assert outcome.url == f"https://app-eu1.hubspot.com/contacts/4711/record/0-1/{outcome.contact_id}"

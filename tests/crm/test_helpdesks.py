"""Zendesk and Zammad against their contract servers: phone search, verified cards, tickets."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.crm.base import ActionRequest
from agent.crm.calls import CallSummary
from agent.crm.zammad import ZammadConnector
from agent.crm.zendesk import ZendeskConnector
from agent.lookup.connector import ConnectorError
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, call_json, crm_settings, reset, zammad_server, zendesk_server
from tests.support.crm_servers import ZAMMAD_TOKEN, ZENDESK_EMAIL, ZENDESK_TOKEN, CrmServer

__all__ = ["zammad_server", "zendesk_server"]


@pytest.fixture
async def zendesk(zendesk_server: CrmServer, tmp_path: Path) -> AsyncIterator[ZendeskConnector]:
    reset(zendesk_server)
    settings = crm_settings("zendesk", zendesk_server.url, tmp_path, email=ZENDESK_EMAIL)
    connector = ZendeskConnector(settings, timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()


@pytest.fixture
async def zammad(zammad_server: CrmServer, tmp_path: Path) -> AsyncIterator[ZammadConnector]:
    reset(zammad_server)
    connector = ZammadConnector(crm_settings("zammad", zammad_server.url, tmp_path), timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()


# Zendesk ----------------------------------------------------------------------------


async def test_zendesk_query_and_auth(zendesk: ZendeskConnector, zendesk_server: CrmServer) -> None:
    await zendesk.lookup(ANNA)

    search = zendesk_server.state.calls("GET", "/api/v2/users/search.json")[0]
    assert search.query["query"] == "phone:*445550123"
    assert search.query["include"] == "organizations"
    credentials = base64.b64encode(f"{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}".encode()).decode()
    assert search.headers["authorization"] == f"Basic {credentials}"


async def test_zendesk_cards_verified(zendesk: ZendeskConnector, zendesk_server: CrmServer) -> None:
    cards = await zendesk.lookup(ANNA)

    # The German number also ends in 445550123; verification drops it.
    assert [(card.name, card.company) for card in cards] == [("Anna Muster", "Beispiel AG")]
    assert cards[0].url == f"{zendesk_server.url}/agent/users/36001"
    assert cards[0].company_url == f"{zendesk_server.url}/agent/organizations/9001"
    assert [action.id for action in cards[0].actions] == ["create_ticket"]


async def test_zendesk_ticket(zendesk: ZendeskConnector, zendesk_server: CrmServer) -> None:
    outcome = await zendesk.run_action("create_ticket", ActionRequest(CallSummary.from_json(call_json()), "36001"))

    ticket = zendesk_server.state.calls("POST", "/api/v2/tickets.json")[0].body["ticket"]
    assert ticket["requester_id"] == 36001
    assert ticket["subject"] == "Incoming call from 044 555 01 23"
    assert ticket["comment"]["public"] is False
    assert ticket["status"] == "new"
    assert outcome.url == f"{zendesk_server.url}/agent/tickets/{outcome.record_id}"


async def test_zendesk_invalid_requester(zendesk: ZendeskConnector) -> None:
    with pytest.raises(ConnectorError) as raised:
        await zendesk.run_action("create_ticket", ActionRequest(CallSummary.from_json(call_json()), "99"))

    assert raised.value.code == "crm.rejected"
    assert raised.value.params["status"] == 422
    assert raised.value.params["message"] == "Record validation errors"


# Zammad -----------------------------------------------------------------------------


async def test_zammad_queries_and_auth(zammad: ZammadConnector, zammad_server: CrmServer) -> None:
    await zammad.lookup(ANNA)

    searches = zammad_server.state.calls("GET", "/api/v1/users/search")
    assert sorted(request.query["query"] for request in searches) == ["+41 44 555 01 23", "+41445550123", "044 555 01 23"]
    assert all(request.query["expand"] == "true" for request in searches)
    assert all(request.headers["authorization"] == f"Token token={ZAMMAD_TOKEN}" for request in searches)


async def test_zammad_cards(zammad: ZammadConnector, zammad_server: CrmServer) -> None:
    cards = await zammad.lookup(ANNA)

    by_name = {card.name: card for card in cards}
    assert sorted(by_name) == ["Anna Muster", "Beat Nachbar"]
    assert by_name["Anna Muster"].company == "Beispiel AG"
    assert by_name["Anna Muster"].url == f"{zammad_server.url}/#user/profile/12"
    assert by_name["Anna Muster"].company_url == f"{zammad_server.url}/#organization/profile/3"


async def test_zammad_ticket(zammad: ZammadConnector, zammad_server: CrmServer) -> None:
    outcome = await zammad.run_action("create_ticket", ActionRequest(CallSummary.from_json(call_json()), "12"))

    ticket = zammad_server.state.calls("POST", "/api/v1/tickets")[0].body
    assert ticket["customer_id"] == 12
    assert ticket["group"] == "Users"
    assert ticket["state"] == "new"
    assert ticket["article"]["type"] == "phone"
    assert ticket["article"]["internal"] is True
    assert outcome.url == f"{zammad_server.url}/#ticket/zoom/{outcome.record_id}"


async def test_zammad_unknown_group(zammad_server: CrmServer, tmp_path: Path) -> None:
    reset(zammad_server)
    connector = ZammadConnector(crm_settings("zammad", zammad_server.url, tmp_path, group="Sales"), timeout=1.0)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.run_action("create_ticket", ActionRequest(CallSummary.from_json(call_json()), "12"))
    finally:
        await connector.stop()
    assert raised.value.code == "crm.rejected"
    assert "group" in raised.value.params["message"]

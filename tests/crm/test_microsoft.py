"""Microsoft 365 against a local https server: Entra sign-in, Graph delta sync and Dataverse."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.crm.base import ActionRequest
from agent.crm.calls import CallSummary
from agent.crm.dataverse import DataverseConnector
from agent.crm.graph import GraphConnector
from agent.crm.tokenfile import token_path
from agent.lookup.addressbook import AddressBook
from agent.lookup.connector import ConnectorError
from agent.lookup.numbers import parse_caller
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, RULES, call_json, crm_settings, microsoft_server, reset, tls_of
from tests.support.crm_servers import GRAPH_USER, MS_CLIENT_ID, MS_TENANT, CrmServer, graph_change

__all__ = ["microsoft_server"]


def microsoft_keys(server: CrmServer, **keys: Any) -> dict[str, Any]:
    return {
        "authority_url": server.url,
        "tenant": MS_TENANT,
        "client_id": MS_CLIENT_ID,
        "ca_file": str(tls_of(server).ca),
        **keys,
    }


@pytest.fixture
async def graph(microsoft_server: CrmServer, tmp_path: Path) -> AsyncIterator[GraphConnector]:
    reset(microsoft_server)
    book = AddressBook(tmp_path / "contacts.db", RULES)
    settings = crm_settings("graph", microsoft_server.url, tmp_path, **microsoft_keys(microsoft_server, user=GRAPH_USER))
    connector = GraphConnector(settings, book, tmp_path, timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()
    book.close()


def dataverse_connector(server: CrmServer, folder: Path, **keys: Any) -> DataverseConnector:
    settings = crm_settings("dataverse", server.url, folder, **microsoft_keys(server, **keys))
    return DataverseConnector(settings, folder, timeout=LOOKUP_TIMEOUT)


@pytest.fixture
async def dataverse(microsoft_server: CrmServer, tmp_path: Path) -> AsyncIterator[DataverseConnector]:
    reset(microsoft_server)
    connector = dataverse_connector(microsoft_server, tmp_path)
    yield connector
    await connector.stop()


# Graph ------------------------------------------------------------------------------


async def test_graph_first_sync_pages(graph: GraphConnector, microsoft_server: CrmServer) -> None:
    result = await graph.sync()

    pages = microsoft_server.state.calls("GET", f"/v1.0/users/{GRAPH_USER}/contacts/delta")
    assert len(pages) == 2
    assert pages[0].query["$select"].startswith("displayName,givenName,surname,companyName")
    assert pages[0].headers["prefer"] == "odata.maxpagesize=200"
    assert pages[0].headers["authorization"].startswith("Bearer ")
    assert pages[1].query == {"$skiptoken": "2"}
    assert (result.full, result.updated) == (True, 3)


async def test_graph_token_request(graph: GraphConnector, microsoft_server: CrmServer) -> None:
    await graph.sync()

    token = microsoft_server.state.calls("POST", f"/{MS_TENANT}/oauth2/v2.0/token")[0].body
    assert token["grant_type"] == "client_credentials"
    assert token["client_id"] == MS_CLIENT_ID
    assert token["scope"] == "https://graph.microsoft.com/.default"


async def test_graph_cards_from_copy(graph: GraphConnector) -> None:
    await graph.sync()
    cards = await graph.lookup(ANNA)

    assert [(card.name, card.company, card.url) for card in cards] == [("Anna Muster", "Beispiel AG", None)]
    assert cards[0].actions == ()


async def test_graph_delta_changes(graph: GraphConnector, microsoft_server: CrmServer) -> None:
    await graph.sync()
    graph_change(microsoft_server.state, "AAMkAGI2LUCA=", None)
    graph_change(microsoft_server.state, "AAMkAGI2NEW=", {"displayName": "Neu Kunde", "businessPhones": ["044 555 99 00"]})
    microsoft_server.state.requests.clear()

    result = await graph.sync()

    pages = microsoft_server.state.calls("GET", f"/v1.0/users/{GRAPH_USER}/contacts/delta")
    assert list(pages[0].query) == ["$deltatoken"]
    assert (result.full, result.updated, result.removed) == (False, 1, 1)
    assert await graph.lookup(parse_caller("+41795550011", RULES)) == []
    assert [card.name for card in await graph.lookup(parse_caller("+41445559900", RULES))] == ["Neu Kunde"]


async def test_graph_expired_delta_resyncs(graph: GraphConnector, microsoft_server: CrmServer) -> None:
    await graph.sync()
    microsoft_server.state.data["oldest_delta"] = 10**6
    try:
        result = await graph.sync()
    finally:
        microsoft_server.state.data["oldest_delta"] = 0

    assert result.full
    assert [card.name for card in await graph.lookup(ANNA)] == ["Anna Muster"]


async def test_graph_folder_path(microsoft_server: CrmServer, tmp_path: Path) -> None:
    book = AddressBook(tmp_path / "contacts.db", RULES)
    keys = microsoft_keys(microsoft_server, user=GRAPH_USER, folder="AAMkF=")
    connector = GraphConnector(crm_settings("graph", microsoft_server.url, tmp_path, **keys), book, tmp_path, timeout=1.0)
    try:
        assert connector.delta_path() == f"/v1.0/users/{GRAPH_USER}/contactFolders/AAMkF%3D/contacts/delta"
    finally:
        await connector.stop()
        book.close()


# Sign-in ----------------------------------------------------------------------------


async def test_token_cache_survives_restart(microsoft_server: CrmServer, tmp_path: Path) -> None:
    reset(microsoft_server)
    before = microsoft_server.state.data["token_requests"]
    first = dataverse_connector(microsoft_server, tmp_path)
    try:
        await first.lookup(ANNA)
    finally:
        await first.stop()

    second = dataverse_connector(microsoft_server, tmp_path)
    try:
        await second.lookup(ANNA)
    finally:
        await second.stop()

    assert microsoft_server.state.data["token_requests"] == before + 1
    cache = token_path(tmp_path, "dataverse")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700


async def test_revoked_token_renewed_once(dataverse: DataverseConnector, microsoft_server: CrmServer) -> None:
    await dataverse.lookup(ANNA)
    before = microsoft_server.state.data["token_requests"]
    microsoft_server.state.data["tokens"].clear()

    cards = await dataverse.lookup(ANNA)

    assert [card.name for card in cards] == ["Anna Muster"]
    assert microsoft_server.state.data["token_requests"] == before + 1


async def test_wrong_secret_is_auth_failed(microsoft_server: CrmServer, tmp_path: Path) -> None:
    reset(microsoft_server)
    settings = crm_settings("dataverse", microsoft_server.url, tmp_path, secret="wrong", **microsoft_keys(microsoft_server))
    connector = DataverseConnector(settings, tmp_path, timeout=LOOKUP_TIMEOUT)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.lookup(ANNA)
    finally:
        await connector.stop()

    assert raised.value.code == "crm.auth_failed"
    assert raised.value.params["crm"] == "Dynamics 365"
    assert raised.value.params["source"].endswith("dataverse-client_secret")
    assert raised.value.params["renew"] == "crm.renew.entra"
    assert "AADSTS7000215" in raised.value.detail


# Dataverse --------------------------------------------------------------------------


async def test_dataverse_query(dataverse: DataverseConnector, microsoft_server: CrmServer) -> None:
    await dataverse.lookup(ANNA)

    contacts = microsoft_server.state.calls("GET", "/api/data/v9.2/contacts")[0]
    assert contacts.headers["odata-version"] == "4.0"
    assert contacts.headers["odata-maxversion"] == "4.0"
    assert contacts.query["$top"] == "10"
    assert contacts.query["$expand"] == "parentcustomerid_account($select=accountid,name)"
    assert "contains(telephone1,'044 555 01 23')" in contacts.query["$filter"]
    assert "contains(mobilephone,'+41 44 555 01 23')" in contacts.query["$filter"]
    accounts = microsoft_server.state.calls("GET", "/api/data/v9.2/accounts")[0]
    assert "contains(telephone3,'+41445550123')" in accounts.query["$filter"]
    token = microsoft_server.state.calls("POST", f"/{MS_TENANT}/oauth2/v2.0/token")
    assert all(request.body["scope"] == f"{microsoft_server.url}/.default" for request in token)


async def test_dataverse_cards(dataverse: DataverseConnector, microsoft_server: CrmServer) -> None:
    cards = await dataverse.lookup(ANNA)

    assert [(card.name, card.company) for card in cards] == [("Anna Muster", "Beispiel AG")]
    card = cards[0]
    assert card.contact_id == "contacts(0b8f2c6e-1d2a-4e5f-9a7b-3c4d5e6f7a81)"
    assert card.url == f"{microsoft_server.url}/main.aspx?pagetype=entityrecord&etn=contact&id=0b8f2c6e-1d2a-4e5f-9a7b-3c4d5e6f7a81"
    assert card.company_url.endswith("etn=account&id=5e1a9b20-7c3d-4f8e-8a6b-1c2d3e4f5a60")


async def test_dataverse_account_card(dataverse: DataverseConnector) -> None:
    cards = await dataverse.lookup(parse_caller("+41445550100", RULES))

    assert [(card.name, card.company, card.contact_id) for card in cards] == [
        (None, "Beispiel AG", "accounts(5e1a9b20-7c3d-4f8e-8a6b-1c2d3e4f5a60)")
    ]


async def test_dataverse_log_phone_call(dataverse: DataverseConnector, microsoft_server: CrmServer) -> None:
    contact = "contacts(0b8f2c6e-1d2a-4e5f-9a7b-3c4d5e6f7a81)"
    outcome = await dataverse.run_action("log_call", ActionRequest(CallSummary.from_json(call_json()), contact))

    created = microsoft_server.state.calls("POST", "/api/data/v9.2/phonecalls")[0].body
    assert created["directioncode"] is False
    assert created["phonenumber"] == "+41445550123"
    assert created["actualdurationminutes"] == 4
    assert created["regardingobjectid_contact@odata.bind"] == f"/{contact}"
    assert created["phonecall_activity_parties"] == [{"partyid_contact@odata.bind": f"/{contact}", "participationtypemask": 1}]
    patch = microsoft_server.state.calls("PATCH", "/api/data/v9.2/phonecalls(")[0]
    assert patch.body == {"statecode": 1, "statuscode": 2}
    assert microsoft_server.state.data["phonecalls"][outcome.record_id]["statecode"] == 1
    assert outcome.url.endswith(f"etn=phonecall&id={outcome.record_id}")


async def test_dataverse_task_stays_open(dataverse: DataverseConnector, microsoft_server: CrmServer) -> None:
    account = "accounts(5e1a9b20-7c3d-4f8e-8a6b-1c2d3e4f5a60)"
    call = CallSummary.from_json(call_json(outcome="missed", answered_at=None))
    outcome = await dataverse.run_action("create_task", ActionRequest(call, account))

    created = microsoft_server.state.data["phonecalls"][outcome.record_id]
    assert created["statecode"] == 0
    assert created["regardingobjectid_account@odata.bind"] == f"/{account}"
    assert created["subject"] == "Call back 044 555 01 23"
    assert "scheduledend" in created
    assert microsoft_server.state.calls("PATCH", "/api/data/v9.2/phonecalls(") == []

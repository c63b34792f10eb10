"""Odoo against its contract server: JSON-2 and JSON-RPC, sanitized and older databases, actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.crm.base import ActionRequest
from agent.crm.calls import CallSummary
from agent.crm.odoo import OdooConnector
from agent.lookup.connector import ConnectorError
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, call_json, crm_settings, odoo_server, reset
from tests.support.crm_servers import ODOO_DATABASE, ODOO_KEY, ODOO_LOGIN, ODOO_UID, CrmServer

__all__ = ["odoo_server"]


def odoo(server: CrmServer, folder: Path, **keys: Any) -> OdooConnector:
    return OdooConnector(crm_settings("odoo", server.url, folder, **keys), timeout=LOOKUP_TIMEOUT)


@pytest.fixture
async def json2(odoo_server: CrmServer, tmp_path: Path) -> AsyncIterator[OdooConnector]:
    reset(odoo_server)
    odoo_server.state.data["sanitized"] = True
    connector = odoo(odoo_server, tmp_path, database=ODOO_DATABASE)
    yield connector
    await connector.stop()


@pytest.fixture
async def jsonrpc(odoo_server: CrmServer, tmp_path: Path) -> AsyncIterator[OdooConnector]:
    reset(odoo_server)
    odoo_server.state.data["sanitized"] = True
    connector = odoo(odoo_server, tmp_path, protocol="jsonrpc", database=ODOO_DATABASE, login=ODOO_LOGIN)
    yield connector
    await connector.stop()


async def test_json2_requests(json2: OdooConnector, odoo_server: CrmServer) -> None:
    await json2.lookup(ANNA)

    fields, search = odoo_server.state.requests
    assert fields.path == "/json/2/res.partner/fields_get"
    assert fields.headers["authorization"] == f"bearer {ODOO_KEY}"
    assert fields.headers["x-odoo-database"] == ODOO_DATABASE
    assert search.path == "/json/2/res.partner/search_read"
    assert search.body["domain"] == ["|", ["phone_sanitized", "=", "+41445550123"], ["phone_mobile_search", "ilike", "445550123"]]
    assert search.body["limit"] == 10
    assert "ids" not in search.body


async def test_json2_cards(json2: OdooConnector) -> None:
    cards = await json2.lookup(ANNA)

    assert [(card.name, card.company) for card in cards] == [("Anna Muster", "Beispiel AG")]
    assert cards[0].url.endswith("/odoo/contacts/42")
    assert cards[0].company_url.endswith("/odoo/contacts/7")


async def test_older_database_uses_ilike(json2: OdooConnector, odoo_server: CrmServer) -> None:
    odoo_server.state.data["sanitized"] = False
    cards = await json2.lookup(ANNA)

    domain = odoo_server.state.calls("POST", "/json/2/res.partner/search_read")[0].body["domain"]
    assert domain[:5] == ["|"] * 5
    assert ["phone", "ilike", "+41 44 555 01 23"] in domain
    assert ["mobile", "ilike", "044 555 01 23"] in domain
    assert [card.name for card in cards] == ["Anna Muster"]


async def test_company_card(json2: OdooConnector) -> None:
    from agent.lookup.numbers import parse_caller
    from tests.crm.conftest import RULES

    cards = await json2.lookup(parse_caller("+41445550100", RULES))
    assert [(card.name, card.company, card.contact_id) for card in cards] == [(None, "Beispiel AG", "7")]


async def test_message_post_note(json2: OdooConnector, odoo_server: CrmServer) -> None:
    outcome = await json2.run_action("log_call", ActionRequest(CallSummary.from_json(call_json()), "42", {"note": "a <b>"}))

    request = odoo_server.state.calls("POST", "/json/2/res.partner/message_post")[0].body
    assert request["ids"] == [42]
    assert request["message_type"] == "comment"
    assert request["subtype_xmlid"] == "mail.mt_note"
    assert request["body"].startswith("Incoming call from 044 555 01 23<br>Extension: 201")
    assert "a &lt;b&gt;" in request["body"]
    assert outcome.record_id == str(odoo_server.state.data["messages"][-1]["id"])


async def test_call_activity(json2: OdooConnector, odoo_server: CrmServer) -> None:
    await json2.run_action("create_task", ActionRequest(CallSummary.from_json(call_json()), "42"))

    request = odoo_server.state.calls("POST", "/json/2/res.partner/activity_schedule")[0].body
    assert request["act_type_xmlid"] == "mail.mail_activity_data_call"
    assert request["summary"] == "Call back 044 555 01 23"


async def test_create_partner(json2: OdooConnector, odoo_server: CrmServer) -> None:
    call = CallSummary.from_json(call_json(remote={"e164": "+41445559900", "display": "044 555 99 00", "withheld": False}))
    outcome = await json2.run_action("create_contact", ActionRequest(call, None, {"name": "Neu Kunde"}))

    request = odoo_server.state.calls("POST", "/json/2/res.partner/create")[0].body
    assert request == {"vals_list": [{"name": "Neu Kunde", "phone": "+41445559900"}]}
    assert outcome.url.endswith(f"/odoo/contacts/{outcome.contact_id}")


async def test_jsonrpc_login_and_search(jsonrpc: OdooConnector, odoo_server: CrmServer) -> None:
    cards = await jsonrpc.lookup(ANNA)

    login, fields, search = (request.body["params"] for request in odoo_server.state.requests)
    assert login == {"service": "common", "method": "login", "args": [ODOO_DATABASE, ODOO_LOGIN, ODOO_KEY]}
    assert fields["args"][:6] == [ODOO_DATABASE, ODOO_UID, ODOO_KEY, "res.partner", "fields_get", []]
    assert search["args"][4] == "search_read"
    assert search["args"][6]["domain"][0] == "|"
    assert cards[0].url.endswith("/web#id=42&model=res.partner&view_type=form")


async def test_jsonrpc_note(jsonrpc: OdooConnector, odoo_server: CrmServer) -> None:
    await jsonrpc.run_action("log_call", ActionRequest(CallSummary.from_json(call_json()), "42"))

    post = odoo_server.state.requests[-1].body["params"]["args"]
    assert post[4:6] == ["message_post", [[42]]]
    assert post[6]["subtype_xmlid"] == "mail.mt_note"


async def test_jsonrpc_wrong_key(odoo_server: CrmServer, tmp_path: Path) -> None:
    reset(odoo_server)
    connector = odoo(odoo_server, tmp_path, secret="revoked", protocol="jsonrpc", database=ODOO_DATABASE, login=ODOO_LOGIN)
    try:
        with pytest.raises(ConnectorError) as raised:
            await connector.lookup(ANNA)
    finally:
        await connector.stop()
    assert raised.value.code == "crm.auth_failed"
    assert raised.value.params["renew"] == "crm.renew.odoo"

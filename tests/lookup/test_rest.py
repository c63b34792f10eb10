"""The REST connector against a local service speaking the peoplefone CONNECTOR contract."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.lookup.addressbook import AddressBook, AddressBookConnector, load_demo
from agent.lookup.connector import ConnectorError, ErrorCode
from agent.lookup.numbers import MatchReason, NumberRules, parse_caller
from agent.lookup.rest import RestConnector
from agent.lookup.service import LookupService
from agent.lookup.settings import RestSettings, Secret
from tests.lookup.conftest import REST_TOKEN, RestServer, free_port

RULES = NumberRules("CH", ("DE", "AT"), 8)
CALLER = parse_caller("+41441234567", RULES)


def rest(
    url: str, name: str = "crm", token: str = REST_TOKEN, method: str = "post", timeout: float = 1.5
) -> RestConnector:
    settings = RestSettings(
        type="rest", name=name, label="CRM", url=url, method=method, token=Secret(token), logo="/logos/crm.svg"
    )
    return RestConnector(settings, timeout=timeout)


async def test_contract_answer(rest_server: RestServer) -> None:
    connector = rest(f"{rest_server.url}/Lookup")
    try:
        cards = await connector.lookup(CALLER)
    finally:
        await connector.stop()

    request = rest_server.requests[-1]
    assert request["body"] == {"inputs": {"phoneNumber": "41441234567"}}
    assert request["token"] == REST_TOKEN
    assert len(cards) == 1
    card = cards[0]
    assert (card.name, card.company) == ("Max Muster", "Muster AG")
    assert card.url == "https://crm.example.com/contacts/4711"
    assert card.company_url == "https://crm.example.com/accounts/815"
    assert card.contact_id == "4711"
    assert card.label == "Sugar CRM"
    assert card.logo == "/logos/crm.svg"
    assert [action.id for action in card.actions] == ["CallFlow", "CreateTicket"]
    assert [(detail.label, detail.value) for detail in card.details] == [
        ("Customer number", "K-1001"),
        ("Open tickets", "2"),
    ]
    assert card.match.reason is MatchReason.CONNECTOR


async def test_capitalised_keys(rest_server: RestServer) -> None:
    connector = rest(f"{rest_server.url}/legacy")
    try:
        cards = await connector.lookup(CALLER)
    finally:
        await connector.stop()
    assert [(card.name, card.company, card.contact_id) for card in cards] == [("Max Muster", "Muster AG", "1")]


async def test_returned_numbers_verified(rest_server: RestServer) -> None:
    connector = rest(f"{rest_server.url}/verified")
    try:
        cards = await connector.lookup(CALLER)
    finally:
        await connector.stop()
    assert [card.name for card in cards] == ["Right Number", "Unsafe Link"]
    assert cards[0].match.reason is MatchReason.E164
    assert cards[1].url is None


async def test_get_template(rest_server: RestServer) -> None:
    connector = rest(f"{rest_server.url}/get?number={{e164}}", method="get")
    try:
        cards = await connector.lookup(CALLER)
    finally:
        await connector.stop()
    assert rest_server.requests[-1]["path"] == "/get?number=%2B41441234567"
    assert [card.name for card in cards] == ["Max Muster"]


async def test_no_content_is_no_match(rest_server: RestServer) -> None:
    connector = rest(f"{rest_server.url}/empty")
    try:
        assert await connector.lookup(CALLER) == []
    finally:
        await connector.stop()


@pytest.mark.parametrize(
    ("path", "token", "code", "params"),
    [
        ("/error", REST_TOKEN, ErrorCode.HTTP_ERROR, {"status": 500}),
        ("/missing", REST_TOKEN, ErrorCode.HTTP_ERROR, {"status": 404}),
        ("/invalid", REST_TOKEN, ErrorCode.INVALID_RESPONSE, {}),
        ("/object", REST_TOKEN, ErrorCode.INVALID_RESPONSE, {}),
        ("/Lookup", "wrong-token", ErrorCode.AUTH_FAILED, {"status": 401}),
    ],
)
async def test_failure_codes(rest_server: RestServer, path: str, token: str, code: str, params: dict[str, int]) -> None:
    connector = rest(f"{rest_server.url}{path}", token=token)
    try:
        with pytest.raises(ConnectorError) as error:
            await connector.lookup(CALLER)
    finally:
        await connector.stop()
    assert error.value.code == code
    assert error.value.params == params
    assert "wrong-token" not in error.value.detail


async def test_unreachable() -> None:
    connector = rest(f"http://127.0.0.1:{free_port()}/Lookup")
    try:
        with pytest.raises(ConnectorError) as error:
            await connector.lookup(CALLER)
    finally:
        await connector.stop()
    assert error.value.code == ErrorCode.UNREACHABLE


async def test_failures_never_delay_others(rest_server: RestServer, tmp_path: Path) -> None:
    """The address book's card arrives at once; each failing service shows its own error."""
    timeout = 0.5
    book = AddressBook(tmp_path / "contacts.db", RULES)
    load_demo(book, "contacts")
    connectors = [
        AddressBookConnector("contacts", "Office contacts", book),
        rest(f"{rest_server.url}/Lookup", name="crm", timeout=timeout),
        rest(f"{rest_server.url}/slow", name="slow", timeout=timeout),
        rest(f"{rest_server.url}/error", name="broken", timeout=timeout),
        rest(f"{rest_server.url}/invalid", name="garbled", timeout=timeout),
        rest(f"{rest_server.url}/Lookup", name="locked", token="wrong-token", timeout=timeout),
    ]
    service = LookupService(connectors, RULES, timeout=timeout)
    started = time.monotonic()
    arrivals: list[tuple[float, tuple[str, ...]]] = []
    try:
        async for update in service.lookup("+41441234567", call_id="c-test"):
            arrivals.append((time.monotonic() - started, tuple(card.connector for card in update.cards)))
            final = update
    finally:
        await service.stop()
        book.close()

    first_contacts = next(elapsed for elapsed, connectors_seen in arrivals if "contacts" in connectors_seen)
    total = arrivals[-1][0]
    assert first_contacts < 0.3, f"the address book card came after {first_contacts:.2f} s"
    assert total < timeout + 0.4, f"the lookup took {total:.2f} s with a {timeout} s timeout"
    assert final.done
    assert {card.connector for card in final.cards} == {"contacts", "crm"}
    errors = {error.connector: (error.code, error.params) for error in final.errors}
    assert errors == {
        "slow": (ErrorCode.TIMEOUT, {"seconds": timeout}),
        "broken": (ErrorCode.HTTP_ERROR, {"status": 500}),
        "garbled": (ErrorCode.INVALID_RESPONSE, {}),
        "locked": (ErrorCode.AUTH_FAILED, {"status": 401}),
    }
    assert final.labels["slow"] == "CRM"

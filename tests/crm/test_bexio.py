"""bexio against its contract server: a full copy into the local index, searched locally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.crm import bexio as bexio_module
from agent.crm.base import ActionRequest
from agent.crm.bexio import BexioConnector
from agent.crm.calls import CallSummary
from agent.lookup.addressbook import AddressBook
from agent.lookup.numbers import parse_caller
from tests.crm.conftest import ANNA, LOOKUP_TIMEOUT, RULES, bexio_server, call_json, crm_settings, reset
from tests.support.crm_servers import BEXIO_TOKEN, CrmServer

__all__ = ["bexio_server"]


@pytest.fixture
async def bexio(bexio_server: CrmServer, tmp_path: Path) -> AsyncIterator[BexioConnector]:
    reset(bexio_server)
    book = AddressBook(tmp_path / "contacts.db", RULES)
    connector = BexioConnector(crm_settings("bexio", bexio_server.url, tmp_path), book, timeout=LOOKUP_TIMEOUT)
    yield connector
    await connector.stop()
    book.close()


async def test_sync_requests(bexio: BexioConnector, bexio_server: CrmServer) -> None:
    result = await bexio.sync()

    contact_pages = bexio_server.state.calls("GET", "/2.0/contact")
    assert [request.path for request in contact_pages] == ["/2.0/contact", "/2.0/contact_relation"]
    assert contact_pages[0].query == {"limit": "2000", "offset": "0", "order_by": "id"}
    assert contact_pages[0].headers["authorization"] == f"Bearer {BEXIO_TOKEN}"
    assert (result.full, result.updated, result.removed) == (True, 3, 0)


async def test_person_card_with_company(bexio: BexioConnector) -> None:
    await bexio.sync()
    cards = await bexio.lookup(ANNA)

    assert [(card.name, card.company) for card in cards] == [("Anna Muster", "Beispiel AG")]
    assert cards[0].url == "https://office.bexio.com/index.php/kontakt/show/id/14"
    assert cards[0].company_url == "https://office.bexio.com/index.php/kontakt/show/id/7"
    assert [(action.id, action.kind) for action in cards[0].actions] == [("open", "open")]


async def test_apostrophe_mobile_found(bexio: BexioConnector) -> None:
    await bexio.sync()
    cards = await bexio.lookup(parse_caller("+41795550011", RULES))

    assert [card.name for card in cards] == ["Luca Bernasconi"]


async def test_deleted_contact_removed(bexio: BexioConnector, bexio_server: CrmServer) -> None:
    await bexio.sync()
    removed = bexio_server.state.data["contacts"].pop()
    try:
        result = await bexio.sync()
    finally:
        bexio_server.state.data["contacts"].append(removed)

    assert result.removed == 1
    assert await bexio.lookup(parse_caller("+41795550011", RULES)) == []


async def test_paging(bexio: BexioConnector, bexio_server: CrmServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bexio_module, "PAGE_SIZE", 2)
    result = await bexio.sync()

    offsets = [request.query["offset"] for request in bexio_server.state.calls("GET", "/2.0/contact") if request.path == "/2.0/contact"]
    assert offsets == ["0", "2"]
    assert result.updated == 3


async def test_open_action_is_link(bexio: BexioConnector, bexio_server: CrmServer) -> None:
    outcome = await bexio.run_action("open", ActionRequest(CallSummary.from_json(call_json()), "14"))

    assert outcome.url == "https://office.bexio.com/index.php/kontakt/show/id/14"
    assert bexio_server.state.requests == []


async def test_health_counts_copy(bexio: BexioConnector) -> None:
    await bexio.sync()
    health = await bexio.health()

    assert health.ok
    assert health.contacts == 3
    assert health.synced_at is not None

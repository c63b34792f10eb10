"""The CardDAV connector against a real Radicale on 127.0.0.1: full sync, changes, fallback listing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.lookup.addressbook import AddressBook, SyncState
from agent.lookup.carddav import CardDavConnector
from agent.lookup.connector import ConnectorError, ErrorCode
from agent.lookup.numbers import MatchReason, NumberRules, parse_caller
from agent.lookup.settings import CardDavSettings, Secret
from tests.lookup.conftest import RadicaleServer

RULES = NumberRules("CH", ("DE", "AT"), 8)

MKCOL_ADDRESSBOOK = """<?xml version="1.0" encoding="utf-8"?>
<d:mkcol xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
  <d:set><d:prop>
    <d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>
    <d:displayname>Office</d:displayname>
  </d:prop></d:set>
</d:mkcol>"""


def vcard(uid: str, name: str, org: str, tel: str, version: str = "3.0") -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:{version}\r\nUID:{uid}\r\nFN:{name}\r\nN:{name.split()[-1]};{name.split()[0]};;;\r\n"
        f"ORG:{org}\r\nTEL;TYPE=WORK:{tel}\r\nEND:VCARD\r\n"
    )


class Book:
    """A fresh address book collection on the Radicale server, filled over plain HTTP."""

    def __init__(self, server: RadicaleServer) -> None:
        self.server = server
        self.url = f"{server.url}/{server.user}/{uuid.uuid4().hex}/"
        self.client = httpx.AsyncClient(auth=(server.user, server.password), timeout=10)

    async def create(self) -> None:
        response = await self.client.request("MKCOL", self.url, content=MKCOL_ADDRESSBOOK)
        assert response.status_code == 201, response.text

    async def put(self, name: str, text: str) -> None:
        response = await self.client.put(self.url + name, content=text, headers={"Content-Type": "text/vcard"})
        assert response.status_code in (201, 204), response.text

    async def delete(self, name: str) -> None:
        response = await self.client.delete(self.url + name)
        assert response.status_code in (200, 204), response.text


@pytest.fixture
async def remote(radicale: RadicaleServer) -> AsyncIterator[Book]:
    book = Book(radicale)
    await book.create()
    await book.put("max.vcf", vcard("max", "Max Muster", "Muster AG", "044 123 45 67"))
    await book.put("anna.vcf", vcard("anna", "Anna Keller", "Keller Treuhand", "+41 (0)44 668 18 00"))
    await book.put("jonas.vcf", vcard("jonas", "Jonas Weber", "Weber Logistik GmbH", "tel:+49-30-1234567", "4.0"))
    try:
        yield book
    finally:
        await book.client.aclose()


@pytest.fixture
def local(tmp_path: Path) -> AddressBook:
    book = AddressBook(tmp_path / "contacts.db", RULES)
    yield book
    book.close()


def settings(url: str, server: RadicaleServer, password: str | None = None, **extra: object) -> CardDavSettings:
    return CardDavSettings(
        type="carddav",
        name="office",
        label="Office CardDAV",
        url=url,
        username=server.user,
        password=Secret(password or server.password),
        **extra,  # type: ignore[arg-type]
    )


async def names_for(connector: CardDavConnector, number: str) -> list[str | None]:
    return [card.name for card in await connector.lookup(parse_caller(number, RULES))]


async def test_full_sync_then_local_lookup(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale, contact_url="https://dav.example.com/c/{uid}"), local)
    try:
        result = await connector.sync()

        assert result.full
        assert result.updated == 3
        assert local.count("office") == 3
        assert local.sync_state("office").sync_token
        cards = await connector.lookup(parse_caller("+41441234567", RULES))
        assert [card.name for card in cards] == ["Max Muster"]
        assert cards[0].match.reason is MatchReason.E164
        assert cards[0].url == "https://dav.example.com/c/max"
        assert await names_for(connector, "+41446681800") == ["Anna Keller"]
        assert await names_for(connector, "+49301234567") == ["Jonas Weber"]
    finally:
        await connector.stop()


async def test_changes_since_token(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale), local)
    try:
        await connector.sync()
        await remote.put("max.vcf", vcard("max", "Max Muster", "Muster Holding AG", "044 123 45 99"))
        await remote.put("lena.vcf", vcard("lena", "Lena Gruber", "Gruber Steuerberatung", "0043 1 5123456"))
        await remote.delete("anna.vcf")

        result = await connector.sync()

        assert not result.full
        assert result.updated == 2
        assert result.removed == 1
        assert await names_for(connector, "+41441234567") == []
        assert await names_for(connector, "+41441234599") == ["Max Muster"]
        assert await names_for(connector, "+4315123456") == ["Lena Gruber"]
        assert await names_for(connector, "+41446681800") == []
        assert local.count("office") == 3
    finally:
        await connector.stop()


async def test_unchanged_sync_fetches_nothing(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale), local)
    try:
        await connector.sync()
        result = await connector.sync()
        assert (result.updated, result.removed) == (0, 0)
    finally:
        await connector.stop()


async def test_listing_without_sync_collection(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale), local, use_sync_collection=False)
    try:
        first = await connector.sync()
        await remote.delete("jonas.vcf")
        await remote.put("max.vcf", vcard("max", "Max Muster", "Muster AG", "044 123 45 98"))
        second = await connector.sync()

        assert first.updated == 3
        assert (second.updated, second.removed) == (1, 1)
        assert await names_for(connector, "+41441234598") == ["Max Muster"]
        assert await names_for(connector, "+49301234567") == []
    finally:
        await connector.stop()


async def test_rejected_token_syncs_everything(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale), local)
    try:
        local.save_sync_state("office", SyncState(sync_token="http://radicale.org/ns/sync/unknown"))
        result = await connector.sync()
        assert result.full
        assert local.count("office") == 3
    finally:
        await connector.stop()


async def test_discovers_address_book(radicale: RadicaleServer, local: AddressBook) -> None:
    """Given only the server root, the connector finds the user's (only) address book."""
    server = RadicaleServer(radicale.url, "discover", "secret")
    book = Book(server)
    await book.create()
    await book.put("max.vcf", vcard("max", "Max Muster", "Muster AG", "044 123 45 67"))
    connector = CardDavConnector(settings(f"{radicale.url}/", server), local)
    try:
        await connector.sync()
        assert await names_for(connector, "+41441234567") == ["Max Muster"]
    finally:
        await connector.stop()
        await book.client.aclose()


async def test_wrong_password(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale, password="wrong"), local)
    try:
        with pytest.raises(ConnectorError) as error:
            await connector.sync()
        assert error.value.code == ErrorCode.AUTH_FAILED
        assert error.value.params == {"status": 401}
        health = await connector.health()
        assert not health.ok
        assert health.code == ErrorCode.AUTH_FAILED
        assert local.sync_state("office").error == ErrorCode.AUTH_FAILED
    finally:
        await connector.stop()


async def test_background_sync_on_start(radicale: RadicaleServer, remote: Book, local: AddressBook) -> None:
    connector = CardDavConnector(settings(remote.url, radicale), local)
    await connector.start()
    try:
        for _ in range(100):
            if local.count("office") == 3:
                break
            await asyncio.sleep(0.05)
        health = await connector.health()
        assert health.ok
        assert health.contacts == 3
        assert health.synced_at is not None
    finally:
        await connector.stop()

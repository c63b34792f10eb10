"""Build the lookup service from its settings: the contacts database and one connector each."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.lookup.addressbook import AddressBook, AddressBookConnector, load_demo
from agent.lookup.carddav import CardDavConnector
from agent.lookup.choices import ChoiceStore
from agent.lookup.connector import Connector
from agent.lookup.ldap import LdapConnector
from agent.lookup.rest import RestConnector
from agent.lookup.service import LookupService
from agent.lookup.settings import AddressBookSettings, CardDavSettings, LdapSettings, LookupSettings, RestSettings

log = logging.getLogger("ringboard.lookup")

# The contacts, synced copies and remembered choices live in this file of the data folder.
CONTACTS_DATABASE = "contacts.db"


def open_address_book(settings: LookupSettings, data_dir: Path) -> AddressBook:
    """Open the contacts database in `data_dir` with the configured number rules."""
    return AddressBook(data_dir / CONTACTS_DATABASE, settings.rules)


def create_lookup(settings: LookupSettings, data_dir: Path) -> LookupService:
    """Create the lookup service with every configured connector, in configuration order."""
    book = open_address_book(settings, data_dir)
    choices = ChoiceStore(data_dir / CONTACTS_DATABASE)
    connectors: list[Connector] = []
    for connector in settings.connectors:
        if isinstance(connector, AddressBookSettings):
            connectors.append(AddressBookConnector(connector.name, connector.label, book, logo=connector.logo))
            if connector.demo and book.count(connector.name) == 0:
                result = load_demo(book, connector.name)
                log.info("connector %s: loaded %d demo contacts", connector.name, result.added)
        elif isinstance(connector, CardDavSettings):
            connectors.append(CardDavConnector(connector, book))
        elif isinstance(connector, LdapSettings):
            connectors.append(
                LdapConnector(connector, timeout=settings.timeout, match_digits=settings.rules.match_digits)
            )
        elif isinstance(connector, RestSettings):
            connectors.append(RestConnector(connector, timeout=settings.timeout))
    return LookupService(
        connectors,
        settings.rules,
        timeout=settings.timeout,
        cache_seconds=settings.cache_seconds,
        choices=choices,
        on_stop=(book.close, choices.close),
    )

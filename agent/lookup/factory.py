"""Build the lookup service from its settings, and the action runner for its CRM connectors."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.actions import ActionRunner
from agent.crm.bexio import BexioConnector
from agent.crm.dataverse import DataverseConnector
from agent.crm.graph import GraphConnector
from agent.crm.hubspot import HubSpotConnector
from agent.crm.odoo import OdooConnector
from agent.crm.pipedrive import PipedriveConnector
from agent.crm.store import ActionStore
from agent.crm.zammad import ZammadConnector
from agent.crm.zendesk import ZendeskConnector
from agent.lookup.addressbook import AddressBook, AddressBookConnector, load_demo
from agent.lookup.carddav import CardDavConnector
from agent.lookup.choices import ChoiceStore
from agent.lookup.connector import Connector
from agent.lookup.ldap import LdapConnector
from agent.lookup.rest import RestConnector
from agent.lookup.service import LookupService
from agent.lookup.settings import (
    AddressBookSettings,
    BexioSettings,
    CardDavSettings,
    ConnectorSettings,
    DataverseSettings,
    GraphSettings,
    HubSpotSettings,
    LdapSettings,
    LookupSettings,
    OdooSettings,
    PipedriveSettings,
    RestSettings,
    ZammadSettings,
    ZendeskSettings,
)

log = logging.getLogger("ringboard.lookup")

# The contacts, synced copies and remembered choices live in this file of the data folder.
CONTACTS_DATABASE = "contacts.db"

# CRM action results, created contacts and automatic logs live in this file.
ACTIONS_DATABASE = "crm-actions.db"


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
        else:
            connectors.append(create_crm_connector(connector, book, data_dir, timeout=settings.timeout))
    return LookupService(
        connectors,
        settings.rules,
        timeout=settings.timeout,
        cache_seconds=settings.cache_seconds,
        choices=choices,
        on_stop=(book.close, choices.close),
    )


def create_crm_connector(settings: ConnectorSettings, book: AddressBook, data_dir: Path, *, timeout: float) -> Connector:
    """Create the CRM connector of one `[[connectors]]` entry."""
    if isinstance(settings, HubSpotSettings):
        return HubSpotConnector(settings, timeout=timeout)
    if isinstance(settings, PipedriveSettings):
        return PipedriveConnector(settings, timeout=timeout)
    if isinstance(settings, BexioSettings):
        return BexioConnector(settings, book, timeout=timeout)
    if isinstance(settings, GraphSettings):
        return GraphConnector(settings, book, data_dir, timeout=timeout)
    if isinstance(settings, DataverseSettings):
        return DataverseConnector(settings, data_dir, timeout=timeout)
    if isinstance(settings, OdooSettings):
        return OdooConnector(settings, timeout=timeout)
    if isinstance(settings, ZendeskSettings):
        return ZendeskConnector(settings, timeout=timeout)
    if isinstance(settings, ZammadSettings):
        return ZammadConnector(settings, timeout=timeout)
    raise ValueError(f"connector type {settings.type!r} has no implementation")


def create_actions(lookup: LookupService, data_dir: Path) -> ActionRunner:
    """Create the action runner for the lookup's CRM connectors, with its store in `data_dir`."""
    return ActionRunner(lookup.connectors, lookup.rules, ActionStore(data_dir / ACTIONS_DATABASE))

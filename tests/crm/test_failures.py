"""CRM failures as the page sees them: expired tokens, 429, 500, timeouts and malformed answers.

Each failure becomes a `crm.*` code with the connector's label and the CRM's name; the
lookup service logs it once with a count and keeps it from delaying other connectors.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.crm.base import ActionRequest, CrmConnector
from agent.crm.calls import CallSummary
from agent.crm.dataverse import DataverseConnector
from agent.crm.hubspot import HubSpotConnector
from agent.crm.odoo import OdooConnector
from agent.crm.pipedrive import PipedriveConnector
from agent.crm.zammad import ZammadConnector
from agent.crm.zendesk import ZendeskConnector
from agent.lookup.connector import ConnectorError
from agent.lookup.service import LookupService
from tests.crm.conftest import (
    ANNA,
    RULES,
    call_json,
    crm_settings,
    hubspot_server,
    microsoft_server,
    odoo_server,
    pipedrive_server,
    reset,
    tls_of,
    zammad_server,
    zendesk_server,
)
from tests.support import crm_servers
from tests.support.crm_servers import CrmServer

__all__ = ["hubspot_server", "microsoft_server", "odoo_server", "pipedrive_server", "zammad_server", "zendesk_server"]

# Short, so that a slow server (3 s) times out quickly.
TIMEOUT = 0.4

Factory = Callable[[CrmServer, Path, float], CrmConnector]


def hubspot(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    return HubSpotConnector(crm_settings("hubspot", server.url, folder), timeout=timeout)


def pipedrive(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    return PipedriveConnector(crm_settings("pipedrive", server.url, folder), timeout=timeout)


def zendesk(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    return ZendeskConnector(crm_settings("zendesk", server.url, folder, email=crm_servers.ZENDESK_EMAIL), timeout=timeout)


def zammad(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    return ZammadConnector(crm_settings("zammad", server.url, folder), timeout=timeout)


def odoo(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    return OdooConnector(crm_settings("odoo", server.url, folder), timeout=timeout)


def dataverse(server: CrmServer, folder: Path, timeout: float) -> CrmConnector:
    keys = {"authority_url": server.url, "tenant": crm_servers.MS_TENANT, "client_id": crm_servers.MS_CLIENT_ID,
            "ca_file": str(tls_of(server).ca)}
    return DataverseConnector(crm_settings("dataverse", server.url, folder, **keys), folder, timeout=timeout)


VENDORS: dict[str, tuple[str, Factory, str]] = {
    "hubspot": ("hubspot_server", hubspot, "HubSpot"),
    "pipedrive": ("pipedrive_server", pipedrive, "Pipedrive"),
    "zendesk": ("zendesk_server", zendesk, "Zendesk"),
    "zammad": ("zammad_server", zammad, "Zammad"),
    "odoo": ("odoo_server", odoo, "Odoo"),
    "dataverse": ("microsoft_server", dataverse, "Dynamics 365"),
}

EXPECTED = {
    crm_servers.EXPIRED_TOKEN: "crm.auth_failed",
    crm_servers.RATE_LIMIT: "crm.rate_limited",
    crm_servers.SERVER_ERROR: "crm.server_error",
    crm_servers.SLOW: "crm.timeout",
    crm_servers.MALFORMED: "crm.invalid_response",
}


@pytest.fixture(params=sorted(VENDORS))
async def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[CrmConnector, CrmServer, str]]:
    fixture, factory, crm = VENDORS[request.param]
    server: CrmServer = request.getfixturevalue(fixture)
    reset(server)
    connector = factory(server, tmp_path, TIMEOUT)
    if isinstance(connector, DataverseConnector):
        await connector.auth.token()  # Sign in before the server fails on purpose.
    yield connector, server, crm
    reset(server)
    await connector.stop()


@pytest.mark.parametrize("failure", sorted(EXPECTED))
async def test_lookup_failure_code(vendor: tuple[CrmConnector, CrmServer, str], failure: str) -> None:
    connector, server, crm = vendor
    server.state.fail = failure
    server.state.delay = 3.0

    with pytest.raises(ConnectorError) as raised:
        await connector.lookup(ANNA)

    error = raised.value
    assert error.code == EXPECTED[failure]
    assert error.params["label"] == connector.label
    assert error.params["crm"] == crm
    health = await connector.health()
    assert (health.ok, health.code) == (False, EXPECTED[failure])


async def test_auth_failed_names_source(vendor: tuple[CrmConnector, CrmServer, str]) -> None:
    connector, server, crm = vendor
    server.state.fail = crm_servers.EXPIRED_TOKEN

    with pytest.raises(ConnectorError) as raised:
        await connector.lookup(ANNA)

    credential = next(
        getattr(connector.settings, name) for name in ("token", "api_key", "client_secret") if hasattr(connector.settings, name)
    )
    assert raised.value.params["source"] == credential.source
    assert raised.value.params["renew"].startswith("crm.renew.")
    assert credential.secret.value not in raised.value.detail


async def test_rate_limit_names_wait(vendor: tuple[CrmConnector, CrmServer, str]) -> None:
    connector, server, crm = vendor
    server.state.fail = crm_servers.RATE_LIMIT
    # Long enough that a busy test machine cannot outlast it between the two lookups.
    server.state.retry_after = 30

    with pytest.raises(ConnectorError) as raised:
        await connector.lookup(ANNA)

    assert raised.value.params["seconds"] == 30
    # The connector now waits out the server's Retry-After instead of asking again.
    requests_before = len(server.state.requests)
    with pytest.raises(ConnectorError) as again:
        await connector.lookup(ANNA)
    assert again.value.code == "crm.rate_limited"
    assert len(server.state.requests) == requests_before


async def test_action_retries_after_429(hubspot_server: CrmServer, tmp_path: Path) -> None:
    reset(hubspot_server)
    connector = hubspot(hubspot_server, tmp_path, TIMEOUT)
    try:
        await connector.lookup(ANNA)
        hubspot_server.state.fail, hubspot_server.state.fail_count = crm_servers.RATE_LIMIT, 1
        hubspot_server.state.fail_path = "/crm/v3/objects/calls"
        outcome = await connector.run_action("log_call", ActionRequest(CallSummary.from_json(call_json()), "51234"))
    finally:
        await connector.stop()

    assert outcome.record_id is not None
    assert len(hubspot_server.state.calls("POST", "/crm/v3/objects/calls")) == 2


async def test_action_does_not_retry_500(hubspot_server: CrmServer, tmp_path: Path) -> None:
    reset(hubspot_server)
    connector = hubspot(hubspot_server, tmp_path, TIMEOUT)
    try:
        await connector.lookup(ANNA)
        hubspot_server.state.fail, hubspot_server.state.fail_path = crm_servers.SERVER_ERROR, "/crm/v3/objects/calls"
        with pytest.raises(ConnectorError) as raised:
            await connector.run_action("log_call", ActionRequest(CallSummary.from_json(call_json()), "51234"))
    finally:
        await connector.stop()

    assert raised.value.code == "crm.server_error"
    assert raised.value.params["status"] == 500
    assert len(hubspot_server.state.calls("POST", "/crm/v3/objects/calls")) == 1


# The lookup service with CRM connectors ---------------------------------------------------


@pytest.fixture
async def three_crms(
    hubspot_server: CrmServer, pipedrive_server: CrmServer, zendesk_server: CrmServer, tmp_path: Path
) -> AsyncIterator[LookupService]:
    for server in (hubspot_server, pipedrive_server, zendesk_server):
        reset(server)
    connectors = [hubspot(hubspot_server, tmp_path, TIMEOUT), pipedrive(pipedrive_server, tmp_path, TIMEOUT),
                  zendesk(zendesk_server, tmp_path, TIMEOUT)]
    service = LookupService(connectors, RULES, timeout=2.0, cache_seconds=0)
    yield service
    for server in (hubspot_server, pipedrive_server, zendesk_server):
        reset(server)
    await service.stop()


async def test_failing_crm_never_blocks_others(
    three_crms: LookupService, hubspot_server: CrmServer, zendesk_server: CrmServer
) -> None:
    hubspot_server.state.fail = crm_servers.SERVER_ERROR
    zendesk_server.state.fail = crm_servers.SLOW

    updates = [update async for update in three_crms.lookup("+41445550123", call_id="c-iso")]

    first_with_cards = next(update for update in updates if update.cards)
    assert "zendesk" in first_with_cards.pending
    final = updates[-1]
    assert {card.connector for card in final.cards} == {"pipedrive"}
    assert {(error.connector, error.code) for error in final.errors} == {
        ("hubspot", "crm.server_error"),
        ("zendesk", "crm.timeout"),
    }
    hubspot_error = next(error for error in final.errors if error.connector == "hubspot")
    assert hubspot_error.params == {"label": "HubSpot", "crm": "HubSpot", "status": 500}


async def test_failure_logged_once_with_count(
    three_crms: LookupService, hubspot_server: CrmServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    three_crms.failures.clock = lambda: clock[0]
    hubspot_server.state.fail = crm_servers.SERVER_ERROR

    with caplog.at_level(logging.WARNING, logger="ringboard.lookup"):
        for _ in range(3):
            await three_crms.lookup_final("+41445550123")
        clock[0] += 301
        await three_crms.lookup_final("+41445550123")

    lines = [record.getMessage() for record in caplog.records if "connector hubspot failed" in record.getMessage()]
    assert len(lines) == 2
    assert "crm.server_error" in lines[0]
    assert "2 more failures since the last report" in lines[1]
    assert all(crm_servers.HUBSPOT_TOKEN not in line for line in lines)

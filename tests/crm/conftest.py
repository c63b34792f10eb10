"""Fixtures of the CRM tests: contract servers on 127.0.0.1 and connectors configured for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lookup.numbers import NumberRules, parse_caller
from agent.lookup.settings import CrmSettings, parse_lookup_settings
from tests.support import crm_servers
from tests.support.crm_servers import CrmServer, TlsFiles

RULES = NumberRules("CH", ("DE", "AT"), 8)

# The caller every contract server stores in several written forms: Anna Muster, Beispiel AG.
ANNA = parse_caller("+41445550123", RULES)

# A ring-time lookup's timeout in these tests: short, so the slow-server tests stay quick.
LOOKUP_TIMEOUT = 1.0

# Secrets of the contract servers, by connector type and secret name.
SECRETS = {
    "hubspot": ("token", crm_servers.HUBSPOT_TOKEN),
    "pipedrive": ("token", crm_servers.PIPEDRIVE_TOKEN),
    "bexio": ("token", crm_servers.BEXIO_TOKEN),
    "zendesk": ("token", crm_servers.ZENDESK_TOKEN),
    "zammad": ("token", crm_servers.ZAMMAD_TOKEN),
    "odoo": ("api_key", crm_servers.ODOO_KEY),
    "graph": ("client_secret", crm_servers.MS_CLIENT_SECRET),
    "dataverse": ("client_secret", crm_servers.MS_CLIENT_SECRET),
}


def crm_settings(kind: str, url: str, secret_dir: Path, *, secret: str | None = None, **keys: Any) -> CrmSettings:
    """Return a connector's settings as `[[connectors]]` would give them, with its secret in a file."""
    secret_name, value = SECRETS[kind]
    secret_file = secret_dir / f"{kind}-{secret_name}"
    secret_file.write_text((secret if secret is not None else value) + "\n")
    entry = {"type": kind, "name": keys.pop("name", kind), "url": url, f"{secret_name}_file": str(secret_file), **keys}
    settings = parse_lookup_settings({"connectors": [entry]}).connectors[0]
    assert isinstance(settings, CrmSettings)
    return settings


def server_fixture(kind: str, tls: bool = False):  # type: ignore[no-untyped-def]
    """Return a module-scoped fixture running the contract server of `kind`."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmServer]:
        files = crm_servers.make_tls(tmp_path_factory.mktemp("tls")) if tls else None
        with crm_servers.crm_server(kind, tls=files) as server:
            server.state.data["tls"] = files
            yield server

    return fixture


hubspot_server = server_fixture("hubspot")
pipedrive_server = server_fixture("pipedrive")
bexio_server = server_fixture("bexio")
microsoft_server = server_fixture("microsoft", tls=True)
odoo_server = server_fixture("odoo")
zendesk_server = server_fixture("zendesk")
zammad_server = server_fixture("zammad")


def reset(server: CrmServer) -> None:
    """Clear a server's recorded requests and planned failures."""
    server.state.requests.clear()
    server.state.fail = None
    server.state.fail_count = None
    server.state.fail_path = "/"
    server.state.retry_after = crm_servers.RETRY_AFTER


def tls_of(server: CrmServer) -> TlsFiles:
    files = server.state.data["tls"]
    assert isinstance(files, TlsFiles)
    return files


def call_json(call_id: str = "c-1", **changes: Any) -> dict[str, Any]:
    """Return an ended, answered inbound call from Anna Muster as the protocol's `call` object."""
    call: dict[str, Any] = {
        "id": call_id,
        "extension": "201",
        "direction": "inbound",
        "state": "ended",
        "remote": {"number": "0445550123", "e164": "+41445550123", "display": "044 555 01 23", "name": "Anna Muster",
                   "uri": "sip:0445550123@pbx", "withheld": False},
        "called": "+41441234500",
        "started_at": "2026-12-04T09:00:00.000Z",
        "answered_at": "2026-12-04T09:00:05.000Z",
        "ended_at": "2026-12-04T09:03:17.000Z",
        "duration": 192.0,
        "outcome": "answered",
        "confidence": "certain",
        "outcome_reason": None,
        "answered_by": None,
        "transferred_to": None,
    }
    call.update(changes)
    return call

"""`[[connectors]]` of the CRM types: defaults, secrets with their source, and errors naming key and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError
from agent.lookup.settings import (
    AutoLog,
    BexioSettings,
    DataverseSettings,
    GraphSettings,
    HubSpotSettings,
    OdooSettings,
    PipedriveSettings,
    ZammadSettings,
    ZendeskSettings,
    parse_lookup_settings,
)


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return str(path)


def parse(entry: dict[str, Any]) -> Any:
    return parse_lookup_settings({"connectors": [entry]}).connectors[0]


def test_hubspot_defaults(token_file: str) -> None:
    settings = parse({"type": "hubspot", "token_file": token_file})

    assert isinstance(settings, HubSpotSettings)
    assert (settings.name, settings.label, settings.url) == ("hubspot", "HubSpot", "https://api.hubapi.com")
    assert settings.token.secret.value == "s3cret"
    assert settings.token.source == token_file
    assert settings.auto_log == AutoLog()
    assert settings.language == "en"
    assert "s3cret" not in repr(settings)


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEDRIVE_TOKEN", "abc")
    settings = parse({"type": "pipedrive", "token_env": "PIPEDRIVE_TOKEN", "web_url": "https://beispiel.pipedrive.com/"})

    assert isinstance(settings, PipedriveSettings)
    assert settings.token.source == "$PIPEDRIVE_TOKEN"
    assert settings.web_url == "https://beispiel.pipedrive.com"
    assert settings.url == "https://api.pipedrive.com"


def test_auto_log_and_language(token_file: str) -> None:
    settings = parse({"type": "bexio", "token_file": token_file, "language": "de", "sync_minutes": 5,
                      "auto_log": {"missed": "task"}})

    assert isinstance(settings, BexioSettings)
    assert settings.auto_log.mode("missed") == "task"
    assert settings.auto_log.mode("answered") == "off"
    assert (settings.language, settings.sync_minutes, settings.web_url) == ("de", 5, "https://office.bexio.com")


def test_microsoft_types(token_file: str) -> None:
    common = {"tenant": "beispiel.onmicrosoft.com", "client_id": "id", "client_secret_file": token_file}
    graph = parse({"type": "graph", "user": "office@beispiel.example", **common})
    dataverse = parse({"type": "dataverse", "url": "https://beispiel.crm4.dynamics.com/", "app_id": "app", **common})

    assert isinstance(graph, GraphSettings)
    assert (graph.url, graph.authority_url, graph.folder) == ("https://graph.microsoft.com", "https://login.microsoftonline.com", None)
    assert isinstance(dataverse, DataverseSettings)
    assert (dataverse.url, dataverse.app_id) == ("https://beispiel.crm4.dynamics.com", "app")


def test_odoo_and_helpdesks(token_file: str) -> None:
    odoo = parse({"type": "odoo", "url": "https://odoo.beispiel.example", "api_key_file": token_file,
                  "protocol": "jsonrpc", "database": "db", "login": "bot@beispiel.example"})
    zendesk = parse({"type": "zendesk", "url": "https://beispiel.zendesk.com", "email": "a@b.example", "token_file": token_file})
    zammad = parse({"type": "zammad", "url": "https://zammad.beispiel.example", "token_file": token_file, "group": "Support"})

    assert isinstance(odoo, OdooSettings) and (odoo.protocol, odoo.database, odoo.login) == ("jsonrpc", "db", "bot@beispiel.example")
    assert isinstance(zendesk, ZendeskSettings) and zendesk.email == "a@b.example"
    assert isinstance(zammad, ZammadSettings) and zammad.group == "Support"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "hubspot"}, 'token_file or token_env is missing'),
        ({"type": "hubspot", "token_file": "{token}", "url": "ftp://api.hubapi.com"}, "url = \"ftp://api.hubapi.com\" is invalid"),
        ({"type": "hubspot", "token_file": "{token}", "auto_log": {"answered": "always"}}, "auto_log.answered = 'always' is invalid"),
        ({"type": "hubspot", "token_file": "{token}", "auto_log": {"busy": "log"}}, "auto_log.busy is not a call type"),
        ({"type": "hubspot", "token_file": "{token}", "language": "es"}, 'language = "es" is invalid'),
        ({"type": "hubspot", "token_file": "{token}", "ca_file": "/nonexistent.pem"}, "is not a readable file"),
        ({"type": "zendesk", "token_file": "{token}", "email": "a@b.example"}, "url is missing"),
        ({"type": "zendesk", "token_file": "{token}", "url": "https://x.zendesk.com"}, "email is missing"),
        ({"type": "odoo", "url": "https://o.example", "api_key_file": "{token}", "protocol": "jsonrpc"}, "set database and login"),
        ({"type": "graph", "tenant": "t", "client_id": "c", "client_secret_file": "{token}"}, "user is missing"),
        ({"type": "dataverse", "url": "https://d.example", "client_id": "c", "client_secret_file": "{token}"}, "tenant is missing"),
        ({"type": "hubspot", "token_file": "{token}", "password_file": "{token}"}, "password_file is not a known setting"),
    ],
)
def test_errors_name_key(token_file: str, entry: dict[str, Any], message: str) -> None:
    entry = {key: value.replace("{token}", token_file) if isinstance(value, str) else value for key, value in entry.items()}
    with pytest.raises(ConfigError) as raised:
        parse(entry)
    assert message in str(raised.value)

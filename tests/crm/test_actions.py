"""The action runner: each action at most once (double clicks, tabs, restarts), automatic logging, create contact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.actions import ActionRunner
from agent.crm.hubspot import HubSpotConnector
from agent.crm.pipedrive import PipedriveConnector
from agent.crm.store import ActionStore
from agent.crm.zendesk import ZendeskConnector
from tests.crm.conftest import RULES, call_json, crm_settings, hubspot_server, pipedrive_server, reset, zendesk_server
from tests.support import crm_servers
from tests.support.crm_servers import CrmServer

__all__ = ["hubspot_server", "pipedrive_server", "zendesk_server"]

AUTO = {"answered": "log", "missed": "task", "outgoing": "off"}

NEW_CALLER = {"number": "0445559900", "e164": "+41445559900", "display": "044 555 99 00", "name": None, "withheld": False}


def crm_message(*cards: dict[str, Any]) -> dict[str, Any]:
    return {"type": "crm", "call_id": "c-1", "number": "+41445550123", "cards": list(cards), "pending": [], "errors": []}


def card(connector: str, contact_id: str, chosen: bool = False) -> dict[str, Any]:
    return {"connector": connector, "contact_id": contact_id, "chosen": chosen, "name": "Anna Muster"}


@pytest.fixture
async def make_runner(
    hubspot_server: CrmServer, pipedrive_server: CrmServer, zendesk_server: CrmServer, tmp_path: Path
) -> AsyncIterator[Callable[[], ActionRunner]]:
    """Return a factory of runners sharing one action store file, as an agent restart would."""
    for server in (hubspot_server, pipedrive_server, zendesk_server):
        reset(server)
    created: list[ActionRunner] = []

    def make() -> ActionRunner:
        connectors = [
            HubSpotConnector(crm_settings("hubspot", hubspot_server.url, tmp_path, auto_log=AUTO), timeout=1.0),
            PipedriveConnector(crm_settings("pipedrive", pipedrive_server.url, tmp_path), timeout=1.0),
            ZendeskConnector(
                crm_settings("zendesk", zendesk_server.url, tmp_path, email=crm_servers.ZENDESK_EMAIL,
                             auto_log={"answered": "log"}),
                timeout=1.0,
            ),
        ]
        runner = ActionRunner(connectors, RULES, ActionStore(tmp_path / "crm-actions.db"))
        created.append(runner)
        return runner

    yield make
    for runner in created:
        for connector in runner.connectors.values():
            await connector.stop()
        runner.close()


@pytest.fixture
def runner(make_runner: Callable[[], ActionRunner]) -> ActionRunner:
    return make_runner()


def posts(server: CrmServer, path: str) -> int:
    """Count the POST requests to exactly `path`."""
    return len([request for request in server.state.calls("POST", path) if request.path == path])


# Manual actions ---------------------------------------------------------------------


async def test_log_call_result(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    result = await runner.run_action(call_json(), "hubspot", "log_call", "51234", {"note": "Offer"})

    assert result.ok
    assert result.url == "https://app-eu1.hubspot.com/contacts/4711/record/0-1/51234"
    assert result.contact_id == "51234"
    assert result.record_id is not None
    assert not result.repeated
    assert set(result.to_json()) == {"ok", "url", "code", "params", "contact_id", "record_id", "repeated"}


async def test_second_run_returns_first(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    first = await runner.run_action(call_json(), "hubspot", "log_call", "51234", {})
    second = await runner.run_action(call_json(), "hubspot", "log_call", "51234", {})

    assert second.repeated
    assert (second.ok, second.url, second.record_id) == (first.ok, first.url, first.record_id)
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 1


async def test_double_click_runs_once(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    results = await asyncio.gather(
        runner.run_action(call_json(), "hubspot", "log_call", "51234", {}),
        runner.run_action(call_json(), "hubspot", "log_call", "51234", {}),
    )

    assert all(result.ok for result in results)
    assert sorted(result.repeated for result in results) == [False, True]
    assert results[0].record_id == results[1].record_id
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 1


async def test_result_survives_restart(make_runner: Callable[[], ActionRunner], hubspot_server: CrmServer) -> None:
    first_runner = make_runner()
    first = await first_runner.run_action(call_json(), "hubspot", "log_call", "51234", {})

    second_runner = make_runner()
    again = await second_runner.run_action(call_json(), "hubspot", "log_call", "51234", {})

    assert again.repeated
    assert again.record_id == first.record_id
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 1


async def test_failure_can_be_retried(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    hubspot_server.state.fail, hubspot_server.state.fail_count = crm_servers.SERVER_ERROR, 1
    hubspot_server.state.fail_path = "/crm/v3/objects/calls"
    failed = await runner.run_action(call_json(), "hubspot", "log_call", "51234", {})
    retried = await runner.run_action(call_json(), "hubspot", "log_call", "51234", {})

    assert (failed.ok, failed.code, failed.params["status"]) == (False, "crm.server_error", 500)
    assert failed.params["label"] == "HubSpot"
    assert retried.ok and not retried.repeated
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 2


async def test_other_contact_is_other_action(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    await runner.run_action(call_json(), "hubspot", "log_call", "51234", {})
    other = await runner.run_action(call_json(), "hubspot", "log_call", "51236", {})

    assert not other.repeated
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 2


@pytest.mark.parametrize(
    ("connector", "action", "contact", "code"),
    [
        ("salesforce", "log_call", "1", "action.unknown_connector"),
        ("hubspot", "create_ticket", "51234", "action.unknown_action"),
        ("hubspot", "log_call", None, "action.no_contact"),
    ],
)
async def test_action_errors(runner: ActionRunner, connector: str, action: str, contact: str | None, code: str) -> None:
    result = await runner.run_action(call_json(), connector, action, contact, {})

    assert (result.ok, result.code) == (False, code)


# Create contact ---------------------------------------------------------------------


async def test_create_contact_once_per_number(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    first = await runner.run_action(call_json("c-10", remote=NEW_CALLER), "hubspot", "create_contact", None, {})
    # A later call of the same number, before HubSpot's search indexed the new contact.
    second = await runner.run_action(call_json("c-11", remote=NEW_CALLER), "hubspot", "create_contact", None, {})

    assert first.ok and first.code is None
    assert (second.ok, second.code, second.contact_id) == (True, "crm.contact_exists", first.contact_id)
    assert second.url == first.url
    assert posts(hubspot_server, "/crm/v3/objects/contacts") == 1


async def test_create_contact_uses_existing(runner: ActionRunner, pipedrive_server: CrmServer) -> None:
    result = await runner.run_action(call_json(), "pipedrive", "create_contact", None, {})

    # Both of Anna's persons match; either is the existing contact.
    assert (result.ok, result.code) == (True, "crm.contact_exists")
    assert result.contact_id in ("17", "19")
    assert result.url == f"https://beispiel.pipedrive.com/person/{result.contact_id}"
    assert posts(pipedrive_server, "/v1/persons") == 0


async def test_create_contact_needs_number(runner: ActionRunner) -> None:
    withheld = {"number": None, "e164": None, "display": None, "name": None, "withheld": True}
    result = await runner.run_action(call_json(remote=withheld), "hubspot", "create_contact", None, {})

    assert (result.ok, result.code) == (False, "action.no_number")


def test_unknown_caller_actions(make_runner: Callable[[], ActionRunner]) -> None:
    runner = make_runner()
    listed = runner.unknown_caller_actions()

    assert [(entry["connector"], [a["id"] for a in entry["actions"]]) for entry in listed] == [
        ("hubspot", ["create_contact"]),
        ("pipedrive", ["create_contact"]),
    ]
    assert listed[0]["actions"][0] == {"id": "create_contact", "label": "crm.action.create_contact", "kind": "run"}


# Automatic logging ------------------------------------------------------------------


async def test_auto_log_answered_call(runner: ActionRunner, hubspot_server: CrmServer, zendesk_server: CrmServer) -> None:
    results = await runner.auto_log(call_json(), crm_message(card("hubspot", "51234"), card("zendesk", "36001")))

    assert [result.ok for result in results] == [True, True]
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 1
    ticket = zendesk_server.state.calls("POST", "/api/v2/tickets.json")[0].body["ticket"]
    assert ticket["status"] == "solved"


async def test_auto_log_once_across_restart(
    make_runner: Callable[[], ActionRunner], hubspot_server: CrmServer
) -> None:
    message = crm_message(card("hubspot", "51234"))
    first = make_runner()
    await first.auto_log(call_json(), message)
    await first.auto_log(call_json(), message)  # a second tab, or the call's end event replayed

    second = make_runner()
    results = await second.auto_log(call_json(), message)
    manual = await second.run_action(call_json(), "hubspot", "log_call", "51234", {})

    assert [result.repeated for result in results] == [True]
    assert manual.repeated
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 1


async def test_auto_log_uses_chosen_card(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    await runner.auto_log(call_json(), crm_message(card("hubspot", "51234"), card("hubspot", "51236", chosen=True)))

    association = hubspot_server.state.calls("POST", "/crm/v3/objects/calls")[0].body["associations"][0]
    assert association["to"]["id"] == "51236"


async def test_missed_ring_group_logged_once(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    missed = {"outcome": "missed", "answered_at": None}
    message = crm_message(card("hubspot", "51234"))
    first = await runner.auto_log(call_json("c-201", extension="201", **missed), message)
    second = await runner.auto_log(
        call_json("c-202", extension="202", started_at="2026-12-04T09:00:01.000Z", **missed), message
    )

    assert [result.ok for result in first] == [True]
    assert second == []
    assert posts(hubspot_server, "/crm/v3/objects/tasks") == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"direction": "outbound"},  # outgoing is off
        {"direction": "internal"},
        {"outcome": "answered_elsewhere", "answered_at": None},
        {"state": "connected", "ended_at": None},
    ],
)
async def test_auto_log_skips(runner: ActionRunner, hubspot_server: CrmServer, changes: dict[str, Any]) -> None:
    results = await runner.auto_log(call_json(**changes), crm_message(card("hubspot", "51234")))

    assert [result for result in results if result.ok and not result.repeated and "hubspot" in (result.url or "")] == []
    assert posts(hubspot_server, "/crm/v3/objects/calls") == 0


async def test_auto_log_without_card(runner: ActionRunner, hubspot_server: CrmServer) -> None:
    assert await runner.auto_log(call_json(), crm_message()) == []
    assert await runner.auto_log(call_json(), None) == []
    assert hubspot_server.state.requests == []

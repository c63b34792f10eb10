"""The page's HTTP API: settings, marking missed calls done, CRM actions and contact choices."""

import asyncio
import dataclasses
import json

import httpx
import pytest
import websockets

from agent.lookup.settings import LookupSettings, lab_settings
from agent.runner import AgentRunner
from tests.agent.test_pipeline import agent_config
from tests.crm.conftest import crm_settings
from tests.support.crm_servers import crm_server
from tests.support.fake_pbx import FakePbx, kamailio_document
from tests.support.pairing import add_user, pair, paired_device

SETTINGS = {
    "show_history": False,
    "history_filter": "missed",
    "notifications": True,
    "notify_calls": "all",
    "language": "de",
}


@pytest.fixture
async def agent(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201", "202")), lookup=lab_settings())
    runner = AgentRunner(config)
    url = await runner.start()
    await server.wait_subscribed(["201", "202"])
    yield runner, url, server
    await runner.stop()
    server.close()


async def next_message(socket, kind, timeout=5.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == kind:
            return message


def ring_and_end(server, extension, call_id, *, answered, caller="+41441234567"):
    version = server.next_version
    server.send_notify(extension, kamailio_document(extension, version(extension), [("d1", call_id, "early")], caller=caller))
    if answered:
        server.send_notify(extension, kamailio_document(extension, version(extension), [("d1", call_id, "confirmed")], caller=caller))
    server.send_notify(extension, kamailio_document(extension, version(extension), [("d1", call_id, "terminated")], caller=caller))


async def test_settings_saved_and_published(agent, tmp_path):
    runner, url, _ = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    other_tab = await pair(url, add_user(tmp_path, "bert", ("201",)))
    ws_url = url.replace("http", "ws") + "api/events"
    async with (
        websockets.connect(ws_url, additional_headers=device.header) as socket,
        websockets.connect(ws_url, additional_headers=other_tab.header) as foreign,
    ):
        snapshot = await next_message(socket, "snapshot")
        await next_message(foreign, "snapshot")
        assert snapshot["settings"]["show_history"] is True
        assert snapshot["settings"]["language"] is None

        async with httpx.AsyncClient(headers=device.header) as client:
            saved = await client.put(url + "api/settings", json=SETTINGS)
            read = await client.get(url + "api/settings")
        message = await next_message(socket, "settings")

        assert saved.status_code == 200
        assert read.json() == SETTINGS
        assert message["settings"] == SETTINGS
        with pytest.raises(asyncio.TimeoutError):
            await next_message(foreign, "settings", timeout=0.5)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"show_history": "yes"}, "show_history", "wrong_type"),
        ({"language": "es"}, "language", "out_of_range"),
        ({"notify_calls": 3}, "notify_calls", "wrong_type"),
        ({"theme": "dark"}, "theme", "unknown_field"),
        ({"history_filter": None}, "history_filter", "wrong_type"),
    ],
)
async def test_settings_rejects_bad_values(agent, tmp_path, change, field, reason):
    _, url, _ = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    async with httpx.AsyncClient(headers=device.header) as client:
        response = await client.put(url + "api/settings", json={**SETTINGS, **change})
    assert response.status_code == 400
    assert response.json()["params"] == {"field": field, "reason": reason}


async def test_settings_rejects_missing_field(agent, tmp_path):
    _, url, _ = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    body = {key: value for key, value in SETTINGS.items() if key != "language"}
    async with httpx.AsyncClient(headers=device.header) as client:
        response = await client.put(url + "api/settings", json=body)
    assert response.json()["params"] == {"field": "language", "reason": "missing"}


async def test_snapshot_carries_stored_cards(agent, tmp_path):
    runner, url, server = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    ring_and_end(server, "201", "c-cards", answered=True)
    await _wait_for(lambda: runner.history.recent_calls(5) and runner.history.cards_for([runner.history.recent_calls(5)[0]["id"]]))

    async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
        snapshot = await next_message(socket, "snapshot")

    assert snapshot["cards"][0]["call_id"] == snapshot["history"][0]["id"]
    assert snapshot["cards"][0]["cards"][0]["name"] == "Max Muster"
    assert snapshot["caller_actions"] == []


async def test_missed_call_marked_done_by_user(agent, tmp_path):
    runner, url, server = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    stranger = await pair(url, add_user(tmp_path, "bert", ("202",)))
    ring_and_end(server, "201", "c-missed", answered=False)
    await _wait_for(lambda: runner.history.recent_calls(5))
    call_id = runner.history.recent_calls(5)[0]["id"]

    async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
        snapshot = await next_message(socket, "snapshot")
        assert snapshot["history"][0]["done"] is False
        async with httpx.AsyncClient() as client:
            foreign = await client.post(url + f"api/calls/{call_id}/done", headers=stranger.header)
            done = await client.post(url + f"api/calls/{call_id}/done", headers=device.header)
        update = await next_message(socket, "call")

    assert foreign.status_code == 404
    assert done.status_code == 200
    assert done.json()["done"] is True
    assert update["event"] == "updated"
    assert update["call"]["done"] is True
    assert runner.history.call(call_id)["done"] is True


async def test_answered_call_closes_earlier_missed_call(agent, tmp_path):
    runner, _, server = agent
    ring_and_end(server, "201", "c-first", answered=False)
    await _wait_for(lambda: runner.history.recent_calls(5))
    missed_id = runner.history.recent_calls(5)[0]["id"]
    assert runner.history.call(missed_id)["done"] is False

    ring_and_end(server, "202", "c-second", answered=True)
    await _wait_for(lambda: runner.history.call(missed_id)["done"])


async def test_other_number_keeps_missed_call_open(agent, tmp_path):
    runner, _, server = agent
    ring_and_end(server, "201", "c-first", answered=False)
    ring_and_end(server, "202", "c-other", answered=True, caller="+41447654321")
    await _wait_for(lambda: len(runner.history.recent_calls(5)) == 2)
    missed = [call for call in runner.history.recent_calls(5) if call["outcome"] == "missed"]
    assert missed[0]["done"] is False


async def test_action_of_foreign_call_not_found(agent, tmp_path):
    runner, url, server = agent
    stranger = await pair(url, add_user(tmp_path, "bert", ("202",)))
    ring_and_end(server, "201", "c-1", answered=True)
    await _wait_for(lambda: runner.history.recent_calls(5))
    call_id = runner.history.recent_calls(5)[0]["id"]
    async with httpx.AsyncClient(headers=stranger.header) as client:
        response = await client.post(url + f"api/calls/{call_id}/actions/crm/log_call", json={"contact_id": "1"})
    assert response.status_code == 404


async def test_contact_choice_validated(agent, tmp_path):
    _, url, _ = agent
    device = await paired_device(url, tmp_path, "anna", ("201",))
    async with httpx.AsyncClient(headers=device.header) as client:
        chosen = await client.post(
            url + "api/contacts/choice",
            json={"number": "+41441234567", "connector": "contacts", "contact": "ringboard-demo-max-muster"},
        )
        unknown = await client.post(
            url + "api/contacts/choice", json={"number": "+41441234567", "connector": "nope", "contact": "x"}
        )
        missing = await client.post(url + "api/contacts/choice", json={"number": "+41441234567"})
    assert chosen.status_code == 200
    assert unknown.status_code == 400
    assert missing.json()["params"] == {"field": "connector", "reason": "missing"}


async def test_action_runs_once_against_hubspot(tmp_path):
    with crm_server("hubspot") as crm:
        server = FakePbx()
        address = await server.start()
        hubspot = crm_settings("hubspot", crm.url, tmp_path, name="hubspot")
        lookup = LookupSettings(rules=lab_settings().rules, connectors=(hubspot,))
        config = dataclasses.replace(agent_config(tmp_path / "var", address, extensions=("201",)), lookup=lookup)
        runner = AgentRunner(config)
        url = await runner.start()
        try:
            await server.wait_subscribed(["201"])
            device = await paired_device(url, tmp_path / "var", "anna", ("201",))
            ring_and_end(server, "201", "c-hub", answered=True, caller="+41445550123")
            await _wait_for(lambda: runner.history.recent_calls(5) and runner.history.cards_for([runner.history.recent_calls(5)[0]["id"]]))
            call_id = runner.history.recent_calls(5)[0]["id"]
            card = runner.history.cards_for([call_id])[0]["cards"][0]
            path = url + f"api/calls/{call_id}/actions/hubspot/create_task"
            async with httpx.AsyncClient(headers=device.header, timeout=30) as client:
                first, second = await asyncio.gather(
                    client.post(path, json={"contact_id": card["contact_id"], "params": {}}),
                    client.post(path, json={"contact_id": card["contact_id"], "params": {}}),
                )
        finally:
            await runner.stop()
            server.close()

    assert first.status_code == 200
    assert first.json()["ok"] is True
    assert second.json()["ok"] is True
    assert [first.json()["repeated"], second.json()["repeated"]].count(True) == 1


async def _wait_for(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)

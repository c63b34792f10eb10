"""Bad input to every endpoint: a 4xx with an error code that names the problem, and no change."""

import asyncio
import json

import httpx
import pytest
import websockets

from agent.runner import AgentRunner
from tests.agent.test_pipeline import agent_config, next_message
from tests.support.fake_pbx import FakePbx
from tests.support.pairing import add_user, pair

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def agent(tmp_path):
    server = FakePbx()
    address = await server.start()
    runner = AgentRunner(agent_config(tmp_path, address))
    url = await runner.start()
    pin = add_user(tmp_path, "anna", ("201",))
    device = await pair(url, pin)
    yield runner, url, pin, device
    await runner.stop()
    server.close()


PAIR_CASES = [
    # (body bytes, headers, status, code, params)
    (b'{"pin": 123456789}', JSON, 400, "bad_request", {"field": "pin", "reason": "wrong_type"}),
    (b'{"pin": ["123456789"]}', JSON, 400, "bad_request", {"field": "pin", "reason": "wrong_type"}),
    (b'{"pin": null}', JSON, 400, "bad_request", {"field": "pin", "reason": "missing"}),
    (b"{}", JSON, 400, "bad_request", {"field": "pin", "reason": "missing"}),
    (b'{"pin": "123456789", "user": "x"}', JSON, 400, "bad_request", {"field": "user", "reason": "unknown_field"}),
    (b'["123456789"]', JSON, 400, "bad_request", {"field": "body", "reason": "not_an_object"}),
    (b'"123456789"', JSON, 400, "bad_request", {"field": "body", "reason": "not_an_object"}),
    (b'{"pin": "1234', JSON, 400, "bad_request", {"field": "body", "reason": "invalid_json"}),
    (b"", JSON, 400, "bad_request", {"field": "body", "reason": "invalid_json"}),
    (b'{"pin": "\xff\xfe"}', JSON, 400, "bad_request", {"field": "body", "reason": "invalid_json"}),
    (b'{"pin": "12345"}', JSON, 400, "bad_request", {"field": "pin", "reason": "format"}),
    (b'{"pin": "12345678x"}', JSON, 400, "bad_request", {"field": "pin", "reason": "format"}),
    (b'{"pin": "' + b"1" * 900 + b'"}', JSON, 400, "bad_request", {"field": "pin", "reason": "format"}),
    (b'{"pin": "123456789"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type", {"expected": "application/json"}),
    (b"pin=123456789", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", {"expected": "application/json"}),
    (b'{"pin": "' + b"1" * 2000 + b'"}', JSON, 413, "payload_too_large", {"limit": 1024}),
    (b"x" * 100_000, JSON, 413, "payload_too_large", {"limit": 65536}),
]


@pytest.mark.parametrize(("body", "headers", "status", "code", "params"), PAIR_CASES)
async def test_pair_rejects_bad_body(agent, body, headers, status, code, params):
    runner, url, pin, device = agent
    users_before = runner.users.users()
    devices_before = runner.users.devices()

    async with httpx.AsyncClient() as client:
        response = await client.post(url + "api/pair", content=body, headers=headers)

    assert response.status_code == status
    assert response.json() == {"type": "error", "code": code, "params": params}
    assert runner.users.users() == users_before
    assert runner.users.devices() == devices_before
    assert runner.auth.addresses.failures("127.0.0.1", 0) == 0


async def test_streamed_body_over_limit_rejected(agent):
    runner, url, pin, device = agent

    async def chunks():
        for _ in range(64):
            yield b"1" * 100

    async with httpx.AsyncClient() as client:
        response = await client.post(url + "api/pair", content=chunks(), headers=JSON)

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_bad_pin_format_counts_no_failure(agent):
    runner, url, pin, device = agent

    async with httpx.AsyncClient() as client:
        for _ in range(20):
            await client.post(url + "api/pair", json={"pin": "1"})
        right = await client.post(url + "api/pair", json={"pin": pin})

    assert right.status_code == 200


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("before=abc", "before", "not_a_whole_number"),
        ("before=-5", "before", "not_a_whole_number"),
        ("before=1e3", "before", "not_a_whole_number"),
        ("before=99999999999999999999999", "before", "out_of_range"),
        ("before=" + "9" * 5000, "before", "out_of_range"),
        ("limit=ten", "limit", "not_a_whole_number"),
        ("limit=0", "limit", "out_of_range"),
        ("limit=%C2%B2", "limit", "not_a_whole_number"),
    ],
)
async def test_history_rejects_bad_query(agent, query, field, reason):
    runner, url, pin, device = agent

    async with httpx.AsyncClient() as client:
        response = await client.get(url + "api/history?" + query, headers=device.header)

    assert response.status_code == 400
    assert response.json() == {"type": "error", "code": "bad_request", "params": {"field": field, "reason": reason}}


async def test_history_limit_capped(agent):
    runner, url, pin, device = agent

    async with httpx.AsyncClient() as client:
        response = await client.get(url + "api/history?limit=100000", headers=device.header)

    assert response.status_code == 200
    assert response.json() == {"calls": [], "next_before": None}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "api/nothing", 404, "not_found"),
        ("POST", "api/calls/c-unknown/done", 404, "not_found"),
        ("DELETE", "api/nothing-here/unknown-id", 404, "not_found"),
        ("POST", "api/history", 405, "method_not_allowed"),
        ("GET", "api/pair", 405, "method_not_allowed"),
        ("PUT", "api/session", 405, "method_not_allowed"),
    ],
)
async def test_unknown_route_or_method(agent, method, path, status, code):
    runner, url, pin, device = agent

    async with httpx.AsyncClient() as client:
        response = await client.request(method, url + path, headers=device.header)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["params"] == {"path": "/" + path}


async def test_events_reject_bad_since(agent):
    runner, url, pin, device = agent

    async with websockets.connect(url.replace("http", "ws") + "api/events?since=abc", additional_headers=device.header) as socket:
        error = await next_message(socket, "error")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)

    assert error == {"type": "error", "code": "bad_request", "params": {"field": "since"}}
    assert closed.value.rcvd.code == 1008


async def test_events_reject_oversized_message(agent):
    runner, url, pin, device = agent

    async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
        await next_message(socket, "snapshot")
        await socket.send("x" * 200_000)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)

    assert closed.value.rcvd.code == 1009


async def test_cookie_garbage_is_unauthenticated(agent):
    runner, url, pin, device = agent

    async with httpx.AsyncClient() as client:
        responses = [
            await client.get(url + "api/history", headers={"Cookie": cookie})
            for cookie in ('ringboard_device="', "ringboard_device=" + "x" * 5000, "ringboard_device=../../etc", ";;;=")
        ]

    assert [response.status_code for response in responses] == [401, 401, 401, 401]
    assert all(json.loads(response.text)["code"] == "unauthenticated" for response in responses)

"""Who sees which calls: pairing, per-user filtering, revocation, lock-outs and cross-site requests.

Every test runs the whole agent on 127.0.0.1 against the scripted notifier, with users
added to its data folder as `ringboard users add` would.
"""

import asyncio
import json
import logging
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from agent.runner import AgentRunner
from agent.users import UserStore
from tests.agent.test_pipeline import agent_config, next_message
from tests.support.fake_pbx import FakePbx, kamailio_document
from tests.support.pairing import FAST_PIN_HASHER, add_user, pair

# A revoked device's page must close within the watcher's 1 s poll; the margin is for a loaded machine.
REVOKE_CLOSE_SECONDS = 3.0


@pytest.fixture
async def agent(tmp_path):
    server = FakePbx()
    address = await server.start()
    runner = AgentRunner(agent_config(tmp_path, address))
    url = await runner.start()
    await server.wait_subscribed(["201", "202"])
    yield runner, url, server
    await runner.stop()
    server.close()


def events_url(url, since=None):
    return url.replace("http", "ws") + "api/events" + (f"?since={since}" if since is not None else "")


def client_from(address):
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address))


async def ring_and_end(server, extension, dialog, call_id):
    server.send_notify(extension, kamailio_document(extension, server.next_version(extension), [(dialog, call_id, "early")]))
    server.send_notify(extension, kamailio_document(extension, server.next_version(extension), [(dialog, call_id, "terminated")]))


async def collect_calls(socket, count, timeout=5.0):
    """Read call messages until `count` arrived; return their extensions."""
    extensions = []
    while len(extensions) < count:
        message = await next_message(socket, "call", timeout)
        extensions.append(message["call"]["extension"])
    return extensions


async def test_users_see_only_their_extensions(agent, tmp_path):
    runner, url, server = agent
    anna = await pair(url, add_user(tmp_path, "anna", ("201",)))
    bruno = await pair(url, add_user(tmp_path, "bruno", ("202",)))
    desk = await pair(url, add_user(tmp_path, "desk", (), role="receptionist"))

    async with (
        websockets.connect(events_url(url), additional_headers=anna.header) as anna_socket,
        websockets.connect(events_url(url), additional_headers=bruno.header) as bruno_socket,
        websockets.connect(events_url(url), additional_headers=desk.header) as desk_socket,
    ):
        for socket in (anna_socket, bruno_socket, desk_socket):
            await next_message(socket, "snapshot")
        await ring_and_end(server, "201", "d1", "call-201")
        await ring_and_end(server, "202", "d2", "call-202")

        desk_calls = await collect_calls(desk_socket, 4)
        anna_calls = await collect_calls(anna_socket, 2)
        bruno_calls = await collect_calls(bruno_socket, 2)
        # Anything for the other extension would have arrived by now, after the receptionist's four.
        with pytest.raises(asyncio.TimeoutError):
            await next_message(anna_socket, "call", timeout=0.5)
        with pytest.raises(asyncio.TimeoutError):
            await next_message(bruno_socket, "call", timeout=0.2)

    assert sorted(desk_calls) == ["201", "201", "202", "202"]
    assert anna_calls == ["201", "201"]
    assert bruno_calls == ["202", "202"]

    snapshots = {}
    pages = {}
    for name, device in (("anna", anna), ("bruno", bruno), ("desk", desk)):
        async with websockets.connect(events_url(url), additional_headers=device.header) as socket:
            snapshots[name] = await next_message(socket, "snapshot")
        async with httpx.AsyncClient() as client:
            pages[name] = (await client.get(url + "api/history", headers=device.header)).json()

    assert {call["extension"] for call in snapshots["anna"]["history"]} == {"201"}
    assert {call["extension"] for call in snapshots["bruno"]["history"]} == {"202"}
    assert {call["extension"] for call in snapshots["desk"]["history"]} == {"201", "202"}
    assert [call["extension"] for call in pages["anna"]["calls"]] == ["201"]
    assert [call["extension"] for call in pages["bruno"]["calls"]] == ["202"]
    assert sorted(call["extension"] for call in pages["desk"]["calls"]) == ["201", "202"]
    assert "call-202" not in json.dumps([snapshots["anna"], pages["anna"]])


async def test_session_names_user(agent, tmp_path):
    runner, url, server = agent
    anna = await pair(url, add_user(tmp_path, "anna", ("202", "201")))

    async with httpx.AsyncClient() as client:
        session = await client.get(url + "api/session", headers=anna.header)

    assert session.status_code == 200
    assert session.json() == {"user": "anna", "role": "user", "extensions": ["201", "202"], "device": anna.device_id}


async def test_revoke_from_cli_closes_websocket(agent, tmp_path):
    runner, url, server = agent
    anna = await pair(url, add_user(tmp_path, "anna", ("201",)))
    config_file = tmp_path / "ringboard.toml"
    config_file.write_text(
        f'[agent]\ndata_dir = "{tmp_path}"\n[sip]\nserver = "127.0.0.1"\nextensions = ["201", "202"]\n'
    )

    async with websockets.connect(events_url(url), additional_headers=anna.header) as socket:
        await next_message(socket, "snapshot")
        revoked_at = time.monotonic()
        revoke = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "devices", "revoke", anna.device_id, "--config", str(config_file),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        output, errors = await revoke.communicate()
        assert revoke.returncode == 0, errors.decode()
        assert anna.device_id in output.decode()

        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), REVOKE_CLOSE_SECONDS)
        close_seconds = time.monotonic() - revoked_at

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason == "device_revoked"
    assert close_seconds < REVOKE_CLOSE_SECONDS

    async with httpx.AsyncClient() as client:
        history = await client.get(url + "api/history", headers=anna.header)
    assert history.status_code == 401
    assert history.json()["code"] == "unauthenticated"
    with pytest.raises(websockets.exceptions.ConnectionClosed) as refused:
        async with websockets.connect(events_url(url), additional_headers=anna.header) as socket:
            await socket.recv()
    assert refused.value.rcvd.code == 4401


async def test_removed_user_websocket_closed(agent, tmp_path):
    runner, url, server = agent
    anna = await pair(url, add_user(tmp_path, "anna", ("201",)))

    async with websockets.connect(events_url(url), additional_headers=anna.header) as socket:
        await next_message(socket, "snapshot")
        store = UserStore.in_data_dir(tmp_path)
        try:
            store.remove_user("anna")
        finally:
            store.close()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), REVOKE_CLOSE_SECONDS)

    assert closed.value.rcvd.code == 4401


async def test_pairing_again_replaces_device(agent, tmp_path):
    runner, url, server = agent
    pin = add_user(tmp_path, "anna", ("201",))
    first = await pair(url, pin)

    async with httpx.AsyncClient() as client:
        again = await client.post(url + "api/pair", json={"pin": pin}, headers=first.header)
        old = await client.get(url + "api/session", headers=first.header)

    assert again.status_code == 200
    assert again.json()["device"] != first.device_id
    assert old.status_code == 401
    assert [device.id for device in runner.users.devices()] == [again.json()["device"]]


async def test_device_cookie_attributes(agent, tmp_path):
    runner, url, server = agent
    pin = add_user(tmp_path, "anna", ("201",))

    async with httpx.AsyncClient() as client:
        response = await client.post(url + "api/pair", json={"pin": pin})

    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ringboard_device=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    # Plain HTTP is loopback only; the Secure attribute comes with HTTPS.
    assert "Secure" not in cookie
    token = response.cookies["ringboard_device"]
    assert len(token) == 43
    assert token.encode() not in (tmp_path / "users.sqlite3").read_bytes()


async def test_brute_force_stopped(agent, tmp_path, caplog):
    runner, url, server = agent
    anna_pin = add_user(tmp_path, "anna", ("201",))
    bruno_pin = add_user(tmp_path, "bruno", ("202",))
    caplog.set_level(logging.INFO, logger="ringboard.auth")
    wrong = [f"{anna_pin[:3]}{(int(anna_pin[3:]) + offset) % 10**6:06d}" for offset in range(1, 1001)]

    statuses = []
    retry_after = []
    started = time.monotonic()
    async with client_from("127.0.0.1") as attacker:
        for pin in wrong:
            # A forged X-Forwarded-For must not move the attempts to another address.
            response = await attacker.post(url + "api/pair", json={"pin": pin}, headers={"X-Forwarded-For": "192.0.2.1"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(response.json()["params"]["retry_after"])
        from_locked_address = await attacker.post(url + "api/pair", json={"pin": bruno_pin})
    attack_seconds = time.monotonic() - started

    # Five free failures, the sixth locks: 6 PINs checked out of 1000.
    assert statuses[:6] == [401] * 6
    assert statuses[6:] == [429] * 994
    assert min(retry_after) >= 1
    assert from_locked_address.status_code == 429
    assert int(from_locked_address.headers["retry-after"]) >= 1
    assert attack_seconds < 60

    async with client_from("127.0.0.2") as colleague:
        bruno = await colleague.post(url + "api/pair", json={"pin": bruno_pin})
    assert bruno.status_code == 200
    assert bruno.json()["user"] == "bruno"

    # Anna's pairing is locked too, from any address, until the lock-out ends or her PIN is reset.
    async with client_from("127.0.0.4") as anna_browser:
        anna_locked = await anna_browser.post(url + "api/pair", json={"pin": anna_pin})
    assert anna_locked.status_code == 429
    assert anna_locked.json()["code"] == "pairing_locked"
    assert 1 <= anna_locked.json()["params"]["retry_after"] <= 60

    lockouts = [record.getMessage() for record in caplog.records if "pairing locked" in record.getMessage()]
    assert any("address 127.0.0.1" in message for message in lockouts)
    assert any("user anna" in message for message in lockouts)
    assert not any(anna_pin in record.getMessage() or bruno_pin in record.getMessage() for record in caplog.records)

    store = UserStore.in_data_dir(tmp_path, FAST_PIN_HASHER)
    try:
        new_pin = store.reset_pin("anna")
    finally:
        store.close()
    async with client_from("127.0.0.4") as anna_browser:
        unlocked = await anna_browser.post(url + "api/pair", json={"pin": new_pin})
    assert unlocked.status_code == 200


async def test_guesses_from_many_addresses_lock_user(agent, tmp_path):
    runner, url, server = agent
    carla_pin = add_user(tmp_path, "carla", ("201",))
    wrong = f"{carla_pin[:3]}{(int(carla_pin[3:]) + 1) % 10**6:06d}"

    statuses = []
    for address in ("127.0.0.11", "127.0.0.12", "127.0.0.13"):
        async with client_from(address) as client:
            for _ in range(2):
                statuses.append((await client.post(url + "api/pair", json={"pin": wrong})).status_code)
    async with client_from("127.0.0.14") as carla_browser:
        carla = await carla_browser.post(url + "api/pair", json={"pin": carla_pin})

    # No address reached its limit, but carla's six failures did.
    assert statuses == [401] * 6
    assert carla.status_code == 429
    assert carla.json()["code"] == "pairing_locked"


async def test_cross_site_requests_rejected(agent, tmp_path):
    runner, url, server = agent
    pin = add_user(tmp_path, "anna", ("201",))
    anna = await pair(url, pin)

    async with httpx.AsyncClient() as client:
        foreign_pair = await client.post(url + "api/pair", json={"pin": pin}, headers={"Origin": "http://evil.example"})
        cross_site = await client.post(url + "api/pair", json={"pin": pin}, headers={"Sec-Fetch-Site": "cross-site"})
        other_scheme = await client.post(
            url + "api/pair", json={"pin": pin}, headers={"Origin": url.rstrip("/").replace("http", "https")}
        )
        post_without_cookie = await client.post(url + "api/calls/c-1/done", json={})
        get_without_cookie = await client.get(url + "api/history")
        wrong_cookie = await client.get(url + "api/history", headers={"Cookie": "ringboard_device=" + "A" * 43})
        same_origin = await client.post(
            url + "api/calls/c-1/done", json={}, headers={**anna.header, "Origin": url.rstrip("/")}
        )

    assert foreign_pair.status_code == 403
    assert foreign_pair.json()["code"] == "origin_rejected"
    assert cross_site.status_code == 403
    assert other_scheme.status_code == 403
    assert post_without_cookie.status_code == 401
    assert post_without_cookie.json()["code"] == "unauthenticated"
    assert get_without_cookie.status_code == 401
    assert wrong_cookie.status_code == 401
    # Past the guard: the route does not exist (yet), which is a 404, not a 401 or 403.
    assert same_origin.status_code == 404
    assert [device.id for device in runner.users.devices()] == [anna.device_id]

    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(events_url(url), origin="http://evil.example", additional_headers=anna.header):
            pass
    with pytest.raises(websockets.exceptions.ConnectionClosed) as no_cookie:
        async with websockets.connect(events_url(url), origin=url.rstrip("/")) as socket:
            await socket.recv()
    assert no_cookie.value.rcvd.code == 4401


SECURITY_PATHS = ["", "app/boot.js", "app/style.css", "app/ui.zip", "sw.js", "healthz", "metrics", "api/history", "nothing-here"]


@pytest.mark.parametrize("path", SECURITY_PATHS)
async def test_security_headers_everywhere(agent, path):
    runner, url, server = agent

    async with httpx.AsyncClient() as client:
        response = await client.get(url + path)

    policy = response.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in response.headers
    assert "server" not in response.headers


async def test_vendor_file_has_security_headers(agent):
    runner, url, server = agent
    from agent.app import PYODIDE_BASE, PYODIDE_DIR

    if not (PYODIDE_DIR / "package.json").is_file():
        pytest.skip("Pyodide is not unpacked; run scripts/setup")
    async with httpx.AsyncClient() as client:
        response = await client.get(url + PYODIDE_BASE.lstrip("/") + "package.json")

    assert response.status_code == 200
    assert "immutable" in response.headers["cache-control"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_api_responses_not_cached(agent, tmp_path):
    runner, url, server = agent
    anna = await pair(url, add_user(tmp_path, "anna", ("201",)))

    async with httpx.AsyncClient() as client:
        history = await client.get(url + "api/history", headers=anna.header)

    assert history.headers["cache-control"] == "no-store"


async def test_pairing_matches_protocol_examples(agent, tmp_path):
    from tests.webapp.test_protocol_examples import load_examples

    runner, url, server = agent
    examples = load_examples()
    pin = add_user(tmp_path, "anna", ("201",))

    async with httpx.AsyncClient() as client:
        wrong = await client.post(url + "api/pair", json={**examples["pair-request"], "pin": pin[:3] + "000000"})
        right = await client.post(url + "api/pair", json={**examples["pair-request"], "pin": pin})

    expected = examples["pair-response"]
    assert right.status_code == 200
    assert sorted(right.json()) == sorted(expected)
    assert {key: type(value) for key, value in right.json().items()} == {key: type(value) for key, value in expected.items()}
    if pin[3:] != "000000":
        assert wrong.json() == examples["error-pin-invalid"]
    assert sorted(examples["error-pairing-locked"]["params"]) == ["retry_after"]

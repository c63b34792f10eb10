"""The agent's link to the lab's Kamailio: digest authentication and UDP, TCP and TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.lab import Lab
from agent.runner import AgentRunner
from tests.support.agent_lab import (
    agent_config,
    expect_outcomes,
    finish,
    health_ok,
    next_caller,
    place,
    wait_for,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed: run scripts/setup"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab") / "lab") as running:
        yield running


def registered_contacts(lab: Lab, user: str) -> list[str]:
    """Ask Kamailio's registrar for the bindings of `user` (a REGISTER without Contact)."""
    call_id = uuid.uuid4().hex
    aor = f"sip:{user}@{lab.domain}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        request = (
            f"REGISTER sip:{lab.domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{lab.domain}>;tag={call_id[:8]}\r\n"
            f"To: <{aor}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 REGISTER\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(3.0)
        sock.sendto(request.encode(), lab.sip_address)
        reply = sock.recv(65535).decode(errors="replace")
    assert reply.startswith("SIP/2.0 200"), reply.splitlines()[0]
    return [line for line in reply.split("\r\n") if line.lower().startswith(("contact:", "m:"))]


async def test_wrong_password_reported_as_auth_failed(lab: Lab, tmp_path: Path) -> None:
    runner = AgentRunner(agent_config(tmp_path, lab, password="not-the-password"))
    url = await runner.start()
    try:
        await wait_for(
            lambda: all(item["state"] == "failing" for item in runner.service.health()["subscriptions"]),
            10.0,
            "every subscription to fail",
        )
        async with httpx.AsyncClient() as client:
            response = await client.get(url + "healthz")
    finally:
        await runner.stop()

    assert response.status_code == 503
    reasons = {item["extension"]: item["reason"] for item in response.json()["subscriptions"]}
    # Kamailio's auth_challenge rejects SUBSCRIBE with 407 Proxy Authentication Required.
    assert reasons == {extension: {"code": "auth_failed", "status": 407} for extension in ("201", "202", "203")}


async def test_right_password_subscribes_and_registers(lab: Lab, tmp_path: Path) -> None:
    runner = AgentRunner(agent_config(tmp_path, lab, register=True))
    await runner.start()
    try:
        await wait_for(lambda: health_ok(runner), 10.0, "the subscriptions to become active")
        await wait_for(lambda: bool(registered_contacts(lab, lab.agent_user)), 5.0, "the agent's registration")
        contacts = registered_contacts(lab, lab.agent_user)
        assert "127.0.0.1" in contacts[0]
    finally:
        await runner.stop()
    assert registered_contacts(lab, lab.agent_user) == []


@pytest.mark.parametrize(
    ("transport", "extra"),
    [
        ("udp", {}),
        ("tcp", {}),
        ("tls", {}),
        # The server name is never resolved: every request goes to the outbound proxy.
        ("udp", {"server": "pbx.invalid", "outbound_proxy": "sip:127.0.0.1:{port}"}),
    ],
    ids=["udp", "tcp", "tls", "udp-outbound-proxy"],
)
async def test_call_observed_over_transport(lab: Lab, tmp_path: Path, transport: str, extra: dict[str, str]) -> None:
    sip = {key: value.format(port=lab.sip_port) for key, value in extra.items()}
    runner = AgentRunner(agent_config(tmp_path, lab, transport=transport, **sip))
    await runner.start()
    try:
        await wait_for(lambda: health_ok(runner), 10.0, f"the subscriptions over {transport} to become active")
        answered, missed = next_caller(), next_caller()
        calls = await asyncio.gather(
            place(lab, to="201", caller=answered, answer_after=1.0, talk=1.0),
            place(lab, to="202", caller=missed, answer_after=None, cancel_after=1.5),
        )
        for handle in calls:
            await finish(handle)
        await expect_outcomes(runner, {answered: "answered", missed: "missed"})
    finally:
        await runner.stop()

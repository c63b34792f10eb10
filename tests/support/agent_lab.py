"""Helpers for tests that run the whole agent against the Kamailio lab."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.lab import Lab
from agent.lab.calls import CallHandle
from agent.runner import AgentRunner

EXTENSIONS = ("201", "202", "203")

# Caller numbers unique within a test run, so each lab call is found in the history.
_numbers = itertools.count(1)


def next_caller() -> str:
    """Return a Swiss number no other call of this run uses."""
    return f"+4144{next(_numbers) + 1000000:07d}"


def agent_config(tmp_path: Path, lab: Lab, *, transport: str = "udp", password: str | None = "lab", **sip: Any) -> Config:
    """Return a configuration for the lab's agent account over `transport`.

    `password` "lab" stands for the lab's real password; None leaves it out.
    """
    host, port = lab.tls_address if transport == "tls" else lab.sip_address
    settings = SipSettings(
        server=host,
        port=port,
        transport=transport,
        domain=lab.domain,
        user=lab.agent_user,
        password=lab.agent_password if password == "lab" else password,
        extensions=EXTENSIONS,
        pbx="kamailio",
        listen_host="127.0.0.1",
        listen_port=0,
        ca_file=str(lab.ca_file) if transport == "tls" else "",
    )
    return Config(
        agent=AgentSettings(data_dir=tmp_path / "var"),
        http=HttpSettings(port=0),
        sip=dataclasses.replace(settings, **sip),
    )


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Wait until `predicate()` is true; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


def health_ok(runner: AgentRunner) -> bool:
    return runner.service.health()["status"] == "ok"


def ended_calls(runner: AgentRunner) -> dict[str, dict[str, Any]]:
    """Return the ended calls of the history by caller number (the remote's E.164 form)."""
    calls = runner.history.recent_calls(200)
    return {call["remote"]["e164"] or call["remote"]["number"]: call for call in calls}


def active_numbers(runner: AgentRunner, state: str | None = None) -> set[str]:
    """Return the caller numbers of live calls, or of those in one state ("connected")."""
    return {
        call["remote"]["e164"] or call["remote"]["number"]
        for call in runner.history.active_calls()
        if state is None or call["state"] == state
    }


async def finish(handle: CallHandle, timeout: float = 40.0) -> None:
    """Wait for a lab call's SIPp process and check that the call went as planned."""
    code = await asyncio.to_thread(handle.wait, timeout)
    assert code == 0, f"call {handle.call_id} to {handle.plan.to}: sipp exit code {code}: {handle.error_log()}"


async def place(lab: Lab, **plan: Any) -> CallHandle:
    return await asyncio.to_thread(lambda: lab.call(**plan))


async def expect_outcomes(runner: AgentRunner, expected: dict[str, str], timeout: float = 15.0) -> None:
    """Wait until every caller number has an ended call with the expected outcome."""

    def done() -> bool:
        calls = ended_calls(runner)
        return all(number in calls for number in expected)

    try:
        await wait_for(done, timeout, "the calls in the history")
    except AssertionError:
        pass  # The comparison below names what is missing.
    calls = ended_calls(runner)
    outcomes = {number: calls.get(number, {}).get("outcome") for number in expected}
    assert outcomes == expected, f"outcomes {outcomes}; ended calls in the history: {sorted(calls)}"

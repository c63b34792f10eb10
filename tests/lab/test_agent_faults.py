"""The agent keeps watching through PBX faults, on real Kamailio and SIPp processes.

Each test places calls before, during and after the fault, and checks that every one
ends in the history with the right outcome.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from agent.runner import AgentRunner
from tests.support.agent_lab import (
    active_numbers,
    agent_config,
    expect_outcomes,
    finish,
    health_ok,
    next_caller,
    place,
    wait_for,
)
from tests.support.lossy_relay import LossyRelay

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed: run scripts/setup"),
]

# The back-off cap the tests configure, so that recovery is quick to wait for.
RETRY_MAX_SECONDS = 2


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path / "lab") as running:
        yield running


@pytest.mark.timeout(90)
async def test_pbx_killed_mid_call_over_tcp(lab: Lab, tmp_path: Path) -> None:
    runner = AgentRunner(agent_config(tmp_path, lab, transport="tcp", retry_max=RETRY_MAX_SECONDS))
    await runner.start()
    try:
        await wait_for(lambda: health_ok(runner), 10.0, "the subscriptions to become active")
        before, across, after_answered, after_missed = (next_caller() for _ in range(4))

        await finish(await place(lab, to="201", caller=before, answer_after=1.0, talk=1.0))
        # The call is connected when Kamailio dies. The caller hangs up once it is back,
        # and the BYE passes by its Record-Route although the new process has no dialog.
        long_call = await place(lab, to="202", caller=across, answer_after=1.0, talk=6.0)
        await wait_for(lambda: across in active_numbers(runner, "connected"), 10.0, "the long call to be answered")

        await asyncio.to_thread(lab.restart_pbx, kill=True, down_seconds=1.0)
        back_up = time.monotonic()
        recovered = await wait_for(lambda: health_ok(runner), 4 * RETRY_MAX_SECONDS, "re-subscription after the restart")
        assert recovered < 2 * RETRY_MAX_SECONDS

        await finish(long_call)
        calls = [
            await place(lab, to="201", caller=after_answered, answer_after=1.0, talk=1.0),
            await place(lab, to="203", caller=after_missed, answer_after=None, cancel_after=1.5),
        ]
        for handle in calls:
            await finish(handle)
        await expect_outcomes(
            runner,
            {before: "answered", across: "answered", after_answered: "answered", after_missed: "missed"},
        )
        assert runner.history.active_calls() == []
        assert time.monotonic() - back_up > recovered
    finally:
        await runner.stop()


@pytest.mark.timeout(90)
async def test_silently_dropped_subscription_renewed_at_refresh(lab: Lab, tmp_path: Path) -> None:
    # Kamailio grants what is asked; the agent refreshes at 80 % of it.
    expires = 10
    runner = AgentRunner(agent_config(tmp_path, lab, transport="udp", expires=expires, retry_max=RETRY_MAX_SECONDS))
    await runner.start()
    try:
        await wait_for(lambda: health_ok(runner), 10.0, "the subscriptions to become active")
        before, spanning, after = (next_caller() for _ in range(3))
        await finish(await place(lab, to="201", caller=before, answer_after=1.0, talk=1.0))

        # A clean restart: over UDP the agent hears nothing, and the new Kamailio has no watchers.
        await asyncio.to_thread(lab.restart_pbx)
        restarted = time.monotonic()
        documents_before = runner.service.tracker.active_calls()
        assert documents_before == []

        # This call outlasts the blind time until the next refresh, so the new
        # subscription's first NOTIFY lists it.
        long_call = await place(lab, to="202", caller=spanning, answer_after=1.0, talk=expires + 2.0)
        await wait_for(lambda: spanning in active_numbers(runner), expires + 5.0, "the call seen after the refresh")
        assert time.monotonic() - restarted <= expires + 5.0
        assert health_ok(runner)

        await finish(long_call)
        await finish(await place(lab, to="203", caller=after, answer_after=None, cancel_after=1.5))
        await expect_outcomes(runner, {before: "answered", spanning: "answered", after: "missed"})
    finally:
        await runner.stop()


@pytest.mark.timeout(120)
async def test_lossy_udp_still_yields_every_call(lab: Lab, tmp_path: Path) -> None:
    relay = LossyRelay(lab.sip_address, loss=0.2, seed=7)
    host, port = await relay.start()
    runner = AgentRunner(agent_config(tmp_path, lab, transport="udp", server=host, port=port))
    await runner.start()
    try:
        await wait_for(lambda: health_ok(runner), 20.0, "the subscriptions to become active through the relay")
        expected: dict[str, str] = {}
        handles = []
        # Ringing lasts a few seconds, so a lost NOTIFY is retransmitted before the next one.
        plans = [
            ("201", "answered", {"answer_after": 3.0, "talk": 2.0}),
            ("202", "missed", {"answer_after": None, "cancel_after": 3.5}),
            ("203", "answered", {"answer_after": 3.0, "talk": 2.0}),
            ("201", "missed", {"answer_after": None, "cancel_after": 3.5}),
            ("202", "answered", {"answer_after": 3.0, "talk": 2.0}),
            ("203", "missed", {"answer_after": None, "cancel_after": 3.5}),
        ]
        for extension, outcome, timing in plans:
            caller = next_caller()
            expected[caller] = outcome
            handles.append(await place(lab, to=extension, caller=caller, **timing))
            await asyncio.sleep(2.0)
        for handle in handles:
            await finish(handle)
        await expect_outcomes(runner, expected, timeout=30.0)
        assert relay.counts.dropped_to_pbx > 0
        assert relay.counts.dropped_to_agent > 0
    finally:
        await runner.stop()
        relay.close()

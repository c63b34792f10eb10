"""The lab as `ringboard` runs it: Kamailio's dialog-info and its SIP mirrored as HEP, merged.

One lab (Kamailio, phones 201-203, ring group 600, a carrier) mirrors its SIP as HEP v3
to the agent's receiver on 127.0.0.1, built as agent/cli.py `_run_lab` builds it. Each
test starts its own agent with sources "subscribe" and "hep", pairs a page for 201-203
and reads the `call` frames from its WebSocket. HEP adds what dialog-info lacks: the
caller's display name and why a call was missed. The page must still see one call per
extension, not one per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from agent.lab import Lab
from agent.lab.agent_config import LAB_EXTENSIONS, lab_agent_config
from agent.lab.calls import CallHandle
from agent.lab.processes import free_port
from agent.runner import AgentRunner
from tests.support.pairing import paired_device

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("kamailio") is None,
        reason="sipp or kamailio not installed: run scripts/setup",
    ),
    pytest.mark.timeout(120),
]

EXTENSIONS = LAB_EXTENSIONS
CALLER = "+41441234567"
CALLER_NAME = "Max Muster"

# Time for every call of a test to end on the page once SIPp has finished.
ENDED_TIMEOUT_SECONDS = 20.0
SUBSCRIBED_TIMEOUT_SECONDS = 10.0
CALL_TIMEOUT_SECONDS = 30.0


class Page:
    """The `call` frames one page receives, kept in order while the test runs."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def read(self, socket: Any) -> None:
        async for frame in socket:
            message = json.loads(frame)
            if message["type"] == "call":
                self.messages.append(message)
                self._changed.set()

    async def wait_ended(self, *extensions: str) -> None:
        """Wait until every listed extension has an ended call."""
        deadline = time.monotonic() + ENDED_TIMEOUT_SECONDS
        while not all(self.ended(extension) for extension in extensions):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {ENDED_TIMEOUT_SECONDS:.0f} s waiting for an ended call on each of {extensions}; "
                    f"frames: {self.frames()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def call_ids(self, extension: str) -> list[str]:
        """Return the ids of every call the page saw on an extension, in first-seen order."""
        return list(dict.fromkeys(m["call"]["id"] for m in self.messages if m["call"]["extension"] == extension))

    def ended(self, extension: str) -> list[dict[str, Any]]:
        return [
            self.latest(call_id)
            for call_id in self.call_ids(extension)
            if any(m["event"] == "ended" for m in self.messages if m["call"]["id"] == call_id)
        ]

    def events(self, call_id: str) -> list[str]:
        return [m["event"] for m in self.messages if m["call"]["id"] == call_id]

    def latest(self, call_id: str) -> dict[str, Any]:
        return [m["call"] for m in self.messages if m["call"]["id"] == call_id][-1]

    def frames(self) -> list[tuple[Any, ...]]:
        """Return the main fields of each frame, short enough for an assertion message."""
        return [
            (
                m["call"]["extension"], m["event"], m["call"]["id"][:8], m["call"].get("state"),
                (m["call"].get("remote") or {}).get("name"), m["call"].get("outcome"),
                m["call"].get("confidence"), m["call"].get("outcome_reason"), m["call"].get("answered_by"),
            )
            for m in self.messages
        ]


@pytest.fixture(scope="module")
def hep_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, hep_port: int) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab"), hep_address=("127.0.0.1", hep_port)) as running:
        yield running


@pytest.fixture
async def page(lab: Lab, hep_port: int, tmp_path: Path) -> AsyncIterator[Page]:
    config = lab_agent_config(lab, tmp_path, hep_port, http_port=0)
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        await wait_subscribed(runner)
        device = await paired_device(url, tmp_path, extensions=EXTENSIONS)
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), SUBSCRIBED_TIMEOUT_SECONDS))
            assert snapshot["type"] == "snapshot"
            page = Page()
            reader = asyncio.create_task(page.read(socket))
            yield page
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    finally:
        await runner.stop()


async def wait_subscribed(runner: AgentRunner) -> None:
    deadline = time.monotonic() + SUBSCRIBED_TIMEOUT_SECONDS
    while runner.service.health()["status"] != "ok":
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for active subscriptions: {runner.service.health()}")
        await asyncio.sleep(0.05)


async def place_and_finish(lab: Lab, **plan: Any) -> None:
    handle: CallHandle = await asyncio.to_thread(lab.call, **plan)
    code = await asyncio.to_thread(handle.wait, CALL_TIMEOUT_SECONDS)
    assert code == 0, f"sipp exit code {code}: {handle.error_log()}"


def only_call(page: Page, extension: str) -> dict[str, Any]:
    """Return the one call the page saw on an extension, and fail when it saw more than one."""
    ids = page.call_ids(extension)
    assert len(ids) == 1, f"{len(ids)} calls on {extension}, expected one; frames: {page.frames()}"
    return page.latest(ids[0])


async def test_answered_call_has_callers_name(lab: Lab, page: Page) -> None:
    await place_and_finish(lab, to="201", caller=CALLER, display=CALLER_NAME, answer_after=2.0, talk=2.0)
    await page.wait_ended("201")

    call = only_call(page, "201")
    frames = page.frames()
    assert page.events(call["id"]) == ["ringing", "connected", "ended"], frames
    assert call["direction"] == "inbound", frames
    assert call["remote"]["number"] == CALLER, frames
    # With "subscribe" alone this lab's page shows no name, so it comes from the INVITE's From.
    assert call["remote"]["name"] == CALLER_NAME, frames
    assert call["outcome"] == "answered", frames
    assert call["confidence"] == "certain", frames
    assert page.call_ids("202") == [], frames
    assert page.call_ids("203") == [], frames


async def test_missed_call_has_reason(lab: Lab, page: Page) -> None:
    await place_and_finish(lab, to="201", caller=CALLER, display=CALLER_NAME, answer_after=None, cancel_after=2.0)
    await page.wait_ended("201")

    call = only_call(page, "201")
    frames = page.frames()
    assert page.events(call["id"]) == ["ringing", "ended"], frames
    assert call["outcome"] == "missed", frames
    assert call["confidence"] == "certain", frames
    # The caller's CANCEL in the mirrored SIP shows why the call was missed.
    assert call["outcome_reason"] == "caller_hangup", frames
    assert call["answered_at"] is None, frames
    assert call["remote"]["name"] == CALLER_NAME, frames


async def test_ring_group_answered_elsewhere(lab: Lab, page: Page) -> None:
    await place_and_finish(
        lab, to=lab.ring_group, caller=CALLER, display=CALLER_NAME, answer_after={"201": 2.0, "202": None}, talk=1.0
    )
    await page.wait_ended("201", "202")

    answered = only_call(page, "201")
    elsewhere = only_call(page, "202")
    frames = page.frames()
    assert page.events(answered["id"]) == ["ringing", "connected", "ended"], frames
    assert answered["outcome"] == "answered", frames
    assert answered["confidence"] == "certain", frames
    assert page.events(elsewhere["id"])[0] == "ringing", frames
    assert "connected" not in page.events(elsewhere["id"]), frames
    assert elsewhere["outcome"] == "answered_elsewhere", frames
    assert elsewhere["confidence"] == "certain", frames
    assert elsewhere["answered_by"] == "201", frames
    assert elsewhere["outcome_reason"] == "ring_group", frames
    assert answered["remote"]["name"] == CALLER_NAME, frames
    assert elsewhere["remote"]["name"] == CALLER_NAME, frames

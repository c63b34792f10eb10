"""Every kind of call Kamailio's dialog-info can show, placed with SIPp and read from the page's WebSocket.

One lab (Kamailio, phones 201-203, ring group 600, a carrier) serves the whole module;
each test starts its own agent against it and pairs a page for 201, 202 and 203.
Kamailio publishes no hold, transfer or response code in dialog-info, so those calls
are not here, and a missed call carries no reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.lab import Lab
from agent.lab.calls import CallHandle
from agent.runner import AgentRunner
from tests.support.pairing import paired_device

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("kamailio") is None,
        reason="sipp or kamailio not installed: run scripts/setup",
    ),
    pytest.mark.timeout(60),
]

EXTENSIONS = ("201", "202", "203")
CALLER = "+41441234567"
OTHER_CALLER = "+41447654321"
CARRIER_NUMBER = "+41791234567"

# A call's last NOTIFY reaches the agent within milliseconds on loopback; this leaves
# room for a loaded machine.
EVENT_TIMEOUT_SECONDS = 10.0
CALL_TIMEOUT_SECONDS = 30.0


class Page:
    """The `call` messages one page receives, collected while the test runs."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    async def read(self, socket: Any) -> None:
        async for frame in socket:
            message = json.loads(frame)
            if message["type"] == "call":
                self.messages.append(message)
                self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], description: str) -> None:
        deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the page did not get {description}; it got {self.summary()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_ended(self, extension: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` calls of an extension have ended; return their last forms, oldest first."""
        await self.wait_for(lambda: len(self.ended(extension)) >= count, f"{count} ended calls on {extension}")
        return self.ended(extension)

    def ended(self, extension: str) -> list[dict[str, Any]]:
        ended_ids = [m["call"]["id"] for m in self.messages if m["event"] == "ended" and m["call"]["extension"] == extension]
        return [self.latest(call_id) for call_id in ended_ids]

    def events(self, call_id: str) -> list[str]:
        return [message["event"] for message in self.messages if message["call"]["id"] == call_id]

    def latest(self, call_id: str) -> dict[str, Any]:
        return [message["call"] for message in self.messages if message["call"]["id"] == call_id][-1]

    def max_live_calls(self, extension: str) -> int:
        live: set[str] = set()
        maximum = 0
        for message in self.messages:
            call = message["call"]
            if call["extension"] != extension:
                continue
            if call["state"] == "ended":
                live.discard(call["id"])
            else:
                live.add(call["id"])
            maximum = max(maximum, len(live))
        return maximum

    def summary(self) -> list[tuple[str, str, str]]:
        return [(m["call"]["extension"], m["event"], m["call"]["id"][:8]) for m in self.messages]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture
async def page(lab: Lab, tmp_path: Path) -> AsyncIterator[Page]:
    host, port = lab.sip_address
    config = Config(
        agent=AgentSettings(data_dir=tmp_path),
        http=HttpSettings(port=0),
        sip=SipSettings(
            server=host, port=port, domain=lab.domain, user=lab.agent_user, password=lab.agent_password,
            extensions=EXTENSIONS, pbx="kamailio", listen_host="127.0.0.1", listen_port=0,
        ),
    )
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        await wait_subscribed(runner)
        device = await paired_device(url, tmp_path, extensions=EXTENSIONS)
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), EVENT_TIMEOUT_SECONDS))
            assert snapshot["type"] == "snapshot"
            page = Page()
            reader = asyncio.create_task(page.read(socket))
            yield page
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    finally:
        await runner.stop()


async def wait_subscribed(runner: AgentRunner) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while runner.service.health()["status"] != "ok":
        if time.monotonic() > deadline:
            raise AssertionError(f"subscriptions not active: {runner.service.health()}")
        await asyncio.sleep(0.05)


async def place(lab: Lab, **plan: Any) -> CallHandle:
    return await asyncio.to_thread(lab.call, **plan)


async def finish(handle: CallHandle) -> None:
    code = await asyncio.to_thread(handle.wait, CALL_TIMEOUT_SECONDS)
    assert code == 0, f"sipp exit code {code}: {handle.error_log()}"


# Incoming calls ---------------------------------------------------------------------------


async def test_incoming_answered(lab: Lab, page: Page) -> None:
    await finish(await place(lab, to="201", caller=CALLER, answer_after=1.0, talk=1.0))

    (call,) = await page.wait_ended("201")

    assert page.events(call["id"]) == ["ringing", "connected", "ended"]
    assert call["direction"] == "inbound"
    assert (call["outcome"], call["confidence"]) == ("answered", "certain")
    assert call["remote"]["number"] == CALLER
    assert call["remote"]["e164"] == CALLER
    assert call["answered_at"] is not None
    assert 0.5 <= call["duration"] <= 3.0
    assert page.ended("202") == []


@pytest.mark.parametrize("ring_seconds", [1.0, 3.0], ids=["caller_hangs_up", "no_answer"])
async def test_incoming_missed(lab: Lab, page: Page, ring_seconds: float) -> None:
    await finish(await place(lab, to="201", caller=CALLER, answer_after=None, cancel_after=ring_seconds))

    (call,) = await page.wait_ended("201")

    # Kamailio's `terminated` carries no event or code, so why it was missed is unknown.
    assert page.events(call["id"]) == ["ringing", "ended"]
    assert (call["outcome"], call["confidence"]) == ("missed", "certain")
    assert call["outcome_reason"] is None
    assert call["answered_at"] is None
    assert call["duration"] is None
    assert call["remote"]["number"] == CALLER


async def test_incoming_withheld_missed(lab: Lab, page: Page) -> None:
    await finish(await place(lab, to="202", withheld=True, cancel_after=1.0))

    (call,) = await page.wait_ended("202")

    assert call["outcome"] == "missed"
    assert call["remote"]["withheld"] is True
    assert call["remote"]["number"] is None
    assert call["remote"]["uri"] is None


async def test_ring_group_answered_by_one_member(lab: Lab, page: Page) -> None:
    handle = await place(lab, to=lab.ring_group, caller=CALLER, answer_after={"201": 1.0, "202": None}, talk=1.0)
    await finish(handle)

    (answered,) = await page.wait_ended("201")
    (elsewhere,) = await page.wait_ended("202")

    # "A call that ends unanswered on 202 while 201 answers the same caller is answered
    # by 201 on 202, not missed."
    assert page.events(answered["id"]) == ["ringing", "connected", "ended"]
    assert answered["outcome"] == "answered"
    assert page.events(elsewhere["id"])[0] == "ringing"
    assert page.events(elsewhere["id"])[-1] in ("ended", "updated")
    assert (elsewhere["outcome"], elsewhere["confidence"]) == ("answered_elsewhere", "certain")
    assert (elsewhere["answered_by"], elsewhere["outcome_reason"]) == ("201", "ring_group")
    assert answered["called"] == elsewhere["called"] == lab.ring_group


async def test_call_waiting_two_calls_at_once(lab: Lab, page: Page) -> None:
    first = await place(lab, to="201", caller=CALLER, answer_after=0.5, talk=4.0)
    await page.wait_for(lambda: any(m["event"] == "connected" for m in page.messages), "the first call connected")
    second = await place(lab, to="201", caller=OTHER_CALLER, answer_after=None, cancel_after=1.5)
    await finish(second)
    await finish(first)

    waiting_missed, first_answered = await page.wait_ended("201", count=2)

    assert page.max_live_calls("201") == 2
    assert first_answered["remote"]["number"] == CALLER
    assert first_answered["outcome"] == "answered"
    assert waiting_missed["remote"]["number"] == OTHER_CALLER
    assert waiting_missed["outcome"] == "missed"
    assert page.events(waiting_missed["id"]) == ["ringing", "ended"]


# Calls between and from extensions ----------------------------------------------------------


async def test_internal_call_between_extensions(lab: Lab, page: Page) -> None:
    await finish(await place(lab, to="201", caller="202", answer_after=1.0, talk=1.0))

    (callee,) = await page.wait_ended("201")
    (caller,) = await page.wait_ended("202")

    assert (callee["direction"], callee["remote"]["number"]) == ("internal", "202")
    assert (caller["direction"], caller["remote"]["number"]) == ("internal", "201")
    assert page.events(callee["id"]) == ["ringing", "connected", "ended"]
    assert page.events(caller["id"]) == ["ringing", "connected", "ended"]
    assert callee["outcome"] == caller["outcome"] == "answered"
    assert callee["answered_by"] is None


async def test_outgoing_answered(lab: Lab, page: Page) -> None:
    await finish(await place(lab, to=CARRIER_NUMBER, caller="203", answer_after=1.0, talk=1.0))

    (call,) = await page.wait_ended("203")

    assert page.events(call["id"]) == ["ringing", "connected", "ended"]
    assert call["direction"] == "outbound"
    assert call["remote"]["number"] == CARRIER_NUMBER
    assert (call["outcome"], call["confidence"]) == ("answered", "certain")
    assert call["duration"] is not None


async def test_outgoing_not_answered(lab: Lab, page: Page) -> None:
    await finish(await place(lab, to=CARRIER_NUMBER, caller="203", answer_after=None, cancel_after=1.5))

    (call,) = await page.wait_ended("203")

    # Kamailio reports no response code, so the failure has no reason.
    assert page.events(call["id"]) == ["ringing", "ended"]
    assert call["direction"] == "outbound"
    assert call["remote"]["number"] == CARRIER_NUMBER
    assert (call["outcome"], call["confidence"]) == ("failed", "certain")
    assert call["outcome_reason"] is None
    assert call["answered_at"] is None

"""Kamailio mirrors its SIP as HEP to the receiver; the raw-SIP engine rebuilds each call.

Kamailio 5.6 runs siptrace with `trace_mode=1` and an auth key, SIPp plays phones and
callers, everything on 127.0.0.1 (needs scripts/setup).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import uuid
from collections.abc import Callable

import pytest

from agent.lab.processes import free_port
from sip.message import Request, Response
from sip.model import CallEvent, CallState, EventKind, Outcome
from sip.hep import HepPacket
from sip.raw import RawCallEngine
from sip.sources.hep import HepReceiver
from tests.support.hep_lab import EXTENSIONS, HEP_AUTH_KEY, HepLab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed: run scripts/setup"),
]

CALLER = "+41441234567"

# Kamailio's HEP copy of the last message reaches the receiver within milliseconds on
# loopback; the margin covers a loaded machine.
EVENT_TIMEOUT_SECONDS = 10.0


class Observer:
    """The receiver's callback: every mirrored message goes through one engine."""

    def __init__(self) -> None:
        numbers = itertools.count(1)
        self.engine = RawCallEngine(EXTENSIONS, id_factory=lambda: f"call-{next(numbers)}")
        self.events: list[CallEvent] = []
        self.methods: list[str] = []

    def __call__(self, message: Request | Response, packet: HepPacket) -> None:
        self.methods.append(message.method if isinstance(message, Request) else str(message.status))
        assert packet.timestamp is not None
        self.events.extend(self.engine.observe(message, packet.source, packet.destination, packet.timestamp))

    def calls(self, extension: str) -> list[list[CallEvent]]:
        """Return each call of an extension as the list of its events, in order."""
        by_id: dict[str, list[CallEvent]] = {}
        for event in self.events:
            if event.call.extension == extension:
                by_id.setdefault(event.call.id, []).append(event)
        return list(by_id.values())

    async def until(self, predicate: Callable[[], bool], timeout: float = EVENT_TIMEOUT_SECONDS) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out; events so far: {[(e.call.extension, str(e.kind)) for e in self.events]}")
            await asyncio.sleep(0.02)

    def ended(self, extension: str, count: int = 1) -> Callable[[], bool]:
        return lambda: sum(1 for call in self.calls(extension) if call[-1].kind == EventKind.ENDED) >= count


@pytest.fixture(scope="module")
def hep_lab(tmp_path_factory):
    lab = HepLab(tmp_path_factory.mktemp("hep-lab"), free_port())
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture
async def observer(hep_lab):
    watcher = Observer()
    receiver = HepReceiver(watcher, host="127.0.0.1", port=hep_lab.hep_port, auth_key=HEP_AUTH_KEY.encode(), tcp=False)
    await receiver.start()
    yield watcher
    await receiver.stop()
    assert receiver.counters.invalid_packets == 0
    assert receiver.counters.invalid_sip == 0


async def finish(*processes) -> None:
    for process in processes:
        code = await asyncio.to_thread(process.wait)
        assert code == 0, f"sipp {process.name} exited with {code}:\n{process.error_log()}"


def kinds(call: list[CallEvent]) -> list[EventKind]:
    return [event.kind for event in call]


async def test_answered_call(hep_lab, observer):
    phone = hep_lab.phone("201", "uas_answer.xml")
    caller = hep_lab.caller("uac_call.xml", "201", pause_ms=500)
    await finish(caller, phone)
    await observer.until(observer.ended("201"))

    (call,) = observer.calls("201")
    assert kinds(call) == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]
    ended = call[-1].call
    assert ended.outcome == Outcome.ANSWERED
    assert ended.remote.number == CALLER
    assert ended.remote.display_name == "Max Muster"
    assert 0.4 < ended.duration_seconds < 3


async def test_missed_call(hep_lab, observer):
    phone = hep_lab.phone("201", "uas_noanswer.xml")
    caller = hep_lab.caller("uac_cancel.xml", "201", pause_ms=800)
    await finish(caller, phone)
    await observer.until(observer.ended("201"))

    ended = observer.calls("201")[0][-1].call
    assert (ended.outcome, ended.outcome_reason) == (Outcome.MISSED, "caller_hangup")


@pytest.mark.parametrize(("code", "reason", "outcome"), [
    ("486", "Busy Here", Outcome.BUSY),
    ("603", "Decline", Outcome.REJECTED),
])
async def test_refused_call(hep_lab, observer, code, reason, outcome):
    phone = hep_lab.phone("201", "uas_refuse.xml", template={"refuse_code": code, "refuse_reason": reason})
    caller = hep_lab.caller("uac_refused.xml", "201")
    await finish(caller, phone)
    await observer.until(observer.ended("201"))

    ended = observer.calls("201")[0][-1].call
    assert (ended.outcome, ended.outcome_reason) == (outcome, code)


async def test_hold_and_resume(hep_lab, observer):
    phone = hep_lab.phone("201", "uas_answer.xml")
    caller = hep_lab.caller("uac_hold.xml", "201", pause_ms=300)
    await finish(caller, phone)
    await observer.until(observer.ended("201"))

    (call,) = observer.calls("201")
    assert kinds(call) == [EventKind.RINGING, EventKind.CONNECTED, EventKind.HELD, EventKind.RESUMED, EventKind.ENDED]
    assert call[2].call.state == CallState.HELD


async def test_ring_group_answered_by_first_member(hep_lab, observer):
    first = hep_lab.phone("201", "uas_answer.xml")
    second = hep_lab.phone("202", "uas_noanswer.xml")
    caller = hep_lab.caller("uac_call.xml", "600", pause_ms=300)
    await finish(caller, first, second)
    await observer.until(lambda: observer.ended("201")() and observer.ended("202")())

    answered, other = observer.calls("201")[0][-1].call, observer.calls("202")[0][-1].call
    assert answered.outcome == Outcome.ANSWERED
    assert (other.outcome, other.answered_by, other.called) == (Outcome.ANSWERED_ELSEWHERE, "201", "600")


async def test_blind_transfer(hep_lab, observer):
    transferor = hep_lab.phone("201", "uas_transferor.xml", {"refer_to": "<sip:202@pbx.local>"}, pause_ms=300)
    target = hep_lab.phone("202", "uas_answer.xml")
    transferee = hep_lab.caller("uac_transferee.xml", "201", pause_ms=1000)
    await observer.until(lambda: "REFER" in observer.methods)
    new_call = hep_lab.caller("uac_referred.xml", "202", {"referred_by": "201", "extra_header": "X-Transfer: blind"},
                              pause_ms=500)
    await finish(transferee, transferor, new_call, target)
    await observer.until(lambda: observer.ended("201")() and observer.ended("202")())

    handed_on = observer.calls("201")[0][-1].call
    assert (handed_on.outcome, handed_on.transferred_to) == (Outcome.TRANSFERRED, "202")
    (received,) = observer.calls("202")
    assert kinds(received) == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]
    assert received[-1].call.remote.number == CALLER
    assert received[-1].call.referred_by == "201"
    assert received[-1].call.outcome == Outcome.ANSWERED


async def test_attended_transfer(hep_lab, observer):
    consult_id = f"consult-{uuid.uuid4().hex[:10]}@127.0.0.1"
    replaces = f"{consult_id};to-tag=ph202-1;from-tag=b201"
    refer_to = f"<sip:202@pbx.local?Replaces={consult_id.replace('@', '%40')}%3Bto-tag%3Dph202-1%3Bfrom-tag%3Db201>"
    transferor = hep_lab.phone("201", "uas_transferor.xml", {"refer_to": refer_to}, pause_ms=1500)
    target = hep_lab.phone("202", "uas_target.xml", calls=2, pause_ms=2500)
    transferee = hep_lab.caller("uac_transferee.xml", "201", pause_ms=1000)
    await observer.until(lambda: any(call[-1].kind == EventKind.CONNECTED for call in observer.calls("201")))
    consult = hep_lab.caller("uac_consult.xml", "202", {"caller": "201", "caller_name": "Anna Keller", "from_tag": "b201"},
                             call_id=consult_id)
    await observer.until(lambda: "REFER" in observer.methods)
    joined = hep_lab.caller("uac_referred.xml", "202", {"referred_by": "201", "extra_header": f"Replaces: {replaces}"},
                            pause_ms=1500)
    await finish(transferee, transferor, consult, joined, target)
    await observer.until(lambda: observer.ended("201", 2)() and observer.ended("202", 2)())

    first, consultation = observer.calls("201")
    assert (first[-1].call.outcome, first[-1].call.transferred_to) == (Outcome.TRANSFERRED, "202")
    assert consultation[-1].call.outcome == Outcome.TRANSFERRED
    assert consultation[-1].call.outcome_reason == "replaced"
    assert consultation[-1].call.transferred_to == CALLER

    consulted, replacing = observer.calls("202")
    assert consulted[-1].call.remote.number == "201"
    assert consulted[-1].call.outcome == Outcome.ANSWERED
    assert kinds(replacing) == [EventKind.CONNECTED, EventKind.ENDED]
    assert replacing[-1].call.remote.number == CALLER

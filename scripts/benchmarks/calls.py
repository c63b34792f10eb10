"""Calls as the fake PBX plays them: scheduled NOTIFYs with callers that identify each call."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.support.fake_pbx import FakePbx, kamailio_document

from .common import cpu_seconds, sleep_until

# Each call rings this long before the caller hangs up (a missed call), so one call is
# two NOTIFYs and two call frames, plus the `crm` frame of its lookup.
RING_SECONDS = 1.0

# After the last NOTIFY, the clients are stopped once the agent has been idle this long.
IDLE_SECONDS = 0.5
DRAIN_TIMEOUT = 60.0

# NOTIFY dialog states and the call events they cause.
EVENT_OF_STATE = {"early": "ringing", "terminated": "ended"}


def caller_number(index: int) -> str:
    """Return a distinct, valid Zurich number per call, so frames match NOTIFYs by number."""
    return f"+41442{index:06d}"


def extension_names(count: int) -> list[str]:
    return [str(2000 + index) for index in range(count)]


@dataclass
class ScheduledNotify:
    at: float
    extension: str
    call: int
    state: str


def call_schedule(first_call: int, calls: int, rate: float, extensions: list[str], start: float) -> list[ScheduledNotify]:
    """Return the NOTIFYs of `calls` calls started at `rate` per second, in time order."""
    schedule = []
    for offset in range(calls):
        index = first_call + offset
        began = start + offset / rate
        extension = extensions[index % len(extensions)]
        schedule.append(ScheduledNotify(began, extension, index, "early"))
        schedule.append(ScheduledNotify(began + RING_SECONDS, extension, index, "terminated"))
    return sorted(schedule, key=lambda notify: notify.at)


async def play_calls(pbx: FakePbx, schedule: list[ScheduledNotify]) -> dict[tuple[str, str], tuple[float, str]]:
    """Send the NOTIFYs on time; return the send time and extension of each (caller number, event)."""
    sent: dict[tuple[str, str], tuple[float, str]] = {}
    for notify in schedule:
        await sleep_until(notify.at)
        number = caller_number(notify.call)
        call_id = f"bench-{notify.call}@127.0.0.1"
        body = kamailio_document(
            notify.extension,
            pbx.next_version(notify.extension),
            [(f"padi-{notify.call}", call_id, notify.state)],
            caller=number,
            local_tag=f"{notify.call}SIPpTag011",
            remote_tag=f"{notify.call}SIPpTag001",
        )
        cseq = pbx.send_notify(notify.extension, body)
        sent_at = pbx.notify_sent_at[(notify.extension, cseq)]
        sent[(number, EVENT_OF_STATE[notify.state])] = (sent_at, notify.extension)
    return sent


async def wait_until_idle(pid: int) -> None:
    """Wait until a process has used no CPU for IDLE_SECONDS (or DRAIN_TIMEOUT passes)."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT
    last = cpu_seconds(pid)
    idle_since = time.perf_counter()
    while time.perf_counter() < deadline:
        await sleep_until(time.perf_counter() + 0.1)
        now_cpu = cpu_seconds(pid)
        if now_cpu - last > 0.005:
            idle_since = time.perf_counter()
        last = now_cpu
        if time.perf_counter() - idle_since >= IDLE_SECONDS:
            return

"""Benchmark 3: 1,000 idle WebSocket clients: the agent's memory per client and fan-out time.

Memory is the agent's resident set (VmRSS of /proc/PID/status) before and after the
clients connect, divided by their number. The agent has served a few clients and calls
before the first reading, so modules loaded on first use are not counted per client.
Fan-out is the time from a NOTIFY leaving the PBX to the last client receiving the call
frame it causes. Every client sees the extension that rings.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from tests.support.fake_pbx import FakePbx

from .calls import call_schedule, play_calls, wait_until_idle
from .common import (
    AgentProcess,
    ClientProcess,
    Figure,
    agent_config,
    checked,
    cpu_seconds,
    free_port,
    percentile,
    rss_kib,
)
from .pairing import ClientPlan, pair_clients
from .profiling import profiled

EXTENSION = "2000"

# With pairing, this many devices share one user: user numbers run out at 900 users.
DEVICES_PER_USER = 10

# Calls of the warm-up before the first memory reading, and the clients of the warm-up.
WARMUP_CALLS = 5
WARMUP_CLIENTS = 20

# Time between two timed events, so each fan-out finishes before the next starts.
EVENT_SPACING = 0.5

# The agent returns freed memory to its allocator, not always to the kernel; readings
# are taken after it has been idle this long.
SETTLE_SECONDS = 1.0


async def idle_clients(count: int, events: int) -> list[Figure]:
    """Connect `count` clients, read the agent's memory, then time `events` fan-outs."""
    plan = [ClientPlan(f"idle{index // DEVICES_PER_USER:03d}", (EXTENSION,)) for index in range(count)]
    pbx = FakePbx()
    pbx_address = await pbx.start()
    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as folder:
        work = Path(folder)
        http_port = free_port()
        config = agent_config(work, http_port, pbx_address, [EXTENSION])
        agent = AgentProcess(config, http_port)
        clients: ClientProcess | None = None
        try:
            await agent.start()
            await pbx.wait_subscribed([EXTENSION], timeout=30)
            pairing = pair_clients(config, work / "var", agent.base_url, plan)

            # Warm up: a few clients and calls, so code loaded on first use is in memory.
            warmup = ClientProcess(agent.events_url, WARMUP_CLIENTS, work, pairing.cookies[:WARMUP_CLIENTS])
            await warmup.start()
            start = time.perf_counter() + 0.1
            await play_calls(pbx, call_schedule(0, WARMUP_CALLS, 1 / EVENT_SPACING, [EXTENSION], start))
            await wait_until_idle(agent.pid)
            await warmup.stop()
            await asyncio.sleep(SETTLE_SECONDS)
            rss_before = rss_kib(agent.pid)

            clients = ClientProcess(agent.events_url, count, work, pairing.cookies)
            await clients.start()
            await wait_until_idle(agent.pid)
            await asyncio.sleep(SETTLE_SECONDS)
            rss_after = rss_kib(agent.pid)

            # One call at a time: its ringing and its ended frame are two timed fan-outs.
            calls = max(1, events // 2)
            start = time.perf_counter() + 0.1
            schedule = call_schedule(WARMUP_CALLS, calls, 1 / (2 * EVENT_SPACING), [EXTENSION], start)
            cpu_before = cpu_seconds(agent.pid)
            async with profiled(agent.pid, "fanout"):
                sent = await play_calls(pbx, schedule)
                await wait_until_idle(agent.pid)
            events_cpu = cpu_seconds(agent.pid) - cpu_before
            rss_events = rss_kib(agent.pid)
            records = await clients.stop()
        finally:
            if clients is not None:
                await clients.kill()
            await agent.stop()
            pbx.close()

    last, first, missing = fan_out_times(records, sent)
    # VmRSS is in KiB; the target is in KB (1000 bytes).
    per_client = (rss_after - rss_before) * 1024 / 1000 / count
    setup = (
        f"{count} idle clients of one extension, {pairing.note}; clients in their own process; "
        f"agent VmRSS {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after connecting, "
        f"{rss_events / 1024:.1f} MiB after the events"
    )
    events_setup = f"{len(sent)} call events (ringing, ended) {EVENT_SPACING:g} s apart to {count} clients, {pairing.note}"
    name = "idle_clients"
    return [
        checked(Figure(name, "agent memory per client", round(per_client, 1), "KB", setup), "< 50 KB", 50),
        Figure(name, "connect time, all clients", round(clients.connect_seconds, 2), "s", setup),
        checked(
            Figure(name, f"fan-out to last of {count}, p50", round(percentile(last, 0.5), 1), "ms", events_setup),
            "< 50 ms",
            50,
        ),
        Figure(name, f"fan-out to last of {count}, max", round(max(last, default=float("nan")), 1), "ms", events_setup),
        Figure(name, "fan-out to first client, p50", round(percentile(first, 0.5), 1), "ms", events_setup),
        # CPU time does not grow when other work on the machine delays the agent, so it
        # compares two versions of the agent better than the times above on a busy machine.
        Figure(name, "agent CPU per event", round(events_cpu / max(1, len(sent)) * 1000, 1), "ms", events_setup),
        Figure(name, "frames missing", missing, f"frames of {len(sent) * count}", events_setup),
    ]


def fan_out_times(records: dict, sent: dict[tuple[str, str], tuple[float, str]]) -> tuple[list[float], list[float], int]:
    """Return per event the ms to the last and to the first client, and the frames missing."""
    messages = records["messages"]
    arrivals: dict[tuple[str, str], list[float]] = {key: [] for key in sent}
    for received in records["received"]:
        for number, arrived in received:
            message = messages[number]
            key = (message.get("number"), message.get("event"))
            if message["type"] == "call" and key in arrivals:
                arrivals[key].append(arrived)
    last: list[float] = []
    first: list[float] = []
    missing = 0
    clients = len(records["received"])
    for key, times in arrivals.items():
        missing += clients - len(times)
        if times:
            last.append((max(times) - sent[key][0]) * 1000)
            first.append((min(times) - sent[key][0]) * 1000)
    return last, first, missing

"""Benchmark 1: a NOTIFY leaving the PBX to its call frame at every WebSocket client.

Three processes: this one plays the PBX (FakePbx over UDP on 127.0.0.1), the agent runs
as `ringboard run`, and the clients run in scripts/benchmarks/wsclients.py. A NOTIFY's
time is taken just before the PBX hands it to the kernel, so each latency includes the
loopback hop (tens of microseconds) on top of the agent's work.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.fake_pbx import FakePbx

from .calls import RING_SECONDS, call_schedule, extension_names, play_calls, wait_until_idle
from .common import AgentProcess, ClientProcess, Figure, agent_config, checked, cpu_seconds, free_port, percentile
from .pairing import office_plan, pair_clients
from .profiling import profiled

# The first second of calls warms the agent up (imports, caches) and is not counted.
WARMUP_SECONDS = 1.0


def first_client_latencies(records: dict[str, Any], sent: dict[tuple[str, str], tuple[float, str]]) -> list[float]:
    """Return per call event the ms until the first client received its frame.

    Compared with the latency at every client, it separates the agent's work before
    the fan-out (SIP, tracker, history) from the fan-out itself.
    """
    messages = records["messages"]
    first: dict[tuple[str, str], float] = {}
    for received in records["received"]:
        for number, arrived in received:
            message = messages[number]
            key = (message.get("number"), message.get("event"))
            if message["type"] == "call" and key in sent and arrived < first.get(key, float("inf")):
                first[key] = arrived
    return [(arrived - sent[key][0]) * 1000 for key, arrived in first.items()]


def latencies(
    records: dict[str, Any], sent: dict[tuple[str, str], tuple[float, str]], visible: list[tuple[str, ...] | None]
) -> tuple[list[float], int, int]:
    """Return (latencies in ms, frames expected, frames missing) of the measured calls.

    `sent` maps (caller number, event) to the NOTIFY's send time and extension; a client
    with `visible` None receives the calls of every extension.
    """
    messages = records["messages"]
    sent_per_extension: dict[str, int] = {}
    for _, extension in sent.values():
        sent_per_extension[extension] = sent_per_extension.get(extension, 0) + 1

    values: list[float] = []
    expected = 0
    missing = 0
    for client, received in enumerate(records["received"]):
        seen = 0
        for number, arrived in received:
            message = messages[number]
            if message["type"] != "call":
                continue
            notify = sent.get((message["number"], message["event"]))
            if notify is None:
                continue  # A warm-up call.
            values.append((arrived - notify[0]) * 1000)
            seen += 1
        extensions = visible[client]
        if extensions is None:
            should_see = len(sent)
        else:
            should_see = sum(sent_per_extension.get(extension, 0) for extension in extensions)
        expected += should_see
        missing += max(0, should_see - seen)
    return values, expected, missing


async def notify_to_frame(rate: float, extension_count: int, users: int, receptionists: int, seconds: float) -> list[Figure]:
    """Measure NOTIFY → call frame latency at every client while calls arrive at `rate`."""
    extensions = extension_names(extension_count)
    plan = office_plan(extensions, users, receptionists)
    clients = len(plan)

    pbx = FakePbx()
    pbx_address = await pbx.start()
    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as folder:
        work = Path(folder)
        http_port = free_port()
        config = agent_config(work, http_port, pbx_address, extensions)
        agent = AgentProcess(config, http_port)
        client_process: ClientProcess | None = None
        try:
            await agent.start()
            await pbx.wait_subscribed(extensions, timeout=30)
            pairing = pair_clients(config, work / "var", agent.base_url, plan)
            visible = [client.extensions if pairing.paired else None for client in plan]
            client_process = ClientProcess(agent.events_url, clients, work, pairing.cookies)
            await client_process.start()

            warmup_calls = int(rate * WARMUP_SECONDS)
            measured_calls = int(rate * seconds)
            start = time.perf_counter() + 0.2
            await play_calls(pbx, call_schedule(0, warmup_calls, rate, extensions, start))
            await wait_until_idle(agent.pid)

            start = time.perf_counter() + 0.2
            agent_cpu = cpu_seconds(agent.pid)
            clients_cpu = cpu_seconds(client_process.pid)
            began = time.perf_counter()
            async with profiled(agent.pid, "latency"):
                sent = await play_calls(pbx, call_schedule(warmup_calls, measured_calls, rate, extensions, start))
                played = time.perf_counter() - began
                await wait_until_idle(agent.pid)
            agent_cpu = cpu_seconds(agent.pid) - agent_cpu
            clients_cpu = cpu_seconds(client_process.pid) - clients_cpu
            records = await client_process.stop()
        finally:
            if client_process is not None:
                await client_process.kill()
            await agent.stop()
            pbx.close()

    values, expected, missing = latencies(records, sent, visible)
    first = first_client_latencies(records, sent)
    setup = (
        f"{rate:g} calls/s ({len(sent) / seconds:g} NOTIFYs/s, {RING_SECONDS:g} s rings) over {extension_count} "
        f"extensions for {seconds:g} s; {clients} WebSocket clients ({users} users, {receptionists} receptionists), "
        f"{pairing.note}; clients in their own process"
    )
    name = "notify_to_frame"
    figures = [
        Figure(name, "p50", round(percentile(values, 0.50), 2), "ms", setup),
        checked(Figure(name, "p99", round(percentile(values, 0.99), 2), "ms", setup), "< 20 ms", 20),
        Figure(name, "max", round(max(values, default=float("nan")), 2), "ms", setup),
        Figure(name, "first client per event, p50", round(percentile(first, 0.50), 2), "ms", setup),
        Figure(name, "frames received", len(values), "frames", setup),
        Figure(name, "frames missing", missing, f"frames of {expected}", setup),
        Figure(name, "agent CPU", round(agent_cpu / played * 100, 1), "% of one core", setup),
        Figure(name, "clients CPU", round(clients_cpu / played * 100, 1), "% of one core", setup),
    ]
    if records["closed_early"]:
        figures.append(Figure(name, "clients disconnected", records["closed_early"], "clients", setup))
    return figures

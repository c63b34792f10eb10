"""Ringboard benchmarks on 127.0.0.1; `scripts/bench` runs this file.

Each benchmark returns rows of (name, value, unit, setup). The table printed at the end
is what BENCHMARKS.md records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_pbx import FakePbx, kamailio_document  # noqa: E402


@dataclass
class Figure:
    """One measured number and the set-up it was measured with."""

    benchmark: str
    name: str
    value: float
    unit: str
    setup: str


# Benchmark 1: NOTIFY sent by the PBX -> call frame received by each WebSocket client ------


async def notify_to_frame(calls_per_second: int, extensions: int, clients: int, seconds: float) -> list[Figure]:
    """Measure the latency from a NOTIFY leaving the PBX to its frame reaching every client.

    The agent runs as its own process, started with `ringboard run`; this process plays
    the PBX and the clients. Each call is two NOTIFYs (ringing, then ended as missed),
    each producing exactly one frame, so frames are matched to NOTIFYs by order.
    """
    pbx = FakePbx()
    pbx_host, pbx_port = await pbx.start()
    names = [str(1000 + index) for index in range(extensions)]

    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as work:
        http_port = _free_port()
        config = Path(work) / "ringboard.toml"
        config.write_text(
            "[agent]\n"
            f'data_dir = "{work}/var"\nlog_level = "warning"\n'
            f"[http]\nport = {http_port}\n"
            f'[sip]\nserver = "{pbx_host}"\nport = {pbx_port}\ndomain = "pbx.local"\n'
            f'pbx = "kamailio"\nlisten_host = "127.0.0.1"\nlisten_port = 0\n'
            f"extensions = {json.dumps(names)}\n"
        )
        agent = subprocess.Popen(
            [str(ROOT / ".venv/bin/ringboard"), "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await pbx.wait_subscribed(names, timeout=30)
            url = f"ws://127.0.0.1:{http_port}/api/events"
            sockets = await _connect_clients(url, clients)

            sent: list[float] = []
            received: list[list[float]] = [[] for _ in sockets]
            readers = [asyncio.create_task(_read_frames(sock, times)) for sock, times in zip(sockets, received)]

            total_calls = int(calls_per_second * seconds)
            interval = 1.0 / calls_per_second
            start = time.perf_counter()
            for index in range(total_calls):
                await _sleep_until(start + index * interval)
                extension = names[index % extensions]
                call_id = f"bench-{index}"
                for state in ("early", "terminated"):
                    body = kamailio_document(extension, pbx.next_version(extension), [(call_id, call_id, state)])
                    sent.append(time.perf_counter())
                    pbx.send_notify(extension, body)

            expected = len(sent)
            deadline = time.perf_counter() + 10
            while any(len(times) < expected for times in received) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            for reader in readers:
                reader.cancel()
            for sock in sockets:
                await sock.close()
        finally:
            agent.terminate()
            agent.wait(timeout=10)
            pbx.close()

    latencies = [
        (times[index] - sent[index]) * 1000
        for times in received
        for index in range(min(len(times), len(sent)))
    ]
    lost = sum(max(0, len(sent) - len(times)) for times in received)
    setup = f"{calls_per_second} calls/s over {extensions} extensions, {clients} clients, {seconds:g} s"
    quantiles = statistics.quantiles(latencies, n=100)
    return [
        Figure("notify_to_frame", "p50", round(statistics.median(latencies), 2), "ms", setup),
        Figure("notify_to_frame", "p99", round(quantiles[98], 2), "ms", setup),
        Figure("notify_to_frame", "max", round(max(latencies), 2), "ms", setup),
        Figure("notify_to_frame", "frames lost", lost, "frames", setup),
    ]


async def _connect_clients(url: str, count: int) -> list[websockets.ClientConnection]:
    sockets = []
    for _ in range(count):
        sock = await websockets.connect(url, max_size=None)
        snapshot = json.loads(await sock.recv())
        assert snapshot["type"] == "snapshot", snapshot
        sockets.append(sock)
    return sockets


async def _read_frames(sock: websockets.ClientConnection, times: list[float]) -> None:
    async for frame in sock:
        if frame.startswith('{"type":"call"'):
            times.append(time.perf_counter())


async def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Report -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """Describe the machine the figures come from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory:.1f} GiB",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def print_table(figures: list[Figure]) -> None:
    """Print the figures as a Markdown table."""
    print("| benchmark | figure | value | set-up |")
    print("|---|---|---|---|")
    for figure in figures:
        print(f"| {figure.benchmark} | {figure.name} | {figure.value:g} {figure.unit} | {figure.setup} |")


def main() -> int:
    """Run every benchmark and print the results."""
    parser = argparse.ArgumentParser(description="Run Ringboard's benchmarks on 127.0.0.1.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rate", type=int, default=50, help="calls per second for the latency benchmark")
    parser.add_argument("--extensions", type=int, default=100, help="monitored extensions")
    parser.add_argument("--clients", type=int, default=200, help="WebSocket clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run in seconds")
    args = parser.parse_args()

    figures = asyncio.run(notify_to_frame(args.rate, args.extensions, args.clients, args.seconds))

    if args.json:
        print(json.dumps({"machine": machine(), "figures": [asdict(figure) for figure in figures]}, indent=2))
    else:
        print("Machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

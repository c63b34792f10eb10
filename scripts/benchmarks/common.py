"""Shared parts of the benchmarks: figures, the agent as a child process, the client process, clocks.

Every timestamp is `time.perf_counter()`, which is CLOCK_MONOTONIC on Linux and so
comparable between the load generator, the agent and the client processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
RINGBOARD = VENV_BIN / "ringboard"
WSCLIENTS = Path(__file__).resolve().parent / "wsclients.py"

# The checkout whose agent is benchmarked. `--agent-root` points it at another one, so
# that a change can be compared with the code before it under the same conditions.
agent_root = ROOT

# Folder that `--profile DIR` names for the profiles, or None for no profiles.
profile_dir: Path | None = None

# The agent subscribes, binds HTTP and builds the UI zip within a few seconds here.
AGENT_START_TIMEOUT = 60.0
AGENT_STOP_TIMEOUT = 15.0


@dataclass
class Figure:
    """One measured number and the set-up it was measured with."""

    benchmark: str
    name: str
    value: float | str
    unit: str
    setup: str
    # The target from BENCHMARKS.md, as text such as "< 20 ms", and whether it was met.
    target: str = ""
    met: bool | None = None


def checked(figure: Figure, target: str, limit: float, *, below: bool = True) -> Figure:
    """Attach a target to a figure and record whether the value meets it."""
    figure.target = target
    if isinstance(figure.value, (int, float)):
        figure.met = figure.value < limit if below else figure.value >= limit
    return figure


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of the values lie (linear interpolation)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(fraction * 1000) - 1]


def raise_file_limit() -> None:
    """Raise this process's soft limit of open files to the hard limit (one per socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """Return a process's user plus system CPU time in seconds, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


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
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory:.1f} GiB",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load average at start": f"{load[0]:.2f}",
    }


# The agent ------------------------------------------------------------------------------


def agent_config(
    work: Path, http_port: int, pbx: tuple[str, int], extensions: list[str], extra: str = ""
) -> Path:
    """Write a ringboard.toml for an agent subscribing at the fake PBX; return its path."""
    config = work / "ringboard.toml"
    config.write_text(
        "[agent]\n"
        f'data_dir = "{work}/var"\n'
        'log_level = "warning"\n'
        "[http]\n"
        f"port = {http_port}\n"
        "[sip]\n"
        f'server = "{pbx[0]}"\n'
        f"port = {pbx[1]}\n"
        'domain = "pbx.local"\n'
        'pbx = "kamailio"\n'
        'listen_host = "127.0.0.1"\n'
        "listen_port = 0\n"
        f"extensions = {json.dumps(extensions)}\n" + extra
    )
    return config


class AgentProcess:
    """`ringboard run --config FILE` as a child process with a raised file limit."""

    def __init__(self, config: Path, http_port: int) -> None:
        self.config = config
        self.http_port = http_port
        self.log_path = config.parent / "agent.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the agent is not started"
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def events_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/api/events"

    async def start(self) -> None:
        """Start the agent and wait for its `Ringboard is ready` line."""
        log = self.log_path.open("wb")
        command, environment = agent_command("run", "--config", str(self.config))
        self.process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=environment,
            cwd=agent_root,
            preexec_fn=raise_file_limit,
        )
        log.close()
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(AGENT_START_TIMEOUT):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"the agent exited at start-up:\n{self.log_tail()}")
                    if line.startswith(b"Ringboard is ready"):
                        break
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"the agent did not start within {AGENT_START_TIMEOUT:g} s:\n{self.log_tail()}") from None

    async def stop(self) -> None:
        """Stop the agent with SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), AGENT_STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of the agent's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# The client process ----------------------------------------------------------------------


class ClientProcess:
    """The WebSocket clients of scripts/benchmarks/wsclients.py as a child process."""

    def __init__(self, url: str, count: int, work: Path, cookies: list[str | None] | None = None) -> None:
        self.url = url
        self.count = count
        self.out = work / f"clients-{count}.json"
        self.cookies_file = work / f"cookies-{count}.json"
        self.cookies = cookies
        self.process: asyncio.subprocess.Process | None = None
        self.connect_seconds = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 120.0, max_seconds: float = 600.0) -> None:
        """Start the clients and wait until every one has its snapshot."""
        args = [str(VENV_BIN / "python"), str(WSCLIENTS), "--url", self.url, "--count", str(self.count)]
        args += ["--out", str(self.out), "--max-seconds", str(max_seconds)]
        if self.cookies is not None:
            self.cookies_file.write_text(json.dumps(self.cookies))
            args += ["--cookies", str(self.cookies_file)]
        self.process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=raise_file_limit,
        )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            await self.kill()
            raise RuntimeError(f"{self.count} WebSocket clients did not connect within {timeout:g} s") from None
        if not line.startswith(b"ready"):
            error = await self._stderr()
            await self.kill()
            raise RuntimeError(f"the WebSocket clients failed to connect:\n{error}")
        self.connect_seconds = float(line.split()[2])

    async def stop(self) -> dict[str, Any]:
        """Tell the clients to stop and return what they recorded."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if line.strip() != b"done":
            error = await self._stderr()
            await self.kill()
            raise RuntimeError(f"the WebSocket clients failed:\n{error}")
        await asyncio.wait_for(self.process.wait(), 30)
        return json.loads(self.out.read_text())

    async def kill(self) -> None:
        """End the client process if it still runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def _stderr(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        try:
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode(errors="replace")[-3000:]
        except TimeoutError:
            return "(no output)"


async def sleep_until(moment: float) -> None:
    """Sleep until `time.perf_counter()` reaches `moment`."""
    delay = moment - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def agent_command(*args: str) -> tuple[list[str], dict[str, str] | None]:
    """Return the command line and environment that run `ringboard ARGS` from `agent_root`."""
    if agent_root == ROOT:
        return [str(RINGBOARD), *args], None
    environment = dict(os.environ, PYTHONPATH=str(agent_root))
    return [str(VENV_BIN / "python"), "-m", "agent", *args], environment

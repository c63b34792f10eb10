"""Sampling profiles of the agent during a benchmark, with py-spy (`--profile DIR`).

py-spy samples the agent process from outside at 100 Hz and writes collapsed stacks
(`--format raw`, one `frame;frame;... count` line per distinct stack). `summarise`
turns them into the functions with the most samples, counted on their own (self) and
with everything they call (inclusive). Sampling pauses the agent briefly 100 times a
second, so figures taken during a profile are a little slower than without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from . import common
from .common import VENV_BIN

SAMPLE_RATE = 100


def py_spy() -> str | None:
    """Return the py-spy executable of the venv or the PATH, or None."""
    candidate = VENV_BIN / "py-spy"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("py-spy")


class Profiler:
    """py-spy recording one process from `start` to `stop`."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, pid: int) -> None:
        """Start sampling `pid`; raise RuntimeError when py-spy is missing or refuses."""
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            executable, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE), "--format", "raw",
            "--output", str(self.output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(0.5)  # py-spy attaches before the measured work starts.
        if self.process.returncode is not None:
            error = await self.process.stderr.read() if self.process.stderr else b""
            raise RuntimeError(f"py-spy could not attach to process {pid}: {error.decode(errors='replace').strip()}")

    async def stop(self) -> str:
        """Stop sampling, write the profile and return its summary."""
        if self.process is None:
            return ""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if not self.output.is_file():
            return f"py-spy wrote no profile to {self.output}"
        summary = summarise(self.output)
        self.output.with_suffix(".txt").write_text(summary)
        return summary


def summarise(path: Path, top: int = 25) -> str:
    """Return the functions with the most self and inclusive samples in a raw py-spy profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return "no samples"
    lines = [f"{total} samples at {SAMPLE_RATE} Hz ({total / SAMPLE_RATE:.1f} s of CPU)", "", "self:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def profiled(pid: int, name: str) -> AsyncIterator[None]:
    """Profile `pid` while the block runs when `--profile DIR` was given; else do nothing."""
    if common.profile_dir is None:
        yield
        return
    profiler = Profiler(common.profile_dir / f"{name}.raw")
    await profiler.start(pid)
    try:
        yield
    finally:
        await profiler.stop()
        print(f"profile of {name}: {profiler.output.with_suffix('.txt')}", file=sys.stderr, flush=True)

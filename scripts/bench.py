"""Ringboard benchmarks on 127.0.0.1; `scripts/bench` runs this file.

Each benchmark lives in scripts/benchmarks/ and returns Figures: a value, its unit, the
set-up it was measured with and, where BENCHMARKS.md sets one, the target. The table
printed at the end is what BENCHMARKS.md records. No benchmark fails the run for a
missed target; a benchmark that cannot run prints its error as its row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmarks import common  # noqa: E402
from benchmarks.common import Figure, machine, raise_file_limit  # noqa: E402

BENCHMARKS = ("latency", "parsing", "fanout", "page", "push", "lookup")


async def run_benchmark(name: str, args: argparse.Namespace) -> list[Figure]:
    """Run one benchmark by name; its modules are imported only when it runs."""
    if name == "latency":
        from benchmarks.latency import notify_to_frame

        return await notify_to_frame(args.rate, args.extensions, args.users, args.receptionists, args.seconds)
    if name == "parsing":
        from benchmarks.parsing import parsing_throughput

        return parsing_throughput(args.parse_seconds)
    if name == "fanout":
        from benchmarks.fanout import idle_clients

        return await idle_clients(args.idle_clients, args.fanout_events)
    if name == "page":
        from benchmarks.page import page_start

        return await page_start(args.page_rounds)
    if name == "push":
        from benchmarks.push import push_latency

        return await push_latency()
    if name == "lookup":
        from benchmarks.lookup import lookup_times

        return await lookup_times(args.contacts)
    raise ValueError(f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}")


def print_table(figures: list[Figure]) -> None:
    """Print the figures as Markdown: one table per benchmark and set-up."""
    groups: dict[tuple[str, str], list[Figure]] = {}
    for figure in figures:
        groups.setdefault((figure.benchmark, figure.setup), []).append(figure)
    for (benchmark, setup), rows in groups.items():
        print(f"\n{benchmark}: {setup}\n")
        print("| figure | value | target |")
        print("|---|---|---|")
        for figure in rows:
            if isinstance(figure.value, (int, float)):
                value = f"{figure.value:g} {figure.unit}".strip()
            else:
                value = str(figure.value)
            target = figure.target
            if figure.met is not None:
                target += " (met)" if figure.met else " (missed)"
            print(f"| {figure.name} | {value} | {target} |")


async def run_all(names: list[str], args: argparse.Namespace) -> tuple[list[Figure], dict[str, float]]:
    figures: list[Figure] = []
    durations: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)
        try:
            figures.extend(await run_benchmark(name, args))
        except Exception as error:  # One broken benchmark must not hide the others' figures.
            traceback.print_exc(file=sys.stderr)
            figures.append(Figure(name, "error", f"{type(error).__name__}: {error}", "", "did not run"))
        durations[name] = round(time.perf_counter() - started, 1)
    return figures, durations


def main() -> int:
    """Run the benchmarks and print their figures."""
    parser = argparse.ArgumentParser(description="Run Ringboard's benchmarks on 127.0.0.1 and print a table.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    parser.add_argument(
        "--agent-root",
        type=Path,
        help="run the agent from this checkout instead of this one, to compare a change with the code before it",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles of the agent during the measured phases into DIR (slows the agent a little)",
    )
    latency = parser.add_argument_group("latency (benchmark 1)")
    latency.add_argument("--rate", type=float, default=50, help="calls per second (default 50)")
    latency.add_argument("--extensions", type=int, default=100, help="monitored extensions (default 100)")
    latency.add_argument("--users", type=int, default=180, help="users, one client each (default 180)")
    latency.add_argument("--receptionists", type=int, default=20, help="receptionists, one client each (default 20)")
    latency.add_argument("--seconds", type=float, default=10.0, help="measured seconds of calls (default 10)")
    parsing = parser.add_argument_group("parsing (benchmark 2)")
    parsing.add_argument("--parse-seconds", type=float, default=1.0, help="seconds per timed round (default 1)")
    fanout = parser.add_argument_group("fanout (benchmark 3)")
    fanout.add_argument("--idle-clients", type=int, default=1000, help="idle WebSocket clients (default 1000)")
    fanout.add_argument("--fanout-events", type=int, default=20, help="events timed (default 20)")
    page = parser.add_argument_group("page (benchmark 4)")
    page.add_argument("--page-rounds", type=int, default=3, help="cold/reload/warm rounds (default 3)")
    lookup = parser.add_argument_group("lookup (benchmark 6)")
    lookup.add_argument("--contacts", type=int, default=20_000, help="address book size (default 20000)")
    args = parser.parse_args()

    raise_file_limit()
    if args.agent_root is not None:
        common.agent_root = args.agent_root.resolve()
    if args.profile is not None:
        common.profile_dir = args.profile.resolve()
    names = list(dict.fromkeys(args.only)) if args.only else list(BENCHMARKS)
    about = machine()
    started = time.perf_counter()
    figures, durations = asyncio.run(run_all(names, args))
    about["bench seconds"] = f"{time.perf_counter() - started:.0f}"

    if args.json:
        print(json.dumps({"machine": about, "durations": durations, "figures": [asdict(f) for f in figures]}, indent=2))
    else:
        print("Machine: " + ", ".join(f"{key} {value}" for key, value in about.items()))
        print("Seconds per benchmark: " + ", ".join(f"{key} {value}" for key, value in durations.items()))
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

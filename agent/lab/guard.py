"""Watchdog that ends the lab's child processes when the lab's own process dies.

The lab starts it with a pipe on its standard input and writes one line per
child: ``+PGID`` when a process group starts, ``-PGID`` when it has ended.
When the pipe closes, because the lab stopped or because its process was
killed (even with SIGKILL, where no ``atexit`` handler runs), the guard sends
SIGTERM to every group still listed, then SIGKILL to those still alive.
"""

from __future__ import annotations

import os
import signal
import sys
import time

# Kamailio and SIPp end within about a second of SIGTERM on loopback.
TERM_GRACE_SECONDS = 3.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def end_groups(groups: set[int]) -> None:
    """Send SIGTERM to each group, wait, then SIGKILL what is left."""
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)

    deadline = time.monotonic() + TERM_GRACE_SECONDS
    remaining = set(groups)
    while remaining and time.monotonic() < deadline:
        remaining = {pgid for pgid in remaining if _group_alive(pgid)}
        time.sleep(0.05)

    for pgid in remaining:
        _signal_group(pgid, signal.SIGKILL)


def main() -> int:
    """Track process groups from standard input until it closes, then end them."""
    # A Ctrl-C in the lab's terminal must not end the guard before the lab does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    groups: set[int] = set()
    for line in sys.stdin:
        entry = line.strip()
        if len(entry) < 2 or entry[0] not in "+-" or not entry[1:].isdigit():
            continue

        pgid = int(entry[1:])
        if entry[0] == "+":
            groups.add(pgid)
        else:
            groups.discard(pgid)

    end_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())

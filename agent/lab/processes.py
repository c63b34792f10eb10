"""Child processes of the lab: free ports, programs, start and stop by process group."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Kamailio and SIPp stop within a second of SIGTERM. A longer wait only delays
# a lab that is stopping anyway, so the rest get SIGKILL.
STOP_GRACE_SECONDS = 3.0

# Debian installs kamailio in /usr/sbin, which is not on a normal user's PATH.
SYSTEM_PROGRAM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


class LabError(RuntimeError):
    """The lab could not start or a lab process failed."""


def free_port() -> int:
    """Return a port on 127.0.0.1 that is free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise LabError("no free port on 127.0.0.1 for both UDP and TCP after 50 tries")


def udp_port_bound(port: int) -> bool:
    """Tell whether some process has bound UDP 127.0.0.1:port (reads /proc/net/udp)."""
    expected = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == expected for line in lines if len(line.split()) > 1)


def find_program(name: str, package: str) -> str:
    """Return the path of an installed program, or raise with the package to install."""
    found = shutil.which(name)
    if found:
        return found

    for directory in SYSTEM_PROGRAM_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)

    raise LabError(f"program {name!r} not found: install the Debian package {package} (scripts/setup does)")


def log_tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a log file, or a note when it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(log {path} could not be read: {error})"
    return "\n".join(text.splitlines()[-lines:])


class Guard:
    """The watchdog process (agent.lab.guard) that ends the children if this process dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Run by path: guard.py needs only the standard library, so it starts
        # even where the agent package is not importable from the current directory.
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("guard.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def _write(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.closed:
            return
        with self._lock:
            try:
                stdin.write(line + "\n")
                stdin.flush()
            except (BrokenPipeError, ValueError) as error:
                log.warning("lab guard pipe failed: %s", error)

    def watch(self, pgid: int) -> None:
        self._write(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._write(f"-{pgid}")

    def close(self) -> None:
        """Close the pipe, so the guard ends the groups still listed and exits."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with self._lock:
                try:
                    stdin.close()
                except BrokenPipeError:
                    pass
        try:
            self._process.wait(timeout=STOP_GRACE_SECONDS + 2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class ChildProcess:
    """A program run in its own process group, stopped with the whole group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        guard: Guard | None = None,
        stdout_to_log: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._guard = guard
        self._log_file: IO[bytes] = open(log_path, "ab")

        # SIPp redraws its statistics screen on stdout every second, so its
        # stdout goes nowhere and only its errors reach the log.
        stdout = self._log_file if stdout_to_log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=self._log_file,
            start_new_session=True,
        )
        _running.add(self)
        if guard is not None:
            guard.watch(self.process.pid)
        log.debug("started %s (pid %d): %s", name, self.process.pid, " ".join(self.argv))

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._release()
        return code

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit code; raises subprocess.TimeoutExpired."""
        code = self.process.wait(timeout=timeout)
        self._release()
        return code

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """Send SIGTERM to the process group, then SIGKILL after the grace time."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.0f s, sending SIGKILL", self.name, self.pid, grace)
                self._signal_group(signal.SIGKILL)
                self.process.wait()

        # Kamailio's worker processes may outlive the main one by a moment.
        self._signal_group(signal.SIGKILL)
        self._release()
        return self.process.returncode

    def kill(self) -> int:
        """Send SIGKILL to the whole process group at once and wait for the main process."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self._release()
        return self.process.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _release(self) -> None:
        if self not in _running:
            return
        _running.discard(self)
        if self._guard is not None:
            self._guard.forget(self.process.pid)
        self._log_file.close()


_running: set[ChildProcess] = set()


@atexit.register
def _stop_all() -> None:
    for child in list(_running):
        child.stop(grace=1.0)

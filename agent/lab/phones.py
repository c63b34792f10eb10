"""Simulated phones: SIPp UAS processes that ring and answer as each INVITE asks."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from agent.lab.processes import LOOPBACK, ChildProcess, Guard, LabError, free_port, log_tail, udp_port_bound
from agent.lab.sipp import base_argv, keyword_argv, write_scenario

log = logging.getLogger(__name__)

# The phone scenario counts ring time in CANCEL waits of this length, so answer
# delays are rounded up to it. SIPp logs one line per wait, so shorter ticks
# fill the phone's error log faster.
RING_TICK_MS = 250

# SIPp binds its port within a few milliseconds; a slow CI machine gets more.
BIND_TIMEOUT_SECONDS = 10.0

# A REGISTER is retransmitted every 500 ms by the scenario; Kamailio on
# loopback answers the first one.
REGISTER_TIMEOUT_SECONDS = 10.0

# SIP message traces rotate at this size, with one old file kept, so a lab
# that runs for days keeps at most about twice this per phone.
TRACE_ROTATE_BYTES = 5_000_000


@dataclass
class Phone:
    """One SIPp UAS answering for an extension (or for the carrier)."""

    extension: str
    port: int
    process: ChildProcess
    trace_path: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.process.stop()


def start_phone(extension: str, workdir: Path, guard: Guard | None = None) -> Phone:
    """Start the UAS for one extension on a free port and wait until it listens."""
    port = free_port()
    scenario = write_scenario(
        "phone", workdir, {"extension": extension, "tick_ms": str(RING_TICK_MS)}, suffix=f"-{extension}"
    )
    log_path = workdir / f"phone-{extension}.log"
    trace_path = workdir / f"phone-{extension}-messages.log"

    argv = base_argv(scenario, workdir / f"phone-{extension}-errors.log", local_port=port)
    argv += [
        "-trace_msg",
        "-message_file", str(trace_path),
        "-ringbuffer_files", "1",
        "-ringbuffer_size", str(TRACE_ROTATE_BYTES),
    ]
    process = ChildProcess(
        f"phone {extension}", argv, log_path=log_path, cwd=workdir, guard=guard, stdout_to_log=False
    )

    deadline = time.monotonic() + BIND_TIMEOUT_SECONDS
    while not udp_port_bound(port):
        code = process.poll()
        if code is not None:
            raise LabError(f"phone {extension} (sipp) exited with code {code}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            process.stop()
            raise LabError(f"phone {extension} (sipp) did not bind {LOOPBACK}:{port} within {BIND_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.02)

    log.info("phone %s listening on %s:%d", extension, LOOPBACK, port)
    return Phone(extension, port, process, trace_path)


def register(
    extension: str,
    contact_port: int,
    pbx_port: int,
    domain: str,
    workdir: Path,
    expires: int,
    guard: Guard | None = None,
) -> None:
    """REGISTER an extension at the PBX with the phone's port as Contact; raise on failure."""
    scenario = write_scenario("register", workdir)
    errors = workdir / f"register-{extension}-errors.log"
    keywords = {
        "extension": extension,
        "pbx_domain": domain,
        "contact_port": str(contact_port),
        "expires": str(expires),
    }
    argv = base_argv(scenario, errors) + keyword_argv(keywords)
    argv += ["-m", "1", "-cid_str", f"register-{extension}-{uuid.uuid4().hex[:12]}@%s", f"{LOOPBACK}:{pbx_port}"]

    process = ChildProcess(
        f"register {extension}", argv, log_path=workdir / "register.log", cwd=workdir, guard=guard, stdout_to_log=False
    )
    try:
        code = process.wait(timeout=REGISTER_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.stop()
        raise LabError(f"REGISTER of extension {extension} timed out after {REGISTER_TIMEOUT_SECONDS:.0f} s") from None

    if code != 0:
        raise LabError(f"REGISTER of extension {extension} failed (sipp exit code {code}):\n{log_tail(errors)}")
    errors.unlink(missing_ok=True)
    log.info("extension %s registered with contact %s:%d for %d s", extension, LOOPBACK, contact_port, expires)

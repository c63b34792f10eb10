"""Calls placed by the lab: one SIPp UAC process per call."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.lab.processes import LOOPBACK, ChildProcess, Guard, log_tail
from agent.lab.sipp import base_argv, keyword_argv, write_scenario

log = logging.getLogger(__name__)

# The carrier's phone process answers for every number outside the PBX under this name.
EXTERNAL_PARTY = "external"

# From and P-Asserted-Identity of a withheld caller: the anonymous URI of RFC 3323.
ANONYMOUS_URI = "sip:anonymous@anonymous.invalid"
ANONYMOUS_NAME = "Anonymous"

# A phone must answer at least this long after the caller's CANCEL time, or
# later, or the two cross on the wire and the call fails in both SIPp processes.
MIN_CANCEL_MARGIN_SECONDS = 1.0

# Extra time SIPp allows a call beyond its planned ring and talk time before it
# gives up with an error, so that a lost reply cannot leave a caller running.
CALL_TIMEOUT_MARGIN_SECONDS = 30.0

AnswerAfter = float | None | Mapping[str, float | None]


@dataclass(frozen=True)
class CallPlan:
    """Plan of one call: caller, callee, when each phone answers, and how the call ends."""

    to: str
    caller: str
    display: str
    withheld: bool
    answer_after: Mapping[str, float | None]
    talk: float
    cancel_after: float | None

    def ring_time(self) -> float:
        """Return how long the call rings before it is answered or cancelled."""
        if self.cancel_after is not None:
            return self.cancel_after
        delays = [delay for delay in self.answer_after.values() if delay is not None]
        return min(delays)

    def answer_header(self) -> str:
        """Return the X-Lab-Answer-After value, e.g. "201=2000, 202=never"."""
        parts = []
        for extension, delay in self.answer_after.items():
            value = "never" if delay is None else str(round(delay * 1000))
            parts.append(f"{extension}={value}")
        return ", ".join(parts) if parts else "none"

    def validate(self) -> None:
        """Raise ValueError for a plan that SIPp cannot carry out."""
        delays = [delay for delay in self.answer_after.values() if delay is not None]
        if any(delay < 0 for delay in delays) or self.talk < 0:
            raise ValueError(f"call to {self.to}: answer_after and talk must not be negative")

        if self.cancel_after is None:
            if not delays:
                raise ValueError(f"call to {self.to}: nobody answers, so cancel_after must be set")
            return

        if self.cancel_after < 0:
            raise ValueError(f"call to {self.to}: cancel_after must not be negative")
        early = [delay for delay in delays if delay < self.cancel_after + MIN_CANCEL_MARGIN_SECONDS]
        if early:
            raise ValueError(
                f"call to {self.to}: a phone answers after {min(early)} s, too close to cancel_after="
                f"{self.cancel_after} s; use answer_after=None or at least {MIN_CANCEL_MARGIN_SECONDS} s later"
            )


@dataclass
class CallHandle:
    """A running or finished lab call."""

    call_id: str
    plan: CallPlan
    process: ChildProcess
    errors_path: Path
    started: float = field(default_factory=time.monotonic)
    _returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        """SIPp's exit status (0: the call went as planned), or None while it runs."""
        if self._returncode is None:
            self._returncode = self.process.poll()
        return self._returncode

    @property
    def done(self) -> bool:
        return self.returncode is not None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the call to end and return SIPp's exit status; raise TimeoutError."""
        try:
            self._returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"call {self.call_id} to {self.plan.to} still running after {timeout} s") from None
        return self._returncode

    def stop(self) -> None:
        """End the caller's process at once (the PBX may keep the dialog until it times out)."""
        self._returncode = self.process.stop()

    def error_log(self) -> str:
        """Return SIPp's error trace for this call, if it wrote one."""
        if not self.errors_path.exists():
            return ""
        return log_tail(self.errors_path)


def caller_identity(plan: CallPlan, domain: str) -> dict[str, str]:
    """Return the SIPp keywords for From, P-Asserted-Identity and Privacy."""
    if plan.withheld:
        return {
            "caller_name": ANONYMOUS_NAME,
            "from_uri": ANONYMOUS_URI,
            "from_user": "anonymous",
            "pai_uri": ANONYMOUS_URI,
            "privacy": "id",
        }
    uri = f"sip:{plan.caller}@{domain}"
    return {
        "caller_name": plan.display,
        "from_uri": uri,
        "from_user": plan.caller,
        "pai_uri": uri,
        "privacy": "none",
    }


def place_call(plan: CallPlan, pbx_port: int, domain: str, workdir: Path, guard: Guard | None = None) -> CallHandle:
    """Start the SIPp UAC for one call and return at once."""
    plan.validate()

    token = uuid.uuid4().hex[:16]
    call_id = f"lab-{token}@{LOOPBACK}"
    calls_dir = workdir / "calls"
    calls_dir.mkdir(exist_ok=True)
    errors_path = calls_dir / f"{token}-errors.log"

    if plan.cancel_after is None:
        scenario = write_scenario("call", workdir)
        pause_ms = round(plan.talk * 1000)
    else:
        scenario = write_scenario("cancel", workdir)
        pause_ms = round(plan.cancel_after * 1000)

    keywords = {
        "callee": plan.to,
        "pbx_domain": domain,
        "answer_after": plan.answer_header(),
        **caller_identity(plan, domain),
    }
    timeout = plan.ring_time() + plan.talk + CALL_TIMEOUT_MARGIN_SECONDS

    argv = base_argv(scenario, errors_path) + keyword_argv(keywords)
    argv += [
        "-m", "1",
        "-d", str(pause_ms),
        # More 180s arrive while a ring-group caller waits to CANCEL.
        "-pause_msg_ign",
        "-cid_str", f"lab-{token}@%s",
        "-timeout", f"{timeout:.0f}s",
        "-timeout_error",
        f"{LOOPBACK}:{pbx_port}",
    ]
    process = ChildProcess(
        f"call {call_id}", argv, log_path=workdir / "callers.log", cwd=workdir, guard=guard, stdout_to_log=False
    )

    caller = ANONYMOUS_NAME if plan.withheld else f"{plan.caller} ({plan.display})"
    if plan.cancel_after is None:
        ending = f"caller hangs up after {plan.talk:g} s"
    else:
        ending = f"caller cancels after {plan.cancel_after:g} s"
    log.info("call %s: %s -> %s, answer %s, %s", call_id, caller, plan.to, plan.answer_header(), ending)
    return CallHandle(call_id, plan, process, errors_path)

"""A Kamailio that mirrors its SIP as HEP v3, SIPp phones and callers, all on 127.0.0.1.

The live raw-SIP tests start it once per module: Kamailio from kamailio-hep.cfg, with
siptrace sending HEP to the test's receiver, and one UDP port per phone. Each test then
runs the SIPp scenarios in scenarios/ that play its call.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.lab.pbx import find_module_dir, options_ping, render_template
from agent.lab.processes import LOOPBACK, ChildProcess, Guard, LabError, find_program, free_port, log_tail, udp_port_bound
from agent.lab.sipp import base_argv, keyword_argv

SUPPORT = Path(__file__).resolve().parent
SCENARIOS = SUPPORT / "scenarios"

DOMAIN = "pbx.local"
EXTENSIONS = ("201", "202", "203")
RING_GROUP = "600"
RING_GROUP_MEMBERS = ("201", "202")
HEP_AUTH_KEY = "ringboard-lab-key"

# Kamailio answers OPTIONS within a second of starting on two cores.
READY_TIMEOUT_SECONDS = 15.0

# A SIPp phone binds its port within milliseconds.
BIND_TIMEOUT_SECONDS = 10.0

# No scenario here runs longer than a few seconds; this stops a stuck one.
SIPP_TIMEOUT_SECONDS = 30


@dataclass
class Sipp:
    """One running SIPp process of a test."""

    name: str
    process: ChildProcess
    errors: Path

    def wait(self, timeout: float = SIPP_TIMEOUT_SECONDS + 5) -> int:
        """Wait for SIPp to exit and return its status (0: the scenario ran as written)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.stop()
            raise TimeoutError(f"sipp {self.name} still running after {timeout} s") from None

    def error_log(self) -> str:
        return log_tail(self.errors) if self.errors.exists() else ""


class HepLab:
    """Kamailio with siptrace and the phones' ports, in one work directory."""

    def __init__(self, workdir: Path, hep_port: int) -> None:
        self.workdir = workdir
        self.hep_port = hep_port
        self.sip_port = 0
        self.phone_ports: dict[str, int] = {}
        self._guard: Guard | None = None
        self._kamailio: ChildProcess | None = None
        self._running: list[Sipp] = []

    def start(self) -> None:
        """Write the configuration, start Kamailio and wait until it answers OPTIONS."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._guard = Guard()
        self.sip_port = free_port()
        self.phone_ports = {extension: free_port() for extension in EXTENSIONS}
        config = self.workdir / "kamailio.cfg"
        config.write_text(self._render(find_module_dir()))

        kamailio = find_program("kamailio", "kamailio")
        log_path = self.workdir / "kamailio.log"
        argv = [kamailio, "-f", str(config), "-DD", "-E", "-m", "32", "-M", "8", "-Y", str(self.workdir), "-w", str(self.workdir)]
        self._kamailio = ChildProcess("kamailio", argv, log_path=log_path, cwd=self.workdir, guard=self._guard)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not options_ping(self.sip_port):
            if self._kamailio.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"kamailio did not start on port {self.sip_port}:\n{log_tail(log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every SIPp process and Kamailio."""
        for sipp in self._running:
            sipp.process.stop(grace=1.0)
        self._running.clear()
        if self._kamailio is not None:
            self._kamailio.stop()
            self._kamailio = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def phone(self, extension: str, scenario: str, keys: Mapping[str, str] | None = None,
              calls: int = 1, pause_ms: int = 0, template: Mapping[str, str] | None = None) -> Sipp:
        """Start the SIPp UAS of a phone on its port and wait until it listens.

        `template` fills in a scenario's double-braced names, for what SIPp keywords cannot set.
        """
        port = self.phone_ports[extension]
        path = SCENARIOS / scenario
        if template is not None:
            path = self.workdir / f"{uuid.uuid4().hex[:8]}-{scenario}"
            path.write_text(render_template((SCENARIOS / scenario).read_text(), template))
        sipp = self._sipp(f"phone-{extension}", path, {"ext": extension, "pbx_domain": DOMAIN, **(keys or {})},
                          ["-m", str(calls), "-d", str(pause_ms)], port)
        deadline = time.monotonic() + BIND_TIMEOUT_SECONDS
        while not udp_port_bound(port):
            if sipp.process.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"phone {extension} did not bind port {port}:\n{log_tail(sipp.process.log_path)}")
            time.sleep(0.02)
        return sipp

    def caller(self, scenario: str, callee: str, keys: Mapping[str, str] | None = None,
               pause_ms: int = 500, call_id: str | None = None) -> Sipp:
        """Start a SIPp UAC that calls `callee` through Kamailio."""
        values = {"callee": callee, "caller": "+41441234567", "caller_name": "Max Muster", "pbx_domain": DOMAIN}
        values.update(keys or {})
        argv = ["-m", "1", "-d", str(pause_ms), "-cid_str", call_id or f"raw-{uuid.uuid4().hex[:12]}@%s"]
        # A port of its own: SIPp's default 5060 may still get retransmissions of an earlier call.
        return self._sipp(f"caller-{callee}", SCENARIOS / scenario, values, argv, free_port())

    def _sipp(self, name: str, scenario: Path, keys: Mapping[str, str], extra: list[str], port: int | None) -> Sipp:
        errors = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}-errors.log"
        argv = base_argv(scenario, errors, local_port=port) + keyword_argv(keys) + extra
        argv += ["-timeout", f"{SIPP_TIMEOUT_SECONDS}s", "-timeout_error", f"{LOOPBACK}:{self.sip_port}"]
        process = ChildProcess(name, argv, log_path=self.workdir / "sipp.log", cwd=self.workdir,
                               guard=self._guard, stdout_to_log=False)
        sipp = Sipp(name, process, errors)
        self._running = [known for known in self._running if known.process.poll() is None]
        self._running.append(sipp)
        return sipp

    def _render(self, module_dir: Path) -> str:
        template = (SUPPORT / "kamailio-hep.cfg").read_text()
        routes = []
        for extension, port in self.phone_ports.items():
            routes.append(
                f'\tif ($rU == "{extension}") {{\n\t\t$ru = "sip:{extension}@{LOOPBACK}:{port}";\n'
                "\t\tt_relay();\n\t\texit;\n\t}"
            )
        members = [f"sip:{member}@{LOOPBACK}:{self.phone_ports[member]}" for member in RING_GROUP_MEMBERS]
        branches = [f'\t\t$ru = "{members[0]}";'] + [f'\t\tappend_branch("{uri}");' for uri in members[1:]]
        return render_template(template, {
            "sip_port": str(self.sip_port),
            "domain": DOMAIN,
            "module_dir": f"{module_dir}/",
            "hep_port": str(self.hep_port),
            "hep_auth_key": HEP_AUTH_KEY,
            "extensions": " ".join(EXTENSIONS),
            "ring_group": RING_GROUP,
            "ring_group_members": " ".join(RING_GROUP_MEMBERS),
            "ring_group_branches": "\n".join(branches),
            "extension_routes": "\n".join(routes),
        })

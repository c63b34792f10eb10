"""The lab's PBX: Kamailio 5.6 rendered from kamailio.cfg and run in the foreground."""

from __future__ import annotations

import glob
import logging
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from agent.lab.certs import LabCertificates, write_tls_config
from agent.lab.processes import LOOPBACK, ChildProcess, Guard, LabError, find_program, log_tail

log = logging.getLogger(__name__)

# Debian's kamailio-*-modules install into the multiarch directory
# (/usr/lib/x86_64-linux-gnu/..., /usr/lib/aarch64-linux-gnu/...).
MODULE_DIR_PATTERNS = ("/usr/lib/*/kamailio/modules", "/usr/lib/kamailio/modules")

# pua needs these tables although it keeps its records in memory (db_mode=0);
# auth_db reads the subscriber table.
PUA_SCHEMA_FILES = ("standard-create.sql", "presence-create.sql", "auth_db-create.sql")
PUA_SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")

# Shared and private memory in MB. The lab handles a handful of calls at a time.
SHARED_MEMORY_MB = 64
PRIVATE_MEMORY_MB = 8

# Kamailio 5.6 responds to OPTIONS about 0.4 s after it starts on a 2-core
# machine. The margin covers a loaded CI machine.
READY_TIMEOUT_SECONDS = 15.0
OPTIONS_REPLY_TIMEOUT_SECONDS = 0.3

# Registrations and subscriptions may last up to a day: the lab runs for hours.
MAX_EXPIRES_SECONDS = 86400

EXTENSION_REGEX = "^[0-9]{3}$"
# E.164 with "+", or national/international dialling with a leading 0.
EXTERNAL_REGEX = "^(\\+|0)[0-9]{4,}$"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class PbxSettings:
    """Listening port, domain and routing of the lab PBX."""

    sip_port: int
    domain: str
    carrier_port: int
    ring_group: str
    ring_group_members: tuple[str, ...]
    tls_port: int
    certificates: LabCertificates
    # The account that must authenticate, and its password (the agent's account).
    agent_user: str
    agent_password: str = field(repr=False)
    # "MD5" or "SHA-256", the digest algorithm of the challenges.
    auth_algorithm: str = "MD5"
    # Where siptrace mirrors every SIP message as HEP v3, or None for no mirror.
    hep_address: tuple[str, int] | None = None


def find_module_dir() -> Path:
    """Return Kamailio's module directory, or raise when the modules are missing."""
    for pattern in MODULE_DIR_PATTERNS:
        for candidate in sorted(glob.glob(pattern)):
            if (Path(candidate) / "pua_dialoginfo.so").is_file():
                return Path(candidate)
    raise LabError(
        "Kamailio modules not found in /usr/lib/*/kamailio/modules: install the Debian packages "
        "kamailio kamailio-presence-modules kamailio-sqlite-modules (scripts/setup does)"
    )


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace every {{name}} in the template; raise on a name with no value."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise LabError(f"template placeholders without a value: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def render_config(settings: PbxSettings, module_dir: Path, pua_db: Path, tls_config: Path) -> str:
    """Return kamailio.cfg with this lab's ports, domain and ring group filled in."""
    template = resources.files("agent.lab").joinpath("kamailio.cfg").read_text()
    members = settings.ring_group_members
    member_uris = [f"sip:{member}@{LOOPBACK}:{settings.sip_port}" for member in members]
    branches = [f'\t$ru = "{member_uris[0]}";']
    branches += [f'\tappend_branch("{uri}");' for uri in member_uris[1:]]

    values = {
        "sip_port": str(settings.sip_port),
        "domain": settings.domain,
        "carrier_port": str(settings.carrier_port),
        "ring_group": settings.ring_group,
        "ring_group_members": " ".join(members),
        "ring_group_branches": "\n".join(branches),
        "module_dir": f"{module_dir}/",
        "pua_db": str(pua_db),
        "max_expires": str(MAX_EXPIRES_SECONDS),
        "extension_regex": EXTENSION_REGEX,
        "external_regex": EXTERNAL_REGEX,
        "tls_port": str(settings.tls_port),
        "tls_config": str(tls_config),
        "agent_user": settings.agent_user,
        "auth_algorithm": settings.auth_algorithm,
        "siptrace": _siptrace(settings.hep_address),
    }
    return render_template(template, values)


def _siptrace(hep_address: tuple[str, int] | None) -> str:
    """Return the siptrace lines that mirror all SIP as HEP v3, or nothing.

    Kamailio's siptrace defaults to HEP version 1, which carries no chunks, so version 3
    is set; trace_mode 1 traces every message without route script changes.
    """
    if hep_address is None:
        return ""
    host, port = hep_address
    return "\n".join(
        [
            'loadmodule "siptrace.so"',
            f'modparam("siptrace", "duplicate_uri", "sip:{host}:{port}")',
            'modparam("siptrace", "hep_mode_on", 1)',
            'modparam("siptrace", "hep_version", 3)',
            'modparam("siptrace", "hep_capture_id", 2001)',
            'modparam("siptrace", "trace_to_database", 0)',
            'modparam("siptrace", "trace_on", 1)',
            'modparam("siptrace", "trace_mode", 1)',
        ]
    )


def create_pua_database(path: Path, accounts: Mapping[str, str] | None = None) -> None:
    """Create the SQLite file that pua insists on, with the subscriber table of `accounts`.

    `accounts` maps user names to plain-text passwords; auth_db computes HA1 from them.
    """
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        for name in PUA_SCHEMA_FILES:
            schema = PUA_SCHEMA_DIR / name
            if not schema.is_file():
                raise LabError(f"{schema} not found: install the Debian package kamailio-sqlite-modules")
            connection.executescript(schema.read_text())
        for user, password in (accounts or {}).items():
            connection.execute(
                "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)", (user, "", password)
            )
    path.chmod(0o600)


def options_ping(port: int, timeout: float = OPTIONS_REPLY_TIMEOUT_SECONDS) -> bool:
    """Send one OPTIONS to 127.0.0.1:port over UDP; tell whether a 200 came back."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{call_id[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:lab-probe@{LOOPBACK}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(request.encode(), (LOOPBACK, port))
        try:
            reply, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return False
    return reply.startswith(b"SIP/2.0 200")


class Pbx:
    """Kamailio as a child process, with its files in one work directory."""

    def __init__(self, settings: PbxSettings, workdir: Path, guard: Guard | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.config_path = workdir / "kamailio.cfg"
        self.log_path = workdir / "kamailio.log"
        self._guard = guard
        self._process: ChildProcess | None = None

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Write the configuration, start Kamailio and wait until it responds to OPTIONS."""
        kamailio = find_program("kamailio", "kamailio")
        module_dir = find_module_dir()

        pua_db = self.workdir / "kamailio-pua.sqlite"
        create_pua_database(pua_db, {self.settings.agent_user: self.settings.agent_password})
        tls_config = self.workdir / "tls.cfg"
        write_tls_config(tls_config, self.settings.certificates)
        self.config_path.write_text(render_config(self.settings, module_dir, pua_db, tls_config))
        self.log_path.write_text("")

        argv = self._argv(kamailio)
        self._process = ChildProcess(
            "kamailio", argv, log_path=self.log_path, cwd=self.workdir, guard=self._guard
        )
        log.info(
            "kamailio starting on udp+tcp %s:%d and tls port %d (pid %d)",
            LOOPBACK, self.settings.sip_port, self.settings.tls_port, self._process.pid,
        )
        self._wait_ready(timeout)
        log.info("kamailio ready on %s:%d, domain %s", LOOPBACK, self.settings.sip_port, self.settings.domain)

    def _argv(self, kamailio: str) -> Sequence[str]:
        # -DD: stay in the foreground with worker processes; -E: log to stderr.
        # -Y and -w keep the runtime files (and any core dump) in the work dir.
        return [
            kamailio,
            "-f", str(self.config_path),
            "-DD", "-E",
            "-m", str(SHARED_MEMORY_MB),
            "-M", str(PRIVATE_MEMORY_MB),
            "-Y", str(self.workdir),
            "-w", str(self.workdir),
        ]

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self.stop()
                raise LabError(
                    f"kamailio exited with code {code} during start-up; last lines of {self.log_path}:\n"
                    + log_tail(self.log_path)
                )
            if options_ping(self.settings.sip_port):
                return
            time.sleep(0.1)

        self.stop()
        raise LabError(
            f"kamailio did not respond to OPTIONS on {LOOPBACK}:{self.settings.sip_port} within {timeout:.0f} s; "
            f"last lines of {self.log_path}:\n" + log_tail(self.log_path)
        )

    @property
    def pid(self) -> int | None:
        """Kamailio's main process id, which is also its process group id."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop Kamailio and its worker processes."""
        if self._process is None:
            return
        code = self._process.stop()
        log.info("kamailio stopped (exit code %s)", code)
        self._process = None

    def kill(self) -> None:
        """End Kamailio with SIGKILL, as a crash or power loss would: no goodbye on any socket."""
        if self._process is None:
            return
        code = self._process.kill()
        log.info("kamailio killed (exit code %s)", code)
        self._process = None

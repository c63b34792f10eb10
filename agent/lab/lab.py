"""The lab: Kamailio, simulated phones, a carrier and callers, all on 127.0.0.1."""

from __future__ import annotations

import enum
import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

from agent.lab import calls, traffic
from agent.lab.calls import EXTERNAL_PARTY, AnswerAfter, CallHandle, CallPlan
from agent.lab.certs import LabCertificates, make_certificates
from agent.lab.pbx import EXTENSION_REGEX, Pbx, PbxSettings
from agent.lab.phones import REGISTER_TIMEOUT_SECONDS, Phone, register, start_phone
from agent.lab.processes import LOOPBACK, Guard, LabError, free_port

log = logging.getLogger(__name__)

DOMAIN = "pbx.local"

# The account the agent subscribes with. Kamailio challenges its REGISTER (401) and
# SUBSCRIBE (407); the phones and other watchers are not authenticated.
AGENT_USER = "agent"

# Digest algorithms Kamailio's auth module can be set to.
AUTH_ALGORITHMS = ("MD5", "SHA-256")

# The monitored extensions, with the names their phones show as callers.
EXTENSIONS: Mapping[str, str] = {"201": "Anna Keller", "202": "Beat Meier", "203": "Carla Huber"}

# Calling the ring group rings its members in parallel; the first to answer wins.
RING_GROUP = "600"
RING_GROUP_MEMBERS = ("201", "202")

# Phones register for an hour and renew at half-time, as hardware phones do.
REGISTER_EXPIRES_SECONDS = 3600
REGISTER_REFRESH_SECONDS = REGISTER_EXPIRES_SECONDS / 2

DEFAULT_CALLER = "+41441234567"
DEFAULT_ANSWER_AFTER_SECONDS = 3.0

# Time for running callers to end when the lab stops, before they are killed.
CALL_STOP_GRACE_SECONDS = 1.0

_EXTENSION = re.compile(EXTENSION_REGEX)


class _Unset(enum.Enum):
    """Marks an argument the caller left out (None has a meaning of its own)."""

    ANSWER_AFTER = enum.auto()


class Lab:
    """Kamailio with phones 201-203, ring group 600 and a carrier, in one work dir.

    Usage: ``with Lab(Path("var/lab")) as lab: lab.call(to="201").wait(30)``.
    """

    def __init__(
        self,
        workdir: Path | str,
        sip_port: int = 0,
        *,
        auth_algorithm: str = "MD5",
        hep_address: tuple[str, int] | None = None,
    ) -> None:
        self.hep_address = hep_address
        if auth_algorithm not in AUTH_ALGORITHMS:
            raise ValueError(f"invalid auth_algorithm {auth_algorithm!r}: expected one of {', '.join(AUTH_ALGORITHMS)}")
        # SIPp resolves scenario and log paths against its own working directory.
        self.workdir = Path(workdir).resolve()
        self.domain = DOMAIN
        self.extensions: tuple[str, ...] = tuple(EXTENSIONS)
        self.ring_group = RING_GROUP
        self.ring_group_members = RING_GROUP_MEMBERS
        self._requested_port = sip_port
        self._sip_port: int | None = None
        self._tls_port: int | None = None
        self.auth_algorithm = auth_algorithm
        self.agent_user = AGENT_USER
        self.agent_password = secrets.token_urlsafe(12)
        self._certificates: LabCertificates | None = None
        self._pbx_lock = threading.Lock()
        self._guard: Guard | None = None
        self._pbx: Pbx | None = None
        self._phones: dict[str, Phone] = {}
        self._carrier: Phone | None = None
        self._calls: list[CallHandle] = []
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._refresher: threading.Thread | None = None

    # ----- life cycle -----

    def start(self) -> None:
        """Start Kamailio, the carrier and the phones, and return once every phone is registered.

        Raises LabError with the end of Kamailio's log when something fails.
        """
        if self._pbx is not None:
            raise LabError("lab already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._guard = Guard()

        try:
            self._start_processes()
        except BaseException:
            tail = self._pbx.log_tail() if self._pbx is not None else ""
            self.stop()
            if tail:
                log.error("lab start-up failed; last lines of kamailio.log:\n%s", tail)
            raise

        self._refresher = threading.Thread(target=self._refresh_registrations, name="lab-register", daemon=True)
        self._refresher.start()
        extensions = " ".join(self.extensions)
        log.info("lab ready: sip:%s:%d, domain %s, extensions %s", LOOPBACK, self.sip_port, self.domain, extensions)

    def _start_processes(self) -> None:
        self._sip_port = self._requested_port or free_port()
        self._tls_port = free_port()
        self._certificates = make_certificates(self.workdir, self.domain)
        self._carrier = start_phone(EXTERNAL_PARTY, self.workdir, self._guard)

        settings = PbxSettings(
            sip_port=self._sip_port,
            domain=self.domain,
            carrier_port=self._carrier.port,
            ring_group=self.ring_group,
            ring_group_members=self.ring_group_members,
            tls_port=self._tls_port,
            certificates=self._certificates,
            agent_user=self.agent_user,
            agent_password=self.agent_password,
            auth_algorithm=self.auth_algorithm,
            hep_address=self.hep_address,
        )
        self._pbx = Pbx(settings, self.workdir, self._guard)
        self._pbx.start()

        for extension in self.extensions:
            self._phones[extension] = start_phone(extension, self.workdir, self._guard)
        self._register_all()

    def restart_pbx(self, *, kill: bool = False, down_seconds: float = 0.0) -> None:
        """Stop Kamailio (SIGKILL with `kill`), wait, start it again and register the phones.

        Kamailio keeps registrations, dialogs and watchers in memory, so the new process
        has none of them, as after a PBX's night-time restart. Calls in progress lose
        their dialog state; their BYE still passes by its Record-Route.
        """
        with self._pbx_lock:
            pbx = self._pbx
            if pbx is None or self._stopping.is_set():
                raise LabError("lab not running: call start() first")
            if kill:
                pbx.kill()
            else:
                pbx.stop()
            if down_seconds > 0:
                self._stopping.wait(down_seconds)
            pbx.start()
        self._register_all()
        log.info("kamailio restarted on %s:%d", LOOPBACK, self.sip_port)

    def _register_all(self) -> None:
        for extension, phone in self._phones.items():
            register(extension, phone.port, self.sip_port, self.domain, self.workdir, REGISTER_EXPIRES_SECONDS, self._guard)

    def _refresh_registrations(self) -> None:
        while not self._stopping.wait(REGISTER_REFRESH_SECONDS):
            try:
                self._register_all()
            except LabError as error:
                log.error("renewing the phones' registrations failed, will retry in %.0f s: %s", REGISTER_REFRESH_SECONDS, error)

    def stop(self) -> None:
        """Stop every call, phone and Kamailio; safe to call more than once."""
        self._stopping.set()
        if self._refresher is not None:
            # A renewal in progress ends within the REGISTER timeout.
            self._refresher.join(timeout=REGISTER_TIMEOUT_SECONDS + 2)
            self._refresher = None

        with self._calls_lock:
            running = [handle for handle in self._calls if not handle.done]
            self._calls.clear()
        for handle in running:
            log.info("call %s to %s stopped with the lab", handle.call_id, handle.plan.to)
            handle.process.stop(grace=CALL_STOP_GRACE_SECONDS)

        for phone in self._phones.values():
            phone.stop()
        self._phones.clear()
        if self._carrier is not None:
            self._carrier.stop()
            self._carrier = None

        with self._pbx_lock:
            if self._pbx is not None:
                self._pbx.stop()
                self._pbx = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None

    def __enter__(self) -> Lab:
        if self._pbx is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ----- state -----

    @property
    def running(self) -> bool:
        return self._pbx is not None and self._pbx.running and not self._stopping.is_set()

    @property
    def sip_port(self) -> int:
        if self._sip_port is None:
            raise LabError("lab not started: call start() first")
        return self._sip_port

    @property
    def sip_address(self) -> tuple[str, int]:
        """Kamailio's UDP and TCP address: where watchers send SUBSCRIBE."""
        return (LOOPBACK, self.sip_port)

    @property
    def tls_port(self) -> int:
        if self._tls_port is None:
            raise LabError("lab not started: call start() first")
        return self._tls_port

    @property
    def tls_address(self) -> tuple[str, int]:
        """Kamailio's TLS address; its certificate names the lab domain and 127.0.0.1."""
        return (LOOPBACK, self.tls_port)

    @property
    def ca_file(self) -> Path:
        """The lab CA's certificate, which the agent's `ca_file` setting trusts."""
        if self._certificates is None:
            raise LabError("lab not started: call start() first")
        return self._certificates.ca_file

    @property
    def kamailio_log(self) -> Path:
        return self.workdir / "kamailio.log"

    def process_groups(self) -> list[int]:
        """Return the process group ids of Kamailio, the phones and the carrier."""
        groups = [phone.process.pid for phone in self._phones.values()]
        if self._carrier is not None:
            groups.append(self._carrier.process.pid)
        if self._pbx is not None and self._pbx.pid is not None:
            groups.append(self._pbx.pid)
        return groups

    def phone_trace(self, extension: str) -> Path:
        """Return the SIP message trace of a phone (or of "external", the carrier)."""
        return self.workdir / f"phone-{extension}-messages.log"

    def aor(self, extension: str) -> str:
        """Return the address of record, e.g. sip:201@pbx.local."""
        return f"sip:{extension}@{self.domain}"

    # ----- calls -----

    def call(
        self,
        to: str,
        caller: str = DEFAULT_CALLER,
        display: str | None = None,
        answer_after: AnswerAfter | Literal[_Unset.ANSWER_AFTER] = _Unset.ANSWER_AFTER,
        talk: float = 2.0,
        cancel_after: float | None = None,
        withheld: bool = False,
    ) -> CallHandle:
        """Place one call through Kamailio and return its handle at once.

        to: an extension, the ring group or an external number (to the carrier).
        caller: a number ("+41441234567"), an extension for internal and outgoing
        calls, or "anonymous" (same as withheld=True).
        answer_after: seconds until the callee answers, None for never, or per
        member of the ring group ({"201": 2.0, "202": None}); a single number for
        the ring group is the first member's delay while the others never answer.
        Default: 3 s, or never when cancel_after is set.
        talk: seconds between answer and the caller's BYE.
        cancel_after: seconds of ringing after which the caller CANCELs.
        """
        if answer_after is _Unset.ANSWER_AFTER:
            answer_after = None if cancel_after is not None else DEFAULT_ANSWER_AFTER_SECONDS

        plan = CallPlan(
            to=to,
            caller=caller,
            display=display or self._display_name(caller),
            withheld=withheld or caller == "anonymous",
            answer_after=self._answer_plan(to, answer_after),
            talk=talk,
            cancel_after=cancel_after,
        )

        # stop() sets _stopping before it takes the lock, so a call is either
        # refused here or placed and then stopped with the lab.
        with self._calls_lock:
            if not self.running:
                raise LabError("lab not running: call start() first")
            handle = calls.place_call(plan, self.sip_port, self.domain, self.workdir, self._guard)
            self._calls = [known for known in self._calls if not known.done]
            self._calls.append(handle)
        return handle

    def _display_name(self, caller: str) -> str:
        if caller in EXTENSIONS:
            return EXTENSIONS[caller]
        for contact in traffic.load_contacts():
            if contact.number == caller:
                return contact.name
        return caller

    def _answer_plan(self, to: str, answer_after: AnswerAfter) -> dict[str, float | None]:
        if isinstance(answer_after, Mapping):
            return dict(answer_after)
        if to == self.ring_group:
            first, *others = self.ring_group_members
            plan: dict[str, float | None] = {first: answer_after}
            plan.update({member: None for member in others})
            return plan
        if _EXTENSION.match(to):
            return {to: answer_after}
        return {EXTERNAL_PARTY: answer_after}

    def run_traffic(
        self,
        stop_event: threading.Event,
        seed: int | None = None,
        time_scale: float = 1.0,
        on_call: Callable[[str, CallHandle], None] | None = None,
    ) -> int:
        """Place the realistic mix of calls until stop_event is set or the lab stops.

        Returns the number of calls placed; see traffic.run_traffic for the arguments.
        """
        return traffic.run_traffic(self, stop_event, seed, time_scale, on_call)

    def active_calls(self) -> list[CallHandle]:
        """Return the calls that have not ended yet."""
        with self._calls_lock:
            return [handle for handle in self._calls if not handle.done]

"""Pairing browsers with a PIN, checking device tokens, and closing revoked devices' pages.

`Authenticator.pair` turns a PIN into a device token under the lock-outs of
`agent.lockout`. `session` maps a token from the device cookie to its user. A watcher
polls the user database's `data_version` every second: when another process (the
`devices revoke` or `users remove` command) changed it, every open WebSocket whose
device is no longer paired is closed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.lockout import USER_POLICY, AddressLimiter, LockoutPolicy
from agent.metrics import Registry
from agent.users import Device, Session, UserStore, normalize_pin

log = logging.getLogger("ringboard.auth")

# How often the user database is checked for revocations made by another process.
REVOKE_POLL_SECONDS = 1.0

# PIN checks run one at a time, each about 0.1 s of argon2id. Requests beyond this many
# waiting get 503 at once, so a flood cannot queue minutes of work.
MAX_WAITING_PAIRINGS = 32

# The device cookie lives as long as Chromium lets a cookie live (400 days); the device
# itself stays paired until it is revoked.
COOKIE_MAX_AGE = 400 * 86400

# Over HTTPS the `__Host-` prefix makes browsers refuse the cookie unless it is Secure,
# has Path=/ and no Domain, so no other host of the office domain can set or read it.
COOKIE_NAME = "ringboard_device"
SECURE_COOKIE_NAME = "__Host-ringboard_device"

# WebSocket close code for "no valid device token": the page shows the pairing form.
UNAUTHENTICATED_CLOSE_CODE = 4401


def cookie_name(tls: bool) -> str:
    """Return the name of the device cookie."""
    return SECURE_COOKIE_NAME if tls else COOKIE_NAME


def device_cookie(token: str, tls: bool) -> str:
    """Return the Set-Cookie value that stores a device token in the browser."""
    attributes = [f"{cookie_name(tls)}={token}", "Path=/", f"Max-Age={COOKIE_MAX_AGE}", "HttpOnly", "SameSite=Strict"]
    if tls:
        attributes.append("Secure")
    return "; ".join(attributes)


@dataclass(frozen=True, slots=True)
class Paired:
    """A successful pairing: the new device and its token for the cookie."""

    session: Session
    device: Device
    token: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A rejected pairing: the HTTP status and the protocol error code with its parameters."""

    status: int
    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class LiveConnection:
    """An open WebSocket of a device; `closed` is set with a reason when it must end."""

    session: Session
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""


class Authenticator:
    """The agent's side of pairing and device tokens."""

    def __init__(
        self,
        store: UserStore,
        metrics: Registry | None = None,
        clock: Callable[[], float] = time.time,
        user_policy: LockoutPolicy = USER_POLICY,
    ) -> None:
        self.store = store
        self.clock = clock
        self.user_policy = user_policy
        self.addresses = AddressLimiter()
        self._check = asyncio.Lock()
        self._waiting = 0
        self._dummy_hash: str | None = None
        self._live: set[LiveConnection] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._data_version = store.data_version()
        metrics = metrics or Registry()
        self._pairings = metrics.counter("ringboard_pairings_total", "pairing attempts, by result")
        metrics.gauge("ringboard_paired_devices", "devices paired and not revoked", self._count_devices)

    # Lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching the database for revocations."""
        self._watcher = asyncio.create_task(self._watch(), name="revocation-watcher")

    async def stop(self) -> None:
        """Stop the watcher."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None

    # Pairing ----------------------------------------------------------------------------

    async def pair(self, pin_text: str, address: str, user_agent: str) -> Paired | Rejected:
        """Check a PIN from `address`; on success pair a new device for its user."""
        pin = normalize_pin(pin_text)
        if pin is None:
            # The format is public, so a malformed PIN reveals nothing and is not counted.
            self._pairings.inc(result="bad_request")
            return Rejected(400, "bad_request", {"field": "pin", "reason": "format"})

        rejected = self._locked(address, None)
        if rejected is not None:
            return rejected
        if self._waiting >= MAX_WAITING_PAIRINGS:
            self._pairings.inc(result="busy")
            return Rejected(503, "busy", {"retry_after": 1})

        self._waiting += 1
        try:
            async with self._check:
                return await self._pair_checked(pin, address, user_agent)
        finally:
            self._waiting -= 1

    async def _pair_checked(self, pin: str, address: str, user_agent: str) -> Paired | Rejected:
        # Checked again: requests that arrived together passed the first check together.
        rejected = self._locked(address, None)
        if rejected is not None:
            return rejected

        found = self.store.user_for_pin(pin)
        if found is not None:
            rejected = self._locked(address, found[0].locked_until)
            if rejected is not None:
                return rejected

        # An unknown user number costs the same argon2 check as a known one.
        pin_hash = found[1] if found is not None else await self._unknown_user_hash()
        matches = await asyncio.to_thread(self.store.verify_pin, pin_hash, pin)

        if found is None or not matches:
            self._fail(address, found[0] if found is not None else None)
            return Rejected(401, "pin_invalid")

        user = found[0]
        if user.failed_pairings:
            self.store.record_user_failures(user.id, 0, None)
        device, token = self.store.add_device(user.id, address, user_agent)
        session = self.store.session_for_token(token)
        assert session is not None
        self._pairings.inc(result="paired")
        log.info(
            "device %s paired for user %s (%s, extensions %s) from %s",
            device.id, user.name, user.role, ", ".join(user.extensions) or "all", address,
        )
        return Paired(session, device, token)

    def _locked(self, address: str, user_locked_until: float | None) -> Rejected | None:
        now = self.clock()
        wait = max(self.addresses.remaining(address, now), (user_locked_until or 0.0) - now)
        if wait <= 0:
            return None
        self._pairings.inc(result="locked")
        return Rejected(429, "pairing_locked", {"retry_after": math.ceil(wait)})

    def _fail(self, address: str, user: Any) -> None:
        now = self.clock()
        self._pairings.inc(result="pin_invalid")
        lockout = self.addresses.record_failure(address, now)
        failures = self.addresses.failures(address, now)
        target = f"user {user.name}" if user is not None else "no user (unknown user number)"
        log.info("pairing from %s failed: wrong PIN for %s; failed attempts from this address: %d", address, target, failures)
        if lockout:
            log.warning("pairing locked for address %s for %.0f s after %d failures", address, lockout, failures)

        if user is None:
            return
        user_failures = user.failed_pairings + 1
        user_lockout = self.user_policy.lockout_after(user_failures)
        self.store.record_user_failures(user.id, user_failures, now + user_lockout if user_lockout else None)
        if user_lockout:
            log.warning(
                "pairing locked for user %s for %.0f s after %d failures (last from %s)",
                user.name, user_lockout, user_failures, address,
            )

    async def _unknown_user_hash(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.store.hasher.hash, "0" * 9)
        return self._dummy_hash

    # Tokens -----------------------------------------------------------------------------

    def session(self, token: str | None) -> Session | None:
        """Return the session of a device token, or None when it is missing, unknown or revoked."""
        if not token:
            return None
        return self.store.session_for_token(token)

    def revoke(self, token: str) -> None:
        """Revoke the device of a token, as when a browser pairs again."""
        session = self.store.session_for_token(token)
        if session is not None:
            self.store.revoke_device(session.device_id)
            log.info("device %s of user %s revoked: the browser paired again", session.device_id, session.user_name)
            self.check_live_connections()

    # Open WebSockets --------------------------------------------------------------------

    def connect(self, session: Session) -> LiveConnection:
        """Register an open WebSocket of a device."""
        connection = LiveConnection(session)
        self._live.add(connection)
        self.store.touch_device(session.device_id)
        return connection

    def disconnect(self, connection: LiveConnection) -> None:
        """Forget a closed WebSocket."""
        self._live.discard(connection)

    def check_live_connections(self) -> int:
        """Close the WebSockets of devices that are no longer paired; return how many."""
        closed = 0
        for connection in list(self._live):
            if self.store.session_for_device(connection.session.device_id) is not None:
                continue
            connection.reason = "device_revoked"
            connection.closed.set()
            self._live.discard(connection)
            closed += 1
            log.info(
                "device %s of user %s is no longer paired; its WebSocket is closed",
                connection.session.device_id, connection.session.user_name,
            )
        return closed

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(REVOKE_POLL_SECONDS)
            try:
                version = self.store.data_version()
                if version != self._data_version:
                    self._data_version = version
                    self.check_live_connections()
            except Exception:  # A failed round must not end the watching.
                log.exception("checking the user database for revoked devices failed")

    def _count_devices(self) -> dict[tuple[tuple[str, str], ...], float]:
        return {(): float(len(self.store.devices()))}

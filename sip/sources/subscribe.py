"""asyncio adapter that drives a `DialogSubscriber` over UDP, TCP or TLS.

The adapter finds the PBX (RFC 3263), keeps one flow to it, fails over to the next
target when one stops responding, reconnects a lost TCP or TLS connection with a
jittered exponential back-off, and runs the subscriber's one timer. Every SIP decision
is the subscriber's. Dialog-info documents and subscription state changes go to two
callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sip.digest import Credentials
from sip.dns import Target
from sip.sources.locator import ServerLocator, ServerNotFound
from sip.message import Request, Response
from sip.subscription import (
    DEFAULT_EXPIRES,
    RETRY_CAP,
    RETRY_FIRST,
    RETRY_JITTER,
    T1,
    DialogSubscriber,
    DocumentReceived,
    Effect,
    FailureReason,
    Flow,
    ListUnavailable,
    MessageDropped,
    RegistrationChanged,
    SendMessage,
    StateChanged,
    SubscriberConfig,
    TransactionTimedOut,
)
from sip.sources.transport import (
    KEEPALIVE_SECONDS,
    PONG_TIMEOUT_SECONDS,
    DatagramEndpoint,
    StreamConnection,
    open_stream,
    tls_context,
)
from sip.uri import UriError, parse_uri

log = logging.getLogger("ringboard.sip.subscribe")

DocumentHandler = Callable[[DocumentReceived], None]
StateHandler = Callable[[StateChanged], None]

# Drop notices are logged once per this many, so a flood of junk cannot fill the log.
DROP_LOG_EVERY = 100

# Time for the unsubscribing requests to leave before the sockets close at stop.
STOP_FLUSH_SECONDS = 0.05

TRANSPORT_NAMES = ("udp", "tcp", "tls", "auto")


@dataclass(frozen=True, slots=True)
class SubscribeSettings:
    """The PBX's address, how to reach it, and the agent's identity towards it.

    `port` 0 means "not set": DNS (RFC 3263) or the transport's default decides, and
    `transport` "auto" lets NAPTR records choose.
    """

    server: str
    domain: str
    extensions: tuple[str, ...]
    port: int = 0
    transport: str = "udp"
    local_host: str = "0.0.0.0"
    local_port: int = 0
    user: str = "ringboard"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    expires: int = DEFAULT_EXPIRES
    register: bool = False
    list_uri: str | None = None
    outbound_proxy: str | None = None
    ca_file: str | None = None
    retry_max: float = RETRY_CAP
    dns_servers: tuple[tuple[str, int], ...] = ()
    read_unsolicited: bool = False
    keepalive_seconds: float = KEEPALIVE_SECONDS
    pong_timeout: float = PONG_TIMEOUT_SECONDS
    t1: float = T1


@dataclass(frozen=True, slots=True)
class NextHop:
    """The host the agent sends to (the PBX or its outbound proxy) and the Route for it."""

    host: str
    port: int | None
    transport: str | None
    route: str | None


class _Outcome(Enum):
    FAILED = "failed"  # The target could not be used: try the next one.
    LOST = "lost"  # The target worked, then the connection was lost: start over.


def next_hop(settings: SubscribeSettings) -> NextHop:
    """Return where requests go: the outbound proxy when one is set, else the server."""
    transport = None if settings.transport == "auto" else settings.transport
    proxy = settings.outbound_proxy
    if not proxy:
        return NextHop(settings.server, settings.port or None, transport, None)

    text = proxy if proxy.lower().startswith(("sip:", "sips:")) else f"sip:{proxy}"
    try:
        uri = parse_uri(text)
    except UriError as error:
        raise ValueError(f"invalid outbound proxy {proxy!r}: {error}") from None
    if uri.host is None:
        raise ValueError(f"invalid outbound proxy {proxy!r}: it names no host")
    proxy_transport = (uri.params.get("transport") or "").lower() or transport
    if uri.scheme == "sips":
        proxy_transport = "tls"
    host = uri.host.strip("[]")
    hostport = uri.host + (f":{uri.port}" if uri.port else "")
    route = f"sip:{hostport};lr" + (f";transport={proxy_transport}" if proxy_transport not in (None, "udp") else "")
    return NextHop(host, uri.port, proxy_transport, route)


class DialogSubscriptionSource:
    """Subscribe to the dialog state of extensions and report what arrives."""

    def __init__(
        self,
        settings: SubscribeSettings,
        *,
        on_document: DocumentHandler,
        on_state: StateHandler,
        locator: ServerLocator | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if settings.transport not in TRANSPORT_NAMES:
            raise ValueError(f"invalid transport {settings.transport!r}: expected one of {', '.join(TRANSPORT_NAMES)}")
        self.settings = settings
        self._hop = next_hop(settings)
        self._on_document = on_document
        self._on_state = on_state
        self._rng = rng or random.Random()
        self._locator = locator or ServerLocator(list(settings.dns_servers) or None, rng=self._rng)
        self._ssl: ssl.SSLContext | None = None
        self._subscriber = DialogSubscriber(self._subscriber_config(), list(settings.extensions), rng=self._rng)

        self._udp: DatagramEndpoint | None = None
        self._stream: StreamConnection | None = None
        self._target: Target | None = None
        self._target_failed = asyncio.Event()
        self._last_heard = float("-inf")
        self._supervisor: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._dropped = 0

    def _subscriber_config(self) -> SubscriberConfig:
        settings = self.settings
        credentials = None
        if settings.password is not None:
            credentials = Credentials(settings.username or settings.user, settings.password)
        return SubscriberConfig(
            domain=settings.domain,
            user=settings.user,
            expires=settings.expires,
            credentials=credentials,
            register=settings.register,
            list_uri=settings.list_uri,
            outbound_proxy=self._hop.route,
            read_unsolicited=settings.read_unsolicited,
            retry_first=min(RETRY_FIRST, settings.retry_max),
            retry_max=settings.retry_max,
            t1=settings.t1,
        )

    # Public API -------------------------------------------------------------------

    @property
    def local_address(self) -> tuple[str, int]:
        """The address of the agent's UDP socket, or of its current TCP or TLS connection."""
        if self._udp is not None:
            return self._udp.local_address
        if self._stream is not None:
            return self._stream.local_address
        raise RuntimeError("the subscription source has no socket open")

    @property
    def target(self) -> Target | None:
        """The PBX address requests go to now."""
        return self._target

    @property
    def dropped(self) -> int:
        """The number of messages dropped as invalid or unmatched."""
        return self._dropped

    def states(self) -> dict[str, str]:
        """Return each extension's subscription state."""
        return {extension: str(state) for extension, state in self._subscriber.states().items()}

    async def start(self) -> None:
        """Open the UDP socket if one may be needed, then find the PBX and subscribe."""
        settings = self.settings
        if settings.transport in ("tls", "auto") or self._hop.transport == "tls":
            self._ssl = tls_context(settings.ca_file)
        if settings.transport in ("udp", "auto"):
            self._udp = DatagramEndpoint(self._datagram_received)
            await self._udp.open((settings.local_host, settings.local_port))
        log.info(
            "subscribing to extensions %s at %s (%s) as %s@%s",
            ", ".join(settings.extensions),
            self._hop.host + (f":{self._hop.port}" if self._hop.port else ""),
            settings.transport,
            settings.user,
            settings.domain,
        )
        self._supervisor = asyncio.create_task(self._supervise(), name="sip-subscribe")

    async def stop(self) -> None:
        """Unsubscribe, give the requests a moment to leave, and close every socket."""
        if self._subscriber.flow is not None:
            self._run(self._subscriber.stop(time.monotonic()))
            await asyncio.sleep(STOP_FLUSH_SECONDS)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # Finding and using targets ---------------------------------------------------------

    async def _supervise(self) -> None:
        """Resolve, use each target in turn, and back off when none works."""
        failures = 0
        while True:
            try:
                targets = await self._locator.locate(
                    self._hop.host, port=self._hop.port, transport=self._hop.transport
                )
            except ServerNotFound as error:
                log.warning("PBX not found: %s", error)
                self._run(self._subscriber.connection_lost(time.monotonic(), FailureReason.DNS))
                failures += 1
                await asyncio.sleep(self._backoff(failures))
                continue

            outcome = _Outcome.FAILED
            for target in targets:
                outcome = await self._use(target)
                if outcome is _Outcome.LOST:
                    break
            if outcome is _Outcome.LOST:
                # The flow worked until it broke: reconnect at once, then back off.
                failures = 0
                continue
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        cap = self.settings.retry_max
        delay = min(RETRY_FIRST, cap) * 2 ** min(failures - 1, 32)
        return min(cap, delay * (1 + self._rng.uniform(-RETRY_JITTER, RETRY_JITTER)))

    async def _use(self, target: Target) -> _Outcome:
        if target.transport == "udp":
            return await self._use_datagram(target)
        return await self._use_stream(target)

    async def _use_datagram(self, target: Target) -> _Outcome:
        """Send to a UDP target until a transaction times out with nothing heard from it."""
        if self._udp is None:
            log.warning("PBX target %s is UDP, but transport is %s: skipped", target, self.settings.transport)
            return _Outcome.FAILED
        self._switch_target(target)
        self._target_failed.clear()
        flow = self._subscriber.flow
        if flow is None or flow.transport != "UDP":
            if flow is not None:
                self._run(self._subscriber.connection_lost(time.monotonic()))
            host, port = self._udp.local_address
            if host in ("0.0.0.0", "::"):
                host = _outgoing_address(target.host, target.port)
            self._run(self._subscriber.connection_made(Flow("UDP", host, port), time.monotonic()))
        await self._target_failed.wait()
        return _Outcome.FAILED

    async def _use_stream(self, target: Target) -> _Outcome:
        """Connect to a TCP or TLS target and run the subscriptions until the connection ends."""
        if self._subscriber.flow is not None:
            self._run(self._subscriber.connection_lost(time.monotonic()))
        self._switch_target(target)
        try:
            stream = await open_stream(
                target,
                self._stream_message,
                ssl_context=self._ssl,
                local_host=self.settings.local_host,
                keepalive_seconds=self.settings.keepalive_seconds,
                pong_timeout=self.settings.pong_timeout,
            )
        except ssl.SSLError as error:
            log.warning("TLS with %s failed: %s", target, error)
            self._run(self._subscriber.connection_lost(time.monotonic(), FailureReason.TLS))
            return _Outcome.FAILED
        except (OSError, TimeoutError) as error:
            log.warning("connecting to %s failed: %s", target, error or "timed out")
            self._run(self._subscriber.connection_lost(time.monotonic(), FailureReason.TRANSPORT))
            return _Outcome.FAILED

        self._stream = stream
        host, port = stream.local_address
        log.info("connected to %s from %s:%d", target, host, port)
        self._last_heard = time.monotonic()
        self._run(self._subscriber.connection_made(Flow(target.transport.upper(), host, port), time.monotonic()))
        try:
            reason = await stream.closed
        finally:
            stream.close()
            self._stream = None
        log.warning("connection to %s lost: %s", target, reason)
        self._run(self._subscriber.connection_lost(time.monotonic(), FailureReason.TRANSPORT))
        return _Outcome.LOST

    def _switch_target(self, target: Target) -> None:
        if self._target != target:
            if self._target is not None:
                log.warning("PBX target changed from %s to %s", self._target, target)
            self._target = target

    # Received messages -------------------------------------------------------------

    def _datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        target = self._target
        if target is not None and address == (target.host, target.port):
            self._last_heard = time.monotonic()
        self._run(self._subscriber.receive(data, address, time.monotonic()))

    def _stream_message(self, message: Request | Response, address: tuple[str, int] | None) -> None:
        self._last_heard = time.monotonic()
        self._run(self._subscriber.receive_message(message, address, time.monotonic()))

    # Effects -------------------------------------------------------------------------

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            self._apply(effect)
        self._rearm()

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, SendMessage):
            self._send(effect)
        elif isinstance(effect, DocumentReceived):
            self._on_document(effect)
        elif isinstance(effect, StateChanged):
            self._log_state(effect)
            self._on_state(effect)
        elif isinstance(effect, TransactionTimedOut):
            self._timed_out(effect)
        elif isinstance(effect, RegistrationChanged):
            self._log_registration(effect)
        elif isinstance(effect, ListUnavailable):
            log.warning(
                "list subscription %s is not offered (%s): subscribing to each extension instead",
                self.settings.list_uri, effect.detail,
            )
        elif isinstance(effect, MessageDropped):
            self._dropped += 1
            if self._dropped % DROP_LOG_EVERY == 1:
                where = f"{effect.address[0]}:{effect.address[1]}" if effect.address else "the PBX connection"
                log.warning("dropped a SIP message from %s (%s); %d dropped so far", where, effect.reason, self._dropped)

    def _send(self, effect: SendMessage) -> None:
        if self._stream is not None:
            self._stream.send(effect.data)
            return
        if self._udp is None:
            return
        address = effect.address
        if address is None:
            if self._target is None:
                return
            address = (self._target.host, self._target.port)
        self._udp.send(effect.data, address)

    def _timed_out(self, effect: TransactionTimedOut) -> None:
        """Fail over (RFC 3263 §4.3) when the UDP target has been silent since the request."""
        if self._stream is not None or self._last_heard >= effect.started:
            return
        if not self._target_failed.is_set():
            log.warning("no response from %s to %s: trying the next PBX target", self._target, effect.method)
            self._target_failed.set()

    def _log_state(self, change: StateChanged) -> None:
        if change.state == "failing":
            log.warning(
                "subscription for extension %s is failing: %s%s",
                change.extension, change.reason, f" (SIP {change.status})" if change.status else "",
            )
        else:
            log.info("subscription for extension %s is %s", change.extension, change.state)

    def _log_registration(self, change: RegistrationChanged) -> None:
        user = f"{self.settings.user}@{self.settings.domain}"
        if change.registered:
            log.info("registered %s", user)
        else:
            log.warning(
                "registration of %s failed: %s%s",
                user, change.reason, f" (SIP {change.status})" if change.status else "",
            )

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._subscriber.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._run(self._subscriber.on_timer(time.monotonic()))


def _outgoing_address(host: str, port: int) -> str:
    """Return the local address the system routes to the PBX from, for Via and Contact.

    Connecting a UDP socket picks a route without sending anything.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        return probe.getsockname()[0]

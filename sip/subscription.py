"""Sans-I/O SIP user agent for dialog-event subscriptions (RFC 6665 with RFC 4235 bodies).

`DialogSubscriber` keeps one SUBSCRIBE dialog per monitored extension, or one RFC 4662
list subscription for all of them, and optionally the REGISTER of the agent's own
account. It takes received messages, clock readings and connection events, and returns
effects: messages to send, dialog-info documents received, and subscription state
changes. Sockets, DNS and timers belong to the adapter in `sip.sources.subscribe`.

The adapter reports the connection its requests travel on with `connection_made`
(once for UDP, once per TCP or TLS connection) and its loss with `connection_lost`.
Every SUBSCRIBE dialog is bound to the Contact of that connection, so a lost
connection ends them all and the next one starts new dialogs (RFC 5626 §4.4).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sip.digest import PROXY_AUTHENTICATE, WWW_AUTHENTICATE, Credentials, DigestClient
from sip.eventlist import LIST_ACCEPT, LIST_CONTENT_TYPE, EventListError, split_list_notification
from sip.message import Request, Response, SipParseError, build_request, build_response, is_keepalive, parse_message
from sip.transaction import T1, T4, TIMER_F_FACTOR, ClientTransaction, ServerTransactions
from sip.uri import UriError, parse_name_addr

# RFC 3261 §17.1.2.2: a non-INVITE transaction times out after 64*T1 (timer F).
TIMER_F = TIMER_F_FACTOR * T1

# The duration we ask for. The notifier may shorten it (RFC 6665 §4.1.2.1).
DEFAULT_EXPIRES = 600

# The agent's own registration, when enabled, is asked for an hour, as desk phones do.
DEFAULT_REGISTER_EXPIRES = 3600

# Refresh when this share of the granted duration has passed, so a refresh that needs
# every retransmission up to timer F still lands before a long subscription expires.
REFRESH_FRACTION = 0.8

# A refresh is never scheduled sooner than this after the last one, so a notifier that
# grants a few seconds cannot make the agent send requests in a tight loop.
MIN_REFRESH_SECONDS = 1.0

# Re-subscribe back-off after a failure: doubles from the first value up to the cap,
# with up to RETRY_JITTER of random spread so that many agents, or many extensions of
# one agent, do not retry in lock-step. The cap is configurable (`[sip] retry_max`).
RETRY_FIRST = 2.0
RETRY_CAP = 60.0
RETRY_JITTER = 0.25

# A server that keeps sending `stale=true` is broken. After this many fresh nonces for
# one request the agent gives up and retries after the back-off.
MAX_STALE_ROUNDS = 3

# innovaphone sends dialog NOTIFYs outside any subscription. Each Call-ID seen is
# remembered so its first document resets the extension's state; the cap bounds the
# memory a flood of Call-IDs can take.
MAX_UNSOLICITED_DIALOGS = 1024

DIALOG_INFO_TYPE = "application/dialog-info+xml"

# The key of the one list subscription among the per-extension ones.
LIST_KEY = "*list*"

# Final responses to a list SUBSCRIBE which show that the PBX offers no such list, so
# the agent subscribes to each extension instead.
LIST_UNAVAILABLE_STATUSES = frozenset({400, 403, 404, 406, 415, 420, 480, 484, 488, 489, 501})


class SubscriptionState(StrEnum):
    """The state of one extension's subscription, as /healthz reports it."""

    PENDING = "pending"
    ACTIVE = "active"
    FAILING = "failing"


class FailureReason(StrEnum):
    """The cause of a failing subscription, as /healthz and the page name it."""

    TIMEOUT = "timeout"
    REJECTED = "rejected"
    TERMINATED = "terminated"
    TRANSPORT = "transport"
    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    DNS = "dns"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    """The agent's identity towards the PBX and the subscriptions it requests."""

    domain: str
    user: str = "ringboard"
    expires: int = DEFAULT_EXPIRES
    user_agent: str = "Ringboard"
    credentials: Credentials | None = None
    register: bool = False
    register_expires: int = DEFAULT_REGISTER_EXPIRES
    list_uri: str | None = None
    # A URI such as `sip:proxy.example.com;lr`, put in a Route header of requests
    # outside a dialog (RFC 3261 §8.1.2).
    outbound_proxy: str | None = None
    read_unsolicited: bool = False
    retry_first: float = RETRY_FIRST
    retry_max: float = RETRY_CAP
    t1: float = T1


@dataclass(frozen=True, slots=True)
class Flow:
    """The connection the agent's requests leave on, and its own address on it."""

    transport: str
    local_host: str
    local_port: int

    @property
    def reliable(self) -> bool:
        """Whether the transport delivers by itself, so nothing is retransmitted."""
        return self.transport != "UDP"


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send these bytes: a request to the PBX (`address` None) or a response to `address`."""

    data: bytes
    address: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class DocumentReceived:
    """A NOTIFY of an active subscription carried this body (it may be empty)."""

    extension: str
    body: bytes
    content_type: str | None
    first_of_subscription: bool


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The subscription of one extension moved to another state."""

    extension: str
    state: SubscriptionState
    reason: str | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """The agent's own registration succeeded or failed."""

    registered: bool
    reason: str | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A request started at `started` got no response by timer F: the server may be gone."""

    method: str
    started: float


@dataclass(frozen=True, slots=True)
class ListUnavailable:
    """The PBX refused the list subscription, so each extension is subscribed on its own."""

    status: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A message was not usable SIP, or matched nothing we sent."""

    reason: str
    address: tuple[str, int] | None


Effect = (
    SendMessage
    | DocumentReceived
    | StateChanged
    | RegistrationChanged
    | TransactionTimedOut
    | ListUnavailable
    | MessageDropped
)


@dataclass(slots=True)
class _Outgoing:
    """State shared by the SUBSCRIBE dialogs and the REGISTER: one request at a time."""

    call_id: str
    from_tag: str
    cseq: int = 0
    transaction: ClientTransaction | None = None
    # Challenges the current request was resent for. A second challenge that is not
    # `stale` means the credentials are wrong (RFC 7616 §3.3).
    auth_rounds: int = 0
    stale_rounds: int = 0
    refresh_at: float | None = None
    retry_at: float | None = None
    failures: int = 0
    # The duration asked for; a 423 response raises it to the server's Min-Expires.
    expires: int = DEFAULT_EXPIRES
    closing: bool = False


@dataclass(slots=True)
class _Subscription(_Outgoing):
    """One SUBSCRIBE dialog: of one extension, or the list of all of them."""

    key: str = ""
    uri: str = ""
    extensions: tuple[str, ...] = ()
    to_tag: str | None = None
    route: list[str] = field(default_factory=list)
    remote_target: str | None = None
    state: SubscriptionState = SubscriptionState.PENDING
    reason: str | None = None
    status: int | None = None
    last_notify_cseq: int | None = None
    reported: set[str] = field(default_factory=set)

    @property
    def is_list(self) -> bool:
        return self.key == LIST_KEY


@dataclass(slots=True)
class _Registration(_Outgoing):
    """The agent's own REGISTER dialog-less binding (RFC 3261 §10)."""

    registered: bool = False


class DialogSubscriber:
    """Subscribe to `Event: dialog` for each extension and read the NOTIFYs."""

    def __init__(self, config: SubscriberConfig, extensions: list[str], *, rng: random.Random | None = None) -> None:
        self.config = config
        self.extensions = tuple(extensions)
        self._rng = rng or random.Random()
        self._digest = DigestClient(config.credentials) if config.credentials else None
        self._flow: Flow | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._by_call_id: dict[str, _Subscription] = {}
        self._pending: dict[str, _Outgoing] = {}
        self._completed: dict[str, float] = {}
        self._answered = ServerTransactions(config.t1)
        self._unsolicited: dict[str, str] = {}
        self._registration: _Registration | None = None
        self._extension_state: dict[str, tuple[SubscriptionState, str | None, int | None]] = {
            extension: (SubscriptionState.PENDING, None, None) for extension in self.extensions
        }

        if config.list_uri:
            self._new_dialog(LIST_KEY)
        else:
            for extension in self.extensions:
                self._new_dialog(extension)
        if config.register:
            self._registration = self._new_registration()

    # Public API -------------------------------------------------------------------

    @property
    def flow(self) -> Flow | None:
        """The connection requests leave on, None while there is none."""
        return self._flow

    @property
    def uses_list(self) -> bool:
        """Whether one list subscription covers every extension."""
        return LIST_KEY in self._subscriptions

    def connection_made(self, flow: Flow, now: float) -> list[Effect]:
        """Start new dialogs (and the registration) on a new connection to the PBX."""
        self._flow = flow
        effects: list[Effect] = []
        if self._registration is not None:
            effects += self._send_register(self._registration, now)
        for key in list(self._subscriptions):
            fresh = self._new_dialog(key)
            effects += self._send_subscribe(fresh, now)
        return effects

    def connection_lost(self, now: float, reason: str = FailureReason.TRANSPORT, status: int | None = None) -> list[Effect]:
        """Fail every subscription because the connection is gone or cannot be made.

        Nothing is sent until `connection_made`; the adapter reconnects with its back-off.
        """
        self._flow = None
        self._pending.clear()
        effects: list[Effect] = []
        if self._registration is not None:
            registration = self._registration
            registration.transaction = None
            registration.refresh_at = registration.retry_at = None
            if registration.registered:
                registration.registered = False
                effects.append(RegistrationChanged(False, reason, status))
        for subscription in self._subscriptions.values():
            subscription.transaction = None
            subscription.refresh_at = subscription.retry_at = None
            subscription.to_tag = None
            effects += self._set_state(subscription, SubscriptionState.FAILING, reason, status)
        return effects

    def stop(self, now: float) -> list[Effect]:
        """End every subscription with `Expires: 0` (RFC 6665 §4.1.2.3) and unregister."""
        if self._flow is None:
            return []
        effects: list[Effect] = []
        for subscription in self._subscriptions.values():
            if subscription.to_tag is not None and subscription.state == SubscriptionState.ACTIVE:
                effects += self._send_subscribe(subscription, now, closing=True)
        if self._registration is not None and self._registration.registered:
            effects += self._send_register(self._registration, now, closing=True)
        return effects

    def states(self) -> dict[str, SubscriptionState]:
        """Return each extension's subscription state."""
        return {extension: state for extension, (state, _, _) in self._extension_state.items()}

    def next_deadline(self) -> float | None:
        """Return the earliest clock reading at which `on_timer` has work, if any."""
        deadlines = [self._answered.deadline(), min(self._completed.values(), default=None)]
        for outgoing in self._outgoing():
            transaction = outgoing.transaction
            if transaction is not None:
                deadlines.append(transaction.deadline())
            elif self._flow is not None:
                deadlines += [outgoing.retry_at, outgoing.refresh_at]
        return min((deadline for deadline in deadlines if deadline is not None), default=None)

    def on_timer(self, now: float) -> list[Effect]:
        """Retransmit, time out, refresh or retry whatever is due at `now`."""
        self._answered.expire(now)
        for branch in [branch for branch, forget_at in self._completed.items() if forget_at <= now]:
            del self._completed[branch]

        effects: list[Effect] = []
        if self._registration is not None:
            effects += self._registration_timers(self._registration, now)
        for subscription in list(self._subscriptions.values()):
            effects += self._subscription_timers(subscription, now)
        return effects

    def receive(self, data: bytes, address: tuple[str, int] | None, now: float) -> list[Effect]:
        """Handle one datagram (or one framed stream message) from the network."""
        if is_keepalive(data):
            return []  # RFC 5626 §4.4.1 keep-alive: over UDP no response is sent.
        try:
            message = parse_message(data)
        except SipParseError as error:
            return [MessageDropped(f"invalid SIP message: {error}", address)]
        return self.receive_message(message, address, now)

    def receive_message(self, message: Request | Response, address: tuple[str, int] | None, now: float) -> list[Effect]:
        """Handle one parsed message from the network."""
        if isinstance(message, Response):
            return self._handle_response(message, address, now)

        # RFC 3261 §17.2.2: a retransmitted request gets the response already sent.
        cached = self._answered.lookup(_branch_of(message), message.method)
        if cached is not None:
            return [SendMessage(cached, address)]

        if message.method == "NOTIFY":
            return self._handle_notify(message, address, now)
        if message.method == "ACK":
            return []
        if message.method == "OPTIONS":
            # PBXs probe registered contacts with OPTIONS (Asterisk `qualify_frequency`).
            return [self._reply(message, address, now, 200, "OK", headers=[("Allow", "NOTIFY, OPTIONS")])]
        return [self._reply(message, address, now, 405, "Method Not Allowed", headers=[("Allow", "NOTIFY, OPTIONS")])]

    # Dialogs and registration --------------------------------------------------------

    def _new_dialog(self, key: str) -> _Subscription:
        old = self._subscriptions.get(key)
        if old is not None:
            self._by_call_id.pop(old.call_id, None)
            if old.transaction is not None:
                self._pending.pop(old.transaction.branch, None)

        if key == LIST_KEY:
            uri, extensions = self.config.list_uri or "", self.extensions
        else:
            uri, extensions = f"sip:{key}@{self.config.domain}", (key,)
        subscription = _Subscription(
            call_id=self._new_call_id(),
            from_tag=secrets.token_hex(6),
            expires=self.config.expires,
            key=key,
            uri=uri,
            extensions=extensions,
        )
        if old is not None:
            subscription.failures = old.failures
            subscription.state, subscription.reason, subscription.status = old.state, old.reason, old.status
            subscription.expires = old.expires
        self._subscriptions[key] = subscription
        self._by_call_id[subscription.call_id] = subscription
        return subscription

    def _new_registration(self) -> _Registration:
        return _Registration(
            call_id=self._new_call_id(), from_tag=secrets.token_hex(6), expires=self.config.register_expires
        )

    def _new_call_id(self) -> str:
        return f"{secrets.token_hex(12)}@ringboard"

    def _outgoing(self) -> list[_Outgoing]:
        items: list[_Outgoing] = list(self._subscriptions.values())
        if self._registration is not None:
            items.append(self._registration)
        return items

    # Requests ----------------------------------------------------------------------

    def _send_subscribe(self, subscription: _Subscription, now: float, *, closing: bool = False) -> list[Effect]:
        config = self.config
        to_value = f"<{subscription.uri}>" + (f";tag={subscription.to_tag}" if subscription.to_tag else "")
        target = subscription.remote_target or subscription.uri
        accept = LIST_ACCEPT if subscription.is_list else DIALOG_INFO_TYPE
        headers = [
            ("From", f"<sip:{config.user}@{config.domain}>;tag={subscription.from_tag}"),
            ("To", to_value),
            ("Event", "dialog"),
            ("Accept", accept),
            ("Expires", "0" if closing else str(subscription.expires)),
        ]
        if subscription.is_list:
            headers.append(("Supported", "eventlist"))
        route = subscription.route if subscription.to_tag else self._preloaded_route()
        return self._send_request(subscription, "SUBSCRIBE", target, headers, route, now, closing=closing)

    def _send_register(self, registration: _Registration, now: float, *, closing: bool = False) -> list[Effect]:
        config = self.config
        aor = f"sip:{config.user}@{config.domain}"
        headers = [
            ("From", f"<{aor}>;tag={registration.from_tag}"),
            ("To", f"<{aor}>"),
            ("Expires", "0" if closing else str(registration.expires)),
        ]
        return self._send_request(
            registration, "REGISTER", f"sip:{config.domain}", headers, self._preloaded_route(), now, closing=closing
        )

    def _send_request(
        self,
        outgoing: _Outgoing,
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        route: list[str],
        now: float,
        *,
        closing: bool,
    ) -> list[Effect]:
        flow = self._flow
        if flow is None:
            return []
        if outgoing.transaction is not None:
            self._pending.pop(outgoing.transaction.branch, None)

        outgoing.cseq += 1
        outgoing.closing = closing
        branch = "z9hG4bK" + secrets.token_hex(10)
        # RFC 3581 `rport` requests responses to the source port. RFC 5923 `alias`
        # requests the server's own requests back on this TCP or TLS connection.
        via = f"SIP/2.0/{flow.transport} {_host_port(flow.local_host, flow.local_port)};rport;branch={branch}"
        if flow.reliable:
            via += ";alias"
        lines = [("Via", via), ("Max-Forwards", "70"), *headers[:2]]
        lines += [("Call-ID", outgoing.call_id), ("CSeq", f"{outgoing.cseq} {method}"), ("Contact", self._contact())]
        lines += [("Route", value) for value in route]
        lines += headers[2:]
        if self._digest is not None:
            lines += self._digest.headers_for(method, uri)
        lines.append(("User-Agent", self.config.user_agent))
        data = build_request(method, uri, lines)

        outgoing.transaction = ClientTransaction(
            branch=branch, method=method, data=data, started=now, reliable=flow.reliable, t1=self.config.t1
        )
        outgoing.refresh_at = None
        outgoing.retry_at = None
        self._pending[branch] = outgoing
        return [SendMessage(data)]

    def _contact(self) -> str:
        flow = self._flow
        assert flow is not None
        uri = f"sip:{self.config.user}@{_host_port(flow.local_host, flow.local_port)}"
        if flow.transport != "UDP":
            uri += f";transport={flow.transport.lower()}"
        return f"<{uri}>"

    def _preloaded_route(self) -> list[str]:
        proxy = self.config.outbound_proxy
        return [f"<{proxy}>"] if proxy else []

    # Timers ------------------------------------------------------------------------

    def _transaction_timer(
        self, outgoing: _Subscription | _Registration, method: str, now: float, on_timeout: Callable[[], list[Effect]]
    ) -> list[Effect] | None:
        """Retransmit or time out the request's transaction; None when it has none."""
        transaction = outgoing.transaction
        if transaction is None:
            return None
        resend = transaction.on_timer(now)
        if resend is not None:
            return [SendMessage(resend)]
        if not transaction.done:
            return []
        self._pending.pop(transaction.branch, None)
        outgoing.transaction = None
        if outgoing.closing:
            return []
        return [TransactionTimedOut(method, transaction.started)] + on_timeout()

    def _subscription_timers(self, subscription: _Subscription, now: float) -> list[Effect]:
        timed = self._transaction_timer(
            subscription, "SUBSCRIBE", now, lambda: self._fail(subscription, now, FailureReason.TIMEOUT, None)
        )
        if timed is not None:
            return timed

        if self._flow is None:
            return []
        if subscription.retry_at is not None and now >= subscription.retry_at:
            fresh = self._new_dialog(subscription.key)
            return self._send_subscribe(fresh, now)
        if subscription.refresh_at is not None and now >= subscription.refresh_at:
            subscription.auth_rounds = subscription.stale_rounds = 0
            return self._send_subscribe(subscription, now)
        return []

    def _registration_timers(self, registration: _Registration, now: float) -> list[Effect]:
        timed = self._transaction_timer(
            registration,
            "REGISTER",
            now,
            lambda: self._registration_failed(registration, now, FailureReason.TIMEOUT, None),
        )
        if timed is not None:
            return timed

        if self._flow is None:
            return []
        due = [moment for moment in (registration.retry_at, registration.refresh_at) if moment is not None]
        if due and now >= min(due):
            registration.auth_rounds = registration.stale_rounds = 0
            return self._send_register(registration, now)
        return []

    def _backoff(self, outgoing: _Outgoing) -> float:
        """Return the delay before the next attempt: doubling, jittered, never above the cap."""
        outgoing.failures += 1
        cap = self.config.retry_max
        first = min(self.config.retry_first, cap)
        delay = first * 2 ** min(outgoing.failures - 1, 32)
        delay *= 1 + self._rng.uniform(-RETRY_JITTER, RETRY_JITTER)
        return min(delay, cap)

    def _fail(self, subscription: _Subscription, now: float, reason: str, status: int | None) -> list[Effect]:
        """Mark the extensions failing and schedule a new SUBSCRIBE dialog after a back-off."""
        subscription.retry_at = now + self._backoff(subscription)
        subscription.refresh_at = None
        return self._set_state(subscription, SubscriptionState.FAILING, reason, status)

    def _set_state(
        self, subscription: _Subscription, state: SubscriptionState, reason: str | None, status: int | None
    ) -> list[Effect]:
        subscription.state, subscription.reason, subscription.status = state, reason, status
        effects: list[Effect] = []
        for extension in subscription.extensions:
            current = (state, reason, status)
            if self._extension_state.get(extension) == current:
                continue
            self._extension_state[extension] = current
            effects.append(StateChanged(extension, state, reason, status))
        return effects

    def _schedule_refresh(self, outgoing: _Outgoing, now: float, expires: int) -> None:
        outgoing.refresh_at = now + max(expires * REFRESH_FRACTION, MIN_REFRESH_SECONDS)

    # Responses ------------------------------------------------------------------------

    def _handle_response(self, response: Response, address: tuple[str, int] | None, now: float) -> list[Effect]:
        branch = _branch_of(response)
        outgoing = self._pending.get(branch or "")
        transaction = outgoing.transaction if outgoing is not None else None
        if outgoing is None or transaction is None or response.cseq[1] != transaction.method:
            if branch in self._completed:
                return []  # A retransmitted final response (RFC 3261 §17.1.2.2, timer K).
            return [MessageDropped(f"response {response.status} matches no pending request", address)]

        if not transaction.on_response(response.status, now):
            return []
        del self._pending[transaction.branch]
        outgoing.transaction = None
        if not transaction.reliable:
            self._completed[transaction.branch] = now + T4

        if outgoing.closing:
            return []
        if isinstance(outgoing, _Registration):
            return self._registration_response(outgoing, response, now)
        assert isinstance(outgoing, _Subscription)
        return self._subscribe_response(outgoing, response, now)

    def _subscribe_response(self, subscription: _Subscription, response: Response, now: float) -> list[Effect]:
        status = response.status
        if 200 <= status < 300:
            return self._accepted(subscription, response, now)

        if status in (401, 407):
            retry = self._answer_challenge(subscription, response)
            if retry is None:
                return self._send_subscribe(subscription, now)
            return self._fail(subscription, now, retry, status)

        if status == 423 and self._raise_expires(subscription, response):
            return self._send_subscribe(subscription, now)

        if status == 481:
            # RFC 6665 §4.1.2.2: the notifier lost the dialog (a refresh after its
            # restart, say), so a new subscription starts at once.
            fresh = self._new_dialog(subscription.key)
            return self._set_state(fresh, SubscriptionState.PENDING, None, None) + self._send_subscribe(fresh, now)

        if subscription.is_list and subscription.to_tag is None and status in LIST_UNAVAILABLE_STATUSES:
            return self._fall_back_from_list(status, f"{status} {response.reason}", now)

        effects = self._fail(subscription, now, FailureReason.REJECTED, status)
        retry_after = _int_or(response.headers.get("Retry-After"), 0)
        if retry_after > 0:
            subscription.retry_at = now + retry_after
        return effects

    def _accepted(self, subscription: _Subscription, response: Response, now: float) -> list[Effect]:
        if subscription.to_tag is None:
            subscription.to_tag = response.to_tag
            subscription.route = list(reversed(response.headers.get_all("Record-Route")))
            contact = response.headers.get("Contact")
            if contact:
                subscription.remote_target = _uri_of(contact)

        expires = _int_or(response.headers.get("Expires"), subscription.expires)
        subscription.failures = 0
        subscription.auth_rounds = subscription.stale_rounds = 0
        self._schedule_refresh(subscription, now, expires)
        return self._set_state(subscription, SubscriptionState.ACTIVE, None, None)

    def _answer_challenge(self, outgoing: _Outgoing, response: Response) -> str | None:
        """Learn a 401/407 challenge; return None to resend, else the failure reason.

        RFC 3261 §22.2: the request is sent again with credentials and CSeq + 1. A
        second challenge for one request means the credentials are wrong, unless the
        server marks the nonce as only `stale`.
        """
        if self._digest is None:
            return FailureReason.AUTH_REQUIRED
        header = WWW_AUTHENTICATE if response.status == 401 else PROXY_AUTHENTICATE
        challenge = self._digest.learn(header, response.headers.get_all(header))
        if challenge is None:
            return FailureReason.AUTH_FAILED
        if challenge.stale:
            outgoing.stale_rounds += 1
            return None if outgoing.stale_rounds <= MAX_STALE_ROUNDS else FailureReason.AUTH_FAILED
        outgoing.auth_rounds += 1
        return None if outgoing.auth_rounds == 1 else FailureReason.AUTH_FAILED

    def _raise_expires(self, outgoing: _Outgoing, response: Response) -> bool:
        """Take a 423's Min-Expires (RFC 3261 §10.2.8); return False when it brings none."""
        minimum = _int_or(response.headers.get("Min-Expires"), 0)
        if minimum <= outgoing.expires:
            return False
        outgoing.expires = minimum
        return True

    def _fall_back_from_list(self, status: int | None, detail: str, now: float) -> list[Effect]:
        """Replace the list subscription with one subscription per extension."""
        old = self._subscriptions.pop(LIST_KEY)
        self._by_call_id.pop(old.call_id, None)
        effects: list[Effect] = [ListUnavailable(status, detail)]
        if old.to_tag is not None:
            # End the list dialog the PBX accepted but serves without a list body.
            effects += self._send_subscribe(old, now, closing=True)
        for extension in self.extensions:
            effects += self._send_subscribe(self._new_dialog(extension), now)
        return effects

    def _registration_response(self, registration: _Registration, response: Response, now: float) -> list[Effect]:
        status = response.status
        if 200 <= status < 300:
            registration.failures = 0
            registration.auth_rounds = registration.stale_rounds = 0
            self._schedule_refresh(registration, now, self._granted_registration(registration, response))
            if registration.registered:
                return []
            registration.registered = True
            return [RegistrationChanged(True)]

        if status in (401, 407):
            reason = self._answer_challenge(registration, response)
            if reason is None:
                return self._send_register(registration, now)
            return self._registration_failed(registration, now, reason, status)

        if status == 423 and self._raise_expires(registration, response):
            return self._send_register(registration, now)
        return self._registration_failed(registration, now, FailureReason.REJECTED, status)

    def _granted_registration(self, registration: _Registration, response: Response) -> int:
        """Return the duration the registrar granted our Contact (RFC 3261 §10.2.4)."""
        ours = self._contact()[1:-1]
        for value in response.headers.get_all("Contact"):
            try:
                contact = parse_name_addr(value)
            except UriError:
                continue
            if _uri_of(value).split(";")[0] == ours.split(";")[0] and "expires" in contact.params:
                return _int_or(contact.params["expires"], registration.expires)
        return _int_or(response.headers.get("Expires"), registration.expires)

    def _registration_failed(self, registration: _Registration, now: float, reason: str, status: int | None) -> list[Effect]:
        registration.retry_at = now + self._backoff(registration)
        registration.refresh_at = None
        registration.registered = False
        return [RegistrationChanged(False, reason, status)]

    # NOTIFYs ------------------------------------------------------------------------

    def _handle_notify(self, request: Request, address: tuple[str, int] | None, now: float) -> list[Effect]:
        subscription = self._by_call_id.get(request.call_id)
        known = subscription is not None and request.to_tag == subscription.from_tag
        if subscription is not None and known and subscription.to_tag not in (None, request.from_tag):
            known = False  # A second dialog from a forked SUBSCRIBE: one is enough.
        if subscription is None or not known:
            return self._unsolicited_notify(request, address, now)

        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "dialog":
            return [self._reply(request, address, now, 489, "Bad Event")]

        # RFC 6665 §4.1.2.4: the NOTIFY's From tag completes our dialog even before the 200.
        if subscription.to_tag is None:
            subscription.to_tag = request.from_tag
            subscription.route = request.headers.get_all("Record-Route")
            contact = request.headers.get("Contact")
            if contact:
                subscription.remote_target = _uri_of(contact)

        effects: list[Effect] = [self._reply(request, address, now, 200, "OK")]
        if subscription.closing:
            return effects  # The last NOTIFY of a subscription we ended (RFC 6665 §4.1.2.3).
        cseq_number = request.cseq[0]
        if subscription.last_notify_cseq is not None and cseq_number <= subscription.last_notify_cseq:
            return effects  # Older than what we already have: it arrived out of order.
        subscription.last_notify_cseq = cseq_number

        state_value, params = _parse_subscription_state(request.headers.get("Subscription-State"))
        if state_value == "terminated":
            return effects + self._terminated(subscription, params, now)

        if "expires" in params:
            self._schedule_refresh(subscription, now, _int_or(params["expires"], subscription.expires))
        subscription.failures = 0
        new_state = SubscriptionState.PENDING if state_value == "pending" else SubscriptionState.ACTIVE
        effects += self._set_state(subscription, new_state, None, None)
        return effects + self._documents(subscription, request, now)

    def _documents(self, subscription: _Subscription, request: Request, now: float) -> list[Effect]:
        content_type = request.headers.get("Content-Type")
        if not subscription.is_list:
            first = subscription.key not in subscription.reported
            subscription.reported.add(subscription.key)
            return [DocumentReceived(subscription.key, request.body, content_type, first)]

        media = (content_type or "").split(";")[0].strip().lower()
        if media != LIST_CONTENT_TYPE:
            if not request.body.strip():
                return []  # An empty first NOTIFY while the list is being built.
            return self._fall_back_from_list(None, f"list NOTIFY with Content-Type {media or '(none)'}", now)

        try:
            parts = split_list_notification(request.body, content_type or "")
        except EventListError as error:
            return [MessageDropped(f"list NOTIFY skipped: {error}", None)]

        effects: list[Effect] = []
        for part in parts:
            extension = _user_of(part.uri)
            if extension not in subscription.extensions:
                continue
            first = extension not in subscription.reported
            subscription.reported.add(extension)
            effects.append(DocumentReceived(extension, part.body, part.content_type, first))
        return effects

    def _unsolicited_notify(self, request: Request, address: tuple[str, int] | None, now: float) -> list[Effect]:
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if not self.config.read_unsolicited or event != "dialog":
            # RFC 6665 §4.1.3: a NOTIFY for a dialog we do not have is answered 481,
            # which also makes the PBX drop subscriptions of an earlier agent process.
            return [self._reply(request, address, now, 481, "Subscription Does Not Exist")]

        # The PBX profile sends dialog NOTIFYs without a SUBSCRIBE (innovaphone): the
        # From header names the monitored extension.
        effects: list[Effect] = [self._reply(request, address, now, 200, "OK")]
        extension = _user_of(_uri_of(request.headers.get("From") or ""))
        if extension not in self.extensions:
            return effects
        first = self._unsolicited.get(request.call_id) != extension
        if first:
            if len(self._unsolicited) >= MAX_UNSOLICITED_DIALOGS:
                self._unsolicited.pop(next(iter(self._unsolicited)))
            self._unsolicited[request.call_id] = extension
        effects.append(DocumentReceived(extension, request.body, request.headers.get("Content-Type"), first))
        return effects

    def _terminated(self, subscription: _Subscription, params: dict[str, str], now: float) -> list[Effect]:
        """Handle `Subscription-State: terminated` (RFC 6665 §4.1.3 and §4.2.2)."""
        reason = params.get("reason", "noresource")
        retry_after = _int_or(params.get("retry-after"), 0)
        if reason in ("deactivated", "timeout") and not retry_after:
            fresh = self._new_dialog(subscription.key)
            return self._set_state(fresh, SubscriptionState.PENDING, None, None) + self._send_subscribe(fresh, now)

        effects = self._fail(subscription, now, FailureReason.TERMINATED, None)
        if retry_after:
            subscription.retry_at = now + retry_after
        return effects

    def _reply(
        self,
        request: Request,
        address: tuple[str, int] | None,
        now: float,
        status: int,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> SendMessage:
        # RFC 3581 §4: the response goes back to the source address of the request.
        data = build_response(request, status, reason, to_tag=None, headers=headers or [])
        reliable = self._flow.reliable if self._flow is not None else False
        self._answered.remember(_branch_of(request), request.method, data, now, reliable=reliable)
        return SendMessage(data, address)


def _branch_of(message: Request | Response) -> str | None:
    try:
        return message.top_via.branch
    except SipParseError:
        return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_subscription_state(value: str | None) -> tuple[str, dict[str, str]]:
    """Split `active;expires=600` into ("active", {"expires": "600"})."""
    if not value:
        return "active", {}
    parts = [part.strip() for part in value.split(";")]
    params: dict[str, str] = {}
    for part in parts[1:]:
        name, _, param_value = part.partition("=")
        params[name.strip().lower()] = param_value.strip()
    return parts[0].lower(), params


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value.strip()) if value is not None else default
    except ValueError:
        return default


def _uri_of(name_addr: str) -> str:
    """Return the URI inside `<...>`, or the value itself when it has no brackets."""
    start = name_addr.find("<")
    end = name_addr.find(">", start + 1)
    if start != -1 and end != -1:
        return name_addr[start + 1 : end]
    return name_addr.split(";")[0].strip()


def _user_of(uri: str) -> str:
    """Return the user part of `sip:201@pbx.local`, or "" when there is none."""
    rest = uri.partition(":")[2]
    user, at, _ = rest.partition("@")
    return user if at else ""

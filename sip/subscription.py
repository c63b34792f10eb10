"""Sans-I/O client for dialog-event subscriptions (RFC 6665 with RFC 4235 bodies).

`DialogSubscriber` keeps one SUBSCRIBE dialog per monitored extension. It takes
datagrams and clock readings and returns effects: messages to send, dialog-info
documents received, and subscription state changes. Sockets and timers belong to
the adapter in `sip.sources.subscribe`.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

from sip.message import Request, Response, SipParseError, build_request, build_response, parse_message

# RFC 3261 §17.1.1.1: T1 is the round-trip estimate, T2 the cap on retransmit intervals
# for non-INVITE requests, and a transaction times out after 64*T1 (timer F).
T1 = 0.5
T2 = 4.0
TIMER_F = 64 * T1

# The duration we ask for. The notifier may shorten it (RFC 6665 §4.1.2.1).
DEFAULT_EXPIRES = 600

# Refresh when this share of the granted duration has passed, so a refresh that needs
# every retransmission up to timer F still lands before the subscription expires.
REFRESH_FRACTION = 0.8

# A granted duration shorter than this would make us refresh almost continuously.
MIN_EXPIRES = 30

# Re-subscribe back-off after a failure: doubles from the first value up to the cap,
# with up to RETRY_JITTER of random spread so many agents do not retry in lock-step.
RETRY_FIRST = 2.0
RETRY_CAP = 300.0
RETRY_JITTER = 0.25

DIALOG_INFO_TYPE = "application/dialog-info+xml"


class SubscriptionState(StrEnum):
    """What /healthz reports for one extension."""

    PENDING = "pending"
    ACTIVE = "active"
    FAILING = "failing"


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    """Where the PBX is and who the agent is towards it."""

    pbx_host: str
    pbx_port: int
    domain: str
    local_host: str
    local_port: int
    user: str = "ringboard"
    transport: str = "UDP"
    expires: int = DEFAULT_EXPIRES
    user_agent: str = "Ringboard"


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send these bytes to the address."""

    data: bytes
    address: tuple[str, int]


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
class MessageDropped:
    """A datagram was not a usable SIP message, or matched nothing we sent."""

    reason: str
    address: tuple[str, int]


Effect = SendMessage | DocumentReceived | StateChanged | MessageDropped


@dataclass(slots=True)
class _Transaction:
    """An outstanding SUBSCRIBE (RFC 3261 §17.1.2, non-INVITE client transaction)."""

    branch: str
    data: bytes
    started: float
    next_retransmit: float
    interval: float
    unsubscribe: bool = False


@dataclass(slots=True)
class _Subscription:
    """One extension's SUBSCRIBE dialog."""

    extension: str
    call_id: str
    from_tag: str
    to_tag: str | None = None
    cseq: int = 0
    route: list[str] = field(default_factory=list)
    remote_target: str | None = None
    state: SubscriptionState = SubscriptionState.PENDING
    expires_at: float | None = None
    refresh_at: float | None = None
    retry_at: float | None = None
    failures: int = 0
    transaction: _Transaction | None = None
    last_notify_cseq: int | None = None
    documents: int = 0


class DialogSubscriber:
    """Subscribe to `Event: dialog` for each extension and read the NOTIFYs."""

    def __init__(self, config: SubscriberConfig, extensions: list[str], *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._by_extension: dict[str, _Subscription] = {}
        self._by_call_id: dict[str, _Subscription] = {}
        for extension in extensions:
            self._new_dialog(extension)

    # Public API -------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Send the initial SUBSCRIBE of every extension."""
        effects: list[Effect] = []
        for subscription in self._by_extension.values():
            effects += self._send_subscribe(subscription, now)
        return effects

    def stop(self, now: float) -> list[Effect]:
        """End every subscription with `Expires: 0` (RFC 6665 §4.1.2.3)."""
        effects: list[Effect] = []
        for subscription in self._by_extension.values():
            if subscription.to_tag is not None:
                effects += self._send_subscribe(subscription, now, expires=0)
        return effects

    def states(self) -> dict[str, SubscriptionState]:
        """Return each extension's subscription state."""
        return {extension: sub.state for extension, sub in self._by_extension.items()}

    def next_deadline(self) -> float | None:
        """Return the earliest clock reading at which `on_timer` has work, if any."""
        deadlines: list[float] = []
        for subscription in self._by_extension.values():
            transaction = subscription.transaction
            if transaction is not None:
                deadlines.append(min(transaction.next_retransmit, transaction.started + TIMER_F))
            elif subscription.retry_at is not None:
                deadlines.append(subscription.retry_at)
            elif subscription.refresh_at is not None:
                deadlines.append(subscription.refresh_at)
        return min(deadlines, default=None)

    def on_timer(self, now: float) -> list[Effect]:
        """Retransmit, time out, refresh or retry whatever is due at `now`."""
        effects: list[Effect] = []
        for subscription in list(self._by_extension.values()):
            effects += self._run_timers(subscription, now)
        return effects

    def receive(self, data: bytes, address: tuple[str, int], now: float) -> list[Effect]:
        """Handle one datagram from the network."""
        if not data.strip(b"\r\n"):
            return []  # RFC 5626 §4.4.1 keep-alive: nothing to do over UDP.

        try:
            message = parse_message(data)
        except SipParseError as error:
            return [MessageDropped(f"invalid SIP message: {error}", address)]

        if isinstance(message, Response):
            return self._handle_response(message, address, now)
        if message.method == "NOTIFY":
            return self._handle_notify(message, address, now)
        if message.method == "ACK":
            return []
        return [self._reply(message, address, 405, "Method Not Allowed", headers=[("Allow", "NOTIFY")])]

    # Dialog set-up ------------------------------------------------------------------

    def _new_dialog(self, extension: str) -> _Subscription:
        old = self._by_extension.get(extension)
        if old is not None:
            self._by_call_id.pop(old.call_id, None)

        subscription = _Subscription(
            extension=extension,
            call_id=f"{secrets.token_hex(12)}@{self.config.local_host}",
            from_tag=secrets.token_hex(6),
        )
        if old is not None:
            subscription.failures = old.failures
            subscription.state = old.state
        self._by_extension[extension] = subscription
        self._by_call_id[subscription.call_id] = subscription
        return subscription

    def _send_subscribe(self, subscription: _Subscription, now: float, *, expires: int | None = None) -> list[Effect]:
        config = self.config
        subscription.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(10)
        entity = f"sip:{subscription.extension}@{config.domain}"
        target = subscription.remote_target or entity
        to_value = f"<{entity}>" + (f";tag={subscription.to_tag}" if subscription.to_tag else "")
        granted = config.expires if expires is None else expires

        headers = [
            ("Via", f"SIP/2.0/{config.transport} {config.local_host}:{config.local_port};rport;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{config.user}@{config.domain}>;tag={subscription.from_tag}"),
            ("To", to_value),
            ("Call-ID", subscription.call_id),
            ("CSeq", f"{subscription.cseq} SUBSCRIBE"),
            ("Contact", f"<sip:{config.user}@{config.local_host}:{config.local_port}>"),
        ]
        headers += [("Route", route) for route in subscription.route]
        headers += [
            ("Event", "dialog"),
            ("Accept", DIALOG_INFO_TYPE),
            ("Expires", str(granted)),
            ("User-Agent", config.user_agent),
        ]
        data = build_request("SUBSCRIBE", target, headers)

        subscription.transaction = _Transaction(
            branch=branch,
            data=data,
            started=now,
            next_retransmit=now + T1,
            interval=T1,
            unsubscribe=granted == 0,
        )
        subscription.refresh_at = None
        subscription.retry_at = None
        return [SendMessage(data, self._pbx_address)]

    @property
    def _pbx_address(self) -> tuple[str, int]:
        return (self.config.pbx_host, self.config.pbx_port)

    # Timers ------------------------------------------------------------------------

    def _run_timers(self, subscription: _Subscription, now: float) -> list[Effect]:
        transaction = subscription.transaction
        if transaction is not None:
            if now >= transaction.started + TIMER_F:
                subscription.transaction = None
                if transaction.unsubscribe:
                    return []
                return self._fail(subscription, now, "timeout", None)
            if now >= transaction.next_retransmit:
                # RFC 3261 §17.1.2.2 (timer E): retransmit at T1, 2*T1, ... capped at T2.
                transaction.interval = min(transaction.interval * 2, T2)
                transaction.next_retransmit = now + transaction.interval
                return [SendMessage(transaction.data, self._pbx_address)]
            return []

        if subscription.retry_at is not None and now >= subscription.retry_at:
            fresh = self._new_dialog(subscription.extension)
            return self._send_subscribe(fresh, now)

        if subscription.refresh_at is not None and now >= subscription.refresh_at:
            return self._send_subscribe(subscription, now)

        return []

    def _fail(self, subscription: _Subscription, now: float, reason: str, status: int | None) -> list[Effect]:
        """Mark the extension failing and schedule a new SUBSCRIBE dialog after a back-off."""
        subscription.failures += 1
        delay = min(RETRY_FIRST * 2 ** (subscription.failures - 1), RETRY_CAP)
        delay *= 1 + self._rng.uniform(-RETRY_JITTER, RETRY_JITTER)
        subscription.retry_at = now + delay
        subscription.refresh_at = None
        subscription.expires_at = None
        return self._set_state(subscription, SubscriptionState.FAILING, reason, status)

    def _set_state(
        self, subscription: _Subscription, state: SubscriptionState, reason: str | None, status: int | None
    ) -> list[Effect]:
        if subscription.state == state and state != SubscriptionState.FAILING:
            return []
        subscription.state = state
        return [StateChanged(subscription.extension, state, reason, status)]

    def _schedule_refresh(self, subscription: _Subscription, now: float, expires: int) -> None:
        expires = max(expires, MIN_EXPIRES)
        subscription.expires_at = now + expires
        subscription.refresh_at = now + expires * REFRESH_FRACTION

    # Responses to our SUBSCRIBEs ------------------------------------------------------

    def _handle_response(self, response: Response, address: tuple[str, int], now: float) -> list[Effect]:
        subscription = self._by_call_id.get(response.call_id or "")
        transaction = subscription.transaction if subscription else None
        branch = response.top_via.params.get("branch") if response.headers.get("Via") else None
        if subscription is None or transaction is None or branch != transaction.branch:
            return [MessageDropped(f"response {response.status} matches no pending SUBSCRIBE", address)]

        if response.status < 200:
            # RFC 3261 §17.1.2.2: a provisional response stops retransmissions at T2 pace.
            transaction.next_retransmit = now + T2
            transaction.interval = T2
            return []

        subscription.transaction = None
        if transaction.unsubscribe:
            return []

        if 200 <= response.status < 300:
            return self._accepted(subscription, response, now)

        if response.status == 481:
            # RFC 6665 §4.1.2.2: the notifier lost the dialog, so start a new one at once.
            fresh = self._new_dialog(subscription.extension)
            return self._set_state(fresh, SubscriptionState.PENDING, None, None) + self._send_subscribe(fresh, now)

        # TODO: answer 401/407 challenges with digest credentials (RFC 7616).
        reason = "auth_required" if response.status in (401, 407) else "rejected"
        return self._fail(subscription, now, reason, response.status)

    def _accepted(self, subscription: _Subscription, response: Response, now: float) -> list[Effect]:
        if subscription.to_tag is None:
            subscription.to_tag = response.to_tag
            subscription.route = list(reversed(response.headers.get_all("Record-Route")))
            contact = response.headers.get("Contact")
            if contact:
                subscription.remote_target = _uri_of(contact)

        expires = _int_or(response.headers.get("Expires"), self.config.expires)
        subscription.failures = 0
        self._schedule_refresh(subscription, now, expires)
        return self._set_state(subscription, SubscriptionState.ACTIVE, None, None)

    # NOTIFYs ------------------------------------------------------------------------

    def _handle_notify(self, request: Request, address: tuple[str, int], now: float) -> list[Effect]:
        subscription = self._by_call_id.get(request.call_id or "")
        if subscription is None or request.to_tag != subscription.from_tag:
            # RFC 6665 §4.1.3: a NOTIFY for a dialog we do not have is answered 481,
            # which also makes the PBX drop subscriptions of an earlier agent process.
            return [self._reply(request, address, 481, "Subscription Does Not Exist")]

        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "dialog":
            return [self._reply(request, address, 489, "Bad Event")]

        # RFC 6665 §4.1.2.4: the NOTIFY's From tag completes our dialog even before the 200.
        if subscription.to_tag is None:
            subscription.to_tag = request.from_tag
            subscription.route = request.headers.get_all("Record-Route")
            contact = request.headers.get("Contact")
            if contact:
                subscription.remote_target = _uri_of(contact)

        effects: list[Effect] = [self._reply(request, address, 200, "OK")]
        cseq_number = request.cseq[0]
        if subscription.last_notify_cseq is not None and cseq_number <= subscription.last_notify_cseq:
            return effects  # A retransmission, or older than what we already have.
        subscription.last_notify_cseq = cseq_number

        state_value, params = _parse_subscription_state(request.headers.get("Subscription-State"))
        if state_value == "terminated":
            return effects + self._terminated(subscription, params, now)

        if "expires" in params:
            self._schedule_refresh(subscription, now, _int_or(params["expires"], self.config.expires))
        subscription.failures = 0
        effects += self._set_state(subscription, SubscriptionState.ACTIVE, None, None)

        subscription.documents += 1
        content_type = request.headers.get("Content-Type")
        effects.append(
            DocumentReceived(subscription.extension, request.body, content_type, subscription.documents == 1)
        )
        return effects

    def _terminated(self, subscription: _Subscription, params: dict[str, str], now: float) -> list[Effect]:
        """Handle `Subscription-State: terminated` (RFC 6665 §4.1.3 and §4.2.2)."""
        reason = params.get("reason", "noresource")
        retry_after = _int_or(params.get("retry-after"), 0)
        if reason in ("deactivated", "timeout") and not retry_after:
            fresh = self._new_dialog(subscription.extension)
            return self._set_state(fresh, SubscriptionState.PENDING, None, None) + self._send_subscribe(fresh, now)

        effects = self._fail(subscription, now, "terminated", None)
        if retry_after:
            subscription.retry_at = now + retry_after
        return effects

    def _reply(
        self,
        request: Request,
        address: tuple[str, int],
        status: int,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> SendMessage:
        # RFC 3581 §4 is honoured by answering to the source address of the request.
        data = build_response(request, status, reason, to_tag=None, headers=headers or [])
        return SendMessage(data, address)


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

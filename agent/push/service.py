"""Web Push for ringing calls: subscriptions, the per-call plan, and sending off the event loop.

The call pipeline calls `on_call_event` and `on_cards`, which only plan and queue: the
blocking HTTP requests run on a bounded thread pool, so a slow or unreachable push
service never delays a call on the pages. Pushes of one call to one subscription go out
in order, one at a time, and a newer one replaces an older one still waiting for a retry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from py_vapid import VapidException

from agent.metrics import Registry
from agent.protocol import format_time
from agent.push.audience import PushAudience
from agent.push.delivery import Outcome, PushReply, RetryPolicy, classify, post_push
from agent.push.keys import VapidSigner, load_or_create_vapid_key
from agent.push.payload import AlertMode, Caller, PushAction, call_payload, encode_payload, make_test_payload, topic_for
from agent.push.plan import TRACKED_CALLS, PushPlanner, Send, Step, Wait
from agent.push.store import STORE_FILE_NAME, EndpointPolicy, Subscription, SubscriptionStore, parse_subscription

log = logging.getLogger("ringboard.push")

# Threads that send pushes. Estimated, not measured against real push services: with
# requests of under a second, 8 threads carry an office's calls with room for a push
# service that is slow for a while (each request gives up after REQUEST_TIMEOUT).
SEND_THREADS = 8

# Pushes queued or being sent at once. Past this, new ones are dropped and counted:
# a push service that is down must not make the agent's memory grow.
MAX_PENDING_PUSHES = 500

# RFC 8030 Urgency: "high" is meant for incoming calls and is delivered at once, even to
# a device saving battery. Closing a notification is as urgent as showing it.
URGENCY = "high"

# The VAPID `sub` claim: a push service operator may write to it about problems. Apple's
# push service rejects placeholders such as `@localhost`, so an office should set its own.
# NOTE: not yet configurable; the value reaches PushService through its `contact` argument.
DEFAULT_CONTACT = "mailto:ringboard@example.com"


@dataclass(frozen=True, slots=True)
class PushTiming:
    """How long pushes wait and live."""

    # The first push of a call waits this long for the caller lookup. The address book
    # and the lookup cache return within milliseconds; a slower CRM's card follows in
    # an update that does not alert again.
    cards_wait: float = 0.3
    # RFC 8030 TTL of a ringing push. PBXs commonly send an unanswered call on (voicemail,
    # next member of a group) within a minute, an estimate, so a later delivery would
    # announce a call that no longer rings here.
    ring_ttl: int = 60
    # TTL of a push that closes or replaces a notification: a browser that comes back
    # online within the hour still removes a ringing notification it showed.
    follow_up_ttl: int = 3600
    test_ttl: int = 60
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one push for one subscription."""

    subscription_id: str
    outcome: Outcome
    status: int | None = None
    reason: str = ""


@dataclass(eq=False)
class _Lane:
    """Orders the pushes of one call to one subscription."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    generation: int = 0
    holders: int = 0
    # Set when a newer push arrives, so an older one waiting to retry stops at once.
    newer: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Recipient:
    subscription_id: str
    alert: AlertMode


class PushService:
    """Send each user's ringing calls to their browsers through Web Push."""

    def __init__(
        self,
        data_dir: Path,
        audience: PushAudience,
        *,
        metrics: Registry | None = None,
        contact: str = DEFAULT_CONTACT,
        region: str = "CH",
        policy: EndpointPolicy | None = None,
        timing: PushTiming | None = None,
        threads: int = SEND_THREADS,
    ) -> None:
        self.audience = audience
        self.region = region
        self.policy = policy or EndpointPolicy()
        self.timing = timing or PushTiming()
        self.threads = threads
        self.key = load_or_create_vapid_key(data_dir)
        self.signer = VapidSigner(self.key, contact)
        _check_contact(self.signer)
        self.store = SubscriptionStore(data_dir / STORE_FILE_NAME)
        self.planner = PushPlanner()

        self.metrics = metrics or Registry()
        self._outcomes = self.metrics.counter("ringboard_push_total", "push messages by outcome")
        self._retries = self.metrics.counter(
            "ringboard_push_retries_total", "push requests sent again, by the HTTP status that caused it"
        )
        self.metrics.gauge("ringboard_push_subscriptions", "stored push subscriptions", lambda: {(): float(len(self.store))})

        self._recipients: OrderedDict[str, list[_Recipient]] = OrderedDict()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._tasks: set[asyncio.Task[DeliveryResult]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._pending = 0
        self._dropped = 0
        self._test_count = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        # One requests.Session per sender thread, because requests does not promise that
        # a session is safe to share between threads.
        self._thread_state = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    @property
    def public_key(self) -> str:
        """The VAPID public key, base64url of the uncompressed P-256 point."""
        return self.key.public_key

    # Lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sender threads; pushes are planned and sent from now on."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="push-send")
        log.info("Web Push ready: %d subscriptions, VAPID key %s", len(self.store), self.key.path)

    async def stop(self) -> None:
        """Drop waiting pushes, stop the sender threads and close the database."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            # A request already on the wire ends on its own within REQUEST_TIMEOUT.
            self._executor.shutdown(wait=False, cancel_futures=True)
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self.store.close()
        self._loop = None

    # Subscriptions ----------------------------------------------------------------------

    def subscribe(self, user: str, device: str, body: Any) -> tuple[Subscription, bool]:
        """Store the device's subscription from a page; raise InvalidSubscription when unusable."""
        info = parse_subscription(body, self.policy)
        subscription, created = self.store.save(user, device, info)
        if created:
            log.info("%s stored", subscription.label)
        return subscription, created

    def unsubscribe(self, user: str, subscription_id: str) -> Subscription | None:
        """Delete one of the user's subscriptions; None when the user has none with that id."""
        subscription = self.store.get(subscription_id)
        if subscription is None or subscription.user != user:
            return None
        self.store.remove(subscription_id)
        log.info("%s deleted by its user", subscription.label)
        return subscription

    def forget_device(self, user: str, device: str) -> Subscription | None:
        """Delete the device's subscription, as when its pairing is revoked; return it, or None."""
        subscription = self.store.for_device(user, device)
        if subscription is not None:
            self.store.remove(subscription.id)
            log.info("%s deleted with its device", subscription.label)
        return subscription

    def forget_user(self, user: str) -> int:
        """Delete every subscription of a user, as when the user is removed; return how many."""
        subscriptions = self.store.for_user(user)
        for subscription in subscriptions:
            self.store.remove(subscription.id)
            log.info("%s deleted with its user", subscription.label)
        return len(subscriptions)

    async def send_test(self, user: str, device: str) -> list[DeliveryResult]:
        """Send a test notification to the device; return the outcome, empty when it has no subscription."""
        subscription = self.store.for_device(user, device)
        if subscription is None:
            return []
        self._test_count += 1
        data = encode_payload(make_test_payload(format_time(datetime.now(timezone.utc)) or ""))
        task = self._queue(subscription.id, f"test-{self._test_count}", data, self.timing.test_ttl, None, "test")
        return [await task]

    # The call pipeline --------------------------------------------------------------------

    def on_call_event(self, call: dict[str, Any], kind: str) -> None:
        """Plan the pushes for a call event; `call` is the protocol call object after the event."""
        if self._loop is None:
            return
        try:
            self._run(self.planner.call_event(call))
        except Exception:  # A push problem must never take the call pipeline down.
            log.exception("call %s on extension %s: planning the push for %s failed", call.get("id"), call.get("extension"), kind)

    def on_cards(self, message: dict[str, Any]) -> None:
        """Take a `crm` message of the lookup; a caller name found in time goes into the push."""
        if self._loop is None:
            return
        try:
            complete = not message.get("pending")
            self._run(self.planner.cards(message["call_id"], Caller.from_cards(message), complete))
        except Exception:  # A push problem must never take the call pipeline down.
            log.exception("call %s: planning the push for its cards failed", message.get("call_id"))

    def _cards_wait_over(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        try:
            self._run(self.planner.cards_wait_over(call_id))
        except Exception:  # Runs from an event loop timer, so no caller would see the error.
            log.exception("call %s: sending the ringing push failed", call_id)

    def _run(self, steps: list[Step]) -> None:
        assert self._loop is not None
        for step in steps:
            if isinstance(step, Wait):
                self._timers[step.call_id] = self._loop.call_later(
                    self.timing.cards_wait, self._cards_wait_over, step.call_id
                )
            elif isinstance(step, Send):
                self._send_call_push(step)

    def _send_call_push(self, step: Send) -> None:
        tracked = self.planner.get(step.call_id)
        assert tracked is not None
        call = tracked.call
        if step.action is PushAction.RING:
            self._recipients[step.call_id] = self._choose_recipients(call)
            while len(self._recipients) > TRACKED_CALLS:
                self._recipients.popitem(last=False)
        # A subscription removed since the ring (410, or its user turned notifications off) is skipped.
        recipients = [item for item in self._recipients.get(step.call_id, []) if self.store.get(item.subscription_id)]
        if not recipients:
            return

        log.info(
            "call %s on extension %s: %s push to %s",
            step.call_id, call.get("extension"), step.action, ", ".join(item.subscription_id for item in recipients),
        )
        ttl = self.timing.ring_ttl if step.action in (PushAction.RING, PushAction.UPDATE) else self.timing.follow_up_ttl
        topic = topic_for(step.call_id)
        for recipient in recipients:
            payload = call_payload(call, step.action, tracked.caller, recipient.alert, self.region)
            try:
                data = encode_payload(payload)
            except ValueError as error:
                self._count(DeliveryResult(recipient.subscription_id, Outcome.FAILED, reason=str(error)))
                log.error("call %s: %s push to %s not sent: %s", step.call_id, step.action, recipient.subscription_id, error)
                continue
            self._queue(recipient.subscription_id, step.call_id, data, ttl, topic, f"call {step.call_id} {step.action}")

    def _choose_recipients(self, call: dict[str, Any]) -> list[_Recipient]:
        """Return the subscriptions of the users of the call's extension who want this call."""
        recipients: list[_Recipient] = []
        direction = call.get("direction") or "unknown"
        for user in self.audience.users_for_extension(call.get("extension") or ""):
            preferences = self.audience.preferences(user)
            if not preferences.wants(direction):
                continue
            alert = AlertMode.BOTH if preferences.page_and_system else AlertMode.SYSTEM
            recipients.extend(_Recipient(item.id, alert) for item in self.store.for_user(user))
        return recipients

    # Sending ----------------------------------------------------------------------------

    def _queue(
        self, subscription_id: str, lane_id: str, data: bytes, ttl: int, topic: str | None, what: str
    ) -> asyncio.Future[DeliveryResult]:
        assert self._loop is not None
        if self._pending >= MAX_PENDING_PUSHES:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning(
                    "%s to %s dropped: %d pushes already waiting; %d dropped so far",
                    what, subscription_id, MAX_PENDING_PUSHES, self._dropped,
                )
            result = DeliveryResult(subscription_id, Outcome.DROPPED)
            self._count(result)
            future: asyncio.Future[DeliveryResult] = self._loop.create_future()
            future.set_result(result)
            return future

        self._pending += 1
        task = self._loop.create_task(
            self._deliver(subscription_id, lane_id, data, ttl, topic, what), name=f"push-{lane_id}-{subscription_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[DeliveryResult]) -> None:
        self._tasks.discard(task)
        self._pending -= 1

    async def _deliver(
        self, subscription_id: str, lane_id: str, data: bytes, ttl: int, topic: str | None, what: str
    ) -> DeliveryResult:
        key = (subscription_id, lane_id)
        lane = self._lanes.setdefault(key, _Lane())
        lane.generation += 1
        lane.newer.set()
        lane.newer = asyncio.Event()
        lane.holders += 1
        try:
            return await self._send_with_retries(lane, lane.generation, subscription_id, data, ttl, topic, what)
        finally:
            lane.holders -= 1
            if lane.holders == 0:
                self._lanes.pop(key, None)

    async def _send_with_retries(
        self, lane: _Lane, generation: int, subscription_id: str, data: bytes, ttl: int, topic: str | None, what: str
    ) -> DeliveryResult:
        assert self._loop is not None
        loop = self._loop
        newer = lane.newer
        deadline = loop.time() + ttl
        attempt = 0
        while True:
            async with lane.lock:
                if lane.generation != generation:
                    return self._count(DeliveryResult(subscription_id, Outcome.SUPERSEDED))
                subscription = self.store.get(subscription_id)
                if subscription is None:
                    return self._count(DeliveryResult(subscription_id, Outcome.GONE, reason="unsubscribed"))
                reply = await self._post(subscription, data, max(1, int(deadline - loop.time())), topic)

            attempt += 1
            decision = classify(reply, attempt, deadline - loop.time(), self.timing.retry)
            if not decision.retry:
                result = DeliveryResult(subscription_id, decision.outcome or Outcome.FAILED, reply.status, decision.reason)
                self._report(what, subscription, result, reply)
                return self._count(result)

            self._retries.inc(status=str(reply.status) if reply.status is not None else "none")
            log.info(
                "%s to %s: %s; attempt %d, retrying in %.1f s", what, subscription.label, decision.reason, attempt, decision.delay
            )
            try:
                await asyncio.wait_for(newer.wait(), decision.delay)
            except TimeoutError:
                pass

    async def _post(self, subscription: Subscription, data: bytes, ttl: int, topic: str | None) -> PushReply:
        """Send one request on a sender thread."""
        assert self._loop is not None
        assert self._executor is not None
        return await self._loop.run_in_executor(self._executor, self._post_on_thread, subscription, data, ttl, topic)

    def _post_on_thread(self, subscription: Subscription, data: bytes, ttl: int, topic: str | None) -> PushReply:
        session: requests.Session | None = getattr(self._thread_state, "session", None)
        if session is None:
            session = requests.Session()
            self._thread_state.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return post_push(session, self.signer, subscription, data, ttl, URGENCY, topic)

    def _report(self, what: str, subscription: Subscription, result: DeliveryResult, reply: PushReply) -> None:
        if result.outcome is Outcome.SENT:
            log.debug("%s to %s sent", what, subscription.label)
        elif result.outcome is Outcome.GONE:
            self.store.remove(subscription.id)
            log.info("%s to %s: the push service responded %s; subscription removed", what, subscription.label, result.reason)
        else:
            detail = f" ({reply.detail})" if reply.detail else ""
            log.warning("%s to %s failed: %s%s", what, subscription.label, result.reason, detail)

    def _count(self, result: DeliveryResult) -> DeliveryResult:
        self._outcomes.inc(outcome=str(result.outcome))
        return result


def _check_contact(signer: VapidSigner) -> None:
    """Sign once, so a contact that py_vapid refuses stops start-up instead of every push."""
    try:
        signer.authorization("https://fcm.googleapis.com/")
    except VapidException as error:
        raise ValueError(
            f'the push contact "{signer.contact}" is invalid ({error}); use a mailto: address or an https URL'
        ) from error

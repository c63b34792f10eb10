"""The call pipeline: dialog-info documents in, numbered call events out.

Data moves one way: the subscription source hands documents to the tracker, the
tracker's events are stored in the history (which numbers them), and the bus sends
them to the pages.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
import logging
import time
from datetime import datetime, timezone
from typing import Any

from agent.bus import EventBus
from agent.config import Config
from agent.history import History, HistoryError
from agent.lookup.factory import create_actions, create_lookup
from agent.lookup.protocol import cards_message
from agent.metrics import Registry
from agent.protocol import call_json, call_message, format_time
from sip.dialoginfo import DialogInfoError, parse_dialog_info
from sip.model import Call, CallEvent, EventKind
from sip.merge import CallMerger
from sip.profiles import PROFILES
from sip.raw.engine import RawCallEngine
from sip.sources.capture import LiveCapture
from sip.sources.hep import HepReceiver
from sip.sources.subscribe import DialogSubscriptionSource, SubscribeSettings
from sip.subscription import DIALOG_INFO_TYPE, DocumentReceived, StateChanged
from sip.tracker import CallTracker

log = logging.getLogger("ringboard.service")

# How often ringing calls are checked for phantoms (an `early` dialog the PBX never ended).
EXPIRY_INTERVAL = 10.0

# How often history older than `[agent] history_days` is purged.
PURGE_INTERVAL = 3600.0

# Calls whose caller was already looked up, remembered so a later event of the same call
# does not look it up again; far more than the calls live at once in any office.
LOOKED_UP_MEMORY = 10_000

# The newest ended calls that a snapshot carries when the page gives no `since`.
SNAPSHOT_HISTORY = 50


class CallService:
    """Observe the configured extensions and publish their calls."""

    def __init__(self, config: Config, history: History, bus: EventBus, metrics: Registry | None = None) -> None:
        self.config = config
        self.metrics = metrics or Registry()
        self.history = history
        self.bus = bus
        self.extensions = list(config.sip.extensions)

        self.tracker = CallTracker(self.extensions, PROFILES[config.sip.pbx])
        self.source = self._create_subscription_source(config)
        started = datetime.now(timezone.utc)
        self._health: dict[str, dict[str, Any]] = {
            extension: {"extension": extension, "state": "pending", "since": format_time(started), "reason": None}
            for extension in self.extensions
            if "subscribe" in config.raw.sources
        }

        self.lookup = create_lookup(config.lookup_settings(), config.agent.data_dir)
        self._init_raw_sources(config)
        # Set by the runner when Web Push is on; gets every call event and cards update.
        self.push: Any = None

        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._looked_up: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self.rejected_documents = 0
        self.unstored_events = 0
        self._init_metrics()

    def _create_subscription_source(self, config: Config) -> DialogSubscriptionSource:
        """Create the dialog-event subscription client from the `[sip]` settings."""
        sip = config.sip
        settings = SubscribeSettings(
            server=sip.server,
            # Port 0 lets DNS SRV records (RFC 3263) choose.
            port=0 if sip.srv_lookup else sip.port,
            domain=sip.domain,
            extensions=tuple(self.extensions),
            transport=sip.transport,
            local_host=sip.listen_host,
            local_port=sip.listen_port,
            user=sip.user,
            username=sip.username or None,
            password=sip.password,
            expires=sip.expires,
            register=sip.register,
            list_uri=sip.list_uri or None,
            outbound_proxy=sip.outbound_proxy or None,
            ca_file=sip.ca_file or None,
            retry_max=float(sip.retry_max),
            dns_servers=sip.dns_servers,
            read_unsolicited=PROFILES[sip.pbx].reads_unsolicited_notify,
        )
        return DialogSubscriptionSource(settings, on_document=self.on_document, on_state=self.on_state)

    def _init_metrics(self) -> None:
        self._documents = self.metrics.counter(
            "ringboard_dialog_documents_total", "dialog-info documents received, by result (applied or rejected)"
        )
        self._events = self.metrics.counter("ringboard_call_events_total", "call events published, by kind")
        self._unstored = self.metrics.counter(
            "ringboard_call_events_unstored_total", "call events sent to pages but not stored in the history"
        )
        self.metrics.gauge("ringboard_subscriptions", "monitored extensions by subscription state", self._count_states)
        self.metrics.gauge(
            "ringboard_sip_messages_dropped",
            "SIP datagrams that were not valid SIP or matched no transaction",
            lambda: {(): float(self.source.dropped)},
        )

    def _init_raw_sources(self, config: Config) -> None:
        """Create the raw-SIP engine, its HEP and capture sources, and the merger of sources."""
        raw = config.raw
        uses_raw = "hep" in raw.sources or "capture" in raw.sources
        self.engine = RawCallEngine(self.extensions, dids=raw.dids or None, link_header=raw.link_header) if uses_raw else None
        # With raw SIP and dialog-info together, one call is seen twice: the merger keys
        # both by Call-ID, lets raw SIP own identity, direction and outcome, and emits one call.
        self.merger = CallMerger() if uses_raw and "subscribe" in raw.sources else None
        self.hep = None
        if "hep" in raw.sources:
            self.hep = HepReceiver(
                self._on_hep,
                host=raw.hep_host,
                port=raw.hep_port,
                auth_key=raw.hep_auth_key.encode() if raw.hep_auth_key else None,
                udp="udp" in raw.hep_transports,
                tcp="tcp" in raw.hep_transports,
            )
        self.capture = LiveCapture(raw.capture_interface, raw.capture_ports, self._on_captured) if "capture" in raw.sources and raw.capture_interface else None
        self.actions = create_actions(self.lookup, config.agent.data_dir)

    def _on_hep(self, message: Any, packet: Any) -> None:
        self._observe_raw(message, packet.source, packet.destination, packet.timestamp)

    def _on_captured(self, item: Any) -> None:
        self._observe_raw(item.message, item.source, item.destination, item.timestamp)

    def _observe_raw(self, message: Any, source: Any, destination: Any, timestamp: datetime) -> None:
        assert self.engine is not None
        events = self.engine.observe(message, source, destination, timestamp)
        self.publish(self.merger.raw(events) if self.merger else events)

    # Lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Close calls left open by an earlier run, then start subscribing."""
        self._close_stale_calls()
        await self.lookup.start()
        if "subscribe" in self.config.raw.sources:
            await self.source.start()
        if self.hep is not None:
            await self.hep.start()
        if self.capture is not None:
            await self.capture.start()
        self._tasks = [
            asyncio.create_task(self._every(EXPIRY_INTERVAL, self._expire), name="expire-phantoms"),
            asyncio.create_task(self._every(PURGE_INTERVAL, self._purge), name="purge-history"),
        ]

    async def stop(self) -> None:
        """Stop the timers and unsubscribe."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        pending = [*self._lookups.values(), *self._background]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if "subscribe" in self.config.raw.sources:
            await self.source.stop()
        if self.hep is not None:
            await self.hep.stop()
        if self.capture is not None:
            await self.capture.stop()
        await self.lookup.stop()
        self.actions.close()

    # Source callbacks -------------------------------------------------------------------

    def on_document(self, received: DocumentReceived) -> None:
        """Apply one NOTIFY body; a malformed one is logged and skipped."""
        extension = received.extension
        if received.first_of_subscription:
            self.tracker.new_subscription(extension)

        content_type = (received.content_type or "").split(";")[0].strip().lower()
        if received.body.strip() and content_type != DIALOG_INFO_TYPE:
            self._reject(extension, "content_type", f"unexpected Content-Type {content_type or '(none)'}")
            return

        try:
            document = parse_dialog_info(received.body)
        except DialogInfoError as error:
            self._reject(extension, str(error.reason), str(error))
            return

        self._documents.inc(result="applied")
        events = self.tracker.apply(extension, document, datetime.now(timezone.utc))
        self.publish(self.merger.dialog_info(events) if self.merger else events)

    def on_state(self, change: StateChanged) -> None:
        """Record a subscription state change and tell the pages."""
        reason = None
        if change.reason:
            reason = {"code": change.reason, "status": change.status}
        self._health[change.extension] = {
            "extension": change.extension,
            "state": str(change.state),
            "since": format_time(datetime.now(timezone.utc)),
            "reason": reason,
        }
        self.bus.publish({"type": "health", **self.health()})

    def _reject(self, extension: str, reason: str, detail: str) -> None:
        """Count and log a document that was not applied; the extension's calls stay as they were."""
        self.rejected_documents += 1
        self._documents.inc(result="rejected")
        self.metrics.counter(
            "ringboard_dialog_documents_rejected_total", "dialog-info documents rejected, by reason"
        ).inc(reason=reason)
        log.warning(
            "extension %s: dialog-info document skipped (%s: %s); %d skipped so far",
            extension, reason, detail, self.rejected_documents,
        )

    # Events ---------------------------------------------------------------------------

    def publish(self, events: list[CallEvent]) -> None:
        """Store each event, then send it to the pages of its extension."""
        region = self.config.numbers.default_region
        for event in events:
            call = event.call
            payload = call_json(call, region)
            try:
                seq: int | None = self.history.record(call.id, call.extension, str(event.kind), payload)
            except HistoryError as error:
                # The page still gets the call; it just cannot be replayed later.
                self.unstored_events += 1
                self._unstored.inc()
                log.error("call %s on extension %s: %s", call.id, call.extension, error)
                seq = None
            self._events.inc(kind=str(event.kind))
            log.info(
                "call %s on extension %s: %s (%s %s)",
                call.id, call.extension, event.kind, call.direction, call.outcome or call.state,
            )
            self.bus.publish(call_message(seq, event, payload), call.extension)
            if self.push is not None:
                self.push.on_call_event(payload, str(event.kind))
            self._close_missed_calls_of(payload)
            if event.kind != EventKind.ENDED:
                self._start_lookup(call)
            else:
                self._spawn(self._auto_log(call, payload), f"auto-log-{call.id}")

    # Missed calls as a to-do list (added with the page's "done" control) ----------------

    def mark_done(self, call_id: str, by: str) -> dict[str, Any] | None:
        """Mark a call done, tell the pages of its extension, and return the call; None if it already was."""
        try:
            marked = self.history.mark_done(call_id)
        except HistoryError as error:
            log.error("call %s: %s", call_id, error)
            return None
        if marked is None:
            return None
        seq, call = marked
        log.info("call %s on extension %s marked done by %s", call_id, call["extension"], by)
        self.bus.publish({"type": "call", "seq": seq, "event": "updated", "call": call}, call["extension"])
        return call

    def _close_missed_calls_of(self, payload: dict[str, Any]) -> None:
        """Mark earlier missed calls of a number done once the office reached that number.

        The office reached it when a call with it ended answered here, or when someone
        placed an outgoing call to it (a call back, even unanswered, counts as handled).
        """
        e164 = payload["remote"].get("e164")
        answered = payload["state"] == "ended" and payload["outcome"] == "answered"
        called_back = payload["direction"] == "outbound" and payload["state"] in ("ringing", "connected")
        if not e164 or not (answered or called_back):
            return
        for call_id in self.history.open_missed_calls(e164, payload["started_at"]):
            self.mark_done(call_id, f"call {payload['id']} with the same number")

    # Caller lookup and CRM logging -------------------------------------------------------

    def _spawn(self, job: Any, name: str) -> None:
        """Run a background job, keeping a strong reference until it finishes."""
        task = asyncio.get_running_loop().create_task(job, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _auto_log(self, call: Call, payload: dict[str, Any]) -> None:
        """Log an ended call in the CRMs configured to do so, once its lookup has finished."""
        lookup = self._lookups.get(call.id)
        if lookup is not None:
            await asyncio.wait({lookup})
        cards = self.history.cards_for([call.id])
        try:
            results = await self.actions.auto_log(payload, cards[0] if cards else None)
        except Exception:  # A CRM failure must never take the call pipeline down.
            log.exception("call %s on extension %s: automatic CRM logging failed", call.id, call.extension)
            return
        for result in results:
            if not result.ok:
                log.warning("call %s on extension %s: automatic CRM logging failed: %s", call.id, call.extension, result.code)

    def _start_lookup(self, call: Call) -> None:
        """Look the other party up once per call, in the background; cards follow the call row."""
        if call.id in self._looked_up:
            return
        self._looked_up[call.id] = None
        while len(self._looked_up) > LOOKED_UP_MEMORY:
            self._looked_up.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._look_up(call), name=f"lookup-{call.id}")
        self._lookups[call.id] = task
        task.add_done_callback(lambda _: self._lookups.pop(call.id, None))

    async def _look_up(self, call: Call) -> None:
        number = None if call.remote.withheld else call.remote.number
        message = None
        try:
            async for update in self.lookup.lookup(number, call_id=call.id):
                message = cards_message(call.id, update)
                self.bus.publish(message, call.extension)
                if self.push is not None:
                    self.push.on_cards(message)
        except Exception:  # A broken connector must never take the call pipeline down.
            log.exception("call %s on extension %s: caller lookup failed", call.id, call.extension)
            return
        if message is not None:
            try:
                self.history.store_cards(call.id, message)
            except HistoryError as error:
                log.error("call %s on extension %s: %s", call.id, call.extension, error)

    def health(self) -> dict[str, Any]:
        """Return the `health` object of the protocol."""
        subscriptions = [self._health[extension] for extension in self.extensions]
        ok = all(item["state"] == "active" for item in subscriptions)
        return {"status": "ok" if ok else "degraded", "subscriptions": subscriptions}

    def _count_states(self) -> dict[tuple[tuple[str, str], ...], float]:
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        for item in self._health.values():
            key = (("state", item["state"]),)
            counts[key] = counts.get(key, 0.0) + 1
        return counts

    def snapshot_cards(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the stored `crm` messages of the calls in a snapshot."""
        return self.history.cards_for([call["id"] for call in calls])

    def snapshot_parts(self, since: int | None, extensions: set[str] | None) -> tuple[int, list[Any], list[Any]]:
        """Return (seq, active calls, history) for a snapshot."""
        seq = self.history.last_seq()
        active = self.history.active_calls(extensions)
        if since is None:
            recent = self.history.recent_calls(SNAPSHOT_HISTORY, extensions)
        else:
            recent = [call for call in self.history.recent_calls(200, extensions) if call["_seq"] > since]
        for call in recent:
            call.pop("_seq", None)
        return seq, active, recent

    # Housekeeping -----------------------------------------------------------------------

    def _close_stale_calls(self) -> None:
        """End calls that were live when the agent last stopped: their end was not seen."""
        now = format_time(datetime.now(timezone.utc))
        for call in self.history.active_calls():
            answered = call["state"] in ("connected", "held")
            call.update(
                state="ended",
                ended_at=now,
                outcome="answered" if answered else "missed",
                confidence="inferred",
                outcome_reason="agent_restarted",
            )
            seq = self.history.record(call["id"], call["extension"], "ended", call)
            log.warning(
                "call %s on extension %s was live when the agent stopped; closed as %s (inferred), event %d",
                call["id"], call["extension"], call["outcome"], seq,
            )

    async def _every(self, interval: float, job: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                job()
            except Exception:  # A failed housekeeping round must not stop the next one.
                log.exception("housekeeping job %s failed", job.__name__)

    def _expire(self) -> None:
        now = datetime.now(timezone.utc)
        events = self.tracker.expire(now)
        if self.merger is not None:
            events = self.merger.dialog_info(events)
        if self.engine is not None:
            raw_events = self.engine.expire(now)
            events += self.merger.raw(raw_events) if self.merger else raw_events
        if self.merger is not None:
            self.merger.expire(now)
        self.publish(events)

    def _purge(self) -> None:
        started = time.monotonic()
        self.history.purge(self.config.agent.history_days)
        log.debug("history purge took %.3f s", time.monotonic() - started)

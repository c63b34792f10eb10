"""Caller lookup across every connector: in parallel, with a timeout each, cached, ranked.

`LookupService.lookup(number)` is an async iterator of `LookupUpdate`s: one each time a
connector returns its cards, fails or times out, each holding the ranked cards so far, the
connectors still pending and the errors. A slow or failing connector never delays the
others' cards. Several calls for the same number at once (a ring group rings several
extensions) share one lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agent.lookup.choices import Choice, ChoiceStore
from agent.lookup.connector import Card, Connector, ConnectorError, ConnectorHealth, ErrorCode
from agent.lookup.numbers import CallerNumber, NumberRules, SkipReason, parse_caller

log = logging.getLogger("ringboard.lookup")

# The page should show cards while the phone still rings, so each connector gets 1.5 s
# and a slower one is reported as timed out.
CONNECTOR_TIMEOUT = 1.5

# Each connector's cards for a number are kept for minutes: a caller who rings again, or
# whose call rings several extensions in turn, is looked up once, and a changed CRM
# record shows up soon after.
CACHE_SECONDS = 300

# At most this many numbers are cached, and the oldest are dropped first. It bounds memory
# for a busy office (each entry contains a few cards).
MAX_CACHED_NUMBERS = 5000

# A call shows at most this many cards, so the page stays readable.
MAX_CARDS = 5

# A failing connector is logged once, then at most once per this many seconds with the
# count of failures in between.
FAILURE_LOG_INTERVAL = 300.0


@dataclass(frozen=True, slots=True)
class ConnectorFailure:
    """One connector's failure: a code and parameters the page translates."""

    connector: str
    label: str
    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LookupUpdate:
    """The state of one caller's lookup: ranked cards, pending connectors and failures."""

    number: str
    e164: str | None
    # The number as the page shows it: national for local callers, else international.
    display: str = ""
    cards: tuple[Card, ...] = ()
    pending: tuple[str, ...] = ()
    errors: tuple[ConnectorFailure, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    skipped: SkipReason | None = None
    # Every connector's cards came from the cache, so no connector was queried.
    cached: bool = False

    @property
    def done(self) -> bool:
        """Whether every connector has answered, failed or timed out."""
        return not self.pending


@dataclass(slots=True)
class _CacheEntry:
    expires: float
    cards: list[Card]


@dataclass(slots=True)
class _Flight:
    """One lookup in progress, shared by every call of the same number."""

    caller: CallerNumber
    pending: list[str]
    answers: dict[str, list[Card]]
    errors: dict[str, ConnectorFailure] = field(default_factory=dict)
    version: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class FailureLog:
    """Logs each connector's failures once, then at most once per interval with a count."""

    def __init__(self, interval: float = FAILURE_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._failures: dict[str, int] = {}

    def failed(self, connector: str, number: str, error: ConnectorFailure, detail: str) -> None:
        """Count a failure and log it unless one was logged within the interval."""
        self._failures[connector] = self._failures.get(connector, 0) + 1
        now = self.clock()
        last = self._last_logged.get(connector)
        if last is not None and now - last < self.interval:
            self._unlogged[connector] = self._unlogged.get(connector, 0) + 1
            return

        skipped = self._unlogged.pop(connector, 0)
        self._last_logged[connector] = now
        more = f"; {skipped} more failures since the last report" if skipped else ""
        log.warning("lookup of %s: connector %s failed (%s): %s%s", number, connector, error.code, detail, more)

    def succeeded(self, connector: str) -> None:
        """Record a successful lookup, and log once when a failing connector works again."""
        failures = self._failures.pop(connector, 0)
        if failures:
            log.info("connector %s works again after %d failed lookups", connector, failures)
        self._last_logged.pop(connector, None)
        self._unlogged.pop(connector, None)


class LookupService:
    """Runs the connectors for each caller and delivers ranked cards as they arrive."""

    def __init__(
        self,
        connectors: Sequence[Connector],
        rules: NumberRules,
        *,
        timeout: float = CONNECTOR_TIMEOUT,
        cache_seconds: float = CACHE_SECONDS,
        choices: ChoiceStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_stop: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.connectors = list(connectors)
        self.rules = rules
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.choices = choices
        self.clock = clock
        # Called after the connectors stopped, such as closing the databases they share.
        self.on_stop = list(on_stop)
        self.failures = FailureLog(clock=clock)
        self._order = {connector.name: index for index, connector in enumerate(self.connectors)}
        self._labels = {connector.name: connector.label for connector in self.connectors}
        self._cache: OrderedDict[str, dict[str, _CacheEntry]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # Lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connectors' background work (such as CardDAV syncs)."""
        for connector in self.connectors:
            await connector.start()

    async def stop(self) -> None:
        """Cancel running lookups and stop the connectors."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for connector in self.connectors:
            try:
                await connector.stop()
            except Exception:
                log.exception("connector %s failed to stop", connector.name)
        for close in self.on_stop:
            close()

    # Lookups -----------------------------------------------------------------------

    async def lookup(self, number: str | None, *, call_id: str | None = None) -> AsyncIterator[LookupUpdate]:
        """Yield an update each time a connector answers, until none is pending."""
        caller = parse_caller(number, self.rules)
        if caller.skip is not None:
            log.info("call %s: caller %r not looked up (%s)", call_id or "-", number, caller.skip)
            yield LookupUpdate(number=caller.text, e164=None, display=caller.text, skipped=caller.skip)
            return

        flight = self._flights.get(caller.e164) or self._start_flight(caller)
        if not flight.pending:
            yield self._update(flight, cached=bool(self.connectors))
            return

        seen = 0
        while True:
            async with flight.changed:
                await flight.changed.wait_for(lambda version=seen: flight.version != version)
                seen = flight.version
                update = self._update(flight, cached=False)
            yield update
            if update.done:
                return

    async def lookup_final(self, number: str | None) -> LookupUpdate:
        """Return the last update of a lookup: every connector answered or failed."""
        final = LookupUpdate(number=number or "", e164=None)
        async for update in self.lookup(number):
            final = update
        return final

    def choose(self, number: str, connector: str, contact_id: str) -> None:
        """Remember the office's choice of contact for a number; it is ranked first from now on."""
        if self.choices is None:
            raise RuntimeError("this lookup service has no choice store")
        if connector not in self._order:
            raise ValueError(f"{connector!r} is not a configured connector")
        caller = parse_caller(number, self.rules)
        if caller.skip is not None:
            raise ValueError(f"{number!r} is not a phone number that can be looked up")
        self.choices.choose(caller.e164, connector, contact_id)
        log.info("contact %s of connector %s chosen for %s", contact_id, connector, caller.e164)

    async def health(self) -> dict[str, ConnectorHealth]:
        """Return each connector's health, asking them all at once with the lookup timeout."""

        async def one(connector: Connector) -> ConnectorHealth:
            try:
                async with asyncio.timeout(self.timeout):
                    return await connector.health()
            except TimeoutError:
                return ConnectorHealth(ok=False, code=ErrorCode.TIMEOUT)
            except ConnectorError as error:
                return ConnectorHealth(ok=False, code=error.code, params=error.params)

        results = await asyncio.gather(*(one(connector) for connector in self.connectors))
        return {connector.name: result for connector, result in zip(self.connectors, results, strict=True)}

    # Steps -------------------------------------------------------------------------

    def _start_flight(self, caller: CallerNumber) -> _Flight:
        """Start the connectors that have no cached answer for this caller."""
        now = self.clock()
        cached = self._cache.get(caller.e164, {})
        answers = {name: entry.cards for name, entry in cached.items() if entry.expires > now}
        pending = [connector.name for connector in self.connectors if connector.name not in answers]
        flight = _Flight(caller=caller, pending=pending, answers=answers)
        if not pending:
            return flight

        self._flights[caller.e164] = flight
        for connector in self.connectors:
            if connector.name in pending:
                task = asyncio.create_task(self._ask(flight, connector), name=f"lookup-{connector.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return flight

    async def _ask(self, flight: _Flight, connector: Connector) -> None:
        """Run one connector for one caller and record its answer or failure."""
        number = flight.caller.e164
        failure: ConnectorFailure | None = None
        detail = ""
        started = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                cards = await connector.lookup(flight.caller)
        except TimeoutError:
            failure = self._failure(connector, ErrorCode.TIMEOUT, {"seconds": self.timeout})
            detail = f"no response within {self.timeout:g} s"
        except ConnectorError as error:
            failure = self._failure(connector, error.code, error.params)
            detail = error.detail
        except Exception as error:
            log.exception("lookup of %s: connector %s raised an unexpected error", number, connector.name)
            failure = self._failure(connector, ErrorCode.FAILED, {})
            detail = f"{type(error).__name__}: {error}"
        else:
            self.failures.succeeded(connector.name)
            flight.answers[connector.name] = cards
            self._remember(number, connector.name, cards)
            log.debug(
                "lookup of %s: connector %s found %d cards in %.0f ms",
                number,
                connector.name,
                len(cards),
                (self.clock() - started) * 1000,
            )

        if failure is not None:
            self.failures.failed(connector.name, number, failure, detail)
            flight.errors[connector.name] = failure
        async with flight.changed:
            flight.pending.remove(connector.name)
            flight.version += 1
            if not flight.pending and self._flights.get(number) is flight:
                del self._flights[number]
            flight.changed.notify_all()

    def _failure(self, connector: Connector, code: str, params: dict[str, Any]) -> ConnectorFailure:
        return ConnectorFailure(connector=connector.name, label=connector.label, code=code, params=params)

    def _remember(self, number: str, connector: str, cards: list[Card]) -> None:
        entries = self._cache.setdefault(number, {})
        entries[connector] = _CacheEntry(self.clock() + self.cache_seconds, cards)
        self._cache.move_to_end(number)
        while len(self._cache) > MAX_CACHED_NUMBERS:
            self._cache.popitem(last=False)

    def _update(self, flight: _Flight, *, cached: bool) -> LookupUpdate:
        """Build the update of a flight's current state: cards ranked and capped."""
        choice = self.choices.get(flight.caller.e164) if self.choices else None
        cards = self._rank([card for cards in flight.answers.values() for card in cards], choice)
        named = [*flight.pending, *flight.errors]
        return LookupUpdate(
            number=flight.caller.text,
            e164=flight.caller.e164,
            display=flight.caller.display,
            cards=tuple(cards[:MAX_CARDS]),
            pending=tuple(flight.pending),
            errors=tuple(flight.errors.values()),
            labels={name: self._labels.get(name, name) for name in named},
            cached=cached,
        )

    def _rank(self, cards: list[Card], choice: Choice | None) -> list[Card]:
        """Order cards: the office's choice, then by score, persons before companies, connector order."""
        unique: dict[tuple[str, str | None, str | None], Card] = {}
        for card in cards:
            key = (card.connector, card.contact_id, card.name if card.contact_id is None else None)
            if key not in unique or card.score > unique[key].score:
                unique[key] = card

        ranked: list[Card] = []
        for card in unique.values():
            chosen = choice is not None and (card.connector, card.contact_id) == (choice.connector, choice.contact_id)
            ranked.append(replace(card, chosen=chosen) if chosen != card.chosen else card)
        ranked.sort(
            key=lambda card: (
                not card.chosen,
                -card.score,
                not card.is_person,
                self._order.get(card.connector, len(self._order)),
                card.name or card.company or "",
            )
        )
        return ranked

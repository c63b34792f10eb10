"""CRM actions from the page and automatic call logging, each run at most once.

`ActionRunner.run_action` is what `POST /api/calls/{id}/actions/{connector}/{action}`
runs; `ActionRunner.auto_log` is what the agent runs when a call ends. Both share one
idempotency key per call, connector, action and contact (or number, for "create
contact"), so a double click, a second tab, automatic logging of a call the user
already logged, or a restarted agent returns the first result instead of writing to
the CRM again:

1. A run in progress in this process is shared: the second caller awaits the first.
2. Otherwise the key is claimed in the action store (SQLite in the data folder); a key
   already done returns its stored result with `repeated` set.
3. A failed run releases its key, so the user can try again after fixing the cause.

Errors reach the page as a code and parameters (see `agent/crm_texts.json`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.crm import errors
from agent.crm.base import CREATE_CONTACT, ActionOutcome, ActionRequest, CrmAction, CrmConnector
from agent.crm.calls import MISSED, CallSummary
from agent.crm.failures import RepeatLog
from agent.crm.store import ActionStore
from agent.lookup.connector import Connector, ConnectorError
from agent.lookup.numbers import NumberRules, parse_caller

log = logging.getLogger("ringboard.actions")

# A run longer than this is stuck: the wait for a CRM is bounded well below it
# (agent.crm.base.ACTION_BUDGET), so the run's task is cancelled and reported as timed out.
ACTION_TIMEOUT = 30.0

# A run left `running` by a stopped agent is taken over after this many seconds.
ABANDONED_SECONDS = 120.0

# A contact the agent created is reused for the same number within this many seconds,
# because CRM searches find new records only after a while (HubSpot: seconds to a minute).
CREATED_CONTACT_SECONDS = 600.0

# Missed calls of one number that started this close together are one call that rang
# several extensions (a ring group), and are logged once.
RING_GROUP_SECONDS = 30.0

# Page parameters longer than this are cut; a note is the only long one.
MAX_PARAM_TEXT = 4000


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of an action, as the actions endpoint returns it to the page."""

    ok: bool
    # The record to open: what was created, or the contact it was written to.
    url: str | None = None
    # An error code (ok is false) or a note such as crm.contact_exists (ok is true).
    code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    contact_id: str | None = None
    record_id: str | None = None
    # The result of an earlier run of the same action, returned again.
    repeated: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON object."""
        return asdict(self)


class ActionRunner:
    """Runs CRM actions and automatic call logs through the connectors of the lookup."""

    def __init__(
        self,
        connectors: Sequence[Connector],
        rules: NumberRules,
        store: ActionStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connectors = {connector.name: connector for connector in connectors if isinstance(connector, CrmConnector)}
        self.rules = rules
        self.store = store
        self.clock = clock
        self._running: dict[str, asyncio.Future[ActionResult]] = {}
        self._failures = RepeatLog(log)

    def close(self) -> None:
        """Close the action store."""
        self.store.close()

    # Entry points ------------------------------------------------------------------

    async def run_action(
        self,
        call: dict[str, Any],
        connector_name: str,
        action_id: str,
        card_contact_id: str | None,
        params: dict[str, Any] | None = None,
    ) -> ActionResult:
        """Run one action of a card (or "create_contact" for a caller without one), at most once."""
        try:
            summary = CallSummary.from_json(call)
        except ValueError as error:
            return ActionResult(False, code=errors.ACTION_FAILED, params={"reason": str(error)})
        connector = self.connectors.get(connector_name)
        if connector is None:
            return ActionResult(False, code=errors.UNKNOWN_CONNECTOR, params={"connector": connector_name})
        if not connector.offers(action_id):
            return ActionResult(
                False, code=errors.UNKNOWN_ACTION, params={"label": connector.label, "action": action_id}
            )
        return await self._once(summary, connector, action_id, card_contact_id, _clean(params))

    async def auto_log(self, call: dict[str, Any], cards_message: dict[str, Any] | None) -> list[ActionResult]:
        """Log an ended call in each CRM whose `auto_log` setting covers its call type; return the results.

        The contact is the connector's best card of the call's `crm` message (the office's
        choice first). A caller without a card of a connector is not logged there.
        """
        if call.get("state") != "ended":
            return []
        try:
            summary = CallSummary.from_json(call)
        except ValueError as error:
            log.warning("automatic logging skipped a call: %s", error)
            return []
        call_type = summary.call_type
        if call_type is None:
            return []

        cards = [card for card in (cards_message or {}).get("cards") or [] if isinstance(card, dict)]
        results: list[ActionResult] = []
        for connector in self.connectors.values():
            planned = connector.auto_action(connector.settings.auto_log.mode(call_type))
            card = _best_card(cards, connector.name)
            if planned is None or card is None:
                continue
            if call_type == MISSED and not self._first_of_ring_group(connector, summary):
                continue
            action_id, params = planned
            result = await self._once(summary, connector, action_id, card["contact_id"], params, automatic=True)
            results.append(result)
        return results

    def unknown_caller_actions(self) -> list[dict[str, Any]]:
        """Return, per connector, the actions for a caller no card matched (such as create contact)."""
        return [
            {"connector": connector.name, "label": connector.label, "actions": [action_json(a) for a in connector.number_actions]}
            for connector in self.connectors.values()
            if connector.number_actions
        ]

    # Steps -------------------------------------------------------------------------

    async def _once(
        self,
        call: CallSummary,
        connector: CrmConnector,
        action_id: str,
        contact_id: str | None,
        params: dict[str, Any],
        *,
        automatic: bool = False,
    ) -> ActionResult:
        """Run the action unless this key ran already or is running; share a run in progress."""
        subject = contact_id if action_id != CREATE_CONTACT else f"number:{call.number}"
        key = f"{call.id}|{connector.name}|{action_id}|{subject}"

        running = self._running.get(key)
        if running is not None:
            return _repeated(await asyncio.shield(running))

        claim = self.store.claim(key, call.id, connector.name, action_id)
        if claim.state == "done":
            return _repeated(ActionResult(**(claim.result or {"ok": True})))
        if claim.state == "running":
            abandoned = self.clock() - (claim.started_at or 0) > ABANDONED_SECONDS
            if automatic or not abandoned:
                log.warning(
                    "call %s: connector %s action %s is %s; not run again",
                    call.id, connector.name, action_id, "abandoned by an earlier run" if abandoned else "running elsewhere",
                )
                return ActionResult(False, code=errors.ACTION_FAILED, params={"label": connector.label, "reason": "running"})
            self.store.release(key)
            self.store.claim(key, call.id, connector.name, action_id)

        future: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await self._execute(call, connector, action_id, contact_id, params)
            if result.ok:
                self.store.finish(key, asdict(result))
            else:
                self.store.release(key)
            future.set_result(result)
            return result
        except BaseException as error:
            self.store.release(key)
            future.set_exception(error)
            future.exception()  # Marks it retrieved when no second caller waits.
            raise
        finally:
            del self._running[key]

    async def _execute(
        self, call: CallSummary, connector: CrmConnector, action_id: str, contact_id: str | None, params: dict[str, Any]
    ) -> ActionResult:
        """Run the connector's action within ACTION_TIMEOUT and turn every failure into a result."""
        request = ActionRequest(call=call, contact_id=contact_id, params=params)
        try:
            async with asyncio.timeout(ACTION_TIMEOUT):
                if action_id == CREATE_CONTACT:
                    result = await self._create_contact(connector, request)
                else:
                    outcome = await connector.run_action(action_id, request)
                    result = _success(outcome, contact_id)
        except TimeoutError:
            error = errors.crm_error(
                errors.TIMEOUT, f"no answer within {ACTION_TIMEOUT:g} s", label=connector.label, crm=connector.crm,
                seconds=ACTION_TIMEOUT,
            )
            return self._failed(call, connector, action_id, error)
        except ConnectorError as error:
            return self._failed(call, connector, action_id, error)
        except Exception:
            log.exception("call %s: connector %s action %s raised an unexpected error", call.id, connector.name, action_id)
            return ActionResult(False, code=errors.ACTION_FAILED, params={"label": connector.label})

        self._failures.recovered(f"{connector.name}:{action_id}")
        log.info(
            "call %s: connector %s %s for contact %s: %s%s",
            call.id, connector.name, action_id, result.contact_id, result.record_id or result.url,
            " (existing contact)" if result.code == errors.CONTACT_EXISTS else "",
        )
        return result

    async def _create_contact(self, connector: CrmConnector, request: ActionRequest) -> ActionResult:
        """Create a contact for the caller unless one was created lately or exists meanwhile."""
        number = request.call.number
        caller = parse_caller(number, self.rules)
        if number is None or caller.skip is not None:
            raise connector.error(errors.NO_NUMBER, f"the caller's number {number!r} cannot be stored")

        recent = self.store.created_contact(connector.name, caller.e164, CREATED_CONTACT_SECONDS)
        if recent is not None:
            return ActionResult(True, url=recent[1], code=errors.CONTACT_EXISTS, params={"label": connector.label}, contact_id=recent[0])

        existing = sorted((card for card in await connector.lookup(caller) if card.contact_id), key=lambda c: -c.score)
        if existing:
            card = existing[0]
            return ActionResult(
                True, url=card.url, code=errors.CONTACT_EXISTS, params={"label": connector.label}, contact_id=card.contact_id
            )

        outcome = await connector.run_action(CREATE_CONTACT, request)
        if outcome.contact_id:
            self.store.remember_contact(connector.name, caller.e164, outcome.contact_id, outcome.url)
        return _success(outcome, outcome.contact_id)

    def _first_of_ring_group(self, connector: CrmConnector, call: CallSummary) -> bool:
        """Return whether this missed call is the first of its ring group to be logged (and record it)."""
        if call.number is None:
            return True
        started = call.start.timestamp()
        logged = self.store.logged_nearby(connector.name, call.number, MISSED, started, RING_GROUP_SECONDS)
        if logged is not None and logged != call.id:
            log.info(
                "call %s: missed call of %s already logged in %s with call %s (ring group)",
                call.id, call.number, connector.name, logged,
            )
            return False
        if logged is None:
            self.store.remember_log(connector.name, call.number, MISSED, started, call.id)
        return True

    def _failed(self, call: CallSummary, connector: CrmConnector, action_id: str, error: ConnectorError) -> ActionResult:
        self._failures.failed(
            f"{connector.name}:{action_id}:{error.code}",
            "call %s: connector %s %s failed (%s): %s", call.id, connector.name, action_id, error.code, error.detail,
        )
        return ActionResult(False, code=error.code, params=dict(error.params))


def action_json(action: Any) -> dict[str, Any]:
    """Serialise a card's action with its kind ("run" or "open"); plain actions are "run"."""
    kind = action.kind if isinstance(action, CrmAction) else "run"
    return {"id": action.id, "label": action.label, "kind": kind}


def _best_card(cards: list[dict[str, Any]], connector: str) -> dict[str, Any] | None:
    """Return the connector's chosen card, else its best ranked one, among cards with a contact id."""
    own = [card for card in cards if card.get("connector") == connector and card.get("contact_id")]
    chosen = [card for card in own if card.get("chosen")]
    return (chosen or own or [None])[0]


def _success(outcome: ActionOutcome, contact_id: str | None) -> ActionResult:
    return ActionResult(
        True,
        url=outcome.url,
        code=errors.CONTACT_EXISTS if outcome.existing else None,
        contact_id=outcome.contact_id or contact_id,
        record_id=outcome.record_id,
    )


def _repeated(result: ActionResult) -> ActionResult:
    return ActionResult(**{**asdict(result), "repeated": True})


def _clean(params: dict[str, Any] | None) -> dict[str, Any]:
    """Keep the page's text and number parameters, with text cut to MAX_PARAM_TEXT."""
    clean: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if isinstance(value, str):
            clean[str(key)] = value[:MAX_PARAM_TEXT]
        elif isinstance(value, (int, float, bool)) or value is None:
            clean[str(key)] = value
    return clean

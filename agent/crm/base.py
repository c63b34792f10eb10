"""The CRM connector base: ring-time lookup plus the actions its cards offer.

A CRM connector is a lookup `Connector` whose cards carry `CrmAction`s. The agent runs
an action through `agent.actions`, which calls `run_action` here with the call, the
card's contact and the page's parameters. Subclasses implement `search` and one
`do_<action>` method per action they offer.
"""

from __future__ import annotations

import abc
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.crm import errors
from agent.crm.calls import CallSummary
from agent.crm.http import CrmHttp
from agent.lookup.connector import Action, Card, Connector, ConnectorError, ConnectorHealth
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import CrmSettings

LOG_CALL = "log_call"
CREATE_TASK = "create_task"
CREATE_TICKET = "create_ticket"
CREATE_CONTACT = "create_contact"
OPEN = "open"

# Action kinds, for the page: "run" posts the action to the agent's actions endpoint,
# "open" only opens the card's link.
RUN = "run"
OPEN_LINK = "open"

# An action may take this long, with its rate-limit waits and retries: a click should
# get a result within seconds, but a busy CRM may ask for a short wait.
ACTION_BUDGET = 20.0


@dataclass(frozen=True, slots=True)
class CrmAction(Action):
    """An action of a CRM card; `label` is a text code the page translates."""

    kind: str = RUN


def crm_action(action_id: str, kind: str = RUN) -> CrmAction:
    """Return the action `action_id` with its label code, such as "crm.action.log_call"."""
    return CrmAction(id=action_id, label=f"crm.action.{action_id}", kind=kind)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One run of an action: the call, the card's contact and the page's parameters."""

    call: CallSummary
    contact_id: str | None
    params: Mapping[str, Any] = field(default_factory=dict)

    def note(self) -> str | None:
        """Return the user's note from the parameters, cut to a sensible length."""
        note = self.params.get("note")
        if not isinstance(note, str) or not note.strip():
            return None
        return note.strip()[:MAX_NOTE]


# A note the user typed is cut to this many characters.
MAX_NOTE = 4000


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """An action's result: the link to show, the record it created and the contact it used."""

    url: str | None
    record_id: str | None = None
    contact_id: str | None = None
    # create_contact found an existing contact and created nothing.
    existing: bool = False


class CrmConnector(Connector):
    """A CRM searched at ring time, whose cards offer actions."""

    kind = "live"
    # The vendor's name as error messages show it, such as "HubSpot".
    crm: str = "CRM"
    # Actions on each card of a contact, and for a caller no card matched.
    card_actions: tuple[CrmAction, ...] = ()
    number_actions: tuple[CrmAction, ...] = ()

    def __init__(self, settings: CrmSettings, *, timeout: float) -> None:
        self.name = settings.name
        self.label = settings.label
        self.logo = settings.logo
        self.settings = settings
        self.timeout = timeout
        self.actions = self.card_actions
        self._last_error: ConnectorError | None = None

    @property
    @abc.abstractmethod
    def http(self) -> CrmHttp:
        """Return the connector's HTTP client."""

    @abc.abstractmethod
    async def search(self, number: CallerNumber) -> list[Card]:
        """Return the verified cards for the caller; raise ConnectorError on failure."""

    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Search the CRM and remember the outcome for the health view."""
        try:
            cards = await self.search(number)
        except ConnectorError as error:
            self._last_error = error
            raise
        self._last_error = None
        return cards

    async def health(self) -> ConnectorHealth:
        """Return the outcome of the last lookup."""
        if self._last_error is None:
            return ConnectorHealth(ok=True)
        return ConnectorHealth(ok=False, code=self._last_error.code, params=self._last_error.params)

    async def stop(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()

    # Actions -----------------------------------------------------------------------

    def offers(self, action_id: str) -> bool:
        """Return whether cards or unknown callers of this connector offer `action_id`."""
        return any(action.id == action_id for action in (*self.card_actions, *self.number_actions))

    async def run_action(self, action_id: str, request: ActionRequest) -> ActionOutcome:
        """Run one action; raise ConnectorError with a code the page translates."""
        if action_id in (LOG_CALL, CREATE_TASK, CREATE_TICKET, OPEN) and not request.contact_id:
            raise self.error(errors.NO_CONTACT, f"{action_id} needs the card's contact")
        handler = getattr(self, f"do_{action_id}", None)
        if handler is None or not self.offers(action_id):
            raise self.error(errors.UNKNOWN_ACTION, f"{self.name} offers no action {action_id!r}", action=action_id)
        return await handler(request)

    def auto_action(self, mode: str) -> tuple[str, dict[str, Any]] | None:
        """Return the action and parameters automatic logging runs for "log" or "task", or None."""
        action_id = {"log": LOG_CALL, "task": CREATE_TASK}.get(mode)
        if action_id is None or not self.offers(action_id):
            return None
        return action_id, {}

    def error(self, code: str, detail: str, **params: Any) -> ConnectorError:
        """Build a ConnectorError of this connector."""
        return errors.crm_error(code, detail, label=self.label, crm=self.crm, **params)

    @property
    def language(self) -> str:
        """The language of the notes this connector writes."""
        return self.settings.language


def written_forms(number: CallerNumber) -> list[str]:
    """Return the caller's number as offices write it: E.164, national and international format.

    Text searches (ilike, LIKE) find a stored number only in the form it was written,
    so these are the forms worth a query each.
    """
    forms = [form for form in number.search_forms() if " " in form or form.startswith("+")]
    return forms[:3]


def time_left(deadline: float) -> float:
    """Return the seconds until `deadline` (a `time.monotonic()` value), never below zero."""
    return max(0.0, deadline - time.monotonic())


def verify_path(ca_file: str | None) -> ssl.SSLContext | bool:
    """Return httpx's `verify` for a connector: a context trusting its CA file, or True for the system store."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else True

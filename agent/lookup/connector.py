"""The connector interface: one back-end that finds contacts for a caller's number.

A connector is `live` when it queries its back-end at ring time, or `synced` when it
keeps a local copy (in the address book's tables) and searches that. Either way it
returns `Card`s whose match was verified by `CallerNumber.match`, and reports failures
as a `ConnectorError` with a code the page translates.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from agent.lookup.numbers import CallerNumber, Match

ConnectorKind = Literal["live", "synced"]

# A card carries at most this many extra details, each cut to `MAX_TEXT` characters, so
# one odd CRM record cannot bloat every message sent to the pages.
MAX_DETAILS = 10
MAX_TEXT = 200


class ErrorCode:
    """Codes of connector errors, sent to the page in the `crm` message."""

    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    INVALID_RESPONSE = "invalid_response"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"
    FAILED = "failed"


class ConnectorError(Exception):
    """A failed lookup or sync: `code` and `params` go to the page, `detail` to the log."""

    def __init__(self, code: str, detail: str = "", **params: Any) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail or code
        self.params = params


@dataclass(frozen=True, slots=True)
class Action:
    """An action a card offers, run through the agent's actions endpoint (not by the lookup)."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Detail:
    """One extra line of a card, such as a CRM's custom field."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Card:
    """One contact that matched a caller, as the page shows it."""

    connector: str
    label: str
    match: Match
    contact_id: str | None = None
    name: str | None = None
    company: str | None = None
    url: str | None = None
    company_url: str | None = None
    # A path served by the agent, such as "/logos/crm.svg" (the settings accept nothing else).
    logo: str | None = None
    actions: tuple[Action, ...] = ()
    details: tuple[Detail, ...] = ()
    score: int = 0
    # The office chose this contact for the number (see `LookupService.choose`).
    chosen: bool = False

    @property
    def is_person(self) -> bool:
        """Whether the card names a person rather than only a company."""
        return bool(self.name) and self.name != self.company

    def explain(self) -> str:
        """Return the English explanation of the match, for the command line."""
        return self.match.explain(self.label)


@dataclass(frozen=True, slots=True)
class ConnectorHealth:
    """A connector's state for the health view: `code` is None when it works."""

    ok: bool
    code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # Contacts in the local copy (synced connectors) and the time of the last good sync.
    contacts: int | None = None
    synced_at: datetime | None = None


class Connector(abc.ABC):
    """A back-end that finds contacts by phone number."""

    name: str
    label: str
    kind: ConnectorKind
    logo: str | None = None
    actions: tuple[Action, ...] = ()

    @abc.abstractmethod
    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Return the cards whose stored numbers match the caller; raise ConnectorError on failure."""

    @abc.abstractmethod
    async def health(self) -> ConnectorHealth:
        """Return whether the back-end can be reached and, for synced ones, how fresh the copy is."""

    async def start(self) -> None:
        """Start background work such as periodic syncs; most connectors have none."""

    async def stop(self) -> None:
        """Stop background work and close connections."""

    def card(
        self,
        match: Match,
        *,
        contact_id: str | None = None,
        name: str | None = None,
        company: str | None = None,
        url: str | None = None,
        company_url: str | None = None,
        details: tuple[Detail, ...] = (),
        actions: tuple[Action, ...] | None = None,
        label: str | None = None,
    ) -> Card:
        """Build a card of this connector, dropping unsafe links and cutting long text."""
        return Card(
            connector=self.name,
            label=label or self.label,
            match=match,
            contact_id=contact_id,
            name=_text(name),
            company=_text(company),
            url=safe_url(url),
            company_url=safe_url(company_url),
            logo=self.logo,
            actions=self.actions if actions is None else actions,
            details=tuple(Detail(_text(d.label) or "", _text(d.value) or "") for d in details[:MAX_DETAILS]),
            score=match.score,
        )


def safe_url(url: str | None) -> str | None:
    """Return `url` when it is an http(s) link, else None, so no javascript: link reaches a page."""
    if not url:
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url[:2048]


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value[:MAX_TEXT] or None

"""Caller cards of the `crm` message, and the page's settings, as the page keeps them.

Pure Python with no `js` import; `state.BoardState` holds one `CallCards` per call id
and replaces it on every `crm` message, because each message carries the whole state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The protocol sends at most five cards per call; a longer list is cut, not trusted.
MAX_CARDS = 5

# The settings a page uses before the agent's snapshot arrives (docs/protocol.md, "Settings").
DEFAULT_SETTINGS: dict[str, Any] = {
    "show_history": True,
    "history_filter": "all",
    "notifications": True,
    "notify_calls": "incoming",
    "language": None,
}


class CardsError(ValueError):
    """A `crm` message or card that does not follow the event protocol."""


@dataclass(frozen=True, slots=True)
class CardAction:
    """An action button: `kind` `run` posts to the agent, `open` opens the card's link."""

    id: str
    label: str
    kind: str = "run"


@dataclass(frozen=True, slots=True)
class Card:
    """One contact or company that matched the caller."""

    connector: str
    label: str
    contact_id: str | None = None
    logo: str | None = None
    name: str | None = None
    company: str | None = None
    url: str | None = None
    company_url: str | None = None
    match_code: str = "connector"
    match_params: Mapping[str, Any] = field(default_factory=dict)
    actions: tuple[CardAction, ...] = ()
    score: int = 0
    chosen: bool = False


@dataclass(frozen=True, slots=True)
class CardError:
    """A connector that failed, with its error code and parameters."""

    connector: str
    code: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallCards:
    """The lookup state of one call: cards best first, connectors still pending, failures."""

    call_id: str
    number: str | None = None
    skipped: str | None = None
    cards: tuple[Card, ...] = ()
    pending: tuple[str, ...] = ()
    errors: tuple[CardError, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def best_name(self) -> str | None:
        """The name of the best card (a person's name, else its company)."""
        for card in self.cards:
            if card.name or card.company:
                return card.name or card.company
        return None

    @property
    def companies(self) -> tuple[str, ...]:
        """The companies of every card, for the history's text filter."""
        return tuple(card.company for card in self.cards if card.company)

    def label_of(self, connector: str) -> str:
        """Return a connector's display label, or its name when the message gave none."""
        return self.labels.get(connector, connector)


def safe_link(value: object) -> str | None:
    """Return an `http` or `https` link, or None: a card's links come from other systems."""
    if not isinstance(value, str):
        return None
    lowered = value.strip().lower()
    if lowered.startswith(("https://", "http://")):
        return value.strip()
    return None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_action(data: object) -> CardAction:
    """Build a CardAction from `{"id", "label", "kind"}`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        raise CardsError(f"action must be an object with an id, got {data!r}")
    label = _text(data, "label") or data["id"]
    return CardAction(id=data["id"], label=label, kind=_text(data, "kind") or "run")


def parse_card(data: object) -> Card:
    """Build a Card from one card object of a `crm` message."""
    if not isinstance(data, Mapping) or not isinstance(data.get("connector"), str):
        raise CardsError(f"card must be an object with a connector, got {data!r}")

    match = data.get("match") if isinstance(data.get("match"), Mapping) else {}
    params = match.get("params") if isinstance(match.get("params"), Mapping) else {}
    actions = data.get("actions") if isinstance(data.get("actions"), list) else []
    score = data.get("score")
    return Card(
        connector=data["connector"],
        label=_text(data, "label") or data["connector"],
        contact_id=_text(data, "contact_id"),
        logo=_text(data, "logo") if (_text(data, "logo") or "").startswith("/") else None,
        name=_text(data, "name"),
        company=_text(data, "company"),
        url=safe_link(data.get("url")),
        company_url=safe_link(data.get("company_url")),
        match_code=_text(match, "code") or "connector",
        match_params=dict(params),
        actions=tuple(parse_action(item) for item in actions),
        score=score if isinstance(score, int) and not isinstance(score, bool) else 0,
        chosen=data.get("chosen") is True,
    )


def parse_call_cards(message: Mapping[str, Any]) -> CallCards:
    """Build a CallCards from a `crm` message."""
    call_id = message.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise CardsError(f"call_id is missing or not a string: {call_id!r}")

    cards = message.get("cards") or []
    pending = message.get("pending") or []
    errors = message.get("errors") or []
    labels = message.get("labels") or {}
    if not isinstance(cards, list) or not isinstance(pending, list) or not isinstance(errors, list):
        raise CardsError("cards, pending and errors must be lists")

    return CallCards(
        call_id=call_id,
        number=_text(message, "number"),
        skipped=_text(message, "skipped"),
        cards=tuple(parse_card(card) for card in cards[:MAX_CARDS]),
        pending=tuple(str(name) for name in pending),
        errors=tuple(
            CardError(str(item.get("connector", "")), str(item.get("code", "failed")), dict(item.get("params") or {}))
            for item in errors
            if isinstance(item, Mapping)
        ),
        labels={str(key): str(value) for key, value in labels.items()} if isinstance(labels, Mapping) else {},
    )


@dataclass(frozen=True, slots=True)
class CallerActions:
    """The actions one connector offers for a caller no card matched, such as create contact."""

    connector: str
    label: str
    actions: tuple[CardAction, ...]


def parse_caller_actions(items: object) -> tuple[CallerActions, ...]:
    """Build the snapshot's `caller_actions`; anything malformed is left out."""
    if not isinstance(items, list):
        return ()
    parsed = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("connector"), str):
            continue
        actions = item.get("actions") if isinstance(item.get("actions"), list) else []
        parsed.append(
            CallerActions(
                connector=item["connector"],
                label=_text(item, "label") or item["connector"],
                actions=tuple(parse_action(action) for action in actions),
            )
        )
    return tuple(parsed)


def parse_settings(data: object) -> dict[str, Any]:
    """Return the settings of a snapshot or `settings` message, completed with the defaults."""
    settings = dict(DEFAULT_SETTINGS)
    if isinstance(data, Mapping):
        for name in DEFAULT_SETTINGS:
            if name in data:
                settings[name] = data[name]
    return settings

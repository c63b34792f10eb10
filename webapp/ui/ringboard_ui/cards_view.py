"""Renders a call's caller cards: logo, linked name and company, match reason and actions.

Every text goes in with textContent (`set_text`), because names come from CRMs and
callers. Links open in a new tab with `rel="noopener noreferrer"`. Buttons carry
`data-action` and the ids the click handler in `main` needs:

- `data-action="run"`: `data-for-call` (the call id), `data-connector`, `data-action-id`, `data-contact-id`;
- `data-action="choose"`: `data-number`, `data-connector`, `data-contact-id`;
- `data-action="open"`: only a link, so it is an `<a>` and not a button.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .cards import CallCards, Card, CardAction, CallerActions
from .i18n import Catalog

Node = Any

# Shown when a card has no logo of its own: the connector types with an icon in style.css.
DEFAULT_LOGO_TYPES = ("addressbook", "carddav", "ldap", "rest", "hubspot", "pipedrive", "zendesk", "zammad", "odoo")


@dataclass(frozen=True, slots=True)
class ActionStatus:
    """The state of one action button: `running`, `ok` or `failed`, with its result text and link."""

    state: str
    text: str = ""
    url: str | None = None


def action_key(call_id: str, connector: str, action_id: str, contact_id: str | None) -> str:
    """Return the key a button's status is kept under."""
    return f"{call_id}|{connector}|{action_id}|{contact_id or ''}"


def result_text(texts: Catalog, result: Mapping[str, Any], label: str) -> str:
    """Translate an action result of `POST /api/calls/{id}/actions/...`."""
    code = result.get("code")
    params = dict(result.get("params") or {})
    params.setdefault("label", label)
    params.setdefault("crm", label)
    if result.get("ok"):
        if isinstance(code, str) and texts.has(code):
            return texts.text(code, **params)
        return texts.text("action.done")
    if isinstance(code, str) and texts.has(code):
        return texts.text(code, **params)
    return texts.text("action.failed")


class CardsRenderer:
    """Builds the card list of one call row through the view's DOM adapter."""

    def __init__(self, dom: Any, texts: Catalog) -> None:
        self._dom = dom
        self._texts = texts

    def build(
        self,
        parent: Node,
        call_id: str,
        cards: CallCards | None,
        caller_actions: tuple[CallerActions, ...],
        statuses: Mapping[str, ActionStatus],
    ) -> None:
        """Append the cards, the pending line, the error lines and the unknown caller's actions."""
        if cards is None:
            return

        box = self._child(parent, "div", "cards")
        if cards.pending:
            pending = self._child(box, "p", "cards__pending")
            self._dom.set_attribute(pending, "aria-busy", "true")
            labels = ", ".join(cards.label_of(name) for name in cards.pending)
            self._dom.set_text(pending, self._texts.text("cards.pending", labels=labels))

        if cards.cards:
            many = sum(1 for card in cards.cards if card.contact_id) > 1
            items = self._child(box, "ul", "cards__list")
            for card in cards.cards:
                self._build_card(items, call_id, cards, card, many, statuses)
        elif not cards.pending and not cards.skipped and cards.number:
            self._build_unknown(box, call_id, caller_actions, statuses)

        for error in cards.errors:
            line = self._child(box, "p", "cards__error")
            label = cards.label_of(error.connector)
            key = f"lookup_error.{error.code}"
            reason = self._texts.text(key if self._texts.has(key) else "lookup_error.failed", **error.params)
            self._dom.set_text(line, self._texts.text("cards.error", label=label, reason=reason))

    def _build_card(
        self,
        parent: Node,
        call_id: str,
        cards: CallCards,
        card: Card,
        many: bool,
        statuses: Mapping[str, ActionStatus],
    ) -> None:
        dom = self._dom
        item = self._child(parent, "li", "card")
        dom.set_attribute(item, "data-connector", card.connector)
        if card.chosen:
            dom.set_attribute(item, "data-chosen", "true")

        if card.logo:
            logo = self._child(item, "img", "card__logo")
            dom.set_attribute(logo, "src", card.logo)
            dom.set_attribute(logo, "alt", card.label)
        else:
            logo = self._child(item, "span", "card__logo card__logo--default")
            dom.set_attribute(logo, "role", "img")
            dom.set_attribute(logo, "aria-label", card.label)
        dom.set_attribute(logo, "title", card.label)

        body = self._child(item, "div", "card__body")
        if card.name:
            self._link(body, "card__name", card.name, card.url)
        if card.company:
            self._link(body, "card__company", card.company, card.company_url)

        match = self._child(body, "span", "card__match")
        dom.set_text(match, self._match_text(card))

        actions = self._child(body, "div", "card__actions")
        for action in card.actions:
            self._action(actions, call_id, card.connector, card.label, action, card.contact_id, card.url, statuses)
        if many and card.contact_id and not card.chosen and cards.number:
            button = self._child(actions, "button", "button button--small card__choose")
            dom.set_attribute(button, "type", "button")
            dom.set_attribute(button, "data-action", "choose")
            dom.set_attribute(button, "data-number", cards.number)
            dom.set_attribute(button, "data-connector", card.connector)
            dom.set_attribute(button, "data-contact-id", card.contact_id)
            dom.set_text(button, self._texts.text("cards.choose"))
        if card.chosen and many:
            dom.set_text(self._child(actions, "span", "card__chosen"), self._texts.text("cards.chosen"))

    def _build_unknown(
        self, parent: Node, call_id: str, caller_actions: tuple[CallerActions, ...], statuses: Mapping[str, ActionStatus]
    ) -> None:
        line = self._child(parent, "p", "cards__none")
        self._dom.set_text(line, self._texts.text("cards.none"))
        actions = self._child(parent, "div", "card__actions")
        for offer in caller_actions:
            for action in offer.actions:
                self._action(actions, call_id, offer.connector, offer.label, action, None, None, statuses, with_label=True)

    def _action(
        self,
        parent: Node,
        call_id: str,
        connector: str,
        label: str,
        action: CardAction,
        contact_id: str | None,
        url: str | None,
        statuses: Mapping[str, ActionStatus],
        with_label: bool = False,
    ) -> None:
        dom = self._dom
        text = self._texts.text(action.label) if self._texts.has(action.label) else action.label
        if with_label:
            text = self._texts.text("cards.action_in", action=text, label=label)

        if action.kind == "open":
            if url:
                self._link(parent, "button button--small card__open", text, url)
            return

        button = self._child(parent, "button", "button button--small card__action")
        dom.set_attribute(button, "type", "button")
        dom.set_attribute(button, "data-action", "run")
        dom.set_attribute(button, "data-for-call", call_id)
        dom.set_attribute(button, "data-connector", connector)
        dom.set_attribute(button, "data-action-id", action.id)
        dom.set_attribute(button, "data-label", label)
        dom.set_attribute(button, "data-contact-id", contact_id or "")
        dom.set_text(button, text)

        status = statuses.get(action_key(call_id, connector, action.id, contact_id))
        if status is None:
            return
        if status.state == "running":
            dom.set_attribute(button, "disabled", "")
            dom.set_attribute(button, "aria-busy", "true")
            return
        if status.state == "ok":
            dom.set_attribute(button, "disabled", "")
        result = self._child(parent, "span", f"card__result card__result--{status.state}")
        dom.set_attribute(result, "role", "status")
        if status.url:
            self._link(result, "card__result-link", status.text, status.url)
        else:
            dom.set_text(result, status.text)

    def _match_text(self, card: Card) -> str:
        params = {"number": "", "stored": "", "label": card.label, "digits": "", "main_number": ""}
        params.update({key: str(value) for key, value in card.match_params.items()})
        key = f"match.{card.match_code}"
        return self._texts.text(key if self._texts.has(key) else "match.connector", **params)

    def _link(self, parent: Node, css_class: str, text: str, url: str | None) -> Node:
        dom = self._dom
        node = self._child(parent, "a" if url else "span", css_class)
        dom.set_attribute(node, "dir", "auto")
        if url:
            dom.set_attribute(node, "href", url)
            dom.set_attribute(node, "target", "_blank")
            dom.set_attribute(node, "rel", "noopener noreferrer")
        dom.set_text(node, text)
        return node

    def _child(self, parent: Node, tag: str, css_class: str) -> Node:
        node = self._dom.create_element(tag)
        self._dom.set_attribute(node, "class", css_class)
        self._dom.append(parent, node)
        return node

"""Renders the board's state into the shell's DOM through a small adapter.

The adapter (`DomAdapter`) is the view's only access to the browser, so the tests
drive it with a fake DOM under CPython. Nodes are built with createElement and textContent
only, never innerHTML, because caller names come from the network.

Each call row is an `<li class="call">` with these attributes, which the style sheet
and the end-to-end tests select on:

- `data-call-id`: the call's `id` from the protocol;
- `data-state`: `ringing`, `connected`, `held` or `ended`;
- `data-outcome`: the outcome of an ended call (`answered`, `missed`,
  `answered_elsewhere`, `busy`, `rejected`, `failed`, `transferred`), empty while live;
- `data-kind`: the icon type, a `CallKind` value such as `incoming-missed`;
- `data-direction`: `inbound`, `outbound`, `internal` or `unknown`.

Live rows sit in `#active-calls`, ended ones in `#call-history`. The status button
`#status` carries `data-connection` (`connecting`, `online` or `offline`), and the
root element gets `data-ringboard="live"` once the UI runs. `#status` shows `unpaired`
while the pairing form (`ringboard_ui.pairing`) replaces the board.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any, Protocol

from .banner import health_messages
from .cards import CallCards
from .cards_view import ActionStatus, CardsRenderer
from .formatting import format_duration, format_full, format_when
from .i18n import Catalog
from .state import BoardState, Call, CallKind, Health

Node = Any

APP_NAME = "Ringboard"

# Element ids of the HTML shell (webapp/index.html).
STATUS_ID = "status"
LOADING_ID = "loading"
BANNER_ID = "banner"
ACTIVE_LIST_ID = "active-list"
ACTIVE_EMPTY_ID = "active-empty"
ACTIVE_COUNT_ID = "active-count"
HISTORY_LIST_ID = "history-list"
HISTORY_EMPTY_ID = "history-empty"
ACTIVE_SECTION_ID = "active-calls"
HISTORY_SECTION_ID = "call-history"
HISTORY_FILTER_ID = "history-filter"
HISTORY_SEARCH_ID = "history-search"
HISTORY_MORE_ID = "history-more"
OPEN_COUNT_ID = "open-count"
ANNOUNCER_ID = "announcer"

# The history filter's values (the `history_filter` setting) and the call kinds each shows.
HISTORY_FILTER_KINDS: dict[str, frozenset[CallKind]] = {
    "missed": frozenset({CallKind.INCOMING_MISSED}),
    "answered": frozenset({CallKind.INCOMING_ANSWERED}),
    "outgoing": frozenset({CallKind.OUTGOING_ANSWERED, CallKind.OUTGOING_UNANSWERED}),
    "answered_elsewhere": frozenset({CallKind.ANSWERED_ELSEWHERE}),
    "transferred": frozenset({CallKind.TRANSFERRED}),
    "internal": frozenset({CallKind.INTERNAL}),
}

# Shell elements whose text the view translates carry their catalogue key here.
I18N_ATTRIBUTE = "data-i18n"
I18N_TITLE_ATTRIBUTE = "data-i18n-title"

# `unpaired`: the agent refused this browser's device token, and the pairing form shows.
CONNECTION_STATUSES = ("connecting", "online", "offline", "unpaired")


class DomAdapter(Protocol):
    """The DOM operations the view uses; `dom.BrowserDom` implements them over `js`."""

    def element_by_id(self, element_id: str) -> Node: ...

    def document_element(self) -> Node: ...

    def elements_with_attribute(self, name: str) -> list[Node]: ...

    def create_element(self, tag: str) -> Node: ...

    def get_attribute(self, node: Node, name: str) -> str | None: ...

    def set_attribute(self, node: Node, name: str, value: str) -> None: ...

    def remove_attribute(self, node: Node, name: str) -> None: ...

    def set_text(self, node: Node, text: str) -> None: ...

    def append(self, parent: Node, child: Node) -> None: ...

    def replace_children(self, parent: Node, children: list[Node]) -> None: ...

    def set_title(self, text: str) -> None: ...


def filter_history(calls: list[Call], cards: dict[str, CallCards], kind: str, text: str) -> list[Call]:
    """Return the calls of a filter value (`all`, `open`, `missed`, ...) whose name, number or company contains `text`."""
    needle = text.strip().casefold()
    digits = "".join(char for char in needle if char.isdigit())
    shown = []
    for call in calls:
        if kind == "open" and not call.is_open:
            continue
        if kind in HISTORY_FILTER_KINDS and call.kind not in HISTORY_FILTER_KINDS[kind]:
            continue
        if needle and not _matches_text(call, cards.get(call.id), needle, digits):
            continue
        shown.append(call)
    return shown


def _matches_text(call: Call, cards: CallCards | None, needle: str, digits: str) -> bool:
    words = [call.remote.name or ""]
    if cards is not None:
        words += [card.name or "" for card in cards.cards]
        words += list(cards.companies)
    if any(needle in word.casefold() for word in words):
        return True
    numbers = [call.remote.display or "", call.remote.number or "", call.remote.e164 or ""]
    if digits and len(digits) >= 2:
        return any(digits in "".join(char for char in number if char.isdigit()) for number in numbers)
    return any(needle in number.casefold() for number in numbers)


@dataclass(slots=True)
class _Row:
    """A rendered call row and the nodes that change without a rebuild."""

    call: Call
    signature: tuple[Any, ...]
    node: Node
    when_node: Node
    duration_node: Node | None


class BoardView:
    """Keeps one row per call id and rebuilds a row only when its call changed."""

    def __init__(self, dom: DomAdapter, texts: Catalog, zone: tzinfo | None = None) -> None:
        self._dom = dom
        self._texts = texts
        self._zone = zone
        self._rows: dict[str, _Row] = {}
        self._list_ids: dict[str, list[str]] = {ACTIVE_LIST_ID: [], HISTORY_LIST_ID: []}
        self._today: date | None = None
        self._cards = CardsRenderer(dom, texts)
        self._announced: set[str] = set()
        # Action buttons' states by `cards_view.action_key`; set by the click handler in `main`.
        self.statuses: dict[str, ActionStatus] = {}
        self.search_text = ""

    @property
    def dom(self) -> DomAdapter:
        """The DOM adapter the view renders through."""
        return self._dom

    @property
    def texts(self) -> Catalog:
        """The catalogue the page is shown in."""
        return self._texts

    def set_texts(self, texts: Catalog) -> None:
        """Switch the page's language: translate the shell again and rebuild every row."""
        self._texts = texts
        self._cards = CardsRenderer(self._dom, texts)
        self._rows = {}
        self._list_ids = {ACTIVE_LIST_ID: [], HISTORY_LIST_ID: []}
        self.translate_shell()

    def translate_shell(self) -> None:
        """Set the page language and the text of every shell element with a catalogue key."""
        self._dom.set_attribute(self._dom.document_element(), "lang", self._texts.language)

        for node in self._dom.elements_with_attribute(I18N_ATTRIBUTE):
            key = self._dom.get_attribute(node, I18N_ATTRIBUTE)
            if key:
                self._dom.set_text(node, self._texts.text(key))

        for node in self._dom.elements_with_attribute(I18N_TITLE_ATTRIBUTE):
            key = self._dom.get_attribute(node, I18N_TITLE_ATTRIBUTE)
            if key:
                self._dom.set_attribute(node, "title", self._texts.text(key))

    def mark_live(self) -> None:
        """Hide the loading indicator and flag the page as running (`html[data-ringboard=live]`)."""
        self._dom.set_attribute(self._dom.element_by_id(LOADING_ID), "hidden", "")
        self._dom.set_attribute(self._dom.document_element(), "data-ringboard", "live")

    def show_connection(self, status: str) -> None:
        """Show `connecting`, `online`, `offline` or `unpaired`; only the offline status is clickable."""
        if status not in CONNECTION_STATUSES:
            raise ValueError(f"unknown connection status {status!r}; expected one of {CONNECTION_STATUSES}")

        node = self._dom.element_by_id(STATUS_ID)
        self._dom.set_attribute(node, "data-connection", status)
        self._dom.set_text(node, self._texts.text(f"status.{status}"))
        self._dom.set_attribute(node, "title", self._texts.text(f"status.{status}.hint"))

        if status == "offline":
            self._dom.remove_attribute(node, "disabled")
        else:
            self._dom.set_attribute(node, "disabled", "")

    def render(self, state: BoardState, now: datetime) -> None:
        """Bring both lists, the counters, the banner and the tab title up to date."""
        self._today = now.astimezone(self._zone).date()
        active = state.active_calls()
        show_history = state.settings.get("show_history") is not False
        kind = str(state.settings.get("history_filter") or "all")
        history = filter_history(state.history, state.cards, kind, self.search_text) if show_history else []
        self._announce_ringing(active, state)

        shown_ids = {call.id for call in active} | {call.id for call in history}
        for call_id in list(self._rows):
            if call_id not in shown_ids:
                del self._rows[call_id]

        self._render_list(ACTIVE_LIST_ID, active, now, state)
        self._render_list(HISTORY_LIST_ID, history, now, state)
        self._set_hidden(self._dom.element_by_id(ACTIVE_EMPTY_ID), bool(active))
        self._set_hidden(self._dom.element_by_id(HISTORY_EMPTY_ID), bool(history))
        self._dom.set_text(self._dom.element_by_id(ACTIVE_COUNT_ID), str(len(active)))
        self._render_history_controls(state, show_history, kind)

        self._render_banner(state)

        ringing = state.ringing_count()
        self._dom.set_title(f"({ringing}) {APP_NAME}" if ringing else APP_NAME)

    def tick(self, now: datetime) -> None:
        """Advance the live talk times; after midnight also redo the "today" labels."""
        today = now.astimezone(self._zone).date()
        new_day = today != self._today
        self._today = today

        for row in self._rows.values():
            if row.duration_node is not None and row.call.is_live:
                self._dom.set_text(row.duration_node, self._duration_text(row.call, now))
            if new_day:
                self._dom.set_text(row.when_node, format_when(row.call.started_at, now, self._texts, self._zone))

    def _render_history_controls(self, state: BoardState, show_history: bool, kind: str) -> None:
        section = self._dom.element_by_id(HISTORY_SECTION_ID)
        if show_history:
            self._dom.remove_attribute(section, "data-hidden-by-user")
        else:
            self._dom.set_attribute(section, "data-hidden-by-user", "true")
        self._dom.set_value(self._dom.element_by_id(HISTORY_FILTER_ID), kind)
        open_count = state.open_count()
        counter = self._dom.element_by_id(OPEN_COUNT_ID)
        self._dom.set_text(counter, self._texts.text("history.open_count", count=open_count) if open_count else "")
        self._set_hidden(counter, not open_count)
        self._set_hidden(self._dom.element_by_id(HISTORY_MORE_ID), state.history_complete or not state.history)

    def _announce_ringing(self, active: list[Call], state: BoardState) -> None:
        """Say a newly ringing call once through the ARIA live region."""
        ringing = [call for call in active if call.state == "ringing" and call.id not in self._announced]
        self._announced &= {call.id for call in active}
        if not ringing:
            return
        call = ringing[0]
        self._announced.update(item.id for item in ringing)
        # Cards usually arrive after the ringing event, so an unknown caller is announced by number.
        name, has_name = self._name_text(call, state.cards.get(call.id))
        caller = name if has_name else (self._number_text(call) or name)
        text = self._texts.text("announce.ringing", name=caller, extension=call.extension)
        self._dom.set_text(self._dom.element_by_id(ANNOUNCER_ID), text)

    def _render_list(self, list_id: str, calls: list[Call], now: datetime, state: BoardState) -> None:
        changed = False
        nodes = []
        for call in calls:
            row = self._rows.get(call.id)
            cards = state.cards.get(call.id)
            prefix = call.id + "|"
            statuses = tuple(sorted((key, value) for key, value in self.statuses.items() if key.startswith(prefix)))
            signature = (cards, statuses, state.caller_actions)
            if row is None or row.call != call or row.signature != signature:
                row = self._build_row(call, now, cards, state, signature)
                self._rows[call.id] = row
                changed = True
            nodes.append(row.node)

        ids = [call.id for call in calls]
        if changed or ids != self._list_ids[list_id]:
            self._dom.replace_children(self._dom.element_by_id(list_id), nodes)
            self._list_ids[list_id] = ids

    def _build_row(
        self, call: Call, now: datetime, cards: CallCards | None, state: BoardState, signature: tuple[Any, ...]
    ) -> _Row:
        dom = self._dom
        texts = self._texts

        row = dom.create_element("li")
        dom.set_attribute(row, "class", "call")
        dom.set_attribute(row, "data-call-id", call.id)
        dom.set_attribute(row, "data-state", call.state)
        dom.set_attribute(row, "data-outcome", call.outcome or "")
        dom.set_attribute(row, "data-kind", call.kind.value)
        dom.set_attribute(row, "data-direction", call.direction)
        if call.is_missed:
            dom.set_attribute(row, "data-done", "true" if call.done else "false")
        if cards is not None and cards.pending:
            dom.set_attribute(row, "aria-busy", "true")

        kind_text = texts.text(f"kind.{call.kind.value}")
        icon = self._child(row, "span", f"call__icon icon icon--{call.kind.value}")
        dom.set_attribute(icon, "role", "img")
        dom.set_attribute(icon, "aria-label", kind_text)
        dom.set_attribute(icon, "title", kind_text)

        party = self._child(row, "div", "call__party")
        name, has_name = self._name_text(call, cards)
        name_class = "call__name" if has_name else "call__name call__name--placeholder"
        name_node = self._child(party, "span", name_class)
        dom.set_attribute(name_node, "dir", "auto")
        dom.set_attribute(name_node, "title", name)
        dom.set_text(name_node, name)

        number = self._number_text(call)
        if number:
            dom.set_text(self._child(party, "span", "call__number"), number)
        if call.called:
            dom.set_text(self._child(party, "span", "call__called"), texts.text("call.called", number=call.called))

        extension = self._child(row, "span", "call__extension")
        dom.set_text(extension, texts.text("call.extension", extension=call.extension))
        dom.set_attribute(extension, "title", texts.text("call.called_line"))

        when = self._child(row, "time", "call__time")
        dom.set_attribute(when, "datetime", call.started_at.isoformat())
        dom.set_attribute(when, "title", format_full(call.started_at, texts, self._zone))
        dom.set_text(when, format_when(call.started_at, now, texts, self._zone))

        duration_text = self._duration_text(call, now)
        duration = self._child(row, "span", "call__duration")
        dom.set_attribute(duration, "title", texts.text("call.talk_time"))
        dom.set_text(duration, duration_text)

        if call.is_live:
            dom.set_text(self._child(row, "span", "call__state"), texts.text(f"state.{call.state}"))
        else:
            dom.set_text(self._child(row, "span", "call__outcome"), self._outcome_text(call))

        if call.is_open:
            done = self._child(row, "button", "button button--small call__done")
            dom.set_attribute(done, "type", "button")
            dom.set_attribute(done, "data-action", "done")
            dom.set_attribute(done, "data-for-call", call.id)
            dom.set_text(done, texts.text("call.mark_done"))
        elif call.is_missed and call.done:
            dom.set_text(self._child(row, "span", "call__done-mark"), texts.text("call.done"))

        statuses = {key: value for key, value in signature[1]}
        self._cards.build(row, call.id, cards, state.caller_actions, statuses)

        live_duration = duration if call.is_live and call.answered_at is not None else None
        return _Row(call=call, signature=signature, node=row, when_node=when, duration_node=live_duration)

    def _child(self, parent: Node, tag: str, css_class: str) -> Node:
        node = self._dom.create_element(tag)
        self._dom.set_attribute(node, "class", css_class)
        self._dom.append(parent, node)
        return node

    def caller_label(self, call: Call, state: BoardState) -> str:
        """Return the caller as the row names them, with the number after a found name."""
        name, has_name = self._name_text(call, state.cards.get(call.id))
        number = self._number_text(call)
        if has_name and number and number != name:
            return f"{name} ({number})"
        return number if not has_name and number else name

    def _name_text(self, call: Call, cards: CallCards | None = None) -> tuple[str, bool]:
        best = cards.best_name if cards is not None else None
        if best:
            return best, True
        if call.remote.name:
            return call.remote.name, True
        if call.remote.withheld:
            return self._texts.text("call.withheld"), False
        return self._texts.text("call.unknown"), False

    @staticmethod
    def _number_text(call: Call) -> str:
        if call.remote.withheld:
            return ""
        return call.remote.display or call.remote.number or ""

    @staticmethod
    def _duration_text(call: Call, now: datetime) -> str:
        if call.is_live:
            if call.answered_at is None:
                return ""
            return format_duration((now - call.answered_at).total_seconds())

        if call.duration is None:
            return ""
        return format_duration(call.duration)

    def _outcome_text(self, call: Call) -> str:
        texts = self._texts
        outcome = call.outcome
        if outcome is None or not texts.has(f"outcome.{outcome}"):
            return texts.text("state.ended")

        if outcome == "answered_elsewhere" and call.answered_by:
            text = texts.text("outcome.answered_by", extension=call.answered_by)
        elif outcome == "transferred" and call.transferred_to:
            text = texts.text("outcome.transferred_to", target=call.transferred_to)
        else:
            text = texts.text(f"outcome.{outcome}")

        reason = self._reason_text(call.outcome_reason)
        if reason:
            text = texts.text("outcome.with_reason", outcome=text, reason=reason)

        if call.confidence == "inferred":
            text = texts.text("outcome.inferred", outcome=text)
        return text

    def _reason_text(self, reason: str | None) -> str:
        # NOTE: docs/protocol.md does not list `outcome_reason` values yet. Known codes
        # are translated, a bare number is read as a SIP status, anything else is left out.
        if not reason:
            return ""
        if self._texts.has(f"reason.{reason}"):
            return self._texts.text(f"reason.{reason}")
        if reason.isdigit():
            return self._texts.text("reason.sip_status", status=reason)
        return ""

    def _render_banner(self, state: BoardState) -> None:
        messages = self._health_texts(state.health)
        if state.error is not None:
            key = f"error.{state.error.code}"
            if self._texts.has(key):
                messages.append(self._texts.text(key, **state.error.params))
            else:
                messages.append(self._texts.text("error.unknown", code=state.error.code))

        banner = self._dom.element_by_id(BANNER_ID)
        paragraphs = []
        for message in messages:
            paragraph = self._dom.create_element("p")
            self._dom.set_text(paragraph, message)
            paragraphs.append(paragraph)

        self._dom.replace_children(banner, paragraphs)
        self._set_hidden(banner, not paragraphs)

    def _health_texts(self, health: Health | None) -> list[str]:
        return health_messages(health, self._texts)

    def _set_hidden(self, node: Node, hidden: bool) -> None:
        if hidden:
            self._dom.set_attribute(node, "hidden", "")
        else:
            self._dom.remove_attribute(node, "hidden")

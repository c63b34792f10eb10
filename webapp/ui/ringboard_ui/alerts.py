"""The page's own alert for ringing calls: which calls alert, which tab rings, the banner.

Every tab gets each call from the agent's WebSocket, so every tab shows the alert and
closes it once the call stops ringing, wherever it was answered. The sound is played
by one tab only: the tabs of a browser elect a sound leader through a lock in
`localStorage` (`SoundLeader`), which the leader renews while it runs.

Plain Python over injected storage and DOM adapters, so the tests run it in CPython.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from .i18n import Catalog
from .state import BoardState, Call

log = logging.getLogger(__name__)

ALERT_ID = "call-alert"
SOUND_LEADER_ATTRIBUTE = "data-sound-leader"
SOUND_PLAYED_ATTRIBUTE = "data-sound-played"

LOCK_KEY = "ringboard.sound-leader"
# A leader renews its lock every RENEW_SECONDS; a lock older than LOCK_SECONDS belongs
# to a tab that was closed or frozen, and another tab takes it over.
LOCK_SECONDS = 6.0
RENEW_SECONDS = 2.0


def wants_alert(call: Call, settings: Mapping[str, Any]) -> bool:
    """Return whether a call alerts in the page, by the same rules as the agent's pushes.

    A ringing call alerts while notifications are on: incoming calls always, internal
    calls with `notify_calls` `incoming_internal` or `all`, outgoing calls with `all`.
    """
    if call.state != "ringing" or settings.get("notifications", True) is False:
        return False
    notify_calls = settings.get("notify_calls", "incoming")
    if call.direction == "internal":
        return notify_calls in ("incoming_internal", "all")
    if call.direction == "outbound":
        return notify_calls == "all"
    return True


def has_call_reply(call_id: object, state: BoardState, online: bool) -> dict[str, bool]:
    """Build the reply to the worker's `has-call`: whether this page shows the call as live now.

    A page whose connection is down may show a call that stopped ringing long ago, so
    it replies false and lets the worker alert.
    """
    shown = online and isinstance(call_id, str) and call_id in state.active
    return {"shown": shown}


def active_call_ids(state: BoardState) -> list[str]:
    """Return the ids of the live calls, sorted, for the worker's `active-calls` message."""
    return sorted(state.active)


def call_id_from_fragment(fragment: str) -> str | None:
    """Return the call id of a `#call=<id>` URL fragment, or None for any other fragment."""
    prefix = "#call="
    if not fragment.startswith(prefix):
        return None
    call_id = unquote(fragment[len(prefix):]).strip()
    return call_id or None


class KeyValueStorage(Protocol):
    """The subset of `localStorage` the lock needs."""

    def get_item(self, key: str) -> str | None: ...

    def set_item(self, key: str, value: str) -> None: ...

    def remove_item(self, key: str) -> None: ...


class SoundLeader:
    """A lock with an expiry time in shared storage; the tab that holds it plays the sound.

    `refresh(now)` runs every RENEW_SECONDS in each tab: the holder renews the lock, and
    any tab takes a lock that is missing or expired. `now` is in seconds.
    """

    def __init__(self, storage: KeyValueStorage, tab_id: str) -> None:
        self._storage = storage
        self.tab_id = tab_id

    def _read(self) -> tuple[str | None, float]:
        raw = self._storage.get_item(LOCK_KEY)
        if not raw:
            return None, 0.0
        try:
            record = json.loads(raw)
            return str(record["tab"]), float(record["until"])
        except (ValueError, KeyError, TypeError):
            log.warning("replacing an unreadable sound lock: %.80r", raw)
            return None, 0.0

    def refresh(self, now: float) -> bool:
        """Renew or take the lock when it is ours, missing or expired; return whether this tab leads."""
        holder, until = self._read()
        if holder is None or holder == self.tab_id or until <= now:
            self._storage.set_item(LOCK_KEY, json.dumps({"tab": self.tab_id, "until": now + LOCK_SECONDS}))
        return self.is_leader(now)

    def is_leader(self, now: float) -> bool:
        """Return whether this tab holds an unexpired lock."""
        holder, until = self._read()
        return holder == self.tab_id and until > now

    def release(self) -> None:
        """Give up the lock, as when the tab closes, so another tab takes it at its next refresh."""
        holder, _ = self._read()
        if holder == self.tab_id:
            self._storage.remove_item(LOCK_KEY)


class AlertTracker:
    """Decides which calls the alert shows and which are new enough to ring.

    The first update after start only records the calls that ring already, so a page
    opened during a call shows it without ringing again.
    """

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._dismissed: set[str] = set()
        self._started = False

    def update(self, state: BoardState) -> tuple[list[Call], list[str]]:
        """Return the calls to show in the alert and the ids of those that start ringing now."""
        wanted = [call for call in state.active_calls() if wants_alert(call, state.settings)]
        wanted_ids = {call.id for call in wanted}
        new_ids = [call.id for call in wanted if call.id not in self._known] if self._started else []
        self._started = True
        self._known = wanted_ids
        self._dismissed &= wanted_ids
        shown = [call for call in wanted if call.id not in self._dismissed]
        return shown, new_ids

    def dismiss(self, call_id: str) -> None:
        """Hide a call's alert in this tab until the call rings again."""
        self._dismissed.add(call_id)


class AlertDom(Protocol):
    """The `view.DomAdapter` methods the alert uses."""

    def element_by_id(self, element_id: str) -> Any: ...

    def document_element(self) -> Any: ...

    def create_element(self, tag: str) -> Any: ...

    def set_attribute(self, node: Any, name: str, value: str) -> None: ...

    def remove_attribute(self, node: Any, name: str) -> None: ...

    def set_text(self, node: Any, text: str) -> None: ...

    def append(self, parent: Any, child: Any) -> None: ...

    def replace_children(self, parent: Any, children: list[Any]) -> None: ...


class CallAlerts:
    """Shows `#call-alert` for ringing calls and plays the sound in the leading tab.

    `caller_text(call, state)` returns the caller's name and number as the rows show
    them; `play_sound()` plays the ring and returns whether it could.
    """

    def __init__(
        self,
        dom: AlertDom,
        texts: Catalog,
        leader: SoundLeader,
        caller_text: Callable[[Call, BoardState], str],
        play_sound: Callable[[], bool],
    ) -> None:
        self._dom = dom
        self.texts = texts
        self.leader = leader
        self.tracker = AlertTracker()
        self._caller_text = caller_text
        self._play_sound = play_sound
        self._shown_signature: tuple[Any, ...] | None = None

    def refresh_leader(self, now: float) -> bool:
        """Renew or take the sound lock and show the result in `html[data-sound-leader]`."""
        leading = self.leader.refresh(now)
        self._dom.set_attribute(self._dom.document_element(), SOUND_LEADER_ATTRIBUTE, "true" if leading else "false")
        return leading

    def update(self, state: BoardState, now: float) -> list[str]:
        """Bring the alert up to date; ring for new calls in the leading tab. Return the new call ids."""
        shown, new_ids = self.tracker.update(state)
        self._render(shown, state)
        if new_ids and self.leader.is_leader(now):
            played = False
            try:
                played = self._play_sound()
            except Exception as error:  # Web Audio may be missing or blocked; the banner still shows.
                log.warning("the ring sound could not be played: %s", error)
            if played:
                self._dom.set_attribute(self._dom.document_element(), SOUND_PLAYED_ATTRIBUTE, new_ids[-1])
        return new_ids

    def dismiss(self, call_id: str, state: BoardState) -> None:
        """Close one call's alert in this tab."""
        self.tracker.dismiss(call_id)
        shown, _ = self.tracker.update(state)
        self._render(shown, state)

    def set_texts(self, texts: Catalog) -> None:
        """Switch the language; the next update redraws the alert."""
        self.texts = texts
        self._shown_signature = None

    def _render(self, calls: list[Call], state: BoardState) -> None:
        lines = [(call.id, self._caller_text(call, state), call.extension) for call in calls]
        signature = (self.texts.language, tuple(lines))
        if signature == self._shown_signature:
            return
        self._shown_signature = signature

        dom = self._dom
        alert = dom.element_by_id(ALERT_ID)
        items = [self._item(call_id, caller, extension) for call_id, caller, extension in lines]
        dom.replace_children(alert, items)
        if items:
            dom.remove_attribute(alert, "hidden")
        else:
            dom.set_attribute(alert, "hidden", "")

    def _item(self, call_id: str, caller: str, extension: str) -> Any:
        dom = self._dom
        item = dom.create_element("div")
        dom.set_attribute(item, "class", "call-alert__item")
        dom.set_attribute(item, "data-alert-call", call_id)

        text = dom.create_element("span")
        dom.set_attribute(text, "class", "call-alert__text")
        dom.set_attribute(text, "dir", "auto")
        dom.set_text(text, self.texts.text("alert.ringing", caller=caller, extension=extension))
        dom.append(item, text)

        close = dom.create_element("button")
        dom.set_attribute(close, "type", "button")
        dom.set_attribute(close, "class", "call-alert__dismiss")
        dom.set_attribute(close, "data-action", "alert-dismiss")
        dom.set_attribute(close, "data-for-call", call_id)
        dom.set_attribute(close, "aria-label", self.texts.text("alert.dismiss"))
        dom.set_attribute(close, "title", self.texts.text("alert.dismiss"))
        dom.set_text(close, "×")
        dom.append(item, close)
        return item

"""The pairing form: shown when the agent reports that this browser has no valid device token.

The agent closes the event WebSocket with code 4401 (or answers an API call with 401)
when the device cookie is missing, unknown or revoked. The page then hides the board
and asks for the PIN; `POST /api/pair` sets a new device cookie, and the connection
starts again. Errors arrive as codes (`pin_invalid`, `pairing_locked` with
`retry_after` in seconds, ...) that this module translates.

Plain Python with the DOM and the HTTP request injected, so it runs under CPython.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol

from .i18n import Catalog
from .view import ACTIVE_SECTION_ID, HISTORY_SECTION_ID, DomAdapter, Node

log = logging.getLogger(__name__)

PAIR_URL = "/api/pair"

# Element ids of the pairing form in the HTML shell (webapp/index.html).
PAIRING_ID = "pairing"
PAIRING_FORM_ID = "pairing-form"
PAIRING_PIN_ID = "pairing-pin"
PAIRING_SUBMIT_ID = "pairing-submit"
PAIRING_ERROR_ID = "pairing-error"

# Three digits naming the user and six secret ones, as `ringboard users add` prints them.
PIN_DIGITS = 9

# Error codes of `POST /api/pair` that have a text of their own (`error.<code>`).
PAIRING_ERROR_CODES = ("pin_invalid", "pin_format", "pairing_locked", "pairing_failed", "busy")

PostJson = Callable[[str, Mapping[str, Any]], Awaitable[tuple[int, Any]]]


class PairingDom(DomAdapter, Protocol):
    """The DOM operations of the form beyond the board's: the input's value and focus."""

    def get_value(self, node: Node) -> str: ...

    def set_value(self, node: Node, value: str) -> None: ...

    def focus(self, node: Node) -> None: ...


def normalize_pin(text: str) -> str | None:
    """Return the PIN's digits without the spaces and hyphens people type, or None unless 9 digits."""
    digits = "".join(char for char in text if char not in " -\t")
    if len(digits) != PIN_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def retry_time(now: datetime, retry_after: float) -> datetime:
    """Return when a locked-out browser may try again, rounded up to the next full minute."""
    moment = now + timedelta(seconds=max(0.0, retry_after))
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment


class PairingView:
    """Shows and hides the form in place of the board, and shows translated errors."""

    def __init__(
        self,
        dom: PairingDom,
        texts: Catalog,
        zone: tzinfo | None = None,
        *,
        pin_id: str = PAIRING_PIN_ID,
        submit_id: str = PAIRING_SUBMIT_ID,
        error_id: str = PAIRING_ERROR_ID,
    ) -> None:
        self._dom = dom
        self._texts = texts
        self._zone = zone
        # The settings panel reuses this view for its "new PIN" field with its own ids.
        self._pin_id = pin_id
        self._submit_id = submit_id
        self._error_id = error_id

    @property
    def visible(self) -> bool:
        """Whether the form is shown."""
        return self._dom.get_attribute(self._dom.element_by_id(PAIRING_ID), "hidden") is None

    def show(self) -> None:
        """Hide the board, show the empty form and put the cursor in the PIN field."""
        self._set_hidden(ACTIVE_SECTION_ID, True)
        self._set_hidden(HISTORY_SECTION_ID, True)
        self._set_hidden(PAIRING_ID, False)
        self.clear_error()
        pin = self._dom.element_by_id(self._pin_id)
        self._dom.set_value(pin, "")
        self._dom.focus(pin)

    def hide(self) -> None:
        """Show the board again and forget the typed PIN."""
        self._dom.set_value(self._dom.element_by_id(self._pin_id), "")
        self.clear_error()
        self._set_hidden(PAIRING_ID, True)
        self._set_hidden(ACTIVE_SECTION_ID, False)
        self._set_hidden(HISTORY_SECTION_ID, False)

    def pin_text(self) -> str:
        """Return what the user typed into the PIN field."""
        return self._dom.get_value(self._dom.element_by_id(self._pin_id))

    def set_busy(self, busy: bool) -> None:
        """Disable the submit button while a PIN is being checked."""
        button = self._dom.element_by_id(self._submit_id)
        if busy:
            self._dom.set_attribute(button, "disabled", "")
            self._dom.set_attribute(button, "aria-busy", "true")
        else:
            self._dom.remove_attribute(button, "disabled")
            self._dom.remove_attribute(button, "aria-busy")

    def show_error(self, code: str, params: Mapping[str, Any], now: datetime) -> None:
        """Show the text of an error code from the agent, or of `pin_format` and `pairing_failed`."""
        texts = self._texts
        if code == "pairing_locked":
            retry_after = params.get("retry_after")
            seconds = float(retry_after) if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) else 60.0
            when = retry_time(now, seconds).astimezone(self._zone)
            text = texts.text("error.pairing_locked", time=when.strftime(texts.text("format.time")))
        elif code == "pin_format":
            text = texts.text("error.pin_format", digits=PIN_DIGITS)
        elif code in PAIRING_ERROR_CODES:
            text = texts.text(f"error.{code}")
        else:
            text = texts.text("error.unknown", code=code)

        node = self._dom.element_by_id(self._error_id)
        self._dom.set_text(node, text)
        self._dom.remove_attribute(node, "hidden")

    def clear_error(self) -> None:
        """Remove the error text."""
        node = self._dom.element_by_id(self._error_id)
        self._dom.set_text(node, "")
        self._dom.set_attribute(node, "hidden", "")

    def _set_hidden(self, element_id: str, hidden: bool) -> None:
        node = self._dom.element_by_id(element_id)
        if hidden:
            self._dom.set_attribute(node, "hidden", "")
        else:
            self._dom.remove_attribute(node, "hidden")


class Pairing:
    """Sends the typed PIN to the agent and shows the outcome."""

    def __init__(
        self,
        view: PairingView,
        post_json: PostJson,
        on_paired: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.view = view
        self._post_json = post_json
        self._on_paired = on_paired
        self._clock = clock
        self._busy = False

    async def submit(self) -> bool:
        """Check the typed PIN with the agent; return whether this browser is now paired."""
        if self._busy:
            return False
        pin = normalize_pin(self.view.pin_text())
        if pin is None:
            self.view.show_error("pin_format", {}, self._clock())
            return False

        self._busy = True
        self.view.set_busy(True)
        self.view.clear_error()
        try:
            status, body = await self._post_json(PAIR_URL, {"pin": pin})
        except Exception as error:  # The browser's fetch rejects on network failures.
            log.warning("POST %s failed: %s", PAIR_URL, error)
            self.view.show_error("pairing_failed", {}, self._clock())
            return False
        finally:
            self._busy = False
            self.view.set_busy(False)

        if status == 200:
            log.info("this browser is paired")
            self.view.hide()
            self._on_paired()
            return True

        code, params = _error_of(body)
        if status == 400 and code == "bad_request":
            code = "pin_format"
        log.info("pairing rejected: HTTP %d, %s", status, code)
        self.view.show_error(code, params, self._clock())
        return False


def _error_of(body: Any) -> tuple[str, Mapping[str, Any]]:
    """Return the code and parameters of an `error` body, or `pairing_failed` for anything else."""
    if isinstance(body, Mapping) and isinstance(body.get("code"), str):
        params = body.get("params")
        return body["code"], params if isinstance(params, Mapping) else {}
    return "pairing_failed", {}

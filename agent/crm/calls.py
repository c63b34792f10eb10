"""A call as CRM actions see it, read from the protocol's `call` object, and the notes written about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Call types of automatic logging, as the `auto_log` setting names them.
ANSWERED = "answered"
MISSED = "missed"
OUTGOING = "outgoing"

# Notes written into CRMs, per `language` setting. {number} is the other party as displayed.
SUBJECTS = {
    "en": {ANSWERED: "Incoming call from {number}", MISSED: "Missed call from {number}", OUTGOING: "Outgoing call to {number}"},
    "de": {ANSWERED: "Eingehender Anruf von {number}", MISSED: "Verpasster Anruf von {number}", OUTGOING: "Ausgehender Anruf an {number}"},
    "fr": {ANSWERED: "Appel entrant de {number}", MISSED: "Appel manqué de {number}", OUTGOING: "Appel sortant vers {number}"},
    "it": {ANSWERED: "Chiamata in arrivo da {number}", MISSED: "Chiamata persa da {number}", OUTGOING: "Chiamata in uscita verso {number}"},
}
TASK_SUBJECTS = {
    "en": "Call back {number}",
    "de": "{number} zurückrufen",
    "fr": "Rappeler {number}",
    "it": "Richiamare {number}",
}
DETAILS = {
    "en": {"extension": "Extension", "duration": "Duration", "not_connected": "Not connected"},
    "de": {"extension": "Nebenstelle", "duration": "Dauer", "not_connected": "Nicht verbunden"},
    "fr": {"extension": "Poste", "duration": "Durée", "not_connected": "Non connecté"},
    "it": {"extension": "Interno", "duration": "Durata", "not_connected": "Non connesso"},
}

# Outcomes by which a call reached the monitored extension's user.
TALKED_OUTCOMES = ("answered", "transferred")


@dataclass(frozen=True, slots=True)
class CallSummary:
    """The facts of one call that CRM actions write down; times are timezone-aware UTC."""

    id: str
    extension: str
    direction: str
    outcome: str | None
    # The other party: E.164 where it parsed, else as presented; None when withheld.
    number: str | None
    display: str | None
    name: str | None
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def from_json(cls, call: dict[str, Any]) -> CallSummary:
        """Read the protocol's `call` object (see docs/protocol.md); raise ValueError when it has no id."""
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("the call has no id")
        remote = call.get("remote") if isinstance(call.get("remote"), dict) else {}
        withheld = bool(remote.get("withheld"))
        number = None if withheld else _text(remote.get("e164")) or _text(remote.get("number"))
        return cls(
            id=call_id,
            extension=_text(call.get("extension")) or "",
            direction=_text(call.get("direction")) or "unknown",
            outcome=_text(call.get("outcome")),
            number=number,
            display=None if withheld else _text(remote.get("display")) or number,
            name=_text(remote.get("name")),
            started_at=_time(call.get("started_at")),
            answered_at=_time(call.get("answered_at")),
            ended_at=_time(call.get("ended_at")),
        )

    @property
    def call_type(self) -> str | None:
        """Return "answered", "missed" or "outgoing" for automatic logging; None for other calls.

        Internal calls and calls of unknown direction are not logged. A call answered
        at another extension is logged by that extension, so it is None here.
        """
        if self.direction == "outbound":
            return OUTGOING
        if self.direction != "inbound":
            return None
        if self.outcome in TALKED_OUTCOMES:
            return ANSWERED
        if self.outcome == "missed":
            return MISSED
        return None

    @property
    def connected(self) -> bool:
        """Whether the parties talked."""
        return self.answered_at is not None

    @property
    def duration_seconds(self) -> int:
        """Talk time in whole seconds (0 when the call was not answered)."""
        if self.answered_at is None or self.ended_at is None:
            return 0
        return max(0, round((self.ended_at - self.answered_at).total_seconds()))

    def subject(self, language: str) -> str:
        """Return the note's title, such as "Incoming call from 044 123 45 67"."""
        texts = SUBJECTS.get(language, SUBJECTS["en"])
        call_type = self.call_type or (OUTGOING if self.direction == "outbound" else ANSWERED)
        if call_type == ANSWERED and not self.connected and self.direction == "inbound":
            call_type = MISSED
        return texts[call_type].format(number=self.display or "?")

    def task_subject(self, language: str) -> str:
        """Return the title of a call-back task."""
        return TASK_SUBJECTS.get(language, TASK_SUBJECTS["en"]).format(number=self.display or "?")

    def body(self, language: str, note: str | None = None) -> str:
        """Return the note's text: extension, duration and the user's own note."""
        words = DETAILS.get(language, DETAILS["en"])
        lines = [self.subject(language), f"{words['extension']}: {self.extension}"]
        if self.connected:
            minutes, seconds = divmod(self.duration_seconds, 60)
            lines.append(f"{words['duration']}: {minutes}:{seconds:02d}")
        else:
            lines.append(words["not_connected"])
        if note:
            lines.append(note)
        return "\n".join(lines)

    @property
    def start(self) -> datetime:
        """When the call started (or now, for a call object without times)."""
        return self.started_at or datetime.now(timezone.utc)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

"""The one place where calls become JSON messages of the event protocol.

`docs/protocol.md` documents every message; its examples are loaded by the tests.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import phonenumbers

from sip.model import Call, CallEvent, RemoteParty

PROTOCOL_VERSION = 1

# phonenumbers treats anything shorter than this as a short code, not a phone number;
# office extensions are shorter, so they are shown as they are.
MIN_PHONE_DIGITS = 6


def format_time(value: datetime | None) -> str | None:
    """Return an ISO 8601 UTC time with millisecond precision and a Z suffix."""
    if value is None:
        return None
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def remote_json(remote: RemoteParty, region: str) -> dict[str, Any]:
    """Serialise the other party, adding the E.164 and display forms of the number."""
    e164, display = number_forms(remote.number, region)
    return {
        "number": None if remote.withheld else remote.number,
        "e164": None if remote.withheld else e164,
        "display": None if remote.withheld else display,
        "name": remote.display_name,
        "uri": None if remote.withheld else remote.uri,
        "withheld": remote.withheld,
    }


def number_forms(number: str | None, region: str) -> tuple[str | None, str | None]:
    """Return (E.164, display form): national for callers of `region`, else international."""
    if not number:
        return None, None
    digits = sum(ch.isdigit() for ch in number)
    if digits < MIN_PHONE_DIGITS:
        return None, number
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None, number
    if not phonenumbers.is_valid_number(parsed):
        return None, number

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    local = phonenumbers.region_code_for_number(parsed) == region
    style = phonenumbers.PhoneNumberFormat.NATIONAL if local else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return e164, phonenumbers.format_number(parsed, style)


def call_json(call: Call, region: str) -> dict[str, Any]:
    """Serialise a call as the `call` object of the protocol."""
    duration = call.duration_seconds
    return {
        "id": call.id,
        "extension": call.extension,
        "direction": str(call.direction),
        "state": str(call.state),
        "remote": remote_json(call.remote, region),
        "called": call.called,
        "started_at": format_time(call.started_at),
        "answered_at": format_time(call.answered_at),
        "ended_at": format_time(call.ended_at),
        "duration": round(duration, 2) if duration is not None else None,
        "outcome": str(call.outcome) if call.outcome else None,
        "confidence": str(call.confidence) if call.confidence else None,
        "outcome_reason": call.outcome_reason,
        "answered_by": call.answered_by,
        "transferred_to": call.transferred_to,
        "referred_by": call.referred_by,
    }


def call_message(seq: int, event: CallEvent, call: dict[str, Any]) -> dict[str, Any]:
    """Build a `call` message from a stored event."""
    return {"type": "call", "seq": seq, "event": str(event.kind), "call": call}


def snapshot_message(
    seq: int, active: list[dict[str, Any]], history: list[dict[str, Any]], health: dict[str, Any]
) -> dict[str, Any]:
    """Build the `snapshot` message that opens every connection."""
    return {
        "type": "snapshot",
        "version": PROTOCOL_VERSION,
        "seq": seq,
        "active": active,
        "history": history,
        "health": health,
    }


def error_message(code: str, **params: Any) -> dict[str, Any]:
    """Build an `error` message: a code and its parameters, translated by the page."""
    return {"type": "error", "code": code, "params": params}

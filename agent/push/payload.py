"""The JSON payloads of Ringboard's push messages, documented in docs/push-protocol.md.

A push message carries codes and data, never sentences: the service worker writes the
notification's text in the browser's language. The payload is kept small because push
services only promise to carry 4096 bytes (RFC 8030, section 7.2), and after the
aes128gcm header and tag (RFC 8291) that leaves 3993 bytes of JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.protocol import number_forms

PAYLOAD_VERSION = 1

# 4096 bytes a push service must accept, minus the aes128gcm header (86 bytes with the
# sender's 65-byte key as key id), the 16-byte tag and the 1-byte padding delimiter.
MAX_PAYLOAD_BYTES = 4096 - 86 - 16 - 1

# Names and companies longer than this are cut: no notification shows more, and the
# payload stays far below MAX_PAYLOAD_BYTES.
MAX_TEXT_LENGTH = 120

# RFC 8030, section 5.4: a Topic is at most 32 characters of the base64url alphabet.
TOPIC_LENGTH = 32


class PushAction(StrEnum):
    """The service worker's handling of the call's notification."""

    RING = "ring"  # Show it and alert, replacing any notification of the call.
    UPDATE = "update"  # Replace it without alerting; show it if none is shown.
    MISSED = "missed"  # Replace a shown one, without alerting, with a missed-call notification.
    CLOSE = "close"  # Close it: the call was answered, here or elsewhere, or ended.


class AlertMode(StrEnum):
    """Whether a visible page that shows the call makes the system notification unnecessary."""

    SYSTEM = "system"  # Only when no visible page of this browser shows the call.
    BOTH = "both"  # Always, even next to the page's own alert.


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller as the best card of the lookup names them."""

    name: str | None = None
    company: str | None = None

    @classmethod
    def from_cards(cls, message: dict[str, Any]) -> Caller | None:
        """Return the first card's name and company from a `crm` message, or None with no card."""
        cards = message.get("cards") or []
        if not cards:
            return None
        best = cards[0]
        return cls(name=_text(best.get("name")), company=_text(best.get("company")))


def call_payload(
    call: dict[str, Any], action: PushAction, caller: Caller | None, alert: AlertMode, region: str
) -> dict[str, Any]:
    """Build the payload of a call push from a protocol call object."""
    remote = call.get("remote") or {}
    _, called_display = number_forms(call.get("called"), region)
    return {
        "push": "call",
        "version": PAYLOAD_VERSION,
        "action": str(action),
        "alert": str(alert),
        "call": {
            "id": call["id"],
            "extension": call.get("extension"),
            "direction": call.get("direction"),
            "state": call.get("state"),
            "outcome": call.get("outcome"),
            "started_at": call.get("started_at"),
            "called": called_display,
            "remote": {
                "display": _text(remote.get("display") or remote.get("number")),
                "name": _text(remote.get("name")),
                "withheld": bool(remote.get("withheld")),
            },
        },
        "caller": None if caller is None else {"name": _text(caller.name), "company": _text(caller.company)},
    }


def make_test_payload(sent_at: str) -> dict[str, Any]:
    """Build the payload of a test notification."""
    return {"push": "test", "version": PAYLOAD_VERSION, "sent_at": sent_at}


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Encode a payload as compact UTF-8 JSON; raise ValueError when it exceeds MAX_PAYLOAD_BYTES."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"push payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def topic_for(call_id: str) -> str:
    """Return the RFC 8030 Topic of a call's pushes, so a newer one replaces an undelivered older one.

    The call id is hashed because a Topic allows only 32 base64url characters.
    """
    digest = hashlib.sha256(call_id.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:TOPIC_LENGTH]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    return value if len(value) <= MAX_TEXT_LENGTH else value[: MAX_TEXT_LENGTH - 1] + "…"

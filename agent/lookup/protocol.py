"""The `crm` message of the event protocol: a call's cards, pending connectors and errors.

`docs/protocol.md` ("Caller cards") documents the message with examples that the tests load.
"""

from __future__ import annotations

from typing import Any

from agent.lookup.connector import Card
from agent.lookup.service import LookupUpdate


def card_json(card: Card) -> dict[str, Any]:
    """Serialise one card; the match is a code with parameters that the page translates."""
    return {
        "connector": card.connector,
        "label": card.label,
        "logo": card.logo,
        "contact_id": card.contact_id,
        "name": card.name,
        "company": card.company,
        "url": card.url,
        "company_url": card.company_url,
        "match": {"code": str(card.match.reason), "params": card.match.params(card.label)},
        "details": [{"label": detail.label, "value": detail.value} for detail in card.details],
        # "run" posts to the actions endpoint; "open" only opens the card's link.
        "actions": [
            {"id": action.id, "label": action.label, "kind": getattr(action, "kind", "run")} for action in card.actions
        ],
        "score": card.score,
        "chosen": card.chosen,
    }


def cards_message(call_id: str, update: LookupUpdate, seq: int | None = None) -> dict[str, Any]:
    """Build the `crm` message for one lookup update of a call; `seq` only when it was stored."""
    message: dict[str, Any] = {"type": "crm", "call_id": call_id}
    if seq is not None:
        message["seq"] = seq
    message.update(
        {
            "number": update.e164,
            "skipped": str(update.skipped) if update.skipped else None,
            "cards": [card_json(card) for card in update.cards],
            "pending": list(update.pending),
            "errors": [
                {"connector": error.connector, "code": error.code, "params": dict(error.params)}
                for error in update.errors
            ],
            "labels": dict(update.labels),
        }
    )
    return message

"""The `crm` message: the examples of docs/protocol.md are exactly what `cards_message` builds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent.lookup.connector import Action, Card, Detail
from agent.lookup.numbers import Match, MatchReason, SkipReason
from agent.lookup.protocol import cards_message
from agent.lookup.service import ConnectorFailure, LookupUpdate

CARDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def load_examples() -> dict[str, Any]:
    """Return every ```json block whose first line is `// name`, by name, without that line."""
    examples: dict[str, Any] = {}
    text = CARDS_DOC.read_text(encoding="utf-8")
    for block in re.findall(r"^```json\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"//\s*(\S+)\s*", first)
        if match is not None:
            assert match.group(1) not in examples, f"example {match.group(1)!r} appears twice"
            examples[match.group(1)] = json.loads(body)
    return examples


EXAMPLES = load_examples()

MAX_CARD = Card(
    connector="contacts",
    label="Office contacts",
    match=Match(MatchReason.E164, "044 123 45 67", "+41 44 123 45 67"),
    contact_id="ringboard-demo-max-muster",
    name="Max Muster",
    company="Muster AG",
    company_url="https://muster.example/",
    score=100,
)

CRM_CARD = Card(
    connector="crm",
    label="Sugar CRM",
    match=Match(MatchReason.CONNECTOR, "044 123 45 67", ""),
    contact_id="4711",
    name="Max Muster",
    company="Muster AG",
    url="https://crm.example.com/contacts/4711",
    company_url="https://crm.example.com/accounts/815",
    logo="/logos/crm.svg",
    actions=(Action("CallFlow", "CallFlow"),),
    details=(Detail("Customer number", "K-1001"),),
    score=80,
    chosen=True,
)

COMPANY_CARD = Card(
    connector="contacts",
    label="Office contacts",
    match=Match(MatchReason.MAIN_NUMBER, "044 123 45 67", "+41 (0)44 123 45 00", main_number="044 123 45 00"),
    contact_id="urn:uuid:5b0c6f0e-2f4e-4d43-9f5b-6a1d0c7e4a01",
    company="Muster AG",
    company_url="https://muster.example/",
    score=50,
)


def test_examples_present() -> None:
    assert {"crm", "crm-complete", "crm-skipped", "contact-choice"} <= set(EXAMPLES)


def test_pending_update_example() -> None:
    update = LookupUpdate(
        number="+41441234567",
        e164="+41441234567",
        cards=(MAX_CARD,),
        pending=("directory",),
        errors=(ConnectorFailure("crm", "CRM", "timeout", {"seconds": 1.5}),),
        labels={"directory": "Company directory", "crm": "CRM"},
    )
    assert cards_message("c-8a7b6c5d4e3f2a1b", update) == EXAMPLES["crm"]


def test_complete_update_example() -> None:
    update = LookupUpdate(number="+41441234567", e164="+41441234567", cards=(CRM_CARD, COMPANY_CARD))
    assert cards_message("c-8a7b6c5d4e3f2a1b", update, seq=1044) == EXAMPLES["crm-complete"]


def test_skipped_example() -> None:
    update = LookupUpdate(number="anonymous", e164=None, skipped=SkipReason.WITHHELD)
    assert cards_message("c-1f2e3d4c5b6a7980", update) == EXAMPLES["crm-skipped"]


def test_message_is_json() -> None:
    update = LookupUpdate(number="+41441234567", e164="+41441234567", cards=(MAX_CARD, CRM_CARD, COMPANY_CARD))
    message = cards_message("c-1", update)
    assert json.loads(json.dumps(message)) == message

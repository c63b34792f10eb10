"""The examples of docs/push-protocol.md against what the agent builds and accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.push.payload import AlertMode, Caller, PushAction, call_payload, encode_payload, make_test_payload
from agent.push.store import EndpointPolicy, parse_subscription
from tests.push.helpers import call_object

DOC = Path(__file__).resolve().parents[2] / "docs" / "push-protocol.md"
HOLDING = Caller("Max Muster", "Muster Holding AG")


def load_examples() -> dict[str, Any]:
    """Return every ```json block whose first line is `// name`, by name, without that line."""
    examples: dict[str, Any] = {}
    for block in re.findall(r"^```json\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"//\s*(\S+)\s*", first)
        if match is None:
            continue
        assert match.group(1) not in examples, f"example {match.group(1)!r} appears twice in {DOC.name}"
        examples[match.group(1)] = json.loads(body)
    return examples


EXAMPLES = load_examples()


@pytest.mark.parametrize(
    ("name", "state", "action", "caller", "outcome"),
    [
        ("push-ring", "ringing", PushAction.RING, Caller("Max Muster", "Muster AG"), None),
        ("push-update", "ringing", PushAction.UPDATE, HOLDING, None),
        ("push-missed", "ended", PushAction.MISSED, HOLDING, "missed"),
        ("push-close", "connected", PushAction.CLOSE, HOLDING, None),
    ],
)
def test_call_push_example(name: str, state: str, action: PushAction, caller: Caller, outcome: str | None) -> None:
    changes = {"outcome": outcome} if outcome else {}

    built = call_payload(call_object(state, **changes), action, caller, AlertMode.SYSTEM, "CH")

    assert EXAMPLES[name] == built
    assert "type" not in built, "push payloads must not look like event protocol messages"
    encode_payload(EXAMPLES[name])


def test_test_push_example() -> None:
    assert EXAMPLES["push-test"] == make_test_payload("2026-12-04T09:20:00.000Z")


def test_subscription_example_accepted() -> None:
    info = parse_subscription(EXAMPLES["push-subscription"], EndpointPolicy())

    assert info.endpoint.startswith("https://fcm.googleapis.com/")


def test_test_result_example_shape() -> None:
    [result] = EXAMPLES["push-test-result"]["results"]

    assert set(result) == {"subscription", "outcome", "status"}
    assert result["outcome"] in ("sent", "gone", "failed")

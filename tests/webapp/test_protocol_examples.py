"""The JSON examples of docs/protocol.md, fed to the UI's state as the agent would send them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.state import BoardState, parse_call  # noqa: E402

PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
MESSAGE_EXAMPLES = ("snapshot", "call-event", "health", "error")


def load_examples() -> dict[str, Any]:
    """Return every ```json block whose first line is `// name`, by name, without that line."""
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    examples: dict[str, Any] = {}
    for block in re.findall(r"^```json\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        first, _, body = block.partition("\n")
        match = re.fullmatch(r"//\s*(\S+)\s*", first)
        if match is None:
            continue
        name = match.group(1)
        assert name not in examples, f"example {name!r} appears twice in {PROTOCOL_DOC.name}"
        examples[name] = json.loads(body)
    return examples


EXAMPLES = load_examples()


def test_examples_present() -> None:
    for name in (*MESSAGE_EXAMPLES, "call"):
        assert name in EXAMPLES, f"{PROTOCOL_DOC.name} has no `// {name}` example"


@pytest.mark.parametrize("name", sorted(name for name, example in EXAMPLES.items() if "type" in example))
def test_message_example_applies(name: str) -> None:
    state = BoardState()

    assert state.apply(EXAMPLES[name]) is True


def test_snapshot_example() -> None:
    state = BoardState()

    state.apply(EXAMPLES["snapshot"])

    assert state.seq == 1042
    assert state.protocol_version == 1
    assert list(state.active) == ["c-8a7b6c5d4e3f2a1b"]
    active = state.active["c-8a7b6c5d4e3f2a1b"]
    assert active.state == "ringing"
    assert active.remote.display == "+41 44 123 45 67"
    assert active.remote.name == "Max Muster"
    assert state.health is not None
    assert state.health.status == "ok"
    assert state.health.problems == ()


def test_call_event_follows_snapshot() -> None:
    state = BoardState()
    state.apply(EXAMPLES["snapshot"])

    assert state.apply(EXAMPLES["call-event"]) is True

    call = state.active["c-8a7b6c5d4e3f2a1b"]
    assert call.state == "connected"
    assert call.answered_at is not None
    assert state.seq == 1043


def test_call_event_repeated_is_ignored() -> None:
    state = BoardState()
    state.apply(EXAMPLES["snapshot"])
    state.apply(EXAMPLES["call-event"])

    assert state.apply(EXAMPLES["call-event"]) is False


def test_ended_call_example_goes_to_history() -> None:
    state = BoardState()
    state.apply(EXAMPLES["snapshot"])

    state.apply({"type": "call", "seq": 1044, "event": "ended", "call": EXAMPLES["call"]})

    [call] = state.history
    assert call.id == "c-5f1e0b6a9d2c4e7f"
    assert call.outcome == "answered"
    assert call.confidence == "certain"
    assert call.duration == 65.28
    assert "c-5f1e0b6a9d2c4e7f" not in state.active


def test_call_example_parses() -> None:
    call = parse_call(EXAMPLES["call"])

    assert call.state == "ended"
    assert call.direction == "inbound"
    assert call.ended_at is not None
    assert call.answered_at is not None
    assert (call.ended_at - call.answered_at).total_seconds() == pytest.approx(call.duration)


def test_health_example() -> None:
    state = BoardState()
    state.apply(EXAMPLES["snapshot"])

    state.apply(EXAMPLES["health"])

    assert state.health is not None
    assert state.health.status == "degraded"
    [problem] = state.health.problems
    assert problem.extension == "202"
    assert problem.state == "failing"
    assert problem.reason_code == "rejected"
    assert problem.reason_status == 403


def test_error_example() -> None:
    state = BoardState()
    state.apply(EXAMPLES["snapshot"])

    state.apply(EXAMPLES["error"])

    assert state.error is not None
    assert state.error.code == "bad_request"
    assert state.error.params == {"field": "since"}


def test_history_page_calls_parse() -> None:
    page = EXAMPLES.get("history-page")
    if page is None:
        pytest.skip("docs/protocol.md has no history-page example")

    for call in page["calls"]:
        assert parse_call(call).state == "ended"

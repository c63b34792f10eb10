"""The banner's health lines: grouped by cause, translated, short for large offices."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.banner import health_messages  # noqa: E402
from ringboard_ui.i18n import SUPPORTED_LANGUAGES, load_catalog  # noqa: E402
from ringboard_ui.state import parse_health  # noqa: E402


def health(*items: tuple[str, str, str | None, int | None]) -> object:
    subscriptions = [
        {
            "extension": extension,
            "state": state,
            "since": "2026-12-04T09:00:00.000Z",
            "reason": None if code is None else {"code": code, "status": status},
        }
        for extension, state, code, status in items
    ]
    return parse_health({"status": "degraded", "subscriptions": subscriptions})


def test_healthy_board_has_no_lines():
    assert health_messages(health(("201", "active", None, None)), load_catalog("en")) == []
    assert health_messages(None, load_catalog("en")) == []


def test_same_cause_shares_one_line():
    lines = health_messages(
        health(
            ("201", "failing", "auth_failed", 407),
            ("202", "failing", "auth_failed", 407),
            ("203", "active", None, None),
            ("204", "failing", "transport", None),
        ),
        load_catalog("en"),
    )
    assert lines == [
        "Extensions 201, 202 are not monitored: the phone system did not accept the agent's user name "
        "or password (SIP 407).",
        "Extension 204 is not monitored: the connection to the phone system failed.",
    ]


def test_long_group_counts_the_rest():
    items = [(str(200 + index), "pending", None, None) for index in range(10)]
    [line] = health_messages(health(*items), load_catalog("en"))
    assert line == "Extensions 200, 201, 202, 203, 204, 205 and 4 more: connecting to the phone system…"


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
@pytest.mark.parametrize("code", ["auth_failed", "auth_required", "dns", "tls", "timeout", "transport"])
def test_every_reason_translated(language: str, code: str):
    [line] = health_messages(
        health(("201", "failing", code, None), ("202", "failing", code, None)), load_catalog(language)
    )
    assert "health." not in line
    assert "{" not in line
    assert "201" in line
    assert "202" in line

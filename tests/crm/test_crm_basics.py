"""Rate limits, Retry-After parsing, call summaries and the page texts of the CRM codes."""

from __future__ import annotations

import json
import re
import string
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.crm import errors
from agent.crm.base import CREATE_CONTACT, CREATE_TASK, CREATE_TICKET, LOG_CALL, OPEN
from agent.crm.calls import CallSummary
from agent.crm.ratelimit import RateLimited, RateLimiter, retry_after
from tests.crm.conftest import call_json

TEXTS = Path(__file__).resolve().parents[2] / "agent" / "crm_texts.json"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_limiter_window() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 10.0, clock=clock)
    await limiter.acquire(0)
    await limiter.acquire(0)

    with pytest.raises(RateLimited) as raised:
        await limiter.acquire(1.0)
    assert raised.value.seconds == pytest.approx(10.0)
    clock.now += 10.0
    await limiter.acquire(0)


async def test_limiter_block() -> None:
    clock = Clock()
    limiter = RateLimiter(100, 1.0, clock=clock)
    limiter.block(30)

    assert limiter.delay() == pytest.approx(30)
    with pytest.raises(RateLimited):
        await limiter.acquire(5)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Thu, 04 Dec 2026 09:00:30 GMT"}, 30.0),
        ({"ratelimit-reset": "2"}, 2.0),
        ({"x-ratelimit-reset": str(int(datetime(2026, 12, 4, 9, 1, tzinfo=timezone.utc).timestamp()))}, 60.0),
        ({"retry-after": "86400"}, 3600.0),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
    assert retry_after(headers, now=now) == seconds


@pytest.mark.parametrize(
    ("changes", "call_type"),
    [
        ({}, "answered"),
        ({"outcome": "transferred"}, "answered"),
        ({"outcome": "missed", "answered_at": None}, "missed"),
        ({"outcome": "answered_elsewhere", "answered_at": None}, None),
        ({"direction": "outbound", "outcome": "busy", "answered_at": None}, "outgoing"),
        ({"direction": "internal"}, None),
        ({"direction": "unknown"}, None),
    ],
)
def test_call_types(changes: dict[str, object], call_type: str | None) -> None:
    assert CallSummary.from_json(call_json(**changes)).call_type == call_type


def test_call_note_texts() -> None:
    call = CallSummary.from_json(call_json())

    assert call.duration_seconds == 192
    assert call.body("it") == "Chiamata in arrivo da 044 555 01 23\nInterno: 201\nDurata: 3:12"
    assert CallSummary.from_json(call_json(direction="outbound")).subject("fr") == "Appel sortant vers 044 555 01 23"


def test_withheld_caller_has_no_number() -> None:
    call = CallSummary.from_json(call_json(remote={"number": "anonymous", "withheld": True}))
    assert (call.number, call.display) == (None, None)


def all_codes() -> set[str]:
    codes = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str) and "." in value}
    codes |= {f"crm.action.{action}" for action in (LOG_CALL, CREATE_TASK, CREATE_TICKET, CREATE_CONTACT, OPEN)}
    source = "\n".join(path.read_text() for path in (TEXTS.parent / "crm").glob("*.py"))
    codes |= set(re.findall(r'"(crm\.renew\.\w+)"', source))
    return codes


def test_texts_cover_every_code() -> None:
    texts = json.loads(TEXTS.read_text(encoding="utf-8"))

    assert sorted(texts) == ["de", "en", "fr", "it"]
    for language, catalogue in texts.items():
        assert set(catalogue) == all_codes(), language


def test_texts_share_placeholders() -> None:
    texts = json.loads(TEXTS.read_text(encoding="utf-8"))
    names = {
        code: {field for _, field, _, _ in string.Formatter().parse(text) if field}
        for code, text in texts["en"].items()
    }
    for language in ("de", "fr", "it"):
        for code, text in texts[language].items():
            assert {field for _, field, _, _ in string.Formatter().parse(text) if field} == names[code], (language, code)

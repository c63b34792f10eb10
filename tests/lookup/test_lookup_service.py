"""The lookup service: parallel connectors, updates as each returns, cache, ranking, choices."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.lookup.choices import ChoiceStore
from agent.lookup.connector import Card, Connector, ConnectorError, ConnectorHealth, ErrorCode
from agent.lookup.numbers import CallerNumber, MatchReason, NumberRules, SkipReason
from agent.lookup.service import MAX_CARDS, LookupService

RULES = NumberRules("CH", (), 8)


class FakeConnector(Connector):
    """Returns one card per (name, company, stored number) entry after `delay` seconds, or fails."""

    kind = "live"

    def __init__(
        self,
        name: str,
        entries: list[tuple[str | None, str | None, str]] | None = None,
        *,
        delay: float = 0.0,
        error: Exception | None = None,
    ) -> None:
        self.name = name
        self.label = name.title()
        self.entries = entries or []
        self.delay = delay
        self.error = error
        self.calls = 0

    async def lookup(self, number: CallerNumber) -> list[Card]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        cards = []
        for index, (name, company, stored) in enumerate(self.entries):
            match = number.match(stored)
            assert match is not None, f"fake entry {stored!r} does not match {number.e164}"
            cards.append(self.card(match, contact_id=f"{self.name}-{index}", name=name, company=company))
        return cards

    async def health(self) -> ConnectorHealth:
        return ConnectorHealth(ok=self.error is None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def collect(service: LookupService, number: str) -> list:
    return [update async for update in service.lookup(number)]


async def test_updates_as_connectors_answer() -> None:
    fast = FakeConnector("fast", [("Max Muster", "Muster AG", "044 123 45 67")], delay=0.01)
    slow = FakeConnector("slow", [("Max M.", None, "+41441234567")], delay=0.15)
    service = LookupService([fast, slow], RULES)

    updates = await collect(service, "+41441234567")

    assert [update.pending for update in updates] == [("slow",), ()]
    assert [card.connector for card in updates[0].cards] == ["fast"]
    assert [card.connector for card in updates[1].cards] == ["fast", "slow"]
    assert updates[-1].done
    assert updates[0].labels == {"slow": "Slow"}


async def test_timeout_and_errors_reported_per_connector(caplog: pytest.LogCaptureFixture) -> None:
    good = FakeConnector("good", [("Max Muster", None, "044 123 45 67")])
    hanging = FakeConnector("hanging", delay=5.0)
    broken = FakeConnector("broken", error=ConnectorError(ErrorCode.HTTP_ERROR, "HTTP 502", status=502))
    buggy = FakeConnector("buggy", error=RuntimeError("bug"))
    service = LookupService([good, hanging, broken, buggy], RULES, timeout=0.2)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="ringboard.lookup"):
        updates = await collect(service, "+41441234567")
    elapsed = loop.time() - started

    assert elapsed < 0.5
    assert [card.name for card in updates[0].cards] == ["Max Muster"]
    final = updates[-1]
    errors = {error.connector: (error.code, error.params) for error in final.errors}
    assert errors == {
        "hanging": (ErrorCode.TIMEOUT, {"seconds": 0.2}),
        "broken": (ErrorCode.HTTP_ERROR, {"status": 502}),
        "buggy": (ErrorCode.FAILED, {}),
    }
    assert "connector broken failed (http_error): HTTP 502" in caplog.text


async def test_failures_logged_once_with_count(caplog: pytest.LogCaptureFixture) -> None:
    broken = FakeConnector("broken", error=ConnectorError(ErrorCode.TIMEOUT, "no answer"))
    clock = FakeClock()
    service = LookupService([broken], RULES, clock=clock)

    with caplog.at_level(logging.INFO, logger="ringboard.lookup"):
        for number in ("+41441234567", "+41441234568", "+41441234569"):
            await collect(service, number)
        clock.now += 301
        await collect(service, "+41441234560")
        broken.error = None
        await collect(service, "+41441234561")

    failures = [record.getMessage() for record in caplog.records if "connector broken failed" in record.getMessage()]
    assert len(failures) == 2
    assert "2 more failures since the last report" in failures[1]
    assert "connector broken works again after 4 failed lookups" in caplog.text


async def test_cached_answers() -> None:
    connector = FakeConnector("book", [("Max Muster", None, "044 123 45 67")])
    clock = FakeClock()
    service = LookupService([connector], RULES, cache_seconds=300, clock=clock)

    first = await collect(service, "+41441234567")
    second = await collect(service, "sip:0441234567@pbx")
    clock.now += 301
    third = await collect(service, "+41441234567")

    assert not first[-1].cached
    assert len(second) == 1
    assert second[0].cached
    assert [card.name for card in second[0].cards] == ["Max Muster"]
    assert not third[-1].cached
    assert connector.calls == 2


async def test_failed_connector_not_cached() -> None:
    good = FakeConnector("good", [("Max Muster", None, "044 123 45 67")])
    flaky = FakeConnector("flaky", error=ConnectorError(ErrorCode.TIMEOUT))
    service = LookupService([good, flaky], RULES)

    await collect(service, "+41441234567")
    flaky.error = None
    updates = await collect(service, "+41441234567")

    assert (good.calls, flaky.calls) == (1, 2)
    assert not updates[-1].errors


async def test_same_number_shares_one_lookup() -> None:
    connector = FakeConnector("book", [("Max Muster", None, "044 123 45 67")], delay=0.05)
    service = LookupService([connector], RULES)

    results = await asyncio.gather(*(collect(service, "+41441234567") for _ in range(3)))

    assert connector.calls == 1
    for updates in results:
        assert [card.name for card in updates[-1].cards] == ["Max Muster"]


@pytest.mark.parametrize("caller", ["anonymous", None, "202"])
async def test_skipped_callers(caller: str | None) -> None:
    connector = FakeConnector("book")
    service = LookupService([connector], RULES)

    updates = await collect(service, caller)

    assert len(updates) == 1
    assert updates[0].skipped in (SkipReason.WITHHELD, SkipReason.INVALID)
    assert connector.calls == 0


async def test_ranking_and_cap() -> None:
    company = FakeConnector("first", [(None, "Muster AG", "+41441234567")])
    people = FakeConnector(
        "second",
        [("Anna", None, "044 123 45 67"), ("Beat", None, "+41 44 123 45 67"), ("Cleo", None, "0041441234567")]
        + [(f"Person {index}", None, "044 123 45 67") for index in range(4)],
    )
    service = LookupService([company, people], RULES)

    final = (await collect(service, "+41441234567"))[-1]

    assert len(final.cards) == MAX_CARDS
    assert final.cards[0].name == "Anna"
    assert all(card.is_person for card in final.cards)
    assert all(card.match.reason is MatchReason.E164 for card in final.cards)


async def test_office_choice_ranked_first(tmp_path: Path) -> None:
    entries = [("Anna Keller", None, "044 123 45 67"), ("Beat Keller", None, "044 123 45 67")]
    choices = ChoiceStore(tmp_path / "contacts.db")
    service = LookupService([FakeConnector("book", entries)], RULES, choices=choices)

    before = (await collect(service, "+41441234567"))[-1]
    service.choose("044 123 45 67", "book", "book-1")
    after = (await collect(service, "+41441234567"))[-1]
    choices.close()
    reopened = ChoiceStore(tmp_path / "contacts.db")
    remembered = reopened.get("+41441234567")
    reopened.close()

    assert [card.name for card in before.cards] == ["Anna Keller", "Beat Keller"]
    assert [card.name for card in after.cards] == ["Beat Keller", "Anna Keller"]
    assert after.cards[0].chosen
    assert not after.cards[1].chosen
    assert remembered is not None
    assert (remembered.connector, remembered.contact_id) == ("book", "book-1")


def test_choice_errors(tmp_path: Path) -> None:
    choices = ChoiceStore(tmp_path / "contacts.db")
    service = LookupService([FakeConnector("book")], RULES, choices=choices)
    with pytest.raises(ValueError, match="'crm' is not a configured connector"):
        service.choose("+41441234567", "crm", "1")
    with pytest.raises(ValueError, match="is not a phone number that can be looked up"):
        service.choose("anonymous", "book", "1")
    choices.close()


async def test_health_of_every_connector() -> None:
    service = LookupService(
        [FakeConnector("good"), FakeConnector("bad", error=ConnectorError(ErrorCode.TIMEOUT))], RULES
    )
    health = await service.health()
    assert health["good"].ok
    assert not health["bad"].ok

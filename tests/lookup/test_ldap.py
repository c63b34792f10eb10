"""The LDAP connector against a real slapd on 127.0.0.1 with numbers stored in mixed formats."""

from __future__ import annotations

import ldap3
import pytest

from agent.lookup.connector import ConnectorError, ErrorCode
from agent.lookup.ldap import LdapConnector
from agent.lookup.numbers import MatchReason, NumberRules, direct_dial_block, parse_caller
from agent.lookup.settings import LdapSettings, Secret
from tests.lookup.conftest import SlapdServer, free_port

RULES = NumberRules("CH", ("DE", "AT"), 8, (direct_dial_block("+41 44 123 45 00", "+41 44 123 45", (2, 2), "CH"),))


def connector(server: SlapdServer, **overrides: object) -> LdapConnector:
    values: dict[str, object] = {
        "type": "ldap",
        "name": "directory",
        "label": "Company directory",
        "url": server.url,
        "base_dn": server.base_dn,
        "bind_dn": server.bind_dn,
        "password": Secret(server.password),
        "filter": "(objectClass=inetOrgPerson)",
        "contact_url": "https://intranet.example.com/people?dn={dn}",
    }
    values.update(overrides)
    return LdapConnector(LdapSettings(**values), timeout=1.5, match_digits=8)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("caller", "name", "company"),
    [
        ("+41441234567", "Max Muster", "Muster AG"),
        ("sip:0446681800@pbx", "Anna Keller", "Keller Treuhand"),
        ("+49301234567", "Jonas Weber", "Weber Logistik GmbH"),
        ("+4315123456", "Lena Gruber", None),
        ("+41795550011", "Luca Bernasconi", None),
    ],
)
async def test_finds_stored_format(slapd: SlapdServer, caller: str, name: str, company: str | None) -> None:
    cards = await connector(slapd).lookup(parse_caller(caller, RULES))
    assert cards, f"no entry found for {caller}"
    assert cards[0].name == name
    assert cards[0].company == company
    assert cards[0].match.reason is MatchReason.E164


async def test_card_fields(slapd: SlapdServer) -> None:
    cards = await connector(slapd).lookup(parse_caller("+41441234567", RULES))
    max_card = next(card for card in cards if card.name == "Max Muster")
    assert max_card.connector == "directory"
    assert max_card.label == "Company directory"
    assert max_card.contact_id == f"uid=max,ou=people,{slapd.base_dn}"
    assert max_card.url == "https://intranet.example.com/people?dn=uid%3Dmax%2Cou%3Dpeople%2Cdc%3Dexample%2Cdc%3Dtest"
    assert max_card.explain() == "044 123 45 67 matched '044 123 45 67' in Company directory (same number)"


async def test_main_number_entry(slapd: SlapdServer) -> None:
    cards = await connector(slapd).lookup(parse_caller("+41441234589", RULES))
    assert [card.name for card in cards] == ["Muster AG Zentrale"]
    assert cards[0].match.reason is MatchReason.MAIN_NUMBER


async def test_false_hit_verified_away(slapd: SlapdServer) -> None:
    """+41 34 123 45 67 ends with the same 8 digits, so the server returns it; the matcher drops it."""
    ldap = connector(slapd)
    caller = parse_caller("+41441234567", RULES)
    raw = ldap3.Connection(ldap3.Server(slapd.url), slapd.bind_dn, slapd.password, auto_bind=True)
    raw.search(slapd.base_dn, ldap.search_filter(caller), attributes=["cn"])
    server_names = {str(entry.cn) for entry in raw.entries}
    raw.unbind()

    cards = await ldap.lookup(caller)

    assert "Hans Burgdorfer" in server_names
    assert "Hans Burgdorfer" not in {card.name for card in cards}


async def test_dotted_number_needs_digit_wildcards(slapd: SlapdServer) -> None:
    caller = parse_caller("+41449876543", RULES)
    assert await connector(slapd).lookup(caller) == []

    cards = await connector(slapd, digit_wildcards=True).lookup(caller)

    assert [card.name for card in cards] == ["Beat Punkt"]


async def test_unknown_number(slapd: SlapdServer) -> None:
    assert await connector(slapd).lookup(parse_caller("+41315550000", RULES)) == []


async def test_wrong_password(slapd: SlapdServer) -> None:
    ldap = connector(slapd, password=Secret("wrong"))
    with pytest.raises(ConnectorError) as error:
        await ldap.lookup(parse_caller("+41441234567", RULES))
    assert error.value.code == ErrorCode.AUTH_FAILED
    assert "wrong" not in error.value.detail
    health = await ldap.health()
    assert not health.ok
    assert health.code == ErrorCode.AUTH_FAILED


async def test_unreachable_server(slapd: SlapdServer) -> None:
    ldap = connector(slapd, url=f"ldap://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectorError) as error:
        await ldap.lookup(parse_caller("+41441234567", RULES))
    assert error.value.code == ErrorCode.UNREACHABLE


async def test_health_ok(slapd: SlapdServer) -> None:
    assert (await connector(slapd).health()).ok

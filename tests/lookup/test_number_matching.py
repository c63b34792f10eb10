"""Number matching: callers as PBXs present them against numbers as address books store them."""

from __future__ import annotations

import pytest

from agent.lookup.numbers import (
    MatchReason,
    NumberRules,
    SkipReason,
    direct_dial_block,
    parse_caller,
    parse_number,
)

NEIGHBOURS = ("DE", "AT")
MUSTER_BLOCK = direct_dial_block("+41 44 123 45 00", "+41 44 123 45", (2, 2), "CH")
WEBER_BLOCK = direct_dial_block("+49 30 1234567-0", "+49 30 1234567", (1, 4), "CH")


def rules(region: str = "CH", fallbacks: tuple[str, ...] = NEIGHBOURS, digits: int = 8) -> NumberRules:
    return NumberRules(region, fallbacks, digits, (MUSTER_BLOCK, WEBER_BLOCK))


SWISS = rules()
GERMAN = rules("DE", ("CH", "AT"))
US = rules("US", ())
FRENCH = rules("CH", ("FR",))
BRITISH = rules("CH", ("GB",))
AUSTRIAN_FIRST = rules("CH", ("AT", "FR"))
SEVEN = rules("CH", (), 7)
NO_FALLBACK = rules("CH", ())

E164, NATIONAL, LAST, MAIN = (
    MatchReason.E164,
    MatchReason.NATIONAL,
    MatchReason.LAST_DIGITS,
    MatchReason.MAIN_NUMBER,
)

# (rules, caller as presented, stored text, expected reason or None)
PAIRS = [
    # Swiss landline in every stored form seen in CRMs.
    (SWISS, "+41441234567", "044 123 45 67", E164),
    (SWISS, "+41441234567", "+41 (0)44 123 45 67", E164),
    (SWISS, "+41441234567", "0041441234567", E164),
    (SWISS, "+41441234567", "tel:+41-44-123-45-67", E164),
    (SWISS, "+41441234567", "(044) 123'45'67", E164),
    (SWISS, "+41441234567", "044/123.45.67", E164),
    (SWISS, "+41441234567", "+41 44 123 45 67 ext. 12", E164),
    (SWISS, "+41441234567", "044 123 45 67 (Zentrale)", E164),
    (SWISS, "+41441234567", "044 123 45 67 Büro", E164),
    (SWISS, "+41441234567", "Tel.: 044 123 45 67", E164),
    (SWISS, "+41441234567", "41 44 123 45 67", E164),
    (SWISS, "+41441234567", "+41\u00a044\u00a0123\u00a045\u00a067", E164),
    (SWISS, "+41441234567", "044 123 45 68", None),
    (SWISS, "+41441234567", "+41 31 123 45 67", None),
    (SWISS, "+41441234567", "+41 34 123 45 67", None),
    (SWISS, "+41441234567", "123 45 67", None),
    (SWISS, "+41441234567", "234567", None),
    (SWISS, "+41441234567", "", None),
    (SWISS, "+41441234567", "n/a", None),
    # The caller as SIP and tel URIs, with 00 and national forms.
    (SWISS, "sip:+41441234567@pbx.example.com;user=phone", "044 123 45 67", E164),
    (SWISS, "sip:0441234567@192.0.2.10", "+41 44 123 45 67", E164),
    (SWISS, "tel:+41-44-123-45-67", "044 123 45 67", E164),
    (SWISS, "tel:0441234567;phone-context=+41", "044 123 45 67", E164),
    (SWISS, '"Max Muster" <sip:+41441234567@pbx>;tag=1', "044 123 45 67", E164),
    (SWISS, "sip:%2B41441234567@pbx", "044 123 45 67", E164),
    (SWISS, "0041441234567", "044 123 45 67", E164),
    (SWISS, "0441234567", "+41 44 123 45 67", E164),
    # Swiss mobile and service numbers.
    (SWISS, "+41795550011", "079 555 00 11", E164),
    (SWISS, "+41795550011", "079/555'00'11", E164),
    (SWISS, "+41795550011", "+41 79 555-00-11", E164),
    (SWISS, "+41795550011", "079 555 00 12", None),
    (SWISS, "+41800123456", "0800 123 456", E164),
    (SWISS, "+41848123456", "0848 123 456", E164),
    (SWISS, "+41800123456", "0848 123 456", None),
    # German numbers, stored with and without country code in a Swiss office.
    (SWISS, "+49301234567", "+49 (0)30 1234567", E164),
    (SWISS, "+49301234567", "030 1234567", E164),
    (SWISS, "+49301234567", "0049 30 1234567", E164),
    (SWISS, "+4930123456789", "+49 (0)30 1234567-89", E164),
    (SWISS, "+491721234567", "0172 1234567", E164),
    (SWISS, "+491721234567", "+49 172 1234568", None),
    (GERMAN, "030 1234567", "+49 30 1234567", E164),
    (GERMAN, "0041441234567", "44 123 45 67", NATIONAL),
    (GERMAN, "+491805123456", "0180 5 123456", E164),
    # Austrian numbers.
    (SWISS, "+4315123456", "0043 1 5123456", E164),
    (SWISS, "+4315123456", "+43 (0)1 512 34 56", E164),
    (SWISS, "+4315123456", "01 5123456", E164),
    (SWISS, "+436641234567", "0664 1234567", NATIONAL),
    (SWISS, "+436641234567", "+43 664 1234567", E164),
    # French numbers.
    (SWISS, "+33142685300", "+33 1 42 68 53 00", E164),
    (FRENCH, "+33142685300", "01 42 68 53 00", E164),
    # In a Swiss office "06 12 34 56 78" is a valid Basel number: only the national number is shared.
    (FRENCH, "+33612345678", "06 12 34 56 78", NATIONAL),
    # The first fallback region where a number is valid wins: Vienna before Paris.
    (AUSTRIAN_FIRST, "+33142685300", "01 42 68 53 00", NATIONAL),
    (SWISS, "+33612345678", "0033 6 12 34 56 78", E164),
    (SWISS, "+33612345678", "+33 6 12 34 56 79", None),
    # Italian numbers keep the leading zero of landlines after the country code.
    (SWISS, "+390669821234", "+39 06 6982 1234", E164),
    (SWISS, "+390669821234", "0039 06 69821234", E164),
    (SWISS, "+393471234567", "+39 347 123 4567", E164),
    (SWISS, "+390669821234", "06 6982 1234", LAST),
    # UK numbers.
    (BRITISH, "+442079460958", "020 7946 0958", E164),
    (SWISS, "+442079460958", "+44 (0)20 7946 0958", E164),
    (BRITISH, "+447911123456", "07911 123456", E164),
    (SWISS, "+447911123456", "+44 7911 123457", None),
    # US numbers in a US office, and in a Swiss office without a US fallback.
    (US, "+12125550123", "(212) 555-0123", E164),
    (US, "+12125550123", "212.555.0123 x45", E164),
    (US, "+12125550123", "1-212-555-0123", E164),
    (US, "+18005550199", "1 (800) 555-0199", E164),
    (US, "2125550123", "+1 212 555 0123", E164),
    (SWISS, "+12125550123", "(212) 555-0123", NATIONAL),
    # Incomplete stored numbers match on their last digits, never on fewer than 7.
    (SWISS, "+41441234567", "+41 4 123 45 67", LAST),
    (SEVEN, "+41441234567", "123 45 67", LAST),
    (NO_FALLBACK, "+41441234567", "123 45 67", None),
    (SEVEN, "+41441234567", "23 45 67", None),
    # Direct dials of a configured block match the company's main number.
    (SWISS, "+41441234589", "+41 44 123 45 00", MAIN),
    (SWISS, "+41441234589", "044 123 45 00", MAIN),
    (SWISS, "+41441234500", "+41 44 123 45 00", E164),
    (SWISS, "+41441234667", "+41 44 123 45 00", None),
    (SWISS, "+4930123456789", "+49 (0)30 1234567-0", MAIN),
    (SWISS, "+4930123456", "+49 30 1234567-0", None),
    (SWISS, "+49301234567", "+49 30 1234567-0", None),
]


@pytest.mark.parametrize(("number_rules", "caller", "stored", "expected"), PAIRS)
def test_number_pair(number_rules: NumberRules, caller: str, stored: str, expected: MatchReason | None) -> None:
    parsed = parse_caller(caller, number_rules)
    assert parsed.skip is None, f"caller {caller!r} was skipped as {parsed.skip}"

    match = parsed.match(stored)

    if expected is None:
        assert match is None, f"{caller!r} should not match {stored!r}, matched as {match}"
    else:
        assert match is not None, f"{caller!r} should match {stored!r} as {expected}"
        assert match.reason is expected
        assert match.stored == stored


def test_table_size() -> None:
    assert len(PAIRS) >= 60


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("anonymous", SkipReason.WITHHELD),
        ("Anonymous", SkipReason.WITHHELD),
        ("sip:anonymous@anonymous.invalid", SkipReason.WITHHELD),
        ("sip:restricted@pbx", SkipReason.WITHHELD),
        ("sip:unknown@pbx", SkipReason.WITHHELD),
        ("", SkipReason.WITHHELD),
        (None, SkipReason.WITHHELD),
        ("202", SkipReason.INVALID),
        ("sip:202@pbx", SkipReason.INVALID),
        ("+41 44 123", SkipReason.INVALID),
        ("+999 123456789", SkipReason.INVALID),
        ("not a number", SkipReason.INVALID),
    ],
)
def test_caller_skipped(caller: str | None, expected: SkipReason) -> None:
    assert parse_caller(caller, SWISS).skip is expected


def test_caller_display_forms() -> None:
    assert parse_caller("+41441234567", SWISS).display == "044 123 45 67"
    assert parse_caller("+49301234567", SWISS).display == "+49 30 1234567"


def test_match_explanation() -> None:
    match = parse_caller("+41441234567", SWISS).match("044 123 45 67")
    assert match is not None
    assert match.explain("Office contacts") == "044 123 45 67 matched '044 123 45 67' in Office contacts (same number)"
    assert match.params("Office contacts") == {
        "number": "044 123 45 67",
        "stored": "044 123 45 67",
        "label": "Office contacts",
    }


def test_last_digits_params() -> None:
    match = parse_caller("+41441234567", SWISS).match("+41 4 123 45 67")
    assert match is not None
    assert match.params("Book")["digits"] == 8
    assert "same last 8 digits" in match.explain("Book")


def test_main_number_params() -> None:
    match = parse_caller("+41441234589", SWISS).match("+41 44 123 45 00")
    assert match is not None
    assert match.params("Book")["main_number"] == "044 123 45 00"
    assert match.explain("Book").startswith("044 123 45 89 is a direct dial of the main number 044 123 45 00")


def test_stored_extension_kept() -> None:
    number = parse_number("+41 44 123 45 67 int. 12", SWISS)
    assert number.e164 == "+41441234567"
    assert number.extension == "12"


def test_fallback_region_is_uncertain() -> None:
    number = parse_number("030 1234567", SWISS)
    assert number.e164 == "+49301234567"
    assert number.country_assumed
    assert not number.certain


def test_search_forms_cover_main_number() -> None:
    forms = parse_caller("+41441234589", SWISS).search_forms()
    assert "+41441234589" in forms
    assert "044 123 45 89" in forms
    assert "0041441234589" in forms
    assert "+41441234500" in forms


@pytest.mark.parametrize(
    ("main", "prefix", "digits", "message"),
    [
        ("+41 44 123 45", "+41 44 123", (2, 2), "not a valid phone number"),
        ("+41 44 123 45 00", "+41 44", (2, 2), "fewer than 7 digits"),
    ],
)
def test_direct_dial_block_errors(main: str, prefix: str, digits: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError) as error:
        direct_dial_block(main, prefix, digits, "CH")
    assert message in str(error.value)

"""Phone numbers as callers present them and as address books store them, and matching.

Sans-I/O: text in, parsed numbers and match decisions out. Every connector verifies
its candidates here, so one rule decides what "the same number" means everywhere.

A stored number matches a caller, best first:

1. `e164`: both are the same E.164 number.
2. `national`: the same national significant number, where at least one side was
   written without a country code (so its country was assumed, not stated).
3. `last_digits`: the same last N digits (`[lookup] match_digits`, 8 by default),
   only when the stored number could not be resolved with certainty: it is not a valid
   number, or its country came from a fallback region. Two numbers that are both valid
   and certain but differ are different numbers, whatever their tails share.
4. `main_number`: the caller is a direct dial inside a configured block
   (`[[lookup.main_numbers]]`) and the stored number matches that block's main number
   by rule 1, 2 or 3. Without a configured block, no number matches another one's
   main number: guessing head numbers would show one company for every caller whose
   number shares a prefix with it.

No rule matches on fewer than `MIN_MATCH_DIGITS` digits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote

import phonenumbers
from phonenumbers import CountryCodeSource, NumberParseException, PhoneNumberFormat

from agent.protocol import number_forms

# Fewer than 7 digits are never compared, because a 6-digit tail recurs in many area
# codes of one country.
MIN_MATCH_DIGITS = 7
DEFAULT_MATCH_DIGITS = 8
MAX_MATCH_DIGITS = 10

# Longer text is not a phone number. Cutting it keeps an odd CRM field from costing the
# parser time on every lookup.
MAX_NUMBER_TEXT = 100

# User parts that PBXs and carriers send in place of a withheld number, as in
# sip:anonymous@anonymous.invalid.
WITHHELD_USERS = frozenset({"anonymous", "restricted", "unavailable", "unknown", "private", "withheld", "invalid"})
WITHHELD_HOST_SUFFIX = "anonymous.invalid"


class MatchReason(StrEnum):
    """The rule by which a stored number matched a caller, sent to the page as the match code."""

    E164 = "e164"
    NATIONAL = "national"
    LAST_DIGITS = "last_digits"
    MAIN_NUMBER = "main_number"
    # The connector's own service did the matching and did not return the stored text.
    CONNECTOR = "connector"


# Ranking points per reason, in the order of the rules above. A connector's own match
# ranks below a national one because its stored text cannot be checked here.
MATCH_SCORES = {
    MatchReason.E164: 100,
    MatchReason.NATIONAL: 90,
    MatchReason.CONNECTOR: 80,
    MatchReason.LAST_DIGITS: 70,
    MatchReason.MAIN_NUMBER: 50,
}


class SkipReason(StrEnum):
    """The reason a caller is not looked up."""

    WITHHELD = "withheld"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """One number, parsed once; stored columns of the address book rebuild it without parsing."""

    text: str
    # The number's digits without the extension, with the country code first unless
    # that code was only guessed (an uncertain number in national form).
    digits: str
    e164: str | None = None
    national: str | None = None
    country_code: int | None = None
    valid: bool = False
    # The country code was assumed from a region, not written with +, 00 or a tel: URI.
    country_assumed: bool = False
    # Valid, and its country was written or is the default region's (not a fallback guess).
    certain: bool = False
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class DirectDialBlock:
    """A company's block of direct-dial numbers and the main number contacts store for it."""

    main_number: PhoneNumber
    # E.164 digits (country code first, no "+") that every direct dial of the block starts with.
    prefix: str
    min_extension_digits: int
    max_extension_digits: int

    def contains(self, number: PhoneNumber) -> bool:
        """Return whether `number` is a direct dial of this block, other than the main number."""
        if number.e164 is None or number.e164 == self.main_number.e164:
            return False
        digits = number.e164[1:]
        extension_length = len(digits) - len(self.prefix)
        if not self.min_extension_digits <= extension_length <= self.max_extension_digits:
            return False
        return digits.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class NumberRules:
    """Rules for reading and comparing numbers: `[numbers] default_region` and the `[lookup]` keys."""

    default_region: str = "CH"
    fallback_regions: tuple[str, ...] = ()
    match_digits: int = DEFAULT_MATCH_DIGITS
    main_numbers: tuple[DirectDialBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """A stored number's match with the caller; `number` and `main_number` are display forms."""

    reason: MatchReason
    number: str
    stored: str
    digits: int | None = None
    main_number: str | None = None

    @property
    def score(self) -> int:
        """Ranking points of this match (higher is better)."""
        return MATCH_SCORES[self.reason]

    def params(self, label: str) -> dict[str, str | int]:
        """Return the parameters the page needs to translate this match."""
        params: dict[str, str | int] = {"number": self.number, "stored": self.stored, "label": label}
        if self.digits is not None:
            params["digits"] = self.digits
        if self.main_number is not None:
            params["main_number"] = self.main_number
        return params

    def explain(self, label: str) -> str:
        """Return an English sentence for the command line and the logs."""
        if self.reason is MatchReason.CONNECTOR:
            return f"{label} returned this contact for {self.number}"
        if self.reason is MatchReason.MAIN_NUMBER:
            return (
                f"{self.number} is a direct dial of the main number {self.main_number},"
                f" which matched '{self.stored}' in {label}"
            )
        detail = {
            MatchReason.E164: "same number",
            MatchReason.NATIONAL: "same national number",
            MatchReason.LAST_DIGITS: f"same last {self.digits} digits",
        }[self.reason]
        return f"{self.number} matched '{self.stored}' in {label} ({detail})"


@dataclass(frozen=True, slots=True)
class CallerNumber:
    """The caller's number with everything a connector needs to search and verify."""

    text: str
    rules: NumberRules
    number: PhoneNumber | None = None
    skip: SkipReason | None = None
    # Main numbers of the direct-dial blocks that contain the caller.
    main_numbers: tuple[PhoneNumber, ...] = field(default=())

    @property
    def e164(self) -> str:
        """The caller's E.164 number; only for callers that are looked up."""
        assert self.number is not None and self.number.e164 is not None, "caller was skipped"
        return self.number.e164

    @property
    def display(self) -> str:
        """The number as the page shows it: national for local callers, else international."""
        if self.number is None or self.number.e164 is None:
            return self.text
        return display_form(self.number.e164, self.rules.default_region)

    def tail(self) -> str:
        """Return the last `match_digits` digits of the caller's number."""
        return self.e164[-self.rules.match_digits :]

    def match(self, stored: str | PhoneNumber) -> Match | None:
        """Return how `stored` (text, or a parsed stored number) matches the caller, or None."""
        if self.number is None:
            return None
        if isinstance(stored, str):
            stored = parse_number(stored, self.rules)
        reason = compare_numbers(self.number, stored, self.rules.match_digits)
        if reason is not None:
            digits = self.rules.match_digits if reason is MatchReason.LAST_DIGITS else None
            return Match(reason, self.display, stored.text, digits=digits)

        for main in self.main_numbers:
            if compare_numbers(main, stored, self.rules.match_digits) is not None:
                main_display = display_form(main.e164 or main.text, self.rules.default_region)
                return Match(MatchReason.MAIN_NUMBER, self.display, stored.text, main_number=main_display)
        return None

    def best_match(self, stored: list[str]) -> Match | None:
        """Return the best match among several stored numbers of one contact."""
        matches = [match for text in stored if (match := self.match(text)) is not None]
        return max(matches, key=lambda match: match.score, default=None)

    def search_forms(self) -> tuple[str, ...]:
        """Return the caller's number in the forms that text searches of back-ends may find.

        The forms cover the caller and the main numbers of its direct-dial blocks:
        E.164, E.164 with 00, national and international with and without spaces.
        """
        forms: list[str] = []
        numbers = [self.number, *self.main_numbers] if self.number else []
        for number in numbers:
            if number.e164 is None:
                continue
            parsed = phonenumbers.parse(number.e164)
            national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
            international = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
            for form in (
                number.e164,
                "00" + number.e164[1:],
                national,
                international,
                _compact(national),
            ):
                if form not in forms:
                    forms.append(form)
        return tuple(forms)


def parse_caller(text: str | None, rules: NumberRules) -> CallerNumber:
    """Read a caller's number as the PBX presented it: a SIP or tel URI, or plain digits.

    Withheld callers and numbers that are not valid phone numbers come back with
    `skip` set. The caller is parsed in the default region only, because a PBX presents
    national numbers of its own country.
    """
    text = (text or "").strip()[:MAX_NUMBER_TEXT]
    if not text:
        return CallerNumber(text, rules, skip=SkipReason.WITHHELD)

    user, host = _uri_user(text)
    if user.lower() in WITHHELD_USERS or host.lower().endswith(WITHHELD_HOST_SUFFIX):
        return CallerNumber(text, rules, skip=SkipReason.WITHHELD)

    number = parse_number(text, rules, use_fallbacks=False)
    if not number.valid or len(number.digits) < MIN_MATCH_DIGITS:
        return CallerNumber(text, rules, number=number, skip=SkipReason.INVALID)

    main_numbers = tuple(block.main_number for block in rules.main_numbers if block.contains(number))
    return CallerNumber(text, rules, number=number, main_numbers=main_numbers)


def parse_number(text: str, rules: NumberRules, *, use_fallbacks: bool = True) -> PhoneNumber:
    """Parse a number as written anywhere: URIs, 00 and + prefixes, "(0)", separators, extensions.

    A number that is not valid in the default region is tried in each fallback region;
    the first region where it is valid wins. A number valid nowhere keeps the default
    region's reading (or only its digits when it does not parse), so it can still match
    on its last digits.
    """
    original = text.strip()[:MAX_NUMBER_TEXT]
    cleaned, extension, context_region = clean_number_text(original)
    plain_digits = re.sub(r"\D", "", cleaned)

    default_region = context_region or rules.default_region
    regions = [default_region]
    if use_fallbacks:
        regions += [region for region in rules.fallback_regions if region != default_region]

    first: PhoneNumber | None = None
    for region in regions:
        number = _parse_in_region(original, cleaned, extension, region, default_region)
        if number is None:
            break
        if number.valid:
            return number
        if first is None:
            first = number
        if not number.country_assumed:
            break
    return first or PhoneNumber(text=original, digits=plain_digits, extension=extension)


def clean_number_text(text: str) -> tuple[str, str | None, str | None]:
    """Return (number text, extension, region from a tel: phone-context) for the parser.

    Removes URI schemes, hosts and parameters, percent-encoding, apostrophes and
    non-breaking spaces, a "(0)" trunk prefix after a country code, and words. Letters
    never count as digits here: "044 123 45 67 Zentrale" must not become a vanity number.
    """
    text = unicodedata.normalize("NFKC", text)
    extension: str | None = None
    context_region: str | None = None

    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:", "tel:")) or "<sip" in lowered or "<tel:" in lowered:
        text, extension, context_region = _strip_uri(text)

    text = re.sub(r"['’`\u00a0]", "", text)
    found = EXTENSION_PATTERN.search(text)
    if found:
        extension = extension or found.group("extension")
        text = text[: found.start()]

    text = re.sub(r"\([^)]*[^\W\d_][^)]*\)", " ", text)
    if re.match(r"\s*(\+|00)", text):
        text = re.sub(r"\(\s*0\s*\)", " ", text)
    text = _drop_words(text)
    return text.strip(), extension, context_region


# An extension written after the number: "ext. 12", "x 12", "int. 12", "intern 12",
# "DW 12" (Durchwahl), "#12".
EXTENSION_PATTERN = re.compile(
    r"(?:\b(?:ext|extn|extension|int|intern|dw|durchwahl|x)\.?|#)\s*:?\s*(?P<extension>\d{1,6})\s*$",
    re.IGNORECASE,
)


def compare_numbers(caller: PhoneNumber, stored: PhoneNumber, match_digits: int) -> MatchReason | None:
    """Return the best rule by which `stored` is the caller's number (rules 1-3), or None."""
    if caller.e164 is None:
        return None

    if stored.e164 == caller.e164 and len(caller.e164) - 1 >= MIN_MATCH_DIGITS:
        return MatchReason.E164

    same_national = (
        stored.national is not None and stored.national == caller.national and len(stored.national) >= MIN_MATCH_DIGITS
    )
    one_assumed = stored.country_assumed or caller.country_assumed
    if same_national and (one_assumed or stored.country_code == caller.country_code):
        return MatchReason.NATIONAL

    tail_length = max(match_digits, MIN_MATCH_DIGITS)
    if stored.certain or len(stored.digits) < tail_length or len(caller.digits) < tail_length:
        return None
    if stored.digits[-tail_length:] == caller.digits[-tail_length:]:
        return MatchReason.LAST_DIGITS
    return None


def display_form(e164: str, region: str) -> str:
    """Return the display form of an E.164 number (national for `region`, else international)."""
    return number_forms(e164, region)[1] or e164


def reversed_digits(number: PhoneNumber) -> str:
    """Return the number's digits reversed: the address book's "ends with" index key."""
    return number.digits[::-1]


def direct_dial_block(main_number: str, prefix: str, extension_digits: tuple[int, int], region: str) -> DirectDialBlock:
    """Build a direct-dial block; raise ValueError naming the part that is wrong."""
    rules = NumberRules(default_region=region)
    main = parse_number(main_number, rules, use_fallbacks=False)
    if not main.valid:
        raise ValueError(f'main number "{main_number}" is not a valid phone number')

    prefix_number = parse_number(prefix, rules, use_fallbacks=False)
    if prefix_number.country_code is None:
        raise ValueError(f'direct-dial prefix "{prefix}" is not a phone number prefix')
    prefix_digits = f"{prefix_number.country_code}{prefix_number.national or ''}"
    if len(prefix_digits) < MIN_MATCH_DIGITS:
        raise ValueError(
            f'direct-dial prefix "{prefix}" has fewer than {MIN_MATCH_DIGITS} digits with its country code,'
            " so it would cover a whole area"
        )

    low, high = extension_digits
    return DirectDialBlock(main, prefix_digits, low, high)


# Parsing steps ---------------------------------------------------------------------------


def _parse_in_region(
    original: str, cleaned: str, extension: str | None, region: str, default_region: str
) -> PhoneNumber | None:
    """Parse `cleaned` in `region`; None when the text is not a phone number at all."""
    try:
        parsed = phonenumbers.parse(cleaned, region, keep_raw_input=True)
    except NumberParseException:
        return None

    valid = phonenumbers.is_valid_number(parsed)
    assumed = parsed.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY
    certain = valid and (not assumed or region == default_region)
    national = phonenumbers.national_significant_number(parsed)
    # A guessed country code is not part of what was written, so it must not count
    # towards the last digits that an uncertain number is compared on.
    digits = f"{parsed.country_code}{national}" if certain or not assumed else national
    return PhoneNumber(
        text=original,
        digits=digits,
        e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        national=national,
        country_code=parsed.country_code,
        valid=valid,
        country_assumed=assumed,
        certain=certain,
        extension=extension or parsed.extension or None,
    )


def _uri_user(text: str) -> tuple[str, str]:
    """Return (user part, host) of a SIP/tel URI, or (text, "") for plain text."""
    match = re.search(r"(?:sips?|tel):([^@;>]*)(?:@([^;>]*))?", text, re.IGNORECASE)
    if not match:
        return text, ""
    return unquote(match.group(1)), match.group(2) or ""


def _strip_uri(text: str) -> tuple[str, str | None, str | None]:
    """Return the number, the `ext` parameter and the phone-context region of a URI."""
    match = re.search(r"(?:sips?|tel):([^>]*)", text, re.IGNORECASE)
    body = unquote(match.group(1)) if match else text
    user, _, rest = body.partition("@")
    if not rest:
        user = body
    number, *params = user.split(";")
    if rest:
        params += rest.split(";")[1:]

    extension = None
    context_region = None
    for param in params:
        name, _, value = param.partition("=")
        name = name.strip().lower()
        if name == "ext" and value.strip().isdigit():
            extension = value.strip()
        elif name == "phone-context" and value.startswith("+") and value[1:].isdigit():
            region = phonenumbers.region_code_for_country_code(int(value[1:]))
            if region != "ZZ":
                context_region = region
    return number.strip(), extension, context_region


def _drop_words(text: str) -> str:
    """Remove labels before the number ("Tel.:") and everything from the first word after it."""
    first_digit = re.search(r"[+\d]", text)
    if first_digit is None:
        return ""
    text = text[first_digit.start() :]
    word = re.search(r"[^\W\d_]", text)
    return text[: word.start()] if word else text


def _compact(text: str) -> str:
    return re.sub(r"[\s\-]", "", text)

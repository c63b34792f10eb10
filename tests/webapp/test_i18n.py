"""Translation catalogues: complete in all four languages and matching what the page uses."""

from __future__ import annotations

import json
import re
import string
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "webapp" / "ui"
if str(UI_DIR) not in sys.path:
    sys.path.insert(0, str(UI_DIR))

from ringboard_ui.i18n import SUPPORTED_LANGUAGES, Catalog, choose_language, load_catalog, load_messages  # noqa: E402
from ringboard_ui.state import LIVE_STATES, CallKind  # noqa: E402
from ringboard_ui.view import CONNECTION_STATUSES  # noqa: E402

PACKAGE_DIR = UI_DIR / "ringboard_ui"
OUTCOMES = ("answered", "missed", "answered_elsewhere", "busy", "rejected", "failed", "transferred")
HEALTH_REASONS = ("timeout", "rejected", "terminated", "transport", "unknown")
ERROR_CODES = ("bad_request", "unknown", "pin_invalid", "pin_format", "pairing_locked", "pairing_failed", "busy")
ALLOWED_STRFTIME = {"d", "m", "Y", "H", "M", "S"}


def catalogues() -> dict[str, dict[str, str]]:
    return {language: load_messages(language) for language in SUPPORTED_LANGUAGES}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def shell_keys() -> set[str]:
    html = (ROOT / "webapp" / "index.html").read_text(encoding="utf-8")
    return set(re.findall(r'data-i18n(?:-title)?="([^"]+)"', html))


def boot_texts() -> dict[str, dict[str, str]]:
    source = (ROOT / "webapp" / "boot.js").read_text(encoding="utf-8")
    match = re.search(r"/\* BOOT_TEXTS_BEGIN \*/(.*?)/\* BOOT_TEXTS_END \*/", source, re.DOTALL)
    assert match, "boot.js has no BOOT_TEXTS block between its markers"
    return json.loads(match.group(1))


def keys_used_in_code() -> set[str]:
    """Literal keys passed to `.text("…")` anywhere in the package."""
    keys = set()
    for path in PACKAGE_DIR.glob("*.py"):
        keys.update(re.findall(r'\.text\(\s*"([a-z0-9_.\-]+)"', path.read_text(encoding="utf-8")))
    return keys


def keys_built_in_code() -> set[str]:
    """Keys the view builds from protocol values and enums."""
    keys = set()
    keys.update(f"kind.{kind.value}" for kind in CallKind)
    keys.update(f"state.{state}" for state in LIVE_STATES)
    keys.update(f"outcome.{outcome}" for outcome in OUTCOMES)
    keys.update(f"health.reason.{reason}" for reason in HEALTH_REASONS)
    keys.update(f"error.{code}" for code in ERROR_CODES)
    for status in CONNECTION_STATUSES:
        keys.update({f"status.{status}", f"status.{status}.hint"})
    return keys


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES[1:])
def test_catalogue_has_english_keys(language: str) -> None:
    english = set(load_messages("en"))
    translated = set(load_messages(language))

    assert sorted(english - translated) == []
    assert sorted(translated - english) == []


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_catalogue_has_no_empty_text(language: str) -> None:
    empty = [key for key, text in load_messages(language).items() if not isinstance(text, str) or not text.strip()]

    assert empty == []


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES[1:])
def test_placeholders_match_english(language: str) -> None:
    english = load_messages("en")
    translated = load_messages(language)

    mismatched = [key for key in english if placeholders(english[key]) != placeholders(translated.get(key, ""))]
    assert mismatched == []


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_date_formats_are_numeric(language: str) -> None:
    # strftime names of days and months follow the C locale, which is English in
    # Pyodide, so only numeric directives are allowed.
    messages = load_messages(language)

    for key in ("format.date", "format.time", "format.time_seconds"):
        directives = set(re.findall(r"%(.)", messages[key]))
        assert directives <= ALLOWED_STRFTIME, (key, directives)


def test_code_keys_exist() -> None:
    english = load_messages("en")

    missing = sorted((keys_used_in_code() | keys_built_in_code()) - set(english))
    assert missing == []


def test_shell_keys_exist() -> None:
    keys = shell_keys()

    assert keys, "index.html has no data-i18n keys"
    assert sorted(keys - set(load_messages("en"))) == []


def test_boot_texts_cover_shell() -> None:
    texts = boot_texts()

    assert sorted(texts) == sorted(SUPPORTED_LANGUAGES)
    for language, messages in texts.items():
        assert shell_keys() <= set(messages), language


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_boot_texts_match_catalogue(language: str) -> None:
    messages = load_messages(language)

    for key, text in boot_texts()[language].items():
        assert messages.get(key) == text, key


@pytest.mark.parametrize(
    ("preferred", "language"),
    [
        (["de-CH", "en"], "de"),
        (["fr-CH"], "fr"),
        (["it"], "it"),
        (["rm-CH", "it-CH", "de"], "it"),
        (["es-ES"], "en"),
        (["EN_us"], "en"),
        (["  de  "], "de"),
        ([], "en"),
        ([""], "en"),
    ],
)
def test_choose_language(preferred: list[str], language: str) -> None:
    assert choose_language(preferred) == language


def test_missing_key_falls_back_to_english() -> None:
    catalog = Catalog("de", {"state.ringing": "Klingelt"}, {"state.ringing": "Ringing", "state.held": "On hold"})

    assert catalog.text("state.ringing") == "Klingelt"
    assert catalog.text("state.held") == "On hold"
    assert catalog.text("no.such.key") == "no.such.key"
    assert catalog.has("state.held")
    assert not catalog.has("no.such.key")


def test_text_fills_parameters() -> None:
    catalog = load_catalog("fr")

    assert catalog.text("call.extension", extension="201") == "Int. 201"
    assert catalog.text("health.reason_status", reason="x", status=403) == "x (SIP 403)"


def test_missing_parameter_stays_visible() -> None:
    catalog = Catalog("en", {"error.bad_request": "Invalid {field}."})

    assert catalog.text("error.bad_request", other="x") == "Invalid {field}."


def test_parameter_may_be_named_key() -> None:
    catalog = Catalog("en", {"error.unknown": "Error ({code})."})

    assert catalog.text("error.unknown", key="x", code="c") == "Error (c)."


def test_unsupported_language_raises() -> None:
    with pytest.raises(ValueError, match="unsupported language 'es'"):
        load_messages("es")

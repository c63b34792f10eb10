"""Page texts in English, German, French and Italian, from the catalogues in locales/.

Each catalogue is a flat JSON object from key to text. Texts take named parameters
in `str.format` style (`"Ext. {extension}"`). A key missing from a catalogue falls
back to English, and a key missing from English shows as the key itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

SUPPORTED_LANGUAGES = ("en", "de", "fr", "it")
DEFAULT_LANGUAGE = "en"


def choose_language(preferred: Iterable[str]) -> str:
    """Return the first supported language of `navigator.languages` ("de-CH" → "de")."""
    for tag in preferred:
        primary = tag.strip().lower().replace("_", "-").split("-")[0]
        if primary in SUPPORTED_LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def load_messages(language: str) -> dict[str, str]:
    """Read one catalogue shipped inside the package."""
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {SUPPORTED_LANGUAGES}")

    path = resources.files(__package__).joinpath("locales", f"{language}.json")
    return json.loads(path.read_text(encoding="utf-8"))


class _KeepMissing(dict[str, Any]):
    """Leaves an unknown `{placeholder}` in the text instead of raising KeyError."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Catalog:
    """The texts of one language, with English as the fallback."""

    def __init__(
        self,
        language: str,
        messages: Mapping[str, str],
        fallback: Mapping[str, str] | None = None,
    ) -> None:
        self.language = language
        self._messages = dict(messages)
        self._fallback = dict(fallback or {})

    def has(self, key: str) -> bool:
        """Return whether the language or the fallback has a text for `key`."""
        return key in self._messages or key in self._fallback

    def text(self, key: str, /, **params: Any) -> str:
        """Return the text for `key` with `params` filled in.

        `key` is positional-only, so parameters from the agent may use any name.
        """
        template = self._messages.get(key)
        if template is None:
            template = self._fallback.get(key, key)

        if not params:
            return template
        return template.format_map(_KeepMissing(params))


def load_catalog(language: str) -> Catalog:
    """Load a language's catalogue, falling back to English for missing keys."""
    english = load_messages(DEFAULT_LANGUAGE)
    if language == DEFAULT_LANGUAGE:
        return Catalog(language, english)
    return Catalog(language, load_messages(language), english)

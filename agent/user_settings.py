"""A user's page settings: their defaults and the strict check of `PUT /api/settings`.

The agent stores them per user (`UserStore.settings`), sends them in every snapshot and
publishes a `settings` message to all pages of that user when they change.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "de", "fr", "it")

# Which ringing calls raise a notification: incoming only, incoming and internal, or
# every call including outgoing ones.
NOTIFY_CALLS = ("incoming", "incoming_internal", "all")

# The call types the history can be filtered by; `open` lists missed calls not yet done.
HISTORY_FILTERS = ("all", "open", "missed", "answered", "outgoing", "answered_elsewhere", "transferred", "internal")

DEFAULT_SETTINGS: dict[str, Any] = {
    "show_history": True,
    "history_filter": "all",
    "notifications": True,
    "notify_calls": "incoming",
    # None follows the browser's language.
    "language": None,
}


class SettingsError(ValueError):
    """A settings body that is not valid: `field` names the value, `reason` a protocol reason code."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validate_settings(body: Any) -> dict[str, Any]:
    """Return the settings of a `PUT /api/settings` body; every field is required and no other is allowed."""
    if not isinstance(body, dict):
        raise SettingsError("body", "not_an_object")

    unknown = sorted(set(body) - set(DEFAULT_SETTINGS))
    if unknown:
        raise SettingsError(unknown[0], "unknown_field")
    for name in DEFAULT_SETTINGS:
        if name not in body:
            raise SettingsError(name, "missing")

    for name in ("show_history", "notifications"):
        if not isinstance(body[name], bool):
            raise SettingsError(name, "wrong_type")

    _check_choice(body, "history_filter", HISTORY_FILTERS)
    _check_choice(body, "notify_calls", NOTIFY_CALLS)
    if body["language"] is not None:
        _check_choice(body, "language", LANGUAGES)
    return {name: body[name] for name in DEFAULT_SETTINGS}


def with_defaults(stored: dict[str, Any] | None) -> dict[str, Any]:
    """Return stored settings completed with the defaults; values of removed fields are dropped."""
    settings = dict(DEFAULT_SETTINGS)
    for name, value in (stored or {}).items():
        if name in settings:
            settings[name] = value
    return settings


def _check_choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> None:
    value = body[name]
    if not isinstance(value, str):
        raise SettingsError(name, "wrong_type")
    if value not in choices:
        raise SettingsError(name, "out_of_range")

"""The recipients of call pushes: each user's extensions and notification preferences.

The push service reads these through `PushAudience`, so the per-user settings can live
wherever users live. `StaticAudience` is a fixed mapping, for tests and for an agent
that has no per-user settings yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PushPreferences:
    """One user's choice of which calls make a system notification."""

    enabled: bool = True
    # Calls from outside that ring at the user's extension. An extension whose PBX does
    # not say the direction counts as incoming, because it rings here.
    incoming: bool = True
    # Calls from another office extension.
    internal: bool = False
    # Calls the user places, while the other side rings.
    outgoing: bool = False
    # True: a system notification even while a visible page of the user shows the call.
    page_and_system: bool = False

    @classmethod
    def from_user_settings(cls, settings: Mapping[str, Any], page_and_system: bool = False) -> PushPreferences:
        """Read a user's page settings: `notifications` (on or off) and `notify_calls`.

        `notify_calls` is `incoming`, `incoming_internal` or `all` (outgoing calls too),
        as `PUT /api/settings` takes it; anything else counts as `incoming`.
        """
        calls = settings.get("notify_calls", "incoming")
        return cls(
            enabled=settings.get("notifications", True) is not False,
            incoming=True,
            internal=calls in ("incoming_internal", "all"),
            outgoing=calls == "all",
            page_and_system=page_and_system,
        )

    def wants(self, direction: str) -> bool:
        """Return whether a ringing call of this direction should notify."""
        if not self.enabled:
            return False
        if direction == "internal":
            return self.internal
        if direction == "outbound":
            return self.outgoing
        return self.incoming


class PushAudience(Protocol):
    """The users of each extension and their preferences, read at ring time."""

    def users_for_extension(self, extension: str) -> Iterable[str]:
        """Return the users who see calls of this extension."""
        ...

    def preferences(self, user: str) -> PushPreferences:
        """Return the user's current notification preferences."""
        ...


class StaticAudience:
    """A fixed mapping of users to extensions, with default preferences unless given."""

    def __init__(
        self,
        extensions_by_user: Mapping[str, Iterable[str]],
        preferences: Mapping[str, PushPreferences] | None = None,
    ) -> None:
        self.extensions_by_user = {user: frozenset(extensions) for user, extensions in extensions_by_user.items()}
        self.preferences_by_user = dict(preferences or {})

    def users_for_extension(self, extension: str) -> list[str]:
        """Return the users mapped to the extension, sorted."""
        return sorted(user for user, extensions in self.extensions_by_user.items() if extension in extensions)

    def preferences(self, user: str) -> PushPreferences:
        """Return the user's preferences, or the defaults."""
        return self.preferences_by_user.get(user, PushPreferences())

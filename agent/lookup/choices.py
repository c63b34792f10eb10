"""The office's remembered choices: which contact is meant when several share a number."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# Choices read from the database stay in memory. Past this many numbers the memory is
# cleared and refilled, so a long-running agent does not keep every caller ever seen.
MAX_CACHED_CHOICES = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS contact_choices (
    number TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    chosen_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Choice:
    """The contact the office chose for one E.164 number."""

    connector: str
    contact_id: str


class ChoiceStore:
    """Choices in SQLite, one per E.164 number, shared by every user of the office."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._cache: dict[str, Choice | None] = {}

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def choose(self, number: str, connector: str, contact_id: str) -> None:
        """Remember that `number` (E.164) means this connector's contact."""
        self._db.execute(
            "INSERT INTO contact_choices (number, connector, contact_id, chosen_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (number) DO UPDATE SET connector = excluded.connector,"
            " contact_id = excluded.contact_id, chosen_at = excluded.chosen_at",
            (number, connector, contact_id, datetime.now(timezone.utc).isoformat()),
        )
        self._cache[number] = Choice(connector, contact_id)

    def forget(self, number: str) -> None:
        """Remove the choice for `number`."""
        self._db.execute("DELETE FROM contact_choices WHERE number = ?", (number,))
        self._cache[number] = None

    def get(self, number: str) -> Choice | None:
        """Return the choice for `number` (E.164), or None."""
        if number not in self._cache:
            if len(self._cache) >= MAX_CACHED_CHOICES:
                self._cache.clear()
            row = self._db.execute(
                "SELECT connector, contact_id FROM contact_choices WHERE number = ?", (number,)
            ).fetchone()
            self._cache[number] = Choice(row[0], row[1]) if row else None
        return self._cache[number]

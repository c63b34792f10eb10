"""The action store: each action's first result, contacts created lately and automatic logs.

SQLite in the data folder, shared by every page and kept across restarts, so a double
click, a second tab or a restarted agent never runs an action twice:

- `action_runs`: one row per action key (call, connector, action, contact or number),
  `running` while it runs and `done` with its result afterwards. A failed run deletes
  its row, so the user can try again.
- `created_contacts`: numbers whose contact the agent created, so a second "create
  contact" within minutes returns the first (CRM searches index new records late).
- `auto_logs`: numbers whose missed call was logged, so a ring group's extensions
  (one call each) log one missed call.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS action_runs (
    key TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS created_contacts (
    connector TEXT NOT NULL,
    number TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    url TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (connector, number)
);
CREATE TABLE IF NOT EXISTS auto_logs (
    connector TEXT NOT NULL,
    number TEXT NOT NULL,
    call_type TEXT NOT NULL,
    started_at REAL NOT NULL,
    call_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auto_logs_by_number ON auto_logs (connector, number, call_type, started_at);
"""

# Results are kept this long: longer than any call stays on a page, so a click on an old
# call still returns its first result.
KEEP_SECONDS = 90 * 86400.0


@dataclass(frozen=True, slots=True)
class Claim:
    """The state of an action key: `new` (claimed now), `running` (elsewhere) or `done`."""

    state: str
    result: dict[str, Any] | None = None
    started_at: float | None = None


class ActionStore:
    """The SQLite file behind action idempotency."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._purge()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # Action runs -------------------------------------------------------------------

    def claim(self, key: str, call_id: str, connector: str, action: str) -> Claim:
        """Claim `key` for a new run, or return the state of the run that claimed it first."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO action_runs (key, call_id, connector, action, state, started_at)"
            " VALUES (?, ?, ?, ?, 'running', ?)",
            (key, call_id, connector, action, self.clock()),
        )
        if cursor.rowcount == 1:
            return Claim("new")
        row = self._db.execute("SELECT state, result, started_at FROM action_runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            return self.claim(key, call_id, connector, action)
        result = json.loads(row[1]) if row[1] else None
        return Claim(row[0], result, row[2])

    def finish(self, key: str, result: dict[str, Any]) -> None:
        """Store the result of a successful run."""
        self._db.execute(
            "UPDATE action_runs SET state = 'done', result = ?, finished_at = ? WHERE key = ?",
            (json.dumps(result), self.clock(), key),
        )

    def release(self, key: str) -> None:
        """Forget a failed or abandoned run, so the action can run again."""
        self._db.execute("DELETE FROM action_runs WHERE key = ?", (key,))

    # Created contacts --------------------------------------------------------------

    def created_contact(self, connector: str, number: str, within: float) -> tuple[str, str | None] | None:
        """Return (contact id, url) of a contact created for `number` within `within` seconds."""
        row = self._db.execute(
            "SELECT contact_id, url FROM created_contacts WHERE connector = ? AND number = ? AND created_at >= ?",
            (connector, number, self.clock() - within),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def remember_contact(self, connector: str, number: str, contact_id: str, url: str | None) -> None:
        """Record that the agent created `contact_id` for `number`."""
        self._db.execute(
            "INSERT INTO created_contacts (connector, number, contact_id, url, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (connector, number) DO UPDATE SET contact_id = excluded.contact_id, url = excluded.url,"
            " created_at = excluded.created_at",
            (connector, number, contact_id, url, self.clock()),
        )

    # Automatic logs ----------------------------------------------------------------

    def logged_nearby(self, connector: str, number: str, call_type: str, started_at: float, window: float) -> str | None:
        """Return the id of a call of the same number and type logged within `window` seconds of `started_at`."""
        row = self._db.execute(
            "SELECT call_id FROM auto_logs WHERE connector = ? AND number = ? AND call_type = ?"
            " AND started_at BETWEEN ? AND ?",
            (connector, number, call_type, started_at - window, started_at + window),
        ).fetchone()
        return row[0] if row else None

    def remember_log(self, connector: str, number: str, call_type: str, started_at: float, call_id: str) -> None:
        """Record an automatic log of a call."""
        self._db.execute(
            "INSERT INTO auto_logs (connector, number, call_type, started_at, call_id) VALUES (?, ?, ?, ?, ?)",
            (connector, number, call_type, started_at, call_id),
        )

    def _purge(self) -> None:
        cutoff = self.clock() - KEEP_SECONDS
        self._db.execute("DELETE FROM action_runs WHERE started_at < ?", (cutoff,))
        self._db.execute("DELETE FROM created_contacts WHERE created_at < ?", (cutoff,))
        self._db.execute("DELETE FROM auto_logs WHERE started_at < ?", (cutoff,))

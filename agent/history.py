"""SQLite store of call events and the calls they describe.

Every event gets a `seq` from an AUTOINCREMENT key, so numbers rise strictly, are never
reused after a purge, and survive restarts. The `calls` table holds each call's latest
JSON form, for the snapshot and for history pages.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("ringboard.history")

# A page of history never holds more than this many calls, so one request cannot make
# the agent serialise the whole database.
MAX_PAGE = 200

# A reconnecting page gets at most this many missed events; a page further behind than
# that gets a fresh snapshot instead, which already holds the current state.
MAX_REPLAY = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    extension TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    call_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    extension TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    call_json TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cards (
    call_id TEXT PRIMARY KEY,
    message_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state, last_seq);
CREATE INDEX IF NOT EXISTS events_by_call ON events (call_id);
"""


class HistoryError(RuntimeError):
    """The database could not be written; the message says why."""


class History:
    """Calls and their numbered events in one SQLite file (WAL mode)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._add_done_column()

    def _add_done_column(self) -> None:
        """Add the `done` flag of missed calls to a database created before it existed."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if "done" not in columns:
            self._db.execute("ALTER TABLE calls ADD COLUMN done INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def record(self, call_id: str, extension: str, kind: str, call: dict[str, Any]) -> int:
        """Store one event and the call's new form; return the event's `seq`."""
        payload = json.dumps(call, separators=(",", ":"), ensure_ascii=False)
        now = datetime.now(timezone.utc).isoformat()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.execute(
                    "INSERT INTO events (call_id, extension, kind, at, call_json) VALUES (?, ?, ?, ?, ?)",
                    (call_id, extension, kind, now, payload),
                )
                seq = int(cursor.lastrowid or 0)
                self._db.execute(
                    "INSERT INTO calls (id, extension, state, started_at, last_seq, call_json) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "state = excluded.state, last_seq = excluded.last_seq, call_json = excluded.call_json",
                    (call_id, extension, call["state"], call["started_at"], seq, payload),
                )
        except sqlite3.Error as error:
            raise HistoryError(f"cannot store the event of call {call_id} in {self.path}: {error}") from error
        return seq

    def last_seq(self) -> int:
        """Return the newest event number, 0 when there is none."""
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def active_calls(self, extensions: set[str] | None = None) -> list[dict[str, Any]]:
        """Return the calls that have not ended, oldest first."""
        rows = self._db.execute("SELECT extension, call_json, done FROM calls WHERE state != 'ended' ORDER BY last_seq")
        return [_with_done(payload, done) for extension, payload, done in rows if _visible(extension, extensions)]

    def recent_calls(self, limit: int, extensions: set[str] | None = None, before: int | None = None) -> list[dict[str, Any]]:
        """Return ended calls whose last event is older than `before`, newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        query = "SELECT extension, call_json, last_seq, done FROM calls WHERE state = 'ended'"
        params: list[Any] = []
        if before is not None:
            query += " AND last_seq < ?"
            params.append(before)
        query += " ORDER BY last_seq DESC"
        calls: list[dict[str, Any]] = []
        for extension, payload, seq, done in self._db.execute(query, params):
            if _visible(extension, extensions):
                call = _with_done(payload, done)
                call["_seq"] = seq
                calls.append(call)
                if len(calls) >= limit:
                    break
        return calls

    def call(self, call_id: str) -> dict[str, Any] | None:
        """Return a call's latest form with its `done` flag, or None when it is unknown."""
        row = self._db.execute("SELECT call_json, done FROM calls WHERE id = ?", (call_id,)).fetchone()
        return None if row is None else _with_done(row[0], row[1])

    def mark_done(self, call_id: str) -> tuple[int, dict[str, Any]] | None:
        """Flag a call as done and store an `updated` event; return (seq, call), or None if already done or unknown."""
        call = self.call(call_id)
        if call is None or call["done"]:
            return None
        call["done"] = True
        seq = self.record(call_id, call["extension"], "updated", call)
        try:
            with self._db:
                self._db.execute("UPDATE calls SET done = 1 WHERE id = ?", (call_id,))
        except sqlite3.Error as error:
            raise HistoryError(f"cannot mark call {call_id} done in {self.path}: {error}") from error
        return seq, call

    def open_missed_calls(self, e164: str, started_before: str) -> list[str]:
        """Return the ids of ended, unanswered inbound calls from `e164` that started before a time and are not done."""
        rows = self._db.execute(
            "SELECT id, call_json FROM calls WHERE state = 'ended' AND done = 0 AND started_at < ? "
            "AND json_extract(call_json, '$.remote.e164') = ? ORDER BY last_seq",
            (started_before, e164),
        )
        return [call_id for call_id, payload in rows if _is_missed(json.loads(payload))]

    def events_since(self, seq: int, extensions: set[str] | None = None) -> list[tuple[int, str, dict[str, Any]]] | None:
        """Return (seq, kind, call) of every event after `seq`, or None if too many to replay."""
        count = self._db.execute("SELECT COUNT(*) FROM events WHERE seq > ?", (seq,)).fetchone()[0]
        if count > MAX_REPLAY:
            return None
        rows = self._db.execute(
            "SELECT seq, extension, kind, call_json FROM events WHERE seq > ? ORDER BY seq", (seq,)
        )
        return [(s, kind, json.loads(payload)) for s, extension, kind, payload in rows if _visible(extension, extensions)]

    def store_cards(self, call_id: str, message: dict[str, Any]) -> None:
        """Keep the final `crm` message of a call, so a reloaded page shows its cards."""
        payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        try:
            with self._db:
                self._db.execute(
                    "INSERT INTO cards (call_id, message_json) VALUES (?, ?) "
                    "ON CONFLICT(call_id) DO UPDATE SET message_json = excluded.message_json",
                    (call_id, payload),
                )
        except sqlite3.Error as error:
            raise HistoryError(f"cannot store the cards of call {call_id} in {self.path}: {error}") from error

    def cards_for(self, call_ids: list[str]) -> list[dict[str, Any]]:
        """Return the stored `crm` messages of these calls."""
        messages: list[dict[str, Any]] = []
        for start in range(0, len(call_ids), 500):
            chunk = call_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT message_json FROM cards WHERE call_id IN ({marks})", chunk)
            messages += [json.loads(payload) for (payload,) in rows]
        return messages

    def purge(self, days: int) -> int:
        """Delete ended calls and events older than `days`; return the number of calls removed."""
        cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
        with self._db:
            removed = self._db.execute(
                "DELETE FROM calls WHERE state = 'ended' AND started_at < ?", (cutoff,)
            ).rowcount
            self._db.execute("DELETE FROM events WHERE at < ?", (cutoff,))
            self._db.execute("DELETE FROM cards WHERE call_id NOT IN (SELECT id FROM calls)")
        if removed:
            log.info("purged %d calls older than %d days", removed, days)
        return removed


def _with_done(payload: str, done: int) -> dict[str, Any]:
    call = json.loads(payload)
    call["done"] = bool(done)
    return call


def _is_missed(call: dict[str, Any]) -> bool:
    return call.get("outcome") == "missed" and call.get("direction") in ("inbound", "unknown")


def _visible(extension: str, extensions: set[str] | None) -> bool:
    return extensions is None or extension in extensions

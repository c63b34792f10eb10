"""The embedded address book: contacts and their numbers in SQLite, indexed for ring-time lookup.

The same tables hold the office's own contacts (imported from vCard or CSV) and the
copies that synced connectors such as CardDAV keep. The `source` column names the
connector that owns a contact. Each stored number is parsed once, when it is written, into the columns the
matcher needs, so a lookup is three indexed queries and no parsing:

- `e164`: the same E.164 number;
- `national`: the same national significant number;
- `digits_rev`: the number's digits reversed, so "ends with these 8 digits" is a range
  scan on a prefix of the reversed digits.
"""

from __future__ import annotations

import importlib.resources
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.lookup.connector import Card, Connector, ConnectorHealth
from agent.lookup.contact import Contact, ContactPhone
from agent.lookup.numbers import (
    MIN_MATCH_DIGITS,
    CallerNumber,
    Match,
    NumberRules,
    PhoneNumber,
    parse_number,
    reversed_digits,
)
from agent.lookup.vcard import read_vcards

log = logging.getLogger("ringboard.lookup.addressbook")

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    uid TEXT NOT NULL,
    href TEXT,
    etag TEXT,
    display_name TEXT NOT NULL,
    given_name TEXT,
    family_name TEXT,
    org TEXT,
    title TEXT,
    emails TEXT NOT NULL DEFAULT '',
    url TEXT,
    note TEXT,
    is_company INTEGER NOT NULL DEFAULT 0,
    vcard TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (source, uid)
);
CREATE INDEX IF NOT EXISTS contacts_by_href ON contacts (source, href);
CREATE TABLE IF NOT EXISTS phones (
    id INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    raw TEXT NOT NULL,
    kind TEXT,
    e164 TEXT,
    national TEXT,
    country_code INTEGER,
    valid INTEGER NOT NULL,
    country_assumed INTEGER NOT NULL,
    certain INTEGER NOT NULL,
    extension TEXT,
    digits TEXT NOT NULL,
    digits_rev TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS phones_by_contact ON phones (contact_id);
CREATE INDEX IF NOT EXISTS phones_by_e164 ON phones (e164);
CREATE INDEX IF NOT EXISTS phones_by_national ON phones (national);
CREATE INDEX IF NOT EXISTS phones_by_digits_rev ON phones (digits_rev);
CREATE VIRTUAL TABLE IF NOT EXISTS contact_names USING fts5 (
    display_name, org, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS sync_state (
    source TEXT PRIMARY KEY,
    sync_token TEXT,
    ctag TEXT,
    synced_at TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A lookup reads at most this many candidate numbers. Without a limit, the tail query of
# a book full of numbers without area codes could return thousands of rows.
MAX_CANDIDATES = 200

# A name search returns at most this many contacts.
MAX_SEARCH_RESULTS = 50

# ":" sorts right after "9", so `digits_rev < prefix + ":"` closes the prefix range.
AFTER_DIGITS = ":"

PHONE_COLUMNS = "raw, e164, national, country_code, valid, country_assumed, certain, extension, digits"


@dataclass(frozen=True, slots=True)
class StoredContact:
    """A contact with its place in the address book."""

    id: int
    source: str
    contact: Contact
    href: str | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Counts of the contacts an import added, updated and removed."""

    added: int = 0
    updated: int = 0
    removed: int = 0


@dataclass(frozen=True, slots=True)
class SyncState:
    """A synced source's state: the server's sync token or ctag, the last sync and its error."""

    sync_token: str | None = None
    ctag: str | None = None
    synced_at: datetime | None = None
    error: str | None = None


class AddressBook:
    """The contacts database (one SQLite file in WAL mode)."""

    def __init__(self, path: Path | str, rules: NumberRules) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rules = rules
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._reparse_if_rules_changed()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # Writing -------------------------------------------------------------------------

    def upsert(self, source: str, contact: Contact, *, href: str | None = None, etag: str | None = None) -> bool:
        """Store a contact (matched by source and UID); return True when it was new."""
        with self._transaction():
            return self._write(source, contact, href, etag)

    def import_contacts(self, source: str, contacts: Iterable[Contact], *, replace: bool = False) -> ImportResult:
        """Store many contacts in one transaction; with `replace`, remove the source's others."""
        added = updated = removed = 0
        with self._transaction():
            seen: set[str] = set()
            for contact in contacts:
                seen.add(contact.uid)
                if self._write(source, contact, None, None):
                    added += 1
                else:
                    updated += 1
            if replace:
                rows = self._db.execute("SELECT id, uid FROM contacts WHERE source = ?", (source,)).fetchall()
                for row in rows:
                    if row["uid"] not in seen:
                        self._delete(row["id"])
                        removed += 1
        return ImportResult(added, updated, removed)

    def remove(self, source: str, *, uid: str | None = None, href: str | None = None) -> bool:
        """Remove one contact of a source by UID or by href; return whether it existed."""
        column, value = ("uid", uid) if uid is not None else ("href", href)
        with self._transaction():
            row = self._db.execute(
                f"SELECT id FROM contacts WHERE source = ? AND {column} = ?", (source, value)
            ).fetchone()
            if row is None:
                return False
            self._delete(row["id"])
            return True

    def clear(self, source: str) -> int:
        """Remove every contact of a source; return how many there were."""
        with self._transaction():
            rows = self._db.execute("SELECT id FROM contacts WHERE source = ?", (source,)).fetchall()
            for row in rows:
                self._delete(row["id"])
        return len(rows)

    def save_sync_state(self, source: str, state: SyncState) -> None:
        """Store a source's sync token, ctag, last sync time and last error."""
        synced_at = state.synced_at.isoformat() if state.synced_at else None
        self._db.execute(
            "INSERT INTO sync_state (source, sync_token, ctag, synced_at, error) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (source) DO UPDATE SET sync_token = excluded.sync_token, ctag = excluded.ctag,"
            " synced_at = excluded.synced_at, error = excluded.error",
            (source, state.sync_token, state.ctag, synced_at, state.error),
        )

    # Reading -------------------------------------------------------------------------

    def find(self, caller: CallerNumber, sources: Sequence[str]) -> list[tuple[StoredContact, Match]]:
        """Return the contacts of `sources` with a number matching the caller, best match first."""
        if caller.number is None:
            return []
        query, params = self._find_query(caller, sources)
        rows = self._db.execute(query, params).fetchall()

        best: dict[int, Match] = {}
        for row in rows:
            match = caller.match(_phone_from_row(row))
            if match is None:
                continue
            current = best.get(row["contact_id"])
            if current is None or match.score > current.score:
                best[row["contact_id"]] = match

        contacts = {stored.id: stored for stored in self._load(list(best))}
        found = [(contacts[contact_id], match) for contact_id, match in best.items() if contact_id in contacts]
        found.sort(key=lambda item: (-item[1].score, item[0].contact.display_name))
        return found

    def search(self, text: str, sources: Sequence[str] | None = None) -> list[StoredContact]:
        """Return contacts whose name or organisation contains words starting with those of `text`."""
        words = [word for word in text.split() if word]
        if not words:
            return []
        query = " ".join('"' + word.replace('"', '""') + '"*' for word in words)
        rows = self._db.execute(
            "SELECT rowid FROM contact_names WHERE contact_names MATCH ? ORDER BY rank LIMIT ?",
            (query, MAX_SEARCH_RESULTS),
        ).fetchall()
        found = self._load([row["rowid"] for row in rows])
        if sources is not None:
            found = [stored for stored in found if stored.source in sources]
        return found

    def contacts(self, source: str | None = None) -> list[StoredContact]:
        """Return every contact (of one source), ordered by name."""
        if source is None:
            rows = self._db.execute("SELECT id FROM contacts ORDER BY display_name, id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT id FROM contacts WHERE source = ? ORDER BY display_name, id", (source,)
            ).fetchall()
        return self._load([row["id"] for row in rows])

    def count(self, source: str | None = None) -> int:
        """Return how many contacts there are (in one source)."""
        if source is None:
            return int(self._db.execute("SELECT count(*) FROM contacts").fetchone()[0])
        return int(self._db.execute("SELECT count(*) FROM contacts WHERE source = ?", (source,)).fetchone()[0])

    def etags(self, source: str) -> dict[str, str | None]:
        """Return {href: etag} of a synced source's contacts."""
        rows = self._db.execute("SELECT href, etag FROM contacts WHERE source = ? AND href IS NOT NULL", (source,))
        return {row["href"]: row["etag"] for row in rows}

    def sync_state(self, source: str) -> SyncState:
        """Return a source's sync state (empty when it never synced)."""
        row = self._db.execute("SELECT * FROM sync_state WHERE source = ?", (source,)).fetchone()
        if row is None:
            return SyncState()
        synced_at = datetime.fromisoformat(row["synced_at"]) if row["synced_at"] else None
        return SyncState(row["sync_token"], row["ctag"], synced_at, row["error"])

    def query_plan(self, caller: CallerNumber, sources: Sequence[str]) -> list[str]:
        """Return SQLite's plan for the lookup query, so tests can check that it uses the indexes."""
        query, params = self._find_query(caller, sources)
        return [row["detail"] for row in self._db.execute("EXPLAIN QUERY PLAN " + query, params)]

    # Internals -----------------------------------------------------------------------

    def _find_query(self, caller: CallerNumber, sources: Sequence[str]) -> tuple[str, list[str]]:
        """Build the lookup query: the three indexed searches for the caller and each main number."""
        assert caller.number is not None
        tail_length = max(self.rules.match_digits, MIN_MATCH_DIGITS)
        clauses: list[str] = []
        params: list[str] = []
        for number in (caller.number, *caller.main_numbers):
            clauses.append("SELECT id FROM phones WHERE e164 = ?")
            params.append(number.e164 or "")
            clauses.append("SELECT id FROM phones WHERE national = ?")
            params.append(number.national or "")
            tail = reversed_digits(number)[:tail_length]
            clauses.append("SELECT id FROM phones WHERE digits_rev >= ? AND digits_rev < ?")
            params += [tail, tail + AFTER_DIGITS]

        # CROSS JOIN keeps SQLite's join order: the indexed hits first, then their rows.
        # Starting from the contacts of a source instead reads every contact of it.
        source_marks = ", ".join("?" for _ in sources)
        query = (
            f"WITH hits (id) AS ({' UNION '.join(clauses)})"
            f" SELECT p.contact_id, {', '.join('p.' + column for column in PHONE_COLUMNS.split(', '))}"
            " FROM hits CROSS JOIN phones p ON p.id = hits.id CROSS JOIN contacts c ON c.id = p.contact_id"
            f" WHERE c.source IN ({source_marks}) LIMIT {MAX_CANDIDATES}"
        )
        return query, [*params, *sources]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, source: str, contact: Contact, href: str | None, etag: str | None) -> bool:
        """Insert or replace one contact inside a transaction; return True when it was new."""
        now = datetime.now(timezone.utc).isoformat()
        values = (
            href,
            etag,
            contact.display_name,
            contact.given_name,
            contact.family_name,
            contact.org,
            contact.title,
            "\n".join(contact.emails),
            contact.url,
            contact.note,
            int(contact.is_company),
            contact.vcard,
            now,
        )
        row = self._db.execute("SELECT id FROM contacts WHERE source = ? AND uid = ?", (source, contact.uid)).fetchone()
        if row is None:
            cursor = self._db.execute(
                "INSERT INTO contacts (href, etag, display_name, given_name, family_name, org, title, emails,"
                " url, note, is_company, vcard, updated_at, source, uid) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, source, contact.uid),
            )
            contact_id = int(cursor.lastrowid or 0)
        else:
            contact_id = int(row["id"])
            self._db.execute(
                "UPDATE contacts SET href = ?, etag = ?, display_name = ?, given_name = ?, family_name = ?, org = ?,"
                " title = ?, emails = ?, url = ?, note = ?, is_company = ?, vcard = ?, updated_at = ? WHERE id = ?",
                (*values, contact_id),
            )
            self._db.execute("DELETE FROM phones WHERE contact_id = ?", (contact_id,))
            self._db.execute("DELETE FROM contact_names WHERE rowid = ?", (contact_id,))

        for phone in contact.phones:
            self._insert_phone(contact_id, phone)
        self._db.execute(
            "INSERT INTO contact_names (rowid, display_name, org) VALUES (?, ?, ?)",
            (contact_id, contact.display_name, contact.org or ""),
        )
        return row is None

    def _insert_phone(self, contact_id: int, phone: ContactPhone) -> None:
        number = parse_number(phone.number, self.rules)
        self._db.execute(
            f"INSERT INTO phones (contact_id, kind, {PHONE_COLUMNS}, digits_rev) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                contact_id,
                phone.kind,
                phone.number,
                number.e164,
                number.national,
                number.country_code,
                int(number.valid),
                int(number.country_assumed),
                int(number.certain),
                number.extension,
                number.digits,
                reversed_digits(number),
            ),
        )

    def _delete(self, contact_id: int) -> None:
        self._db.execute("DELETE FROM contact_names WHERE rowid = ?", (contact_id,))
        self._db.execute("DELETE FROM contacts WHERE id = ?", (contact_id,))

    def _load(self, ids: list[int]) -> list[StoredContact]:
        """Load contacts with their phones, in the order of `ids`."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = {row["id"]: row for row in self._db.execute(f"SELECT * FROM contacts WHERE id IN ({marks})", ids)}
        phones: dict[int, list[ContactPhone]] = {}
        for row in self._db.execute(
            f"SELECT contact_id, raw, kind FROM phones WHERE contact_id IN ({marks}) ORDER BY id", ids
        ):
            phones.setdefault(row["contact_id"], []).append(ContactPhone(row["raw"], row["kind"]))
        return [
            _stored_contact(rows[contact_id], phones.get(contact_id, [])) for contact_id in ids if contact_id in rows
        ]

    def _reparse_if_rules_changed(self) -> None:
        """Parse every stored number again when the regions that read them changed."""
        fingerprint = "|".join([self.rules.default_region, ",".join(self.rules.fallback_regions)])
        row = self._db.execute("SELECT value FROM meta WHERE key = 'number_regions'").fetchone()
        if row is not None and row["value"] == fingerprint:
            return

        with self._transaction():
            phones = self._db.execute("SELECT id, contact_id, raw, kind FROM phones").fetchall()
            self._db.execute("DELETE FROM phones")
            for phone in phones:
                self._insert_phone(phone["contact_id"], ContactPhone(phone["raw"], phone["kind"]))
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('number_regions', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (fingerprint,),
            )
        if phones:
            log.info(
                "address book %s: parsed %d stored numbers again for regions %s", self.path, len(phones), fingerprint
            )


class AddressBookConnector(Connector):
    """The office's own contacts (or a synced copy) searched in the local address book."""

    kind = "synced"

    def __init__(
        self, name: str, label: str, book: AddressBook, *, source: str | None = None, logo: str | None = None
    ) -> None:
        self.name = name
        self.label = label
        self.book = book
        self.source = source or name
        self.logo = logo

    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Return cards for the contacts of this source whose numbers match."""
        return [self.contact_card(stored, match) for stored, match in self.book.find(number, [self.source])]

    async def health(self) -> ConnectorHealth:
        """Return the number of contacts; the local book is always available."""
        return ConnectorHealth(ok=True, contacts=self.book.count(self.source))

    def contact_card(self, stored: StoredContact, match: Match, url: str | None = None) -> Card:
        """Build the card of a stored contact; a company card has a company and no person name."""
        contact = stored.contact
        # A record named like its organisation describes the company, as a KIND:org card does.
        is_company = contact.is_company or contact.display_name == contact.org
        return self.card(
            match,
            contact_id=contact.uid,
            name=None if is_company else contact.display_name,
            company=contact.org or (contact.display_name if is_company else None),
            url=url,
            company_url=contact.url,
        )


def load_demo(book: AddressBook, source: str) -> ImportResult:
    """Import the demo contacts shipped with the agent (the lab's callers) into `source`."""
    text = importlib.resources.files("agent.lookup").joinpath("demo/contacts.vcf").read_text(encoding="utf-8")
    return book.import_contacts(source, read_vcards(text))


def _phone_from_row(row: sqlite3.Row) -> PhoneNumber:
    return PhoneNumber(
        text=row["raw"],
        digits=row["digits"],
        e164=row["e164"],
        national=row["national"],
        country_code=row["country_code"],
        valid=bool(row["valid"]),
        country_assumed=bool(row["country_assumed"]),
        certain=bool(row["certain"]),
        extension=row["extension"],
    )


def _stored_contact(row: sqlite3.Row, phones: list[ContactPhone]) -> StoredContact:
    contact = Contact(
        uid=row["uid"],
        display_name=row["display_name"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        org=row["org"],
        title=row["title"],
        emails=tuple(email for email in row["emails"].split("\n") if email),
        phones=tuple(phones),
        url=row["url"],
        note=row["note"],
        is_company=bool(row["is_company"]),
        vcard=row["vcard"],
    )
    return StoredContact(row["id"], row["source"], contact, row["href"], row["etag"])

"""Users, their extensions and their paired devices, in `users.sqlite3` of the data folder.

A PIN is nine digits: three that name the user (the user's `number`, not secret) and
six secret ones. The number lets the agent check a PIN against one user's argon2id hash
instead of every user's, and lets it count failed attempts per user. Six secret digits
are the minimum. The per-user lock-out of `agent.lockout` leaves an attacker about 400
guesses per user and year, which is a 0.04 % chance against 10^6 values, while four
digits would give 4 %.

Device tokens are 256-bit random values. Only their SHA-256 is stored: a fast hash is
enough for a value that cannot be guessed, and it lets each request find its device
with one indexed query.

The file is separate from the call history. It holds credentials, so it is created
0600, and its `PRAGMA data_version` changes only when users or devices change, which is
how the agent notices a `devices revoke` run by the CLI in another process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("ringboard.users")

USERS_FILE_NAME = "users.sqlite3"

ROLES = ("user", "receptionist")

# User numbers are the PIN's first three digits. They start at 100 so that no PIN
# starts with 0, which spreadsheets and some input fields drop.
USER_NUMBER_DIGITS = 3
FIRST_USER_NUMBER = 100
LAST_USER_NUMBER = 999
SECRET_DIGITS = 6
PIN_DIGITS = USER_NUMBER_DIGITS + SECRET_DIGITS

# 32 bytes from the OS's CSPRNG, URL-safe base64 without padding: 43 characters.
DEVICE_TOKEN_BYTES = 32
DEVICE_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")

# Characters of a browser's User-Agent kept for `devices list`; the header is free text.
USER_AGENT_MAX = 200

# Names appear in logs and on the command line, so they are kept to a safe alphabet.
USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
EXTENSION_PATTERN = re.compile(r"[^\s@:;<>\"]{1,64}")

# The CLI may write while the agent reads; SQLite waits this long for the other's lock.
BUSY_TIMEOUT_MS = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    number INTEGER NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('user', 'receptionist')),
    pin_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    pin_set_at TEXT NOT NULL,
    failed_pairings INTEGER NOT NULL DEFAULT 0,
    locked_until REAL
);
CREATE TABLE IF NOT EXISTS user_extensions (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    extension TEXT NOT NULL,
    PRIMARY KEY (user_id, extension)
);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    address TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user_id);
CREATE TABLE IF NOT EXISTS user_settings (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    settings_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class UserError(ValueError):
    """A user or device command cannot be carried out; the message names the reason and the fix."""


@dataclass(frozen=True, slots=True)
class User:
    """A person who may pair browsers; a receptionist sees every extension."""

    id: int
    name: str
    number: int
    role: str
    extensions: tuple[str, ...]
    created_at: str
    failed_pairings: int
    locked_until: float | None

    @property
    def sees_all(self) -> bool:
        """Whether the user sees the calls of every extension."""
        return self.role == "receptionist"


@dataclass(frozen=True, slots=True)
class Device:
    """A paired browser."""

    id: str
    user_name: str
    created_at: str
    last_seen_at: str
    address: str
    user_agent: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class Session:
    """The user and device behind a valid device token; `extensions` None means every extension."""

    device_id: str
    user_id: int
    user_name: str
    role: str
    extensions: frozenset[str] | None


def format_pin(pin: str) -> str:
    """Group a PIN's digits in threes for reading aloud: `123 456 789`."""
    return " ".join(pin[index : index + 3] for index in range(0, len(pin), 3))


def normalize_pin(text: str) -> str | None:
    """Return the PIN's digits without spaces or hyphens, or None when it is not 9 digits."""
    digits = re.sub(r"[\s-]", "", text)
    if len(digits) != PIN_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def hash_token(token: str) -> str:
    """Return the SHA-256 of a device token, as stored."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def new_pin(number: int) -> str:
    """Return a PIN for the user with `number`: the number, then six random digits."""
    secret = secrets.randbelow(10**SECRET_DIGITS)
    return f"{number:0{USER_NUMBER_DIGITS}d}{secret:0{SECRET_DIGITS}d}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class UserStore:
    """Users, extensions and devices in one SQLite file (WAL mode), safe to open from several processes."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
        self.path = path
        # argon2-cffi's default is RFC 9106's low-memory profile (argon2id, t=3, 64 MiB, p=4):
        # 0.1 s per hash measured on a two-core x86 server. Verification reads the cost from the hash.
        self.hasher = hasher or PasswordHasher()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path, hasher: PasswordHasher | None = None) -> UserStore:
        """Open the store of an agent's data folder."""
        return cls(data_dir / USERS_FILE_NAME, hasher)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def data_version(self) -> int:
        """Return SQLite's counter of commits made by other connections to this file."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # Users ------------------------------------------------------------------------------

    def add_user(self, name: str, extensions: list[str], role: str = "user") -> tuple[User, str]:
        """Create a user; return it and its PIN, which is stored only as a hash."""
        name = _check_name(name)
        extensions = _check_extensions(extensions, role)
        if self._user_row(name) is not None:
            raise UserError(f'user "{name}" already exists; use `users reset-pin {name}` for a new PIN')

        number = self._free_number()
        pin = new_pin(number)
        now = _now()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT INTO users (name, number, role, pin_hash, created_at, pin_set_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, number, role, self.hasher.hash(pin), now, now),
            )
            user_id = int(cursor.lastrowid or 0)
            self._db.executemany(
                "INSERT INTO user_extensions (user_id, extension) VALUES (?, ?)",
                [(user_id, extension) for extension in extensions],
            )
        user = self.user(name)
        assert user is not None
        return user, pin

    def reset_pin(self, name: str) -> str:
        """Give a user a new PIN and clear its lock-out; paired devices stay paired."""
        user = self._require(name)
        pin = new_pin(user.number)
        with self._db:
            self._db.execute(
                "UPDATE users SET pin_hash = ?, pin_set_at = ?, failed_pairings = 0, locked_until = NULL WHERE id = ?",
                (self.hasher.hash(pin), _now(), user.id),
            )
        return pin

    def remove_user(self, name: str) -> User:
        """Delete a user with its devices, which stop working at once."""
        user = self._require(name)
        with self._db:
            self._db.execute("DELETE FROM users WHERE id = ?", (user.id,))
        return user

    def user(self, name: str) -> User | None:
        """Return the user of this name, or None."""
        row = self._user_row(name)
        return None if row is None else self._user(row)

    def users(self) -> list[User]:
        """Return every user, by name."""
        rows = self._db.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name").fetchall()
        return [self._user(row) for row in rows]

    def user_for_pin(self, pin: str) -> tuple[User, str] | None:
        """Return the user a PIN's first digits name, with the stored hash, or None."""
        number = int(pin[:USER_NUMBER_DIGITS])
        row = self._db.execute(f"SELECT {_USER_COLUMNS}, pin_hash FROM users WHERE number = ?", (number,)).fetchone()
        if row is None:
            return None
        return self._user(row[:-1]), row[-1]

    def verify_pin(self, pin_hash: str, pin: str) -> bool:
        """Check a PIN against an argon2id hash; slow on purpose."""
        try:
            return self.hasher.verify(pin_hash, pin)
        except (VerificationError, InvalidHashError):
            return False

    def record_user_failures(self, user_id: int, failures: int, locked_until: float | None) -> None:
        """Store a user's count of failed pairings and the end of its lock-out (Unix time)."""
        with self._db:
            self._db.execute(
                "UPDATE users SET failed_pairings = ?, locked_until = ? WHERE id = ?",
                (failures, locked_until, user_id),
            )

    # Devices ----------------------------------------------------------------------------

    def add_device(self, user_id: int, address: str, user_agent: str) -> tuple[Device, str]:
        """Pair a browser for a user; return the device and its token, which is stored only as a hash."""
        token = secrets.token_urlsafe(DEVICE_TOKEN_BYTES)
        now = _now()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            while True:
                device_id = "d-" + secrets.token_hex(4)
                if self._db.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone() is None:
                    break
            self._db.execute(
                "INSERT INTO devices (id, user_id, token_hash, created_at, last_seen_at, address, user_agent) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device_id, user_id, hash_token(token), now, now, address, user_agent[:USER_AGENT_MAX]),
            )
        device = self.device(device_id)
        assert device is not None
        return device, token

    def session_for_token(self, token: str) -> Session | None:
        """Return the session of a valid, unrevoked device token, or None."""
        if not DEVICE_TOKEN_PATTERN.fullmatch(token):
            return None
        row = self._db.execute(
            "SELECT devices.id, users.id, users.name, users.role FROM devices JOIN users ON users.id = devices.user_id "
            "WHERE devices.token_hash = ? AND devices.revoked_at IS NULL",
            (hash_token(token),),
        ).fetchone()
        return None if row is None else self._session(row)

    def session_for_device(self, device_id: str) -> Session | None:
        """Return the session of a device that is still paired, or None."""
        row = self._db.execute(
            "SELECT devices.id, users.id, users.name, users.role FROM devices JOIN users ON users.id = devices.user_id "
            "WHERE devices.id = ? AND devices.revoked_at IS NULL",
            (device_id,),
        ).fetchone()
        return None if row is None else self._session(row)

    def touch_device(self, device_id: str) -> None:
        """Record that a device was seen now."""
        with self._db:
            self._db.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", (_now(), device_id))

    def device(self, device_id: str) -> Device | None:
        """Return a device, revoked or not, or None."""
        row = self._db.execute(f"{_DEVICE_QUERY} WHERE devices.id = ?", (device_id,)).fetchone()
        return None if row is None else Device(*row)

    def devices(self, include_revoked: bool = False) -> list[Device]:
        """Return the paired devices, newest first; with `include_revoked` the revoked ones too."""
        query = _DEVICE_QUERY + ("" if include_revoked else " WHERE devices.revoked_at IS NULL")
        rows = self._db.execute(query + " ORDER BY devices.created_at DESC, devices.id").fetchall()
        return [Device(*row) for row in rows]

    def revoke_device(self, device_id: str) -> Device:
        """Revoke a device: its token stops working and its open pages are closed."""
        device = self.device(device_id)
        if device is None:
            raise UserError(f'device "{device_id}" not found; `devices list` shows the paired devices')
        if device.revoked_at is not None:
            raise UserError(f'device "{device_id}" was already revoked at {device.revoked_at}')
        with self._db:
            self._db.execute("UPDATE devices SET revoked_at = ? WHERE id = ?", (_now(), device_id))
        revoked = self.device(device_id)
        assert revoked is not None
        return revoked

    # Page settings ----------------------------------------------------------------------

    def settings(self, user_id: int) -> dict[str, Any] | None:
        """Return a user's stored page settings, or None when the user never saved any."""
        row = self._db.execute("SELECT settings_json FROM user_settings WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Store a user's page settings, replacing the earlier ones."""
        payload = json.dumps(settings, separators=(",", ":"), ensure_ascii=False)
        with self._db:
            self._db.execute(
                "INSERT INTO user_settings (user_id, settings_json, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET settings_json = excluded.settings_json, updated_at = excluded.updated_at",
                (user_id, payload, _now()),
            )

    # Helpers ----------------------------------------------------------------------------

    def _user_row(self, name: str) -> tuple[Any, ...] | None:
        return self._db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()

    def _require(self, name: str) -> User:
        user = self.user(name)
        if user is None:
            raise UserError(f'user "{name}" not found; `users list` shows the users')
        return user

    def _user(self, row: tuple[Any, ...]) -> User:
        user_id, name, number, role, created_at, failed, locked_until = row
        extensions = tuple(
            extension
            for (extension,) in self._db.execute(
                "SELECT extension FROM user_extensions WHERE user_id = ? ORDER BY extension", (user_id,)
            )
        )
        return User(user_id, name, number, role, extensions, created_at, failed, locked_until)

    def _session(self, row: tuple[Any, ...]) -> Session:
        device_id, user_id, user_name, role = row
        if role == "receptionist":
            extensions = None
        else:
            rows = self._db.execute("SELECT extension FROM user_extensions WHERE user_id = ?", (user_id,))
            extensions = frozenset(extension for (extension,) in rows)
        return Session(device_id, user_id, user_name, role, extensions)

    def _free_number(self) -> int:
        used = {number for (number,) in self._db.execute("SELECT number FROM users")}
        free = [number for number in range(FIRST_USER_NUMBER, LAST_USER_NUMBER + 1) if number not in used]
        if not free:
            count = LAST_USER_NUMBER - FIRST_USER_NUMBER + 1
            raise UserError(f"no free user number: an agent stores at most {count} users; remove unused ones first")
        # Random, so a user's number reveals nothing about when the user was added.
        return secrets.choice(free)


_USER_COLUMNS = "id, name, number, role, created_at, failed_pairings, locked_until"
_DEVICE_QUERY = (
    "SELECT devices.id, users.name, devices.created_at, devices.last_seen_at, devices.address, "
    "devices.user_agent, devices.revoked_at FROM devices JOIN users ON users.id = devices.user_id"
)


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so it is never readable by others."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)


def _check_name(name: str) -> str:
    if not USER_NAME_PATTERN.fullmatch(name):
        raise UserError(
            f'"{name}" is not a valid user name: use 1 to 64 letters, digits and . _ @ -, starting with a letter or digit'
        )
    return name


def _check_extensions(extensions: list[str], role: str) -> list[str]:
    if role not in ROLES:
        raise UserError(f'role "{role}" is invalid: use one of {", ".join(ROLES)}')
    unique: list[str] = []
    for extension in extensions:
        if not EXTENSION_PATTERN.fullmatch(extension):
            raise UserError(f'"{extension}" is not an extension user name such as 201')
        if extension not in unique:
            unique.append(extension)
    if role == "user" and not unique:
        raise UserError("a user needs at least one --extension; a receptionist sees every extension without one")
    return unique


def lock_remaining(locked_until: float | None, now: float | None = None) -> float:
    """Return the seconds left of a lock-out that ends at `locked_until` (Unix time)."""
    if locked_until is None:
        return 0.0
    return max(0.0, locked_until - (time.time() if now is None else now))

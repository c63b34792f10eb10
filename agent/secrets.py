"""Secrets in the configuration (SIP password, CRM tokens, VAPID key), read without exposing them.

The convention, for a secret setting named `password` in a table:

    password = "s3cret"                       # inline: only if the file is readable by the agent alone
    password_file = "/etc/ringboard/sip.pw"   # a file holding the secret (one trailing newline is dropped)
    password_env = "RINGBOARD_SIP_PASSWORD"   # an environment variable holding it

At most one of the three may be set. A relative `_file` path starting with
`$CREDENTIALS_DIRECTORY/` reads a systemd credential (`LoadCredential=` in the unit).
`read_secret` returns a `Secret`, whose `repr` and `str` never show the value, so a
secret cannot reach a log line by accident. `reveal()` returns it where it is used.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

log = logging.getLogger("ringboard.secrets")

FILE_SUFFIX = "_file"
ENV_SUFFIX = "_env"
CREDENTIALS_PREFIX = "$CREDENTIALS_DIRECTORY/"

# Passwords, API tokens and PEM keys are far smaller; a larger file is a wrong path.
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value and where it came from; printing it shows only the source."""

    source: str
    _value: str = field(repr=False)

    def reveal(self) -> str:
        """Return the secret itself, for the one place that sends it."""
        return self._value

    def __str__(self) -> str:
        return f"<secret from {self.source}>"

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r})"


def secret_keys(name: str) -> set[str]:
    """Return the three keys a secret setting may use, for a table's set of known keys."""
    return {name, name + FILE_SUFFIX, name + ENV_SUFFIX}


def read_secret(
    table: Mapping[str, Any],
    name: str,
    *,
    table_name: str,
    required: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Secret | None:
    """Read the secret setting `name` of `[table_name]` by the convention above.

    Raise ConfigError naming the key when more than one form is set, when a required
    secret is missing, or when the file or variable cannot be read or is empty.
    """
    environ = os.environ if environ is None else environ
    label = f"[{table_name}] {name}"
    given = [key for key in (name, name + FILE_SUFFIX, name + ENV_SUFFIX) if key in table]
    if len(given) > 1:
        raise ConfigError(f"[{table_name}] sets {' and '.join(given)}: set only one of them")
    if not given:
        if required:
            raise ConfigError(
                f"{label} is missing: set {name}_file to a file that holds it, or {name}_env to an environment variable"
            )
        return None

    key = given[0]
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[{table_name}] {key} must be a non-empty string in quotes")

    if key == name:
        return Secret(f"{label} in the configuration file", value)
    if key == name + ENV_SUFFIX:
        secret = environ.get(value)
        if not secret:
            raise ConfigError(f"[{table_name}] {key}: the environment variable {value} is not set or empty")
        return Secret(f"environment variable {value}", secret)
    return Secret(f"file {value}", _read_file(_secret_path(value, environ, f"[{table_name}] {key}"), f"[{table_name}] {key}"))


def world_readable(path: Path) -> bool:
    """Return whether others than the owner and group may read the file."""
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def secret_files(raw: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Path]]:
    """Return (key, path) of every `*_file` setting in a parsed configuration, for `doctor`."""
    found: list[tuple[str, Path]] = []
    for key, value in raw.items():
        label = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            found += secret_files(value, label)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    found += secret_files(item, f"{label}[{index}]")
        elif key.endswith(FILE_SUFFIX) and isinstance(value, str) and value.strip():
            try:
                found.append((label, _secret_path(value, os.environ, label)))
            except ConfigError:
                continue
    return found


def _secret_path(value: str, environ: Mapping[str, str], label: str) -> Path:
    if not value.startswith(CREDENTIALS_PREFIX):
        return Path(value)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"{label} = \"{value}\" names a systemd credential, but CREDENTIALS_DIRECTORY is not set;"
            " add LoadCredential= to the service unit"
        )
    return Path(directory) / value[len(CREDENTIALS_PREFIX) :]


def _read_file(path: Path, label: str) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{label}: cannot read {path}: {error.strerror}") from error
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"{label}: {path} is larger than {MAX_SECRET_BYTES} bytes; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: {path} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise ConfigError(f"{label}: {path} is empty")
    if world_readable(path):
        log.warning("%s: %s is readable by every user of this machine; run chmod 600 %s", label, path, path)
    return text

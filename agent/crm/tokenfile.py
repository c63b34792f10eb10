"""Secret files the agent writes into its data folder: readable by the agent's user only."""

from __future__ import annotations

import os
from pathlib import Path

# The folder of the data directory that contains CRM tokens.
TOKEN_FOLDER = "crm-tokens"


def token_path(data_dir: Path, connector: str) -> Path:
    """Return the token file of a connector, such as var/crm-tokens/dynamics.json."""
    return data_dir / TOKEN_FOLDER / f"{connector}.json"


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 (folder 0700), replacing the file atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, text.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)


def read_secret(path: Path) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None

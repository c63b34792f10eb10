"""Users and paired devices for the WebSocket benchmarks, when the agent has them.

Whether the agent has users is checked at run time: with a `ringboard users` command,
the benchmark creates one user per client and pairs one device each with the PIN
that `ringboard users add` prints, through `POST /api/pair {pin}` as a browser does.
Without that command the agent's WebSocket needs no token, every client connects
unpaired and sees every extension, and the figures say so.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .common import RINGBOARD

# A PIN as `ringboard users add` prints it: the first run of 4 to 12 digits after "PIN".
_PIN = re.compile(r"PIN\D{0,20}?(\d{4,12})", re.IGNORECASE)

COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class ClientPlan:
    """One client: its user's name and the extensions it sees (None for every extension)."""

    user: str
    extensions: tuple[str, ...] | None


@dataclass
class Pairing:
    """How the clients of one run authenticate: their Cookie headers, or None when unpaired."""

    paired: bool
    cookies: list[str | None]
    note: str


def office_plan(extensions: list[str], users: int, receptionists: int) -> list[ClientPlan]:
    """Spread `users` over the extensions round-robin and add receptionists who see them all."""
    plan = [ClientPlan(f"user{index:03d}", (extensions[index % len(extensions)],)) for index in range(users)]
    plan += [ClientPlan(f"reception{index:02d}", None) for index in range(receptionists)]
    return plan


def users_command_available() -> bool:
    """Return whether this agent has the `ringboard users` command."""
    try:
        result = subprocess.run(
            [str(RINGBOARD), "users", "--help"], capture_output=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def pair_clients(config: Path, base_url: str, plan: list[ClientPlan]) -> Pairing:
    """Create the users of `plan` and pair one device each; unpaired when the agent has no users."""
    if not users_command_available():
        return Pairing(False, [None] * len(plan), "unpaired: this agent has no `ringboard users` command yet")
    cookies: list[str | None] = []
    for client in plan:
        pin = add_user(config, client)
        cookies.append(pair_device(base_url, pin))
    return Pairing(True, cookies, f"paired: {len(plan)} users, one device each")


def add_user(config: Path, client: ClientPlan) -> str:
    """Run `ringboard users add` for one client and return the PIN it prints.

    NOTE: the options follow the planned command (a name, `--extension` per extension,
    `--all-extensions` for a receptionist); adjust here if the command differs.
    """
    args = [str(RINGBOARD), "users", "add", client.user, "--config", str(config)]
    if client.extensions is None:
        args.append("--all-extensions")
    else:
        for extension in client.extensions:
            args += ["--extension", extension]
    result = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(args[1:])}` failed with exit code {result.returncode}: {result.stderr.strip()}")
    found = _PIN.search(result.stdout)
    if found is None:
        raise RuntimeError(f"`ringboard users add` printed no PIN: {result.stdout.strip()!r}")
    return found.group(1)


def pair_device(base_url: str, pin: str) -> str:
    """Pair a device with a PIN and return the Cookie header value the agent set."""
    request = urllib.request.Request(
        f"{base_url}/api/pair",
        data=json.dumps({"pin": pin}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as response:
            set_cookies = response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"POST /api/pair failed: HTTP {error.code}") from None
    if not set_cookies:
        raise RuntimeError("POST /api/pair returned no Set-Cookie header")
    return "; ".join(cookie.split(";", 1)[0] for cookie in set_cookies)

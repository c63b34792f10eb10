"""Users and paired devices for the WebSocket benchmarks, when the agent has them.

Whether the agent has users is checked at run time: `ringboard users --help` succeeds,
or the running agent serves `POST /api/pair` (it returns 400 for a malformed PIN and
counts no lock-out for it). With users, the benchmark creates the users of the plan
and pairs one device per client through `POST /api/pair {pin}`, as a browser does,
and each client sends its device cookie. Without users the WebSocket needs no token:
every client connects unpaired and receives the calls of every extension, and the
figures state so.

Users are added with tests/support/pairing.py where it exists, because it hashes PINs
at a low argon2id cost. One `ringboard users add` took 0.6 s here, so 200 users would
add two minutes to the run. The pairing requests still run the agent's PIN check.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import common
from .common import agent_command

# The PIN line of `ringboard users add`: "PIN: 467 072 212".
_PIN = re.compile(r"PIN:\s*(\d{3}[ -]?\d{3}[ -]?\d{3})\b")

COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class ClientPlan:
    """One client: its user's name and the extensions whose calls it receives (None for all)."""

    user: str
    extensions: tuple[str, ...] | None


@dataclass
class Pairing:
    """Credentials of one run's clients: a Cookie header per client, None when unpaired."""

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
    command, environment = agent_command("users", "--help")
    try:
        result = subprocess.run(
            command, capture_output=True, timeout=COMMAND_TIMEOUT, env=environment, cwd=common.agent_root, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def pairing_endpoint_exists(base_url: str) -> bool:
    """Return whether the running agent serves `POST /api/pair`."""
    try:
        pair_device(base_url, "not-a-pin")
    except urllib.error.HTTPError as error:
        return error.code not in (404, 405)
    return True


def agent_has_users(base_url: str) -> bool:
    """Return whether this agent has users and device pairing."""
    return users_command_available() or pairing_endpoint_exists(base_url)


def pair_clients(config: Path, data_dir: Path, base_url: str, plan: list[ClientPlan]) -> Pairing:
    """Create the users of `plan` and pair one device per client; unpaired when the agent has no users.

    Clients that name the same user pair one device each with that user's PIN.
    """
    if not agent_has_users(base_url):
        return Pairing(False, [None] * len(plan), "unpaired (this agent has no users yet)")
    pins: dict[str, str] = {}
    cookies: list[str | None] = []
    for client in plan:
        if client.user not in pins:
            pins[client.user] = add_user(config, data_dir, client)
        cookies.append(pair_device(base_url, pins[client.user]))
    users = len(pins)
    return Pairing(True, cookies, f"paired ({_count(users, 'user')}, {_count(len(plan), 'device')})")


def add_user(config: Path, data_dir: Path, client: ClientPlan) -> str:
    """Add one client's user and return its PIN."""
    role = "user" if client.extensions is not None else "receptionist"
    extensions = client.extensions or ()
    try:
        from tests.support.pairing import add_user as add_test_user
    except ImportError:
        return add_user_with_command(config, client.user, extensions, role)
    return add_test_user(data_dir, client.user, extensions, role)


def add_user_with_command(config: Path, name: str, extensions: tuple[str, ...], role: str) -> str:
    """Run `ringboard users add` and return the PIN it prints."""
    args = ["users", "add", name, "--config", str(config), "--role", role]
    for extension in extensions:
        args += ["--extension", extension]
    command, environment = agent_command(*args)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=environment, cwd=common.agent_root, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"`ringboard {' '.join(args)}` failed with exit code {result.returncode}: {result.stderr.strip()}")
    found = _PIN.search(result.stdout)
    if found is None:
        raise RuntimeError(f"`ringboard users add` printed no PIN: {result.stdout.strip()!r}")
    return re.sub(r"\D", "", found.group(1))


def pair_device(base_url: str, pin: str) -> str:
    """Pair a device with a PIN and return the Cookie header value that carries its token.

    Raises urllib.error.HTTPError when the agent refuses the PIN.
    """
    request = urllib.request.Request(
        f"{base_url}/api/pair",
        data=json.dumps({"pin": pin}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as response:
        set_cookies = response.headers.get_all("Set-Cookie") or []
    if not set_cookies:
        raise RuntimeError("POST /api/pair returned no Set-Cookie header")
    return "; ".join(cookie.split(";", 1)[0] for cookie in set_cookies)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

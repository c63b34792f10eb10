"""Users and paired devices for tests: add a user to an agent's data folder and pair a client.

The PIN hashes use a cheap argon2id cost (8 KiB, one pass) so that tests which add many
users or check many PINs stay fast. argon2 verification reads the cost from the hash, so
the agent checks them with no setting of its own. Production hashes keep the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from argon2 import PasswordHasher

from agent.auth import COOKIE_NAME, SECURE_COOKIE_NAME
from agent.users import UserStore

FAST_PIN_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass(frozen=True)
class PairedDevice:
    """A device paired over the API: its id, user and the cookie that carries its token."""

    device_id: str
    user: str
    cookie_name: str
    token: str

    @property
    def header(self) -> dict[str, str]:
        """Return the Cookie header that authenticates a request or WebSocket."""
        return {"Cookie": f"{self.cookie_name}={self.token}"}


def add_user(data_dir: Path, name: str, extensions: tuple[str, ...] = ("201",), role: str = "user") -> str:
    """Add a user to the agent's data folder (running or not) and return its PIN."""
    store = UserStore.in_data_dir(data_dir, FAST_PIN_HASHER)
    try:
        _, pin = store.add_user(name, list(extensions), role)
    finally:
        store.close()
    return pin


async def pair(url: str, pin: str, *, verify: bool | str = True) -> PairedDevice:
    """Pair a new device at the agent's `url` with `pin`; raise AssertionError if refused."""
    async with httpx.AsyncClient(verify=verify) as client:
        response = await client.post(url + "api/pair", json={"pin": pin})
    assert response.status_code == 200, f"pairing failed: {response.status_code} {response.text}"
    body = response.json()
    for name in (SECURE_COOKIE_NAME, COOKIE_NAME):
        token = response.cookies.get(name)
        if token:
            return PairedDevice(body["device"], body["user"], name, token)
    raise AssertionError(f"pairing returned no device cookie: {response.headers.get('set-cookie')}")


async def paired_device(
    url: str, data_dir: Path, name: str = "tester", extensions: tuple[str, ...] = ("201", "202"), role: str = "user"
) -> PairedDevice:
    """Add a user and pair a device for it; the usual start of a test that reads calls."""
    return await pair(url, add_user(data_dir, name, extensions, role))

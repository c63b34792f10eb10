"""The user store, the lock-out curve and the PIN check, without a web server."""

import asyncio
import stat

import pytest
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError

from agent.auth import Authenticator, Paired, Rejected
from agent.lockout import ADDRESS_POLICY, MAX_TRACKED_ADDRESSES, USER_POLICY, AddressLimiter, LockoutPolicy
from agent.users import PIN_DIGITS, UserError, UserStore, format_pin, hash_token, normalize_pin
from tests.support.pairing import FAST_PIN_HASHER


@pytest.fixture
def store(tmp_path):
    users = UserStore.in_data_dir(tmp_path, FAST_PIN_HASHER)
    yield users
    users.close()


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_pin_names_user_by_number(store):
    user, pin = store.add_user("anna", ["201"])

    assert len(pin) == PIN_DIGITS
    assert pin.isdigit()
    assert int(pin[:3]) == user.number
    assert 100 <= user.number <= 999
    found, pin_hash = store.user_for_pin(pin)
    assert found.name == "anna"
    assert pin_hash.startswith("$argon2id$")
    assert pin not in pin_hash


def test_database_private_and_hashed(store, tmp_path):
    _, pin = store.add_user("anna", ["201"])
    device, token = store.add_device(store.user("anna").id, "127.0.0.1", "test")

    path = tmp_path / "users.sqlite3"
    data = path.read_bytes() + b"".join(extra.read_bytes() for extra in tmp_path.glob("users.sqlite3-*"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pin.encode() not in data
    assert token.encode() not in data
    assert hash_token(token).encode() in data


def test_production_hasher_is_argon2id():
    hasher = PasswordHasher()

    assert hasher.type is Type.ID
    assert hasher.time_cost >= 3
    assert hasher.memory_cost >= 64 * 1024


def test_receptionist_sees_all(store):
    desk, _ = store.add_user("desk", [], role="receptionist")
    anna, _ = store.add_user("anna", ["201", "202", "201"])
    _, desk_token = store.add_device(desk.id, "127.0.0.1", "")
    _, anna_token = store.add_device(anna.id, "127.0.0.1", "")

    assert store.session_for_token(desk_token).extensions is None
    assert store.session_for_token(anna_token).extensions == frozenset({"201", "202"})
    assert anna.extensions == ("201", "202")


@pytest.mark.parametrize(
    ("name", "extensions", "role", "message"),
    [
        ("anna", [], "user", "at least one --extension"),
        ("an na", ["201"], "user", "not a valid user name"),
        ("-anna", ["201"], "user", "not a valid user name"),
        ("a" * 65, ["201"], "user", "not a valid user name"),
        ("anna", ["2 01"], "user", "not an extension"),
        ("anna", ["201"], "admin", 'role "admin" is invalid'),
    ],
)
def test_add_user_rejects(store, name, extensions, role, message):
    with pytest.raises(UserError, match=message):
        store.add_user(name, extensions, role)
    assert store.users() == []


def test_duplicate_user_rejected(store):
    store.add_user("anna", ["201"])

    with pytest.raises(UserError, match="already exists"):
        store.add_user("anna", ["202"])


def test_reset_pin_keeps_number_and_devices(store):
    user, old_pin = store.add_user("anna", ["201"])
    _, token = store.add_device(user.id, "127.0.0.1", "")
    store.record_user_failures(user.id, 9, 2e9)

    new_pin = store.reset_pin("anna")

    _, pin_hash = store.user_for_pin(new_pin)
    assert new_pin[:3] == old_pin[:3]
    assert store.verify_pin(pin_hash, new_pin)
    assert not store.verify_pin(pin_hash, old_pin)
    assert store.user("anna").failed_pairings == 0
    assert store.user("anna").locked_until is None
    assert store.session_for_token(token) is not None


def test_remove_user_removes_devices(store):
    user, _ = store.add_user("anna", ["201"])
    device, token = store.add_device(user.id, "127.0.0.1", "")

    store.remove_user("anna")

    assert store.session_for_token(token) is None
    assert store.devices(include_revoked=True) == []
    with pytest.raises(UserError, match="not found"):
        store.remove_user("anna")


def test_revoke_device(store):
    user, _ = store.add_user("anna", ["201"])
    device, token = store.add_device(user.id, "127.0.0.1", "Mozilla/5.0 " + "x" * 500)

    revoked = store.revoke_device(device.id)

    assert revoked.revoked_at is not None
    assert store.session_for_token(token) is None
    assert store.devices() == []
    assert len(store.devices(include_revoked=True)[0].user_agent) == 200
    with pytest.raises(UserError, match="already revoked"):
        store.revoke_device(device.id)
    with pytest.raises(UserError, match="not found"):
        store.revoke_device("d-00000000")


def test_other_connection_changes_data_version(store, tmp_path):
    user, _ = store.add_user("anna", ["201"])
    device, _ = store.add_device(user.id, "127.0.0.1", "")
    before = store.data_version()

    other = UserStore.in_data_dir(tmp_path)
    try:
        other.revoke_device(device.id)
    finally:
        other.close()

    assert store.data_version() != before


def test_verify_rejects_garbage_hash(store):
    assert store.verify_pin("not a hash", "123456789") is False
    with pytest.raises(InvalidHashError):
        FAST_PIN_HASHER.verify("not a hash", "123456789")


def test_token_lookup_ignores_malformed(store):
    assert store.session_for_token("") is None
    assert store.session_for_token("x" * 43 + "'") is None
    assert store.session_for_token("A" * 43) is None


@pytest.mark.parametrize(
    ("typed", "pin"),
    [("123 456 789", "123456789"), ("123-456-789", "123456789"), ("12345678", None), ("١٢٣٤٥٦٧٨٩", None)],
)
def test_normalize_pin(typed, pin):
    assert normalize_pin(typed) == pin


def test_format_pin():
    assert format_pin("123456789") == "123 456 789"


def test_lockout_curve():
    policy = LockoutPolicy(free_failures=5, first_lockout=30.0, max_lockout=3600.0)

    assert [policy.lockout_after(failures) for failures in range(1, 6)] == [0.0] * 5
    assert [policy.lockout_after(failures) for failures in range(6, 14)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert policy.lockout_after(10_000) == 3600.0


def test_default_policies():
    assert ADDRESS_POLICY.lockout_after(6) == 30.0
    assert ADDRESS_POLICY.lockout_after(100) == 3600.0
    assert USER_POLICY.lockout_after(6) == 60.0
    assert USER_POLICY.lockout_after(100) == 86400.0


def test_user_guesses_per_year_bounded():
    # An attacker who always waits out the lock-out gets this many guesses per user in a year.
    elapsed, guesses = 0.0, 0
    while elapsed < 365 * 86400:
        guesses += 1
        elapsed += USER_POLICY.lockout_after(guesses)

    assert guesses < 400
    assert guesses / 10**6 < 0.0005


def test_address_limiter_forgets_and_caps():
    limiter = AddressLimiter(ADDRESS_POLICY, forget_after=100.0)
    for _ in range(6):
        limiter.record_failure("192.0.2.1", 0.0)

    assert limiter.remaining("192.0.2.1", 10.0) == 20.0
    assert limiter.failures("192.0.2.1", 50.0) == 6
    assert limiter.failures("192.0.2.1", 200.0) == 0

    for index in range(MAX_TRACKED_ADDRESSES + 5):
        limiter.record_failure(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", 300.0)
    assert len(limiter._states) == MAX_TRACKED_ADDRESSES


async def test_authenticator_lockout_timeline(store):
    clock = Clock()
    auth = Authenticator(store, clock=clock)
    user, pin = store.add_user("anna", ["201"])
    wrong = pin[:3] + f"{(int(pin[3:]) + 1) % 10**6:06d}"

    results = [await auth.pair(wrong, "192.0.2.7", "") for _ in range(7)]

    assert [result.status for result in results] == [401] * 6 + [429]
    assert results[6].params == {"retry_after": 30}
    assert store.user("anna").failed_pairings == 6

    # Rejected attempts are not counted, and the address waits its 30 s, the user 60 s.
    clock.now += 31
    from_address = await auth.pair(pin, "192.0.2.7", "")
    from_elsewhere = await auth.pair(pin, "192.0.2.8", "")
    assert isinstance(from_address, Rejected)
    assert from_address.params == {"retry_after": 29}
    assert from_elsewhere.params == {"retry_after": 29}
    assert store.user("anna").failed_pairings == 6

    clock.now += 30
    paired = await auth.pair(pin, "192.0.2.8", "browser")
    assert isinstance(paired, Paired)
    assert paired.session.user_name == "anna"
    assert store.user("anna").failed_pairings == 0
    # Success resets the user's counter, not the address's.
    assert auth.addresses.failures("192.0.2.7", clock.now) == 6


async def test_unknown_user_number_counts_for_address(store):
    auth = Authenticator(store, clock=Clock())
    store.add_user("anna", ["201"])
    unused = next(number for number in range(100, 1000) if store.user_for_pin(f"{number}000000") is None)

    result = await auth.pair(f"{unused}123456", "192.0.2.9", "")

    assert result.status == 401
    assert result.code == "pin_invalid"
    assert auth.addresses.failures("192.0.2.9", 1_000_000.0) == 1


async def test_parallel_guesses_cannot_outrun_lockout(store):
    auth = Authenticator(store, clock=Clock())
    _, pin = store.add_user("anna", ["201"])
    wrong = pin[:3] + f"{(int(pin[3:]) + 1) % 10**6:06d}"

    results = await asyncio.gather(*(auth.pair(wrong, "192.0.2.10", "") for _ in range(30)))

    statuses = sorted(result.status for result in results)
    assert statuses.count(401) == 6
    assert statuses.count(429) + statuses.count(503) == 24

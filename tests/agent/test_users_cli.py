"""`ringboard users` and `ringboard devices` on a data folder, as an admin runs them."""

import re

import pytest

from agent.cli import lab_user_pin, main
from agent.users import UserStore


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "ringboard.toml"
    path.write_text(f'[agent]\ndata_dir = "{tmp_path}"\n[sip]\nserver = "127.0.0.1"\nextensions = ["201", "202"]\n')
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pin_of(output):
    match = re.search(r"PIN(?: for \S+)?: (\d{3} \d{3} \d{3})", output)
    assert match, output
    return match.group(1).replace(" ", "")


def test_add_list_reset_remove(config_file, tmp_path, capsys):
    code, out, _ = run(capsys, "users", "add", "anna", "--extension", "201", "--config", config_file)
    assert code == 0
    anna_pin = pin_of(out)
    assert "anna added (user, sees extensions 201)" in out

    code, out, _ = run(capsys, "users", "add", "desk", "--role", "receptionist", "--config", config_file)
    assert code == 0
    assert "sees every extension" in out

    code, out, _ = run(capsys, "users", "list", "--config", config_file)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "EXTENSIONS", "PIN", "STARTS", "DEVICES", "PAIRING"]
    assert lines[1].split() == ["anna", "user", "201", anna_pin[:3], "0", "open"]
    assert lines[2].split()[:3] == ["desk", "receptionist", "all"]

    code, out, _ = run(capsys, "users", "reset-pin", "anna", "--config", config_file)
    assert code == 0
    new_pin = pin_of(out)
    store = UserStore.in_data_dir(tmp_path)
    try:
        _, pin_hash = store.user_for_pin(new_pin)
        assert store.verify_pin(pin_hash, new_pin)
        assert not store.verify_pin(pin_hash, anna_pin)
    finally:
        store.close()

    code, out, _ = run(capsys, "users", "remove", "anna", "--config", config_file)
    assert code == 0
    code, out, _ = run(capsys, "users", "list", "--config", config_file)
    assert "anna" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["users", "add", "anna"], "at least one --extension"),
        (["users", "add", "anna bob", "--extension", "201"], "not a valid user name"),
        (["users", "reset-pin", "nobody"], 'user "nobody" not found'),
        (["users", "remove", "nobody"], 'user "nobody" not found'),
        (["devices", "revoke", "d-00000000"], 'device "d-00000000" not found'),
    ],
)
def test_errors_name_the_fix(config_file, capsys, argv, message):
    code, out, err = run(capsys, *argv, "--config", config_file)

    assert code == 1
    assert message in err


def test_unmonitored_extension_warns(config_file, capsys):
    code, out, err = run(capsys, "users", "add", "anna", "--extension", "999", "--config", config_file)

    assert code == 0
    assert "does not list 999" in err


def test_devices_list_and_revoke(config_file, tmp_path, capsys):
    store = UserStore.in_data_dir(tmp_path)
    try:
        user, _ = store.add_user("anna", ["201"])
        device, _ = store.add_device(user.id, "192.0.2.5", "Mozilla/5.0 (X11; Linux x86_64)")
    finally:
        store.close()

    code, out, _ = run(capsys, "devices", "list", "--config", config_file)
    assert code == 0
    assert device.id in out
    assert "192.0.2.5" in out
    assert "Mozilla/5.0" in out

    code, out, _ = run(capsys, "devices", "revoke", device.id, "--config", config_file)
    assert code == 0
    assert f"Device {device.id} of anna revoked" in out

    code, out, _ = run(capsys, "devices", "list", "--config", config_file)
    assert out.strip() == "No paired devices."
    code, out, _ = run(capsys, "devices", "list", "--all", "--config", config_file)
    assert "revoked" in out

    code, _, err = run(capsys, "devices", "revoke", device.id, "--config", config_file)
    assert code == 1
    assert "already revoked" in err


def test_lab_user_reused_with_new_pin(tmp_path):
    first = lab_user_pin(tmp_path)
    second = lab_user_pin(tmp_path)

    store = UserStore.in_data_dir(tmp_path)
    try:
        [user] = store.users()
        _, pin_hash = store.user_for_pin(second.replace(" ", ""))
        assert user.name == "lab"
        assert user.sees_all
        assert store.verify_pin(pin_hash, second.replace(" ", ""))
    finally:
        store.close()
    assert first[:3] == second[:3]
    assert re.fullmatch(r"\d{3} \d{3} \d{3}", second)

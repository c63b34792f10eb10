"""Secret settings: inline, from a file or from the environment, never shown by repr or str."""

import logging

import pytest

from agent.config import ConfigError
from agent.secrets import Secret, read_secret, secret_files, secret_keys, world_readable

TABLE = "sip"


def test_inline_secret():
    secret = read_secret({"password": "s3cret"}, "password", table_name=TABLE)

    assert secret.reveal() == "s3cret"
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in str(secret)
    assert "s3cret" not in f"{secret}"
    assert "configuration file" in secret.source


def test_file_secret_drops_one_newline(tmp_path):
    path = tmp_path / "sip.pw"
    path.write_text("s3cret\n")
    path.chmod(0o600)

    secret = read_secret({"password_file": str(path)}, "password", table_name=TABLE)

    assert secret.reveal() == "s3cret"
    assert secret.source == f"file {path}"


def test_env_secret():
    secret = read_secret({"password_env": "SIP_PW"}, "password", table_name=TABLE, environ={"SIP_PW": "s3cret"})

    assert secret.reveal() == "s3cret"
    assert secret.source == "environment variable SIP_PW"


def test_systemd_credential(tmp_path):
    (tmp_path / "sip-password").write_text("s3cret")

    secret = read_secret(
        {"password_file": "$CREDENTIALS_DIRECTORY/sip-password"},
        "password",
        table_name=TABLE,
        environ={"CREDENTIALS_DIRECTORY": str(tmp_path)},
    )

    assert secret.reveal() == "s3cret"


def test_missing_optional_secret_is_none():
    assert read_secret({}, "password", table_name=TABLE) is None


@pytest.mark.parametrize(
    ("table", "environ", "message"),
    [
        ({}, {}, "[sip] password is missing: set password_file"),
        ({"password": "a", "password_env": "X"}, {}, "sets password and password_env: set only one"),
        ({"password_env": "NOT_SET"}, {}, "NOT_SET is not set or empty"),
        ({"password_env": "EMPTY"}, {"EMPTY": ""}, "EMPTY is not set or empty"),
        ({"password_file": "/nonexistent/pw"}, {}, "cannot read /nonexistent/pw"),
        ({"password_file": 5}, {}, "must be a non-empty string"),
        ({"password": ""}, {}, "must be a non-empty string"),
        ({"password_file": "$CREDENTIALS_DIRECTORY/pw"}, {}, "CREDENTIALS_DIRECTORY is not set"),
    ],
)
def test_secret_errors_name_key(table, environ, message):
    with pytest.raises(ConfigError) as error:
        read_secret(table, "password", table_name=TABLE, required=True, environ=environ)

    assert message in str(error.value)


def test_empty_or_huge_file_rejected(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 70_000)

    with pytest.raises(ConfigError, match="is empty"):
        read_secret({"password_file": str(empty)}, "password", table_name=TABLE)
    with pytest.raises(ConfigError, match="larger than"):
        read_secret({"password_file": str(huge)}, "password", table_name=TABLE)


def test_world_readable_file_warned(tmp_path, caplog):
    path = tmp_path / "sip.pw"
    path.write_text("s3cret")
    path.chmod(0o644)
    caplog.set_level(logging.WARNING)

    read_secret({"password_file": str(path)}, "password", table_name=TABLE)

    assert world_readable(path)
    assert "readable by every user" in caplog.text
    assert "s3cret" not in caplog.text


def test_secret_keys_and_files(tmp_path):
    raw = {"sip": {"password_file": "/etc/ringboard/sip.pw"}, "connectors": [{"token_file": "/etc/ringboard/crm"}]}

    assert secret_keys("token") == {"token", "token_file", "token_env"}
    assert [label for label, _ in secret_files(raw)] == ["sip.password_file", "connectors[0].token_file"]


def test_secret_equality_does_not_leak():
    assert Secret("a", "x") == Secret("a", "x")
    assert "x" not in repr([Secret("a", "x")])

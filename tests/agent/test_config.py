"""Configuration reading: defaults, and errors that name the key and the fix."""

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_config

MINIMAL = {"sip": {"server": "pbx.example.com", "extensions": ["201", 202]}}


def test_minimal_config_defaults():
    config = parse_config(MINIMAL)
    assert config.sip.extensions == ("201", "202")
    assert config.sip.domain == "pbx.example.com"
    assert config.sip.port == 5060
    assert config.http.host == "127.0.0.1"
    assert config.http.port == 8080
    assert config.agent.history_days == 90
    assert config.numbers.default_region == "CH"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sip": {"extensions": ["201"]}}, "[sip] server is missing"),
        ({"sip": {"server": "pbx", "extensions": []}}, "[sip] extensions must list"),
        ({"sip": {"server": "pbx", "extensions": ["2 01"]}}, "is not an extension"),
        ({"sip": {"server": "pbx", "extensions": ["201", "201"]}}, 'lists "201" twice'),
        ({**MINIMAL, "http": {"port": 70000}}, "[http] port = 70000 is out of range"),
        ({**MINIMAL, "http": {"port": "80"}}, "[http] port must be a whole number"),
        ({**MINIMAL, "http": {"host": "0.0.0.0"}}, "needs HTTPS"),
        ({**MINIMAL, "http": {"host": "192.0.2.10"}}, "secure context"),
        ({**MINIMAL, "http": {"host": "office-server"}}, "is not an IP address"),
        ({**MINIMAL, "http": {"certificate": "/etc/ringboard/server.pem"}}, "[http] key is missing"),
        ({**MINIMAL, "http": {"key": "/etc/ringboard/server-key.pem"}}, "[http] certificate is missing"),
        ({**MINIMAL, "sip": {**MINIMAL["sip"], "pbx": "avaya"}}, "[sip] pbx = \"avaya\" is invalid"),
        ({**MINIMAL, "sip": {**MINIMAL["sip"], "colour": 1}}, "[sip] colour is not a known setting"),
        ({**MINIMAL, "numbers": {"default_region": "Swiss"}}, "two-letter country code"),
        ({**MINIMAL, "extra": {}}, "[extra] is not a known setting"),
    ],
)
def test_invalid_value_names_key(raw, expected):
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert expected in str(error.value)


def test_https_allows_every_interface():
    config = parse_config({**MINIMAL, "http": {"host": "0.0.0.0", "certificate": "server.pem", "key": "server-key.pem"}})
    assert config.http.host == "0.0.0.0"
    assert config.http.tls
    assert config.http.certificate == Path("server.pem")
    assert config.http.key == Path("server-key.pem")


def test_plain_http_stays_on_loopback():
    config = parse_config({**MINIMAL, "http": {"host": "localhost"}})
    assert config.http.host == "127.0.0.1"
    assert not config.http.tls


def test_example_file_is_valid():
    example = Path(__file__).resolve().parents[2] / "ringboard.example.toml"
    config = load_config(example)
    assert config.sip.extensions


def test_invalid_toml_names_file(tmp_path):
    path = tmp_path / "ringboard.toml"
    path.write_text("[sip\nserver = 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)

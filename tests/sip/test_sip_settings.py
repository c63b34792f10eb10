"""The `[sip]` settings: transports, ports and DNS, passwords, ranges, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config


def sip(**values: object) -> dict[str, object]:
    return {"sip": {"server": "pbx.example.com", "extensions": ["201"], **values}}


def test_no_port_means_dns_lookup():
    settings = parse_config(sip()).sip
    assert settings.srv_lookup
    assert settings.port == 5060


def test_port_or_address_skips_dns():
    assert not parse_config(sip(port=5080)).sip.srv_lookup
    assert not parse_config({"sip": {"server": "10.0.0.5", "extensions": ["201"]}}).sip.srv_lookup


def test_tls_defaults_to_5061():
    settings = parse_config(sip(transport="tls")).sip
    assert settings.transport == "tls"
    assert settings.port == 5061


def test_extension_ranges_expand():
    settings = parse_config(sip(extensions=["201-203", "300", "010-012"])).sip
    assert settings.extensions == ("201", "202", "203", "300", "010", "011", "012")


def test_password_never_in_repr():
    settings = parse_config(sip(password="s3cret")).sip
    assert settings.password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_password_from_file(tmp_path: Path):
    secret = tmp_path / "sip-password"
    secret.write_text("from-file\n")
    assert parse_config(sip(password_file=str(secret))).sip.password == "from-file"


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RINGBOARD_TEST_SIP_PASSWORD", "from-env")
    assert parse_config(sip(password_env="RINGBOARD_TEST_SIP_PASSWORD")).sip.password == "from-env"


def test_other_keys_read(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = parse_config(
        sip(
            outbound_proxy="sip:sbc.example.com:5080",
            ca_file=str(ca),
            register=True,
            list_uri="sip:blf@pbx.example.com",
            retry_max=5,
            dns_servers=["127.0.0.1:5353"],
            username="auth-201",
        )
    ).sip
    assert settings.outbound_proxy == "sip:sbc.example.com:5080"
    assert settings.ca_file == str(ca)
    assert settings.register is True
    assert settings.list_uri == "sip:blf@pbx.example.com"
    assert settings.retry_max == 5
    assert settings.dns_servers == (("127.0.0.1", 5353),)
    assert settings.username == "auth-201"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"transport": "sctp"}, '[sip] transport = "sctp" is invalid'),
        ({"extensions": ["219-201"]}, 'range "219-201" is invalid'),
        ({"extensions": ["1-10000"]}, 'range "1-10000" is invalid'),
        ({"extensions": ["1000-9999"]}, "more than 1000 extensions"),
        ({"extensions": ["201-203", "202"]}, 'lists "202" twice'),
        ({"password": "a", "password_env": "B"}, "keep only one way"),
        ({"password_file": "/nonexistent/sip-password"}, "[sip] password_file: cannot read"),
        ({"password_env": "RINGBOARD_NO_SUCH_VARIABLE"}, "is not set"),
        ({"ca_file": "/nonexistent/ca.pem"}, "[sip] ca_file"),
        ({"register": "yes"}, "[sip] register must be true or false"),
        ({"list_uri": "blf@pbx"}, "must be a SIP URI"),
        ({"retry_max": 0}, "[sip] retry_max = 0 is out of range"),
        ({"dns_servers": ["dns.example.com"]}, "is not an IP address"),
        ({"dns_servers": ["10.0.0.1:53", "10.0.0.2:5353"]}, "same port"),
        ({"outbound_proxy": "sip:"}, "[sip] outbound_proxy"),
    ],
)
def test_invalid_sip_value_names_key(values: dict[str, object], expected: str):
    with pytest.raises(ConfigError) as error:
        parse_config(sip(**values))
    assert expected in str(error.value)

"""`[lookup]` and `[[connectors]]`: defaults, every connector type, and errors naming key and fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.config import ConfigError
from agent.lookup.settings import (
    AddressBookSettings,
    CardDavSettings,
    LdapSettings,
    RestSettings,
    Secret,
    lab_settings,
    parse_lookup_settings,
)

FULL = """
[numbers]
default_region = "ch"

[lookup]
fallback_regions = ["DE", "at"]
match_digits = 9
cache_seconds = 120
timeout = 2

[[lookup.main_numbers]]
number = "+41 44 123 45 00"
extension_digits = 2

[[lookup.main_numbers]]
number = "+49 30 1234567-0"
direct_dial = "+49 30 1234567"
extension_digits = [1, 4]

[[connectors]]
type = "addressbook"
name = "contacts"
label = "Office contacts"

[[connectors]]
type = "carddav"
name = "nextcloud"
url = "https://cloud.example.com/remote.php/dav/addressbooks/users/ringboard/contacts/"
username = "ringboard"
password_file = "{password_file}"
sync_minutes = 30
contact_url = "https://cloud.example.com/apps/contacts/{{uid}}"

[[connectors]]
type = "ldap"
name = "directory"
label = "Company directory"
url = "ldaps://dc1.example.com"
bind_dn = "cn=ringboard,dc=example,dc=com"
password_env = "TEST_LDAP_PASSWORD"
base_dn = "dc=example,dc=com"
filter = "(objectClass=person)"
phone_attributes = ["telephoneNumber", "mobile", "ipPhone"]

[[connectors]]
type = "rest"
name = "crm"
url = "https://crm.example.com/services/Lookup"
token_env = "TEST_CRM_TOKEN"
logo = "/logos/crm.svg"
"""


def test_defaults() -> None:
    settings = parse_lookup_settings({})
    assert settings.rules.default_region == "CH"
    assert settings.rules.fallback_regions == ()
    assert settings.rules.match_digits == 8
    assert settings.timeout == 1.5
    assert settings.cache_seconds == 300
    assert settings.connectors == (AddressBookSettings(type="addressbook", name="contacts", label="Address book"),)


def test_full_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password_file = tmp_path / "carddav.password"
    password_file.write_text("dav-password\n")
    monkeypatch.setenv("TEST_LDAP_PASSWORD", "ldap-password")
    monkeypatch.setenv("TEST_CRM_TOKEN", "crm-token")

    settings = parse_lookup_settings(tomllib.loads(FULL.format(password_file=password_file)))

    assert settings.rules.default_region == "CH"
    assert settings.rules.fallback_regions == ("DE", "AT")
    assert settings.rules.match_digits == 9
    assert (settings.timeout, settings.cache_seconds) == (2.0, 120)
    swiss, german = settings.rules.main_numbers
    assert (swiss.prefix, swiss.min_extension_digits, swiss.max_extension_digits) == ("414412345", 2, 2)
    assert (german.prefix, german.min_extension_digits, german.max_extension_digits) == ("49301234567", 1, 4)
    assert german.main_number.e164 == "+493012345670"

    book, dav, ldap, rest = settings.connectors
    assert isinstance(book, AddressBookSettings) and book.label == "Office contacts"
    assert isinstance(dav, CardDavSettings)
    assert dav.password == Secret("dav-password")
    assert (dav.label, dav.sync_minutes) == ("CardDAV", 30)
    assert isinstance(ldap, LdapSettings)
    assert ldap.password == Secret("ldap-password")
    assert ldap.phone_attributes == ("telephoneNumber", "mobile", "ipPhone")
    assert isinstance(rest, RestSettings)
    assert (rest.method, rest.token_header, rest.logo) == ("post", "X-Execution-Token", "/logos/crm.svg")
    assert rest.token == Secret("crm-token")


def test_secrets_hidden_from_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CRM_TOKEN", "crm-token")
    settings = parse_lookup_settings(
        {"connectors": [{"type": "rest", "url": "https://crm.example.com/Lookup", "token_env": "TEST_CRM_TOKEN"}]}
    )
    assert "crm-token" not in repr(settings)
    assert "crm-token" not in str(settings.connectors[0])


def test_lab_settings() -> None:
    settings = lab_settings()
    (book,) = settings.connectors
    assert isinstance(book, AddressBookSettings) and book.demo
    assert settings.rules.main_numbers[0].main_number.e164 == "+41441234500"


REST = {"type": "rest", "url": "https://crm.example.com/Lookup"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"lookup": {"match_digits": 6}}, "[lookup] match_digits = 6 is out of range: use 7 to 10"),
        ({"lookup": {"match_digits": "8"}}, "[lookup] match_digits must be a whole number"),
        ({"lookup": {"timeout": 0}}, "[lookup] timeout = 0 is out of range"),
        ({"lookup": {"fallback_regions": "DE"}}, "[lookup] fallback_regions must be a list"),
        ({"lookup": {"fallback_regions": ["Germany"]}}, "'Germany' is not a two-letter country code"),
        ({"lookup": {"colour": 1}}, "[lookup] colour is not a known setting"),
        ({"lookup": {"main_numbers": [{"extension_digits": 2}]}}, "[[lookup.main_numbers]] #1 number is missing"),
        (
            {"lookup": {"main_numbers": [{"number": "+41 44 123 45 00"}]}},
            "#1 extension_digits is missing or invalid",
        ),
        (
            {"lookup": {"main_numbers": [{"number": "+41 44 123 45 00", "extension_digits": [1, 4]}]}},
            "#1 direct_dial is missing",
        ),
        (
            {"lookup": {"main_numbers": [{"number": "+41 44 123", "extension_digits": 2}]}},
            "is not a valid phone number",
        ),
        (
            {"lookup": {"main_numbers": [{"number": "+41 44 123 45 00", "extension_digits": 9}]}},
            "extension_digits = 9 is out of range",
        ),
        ({"connectors": {"type": "rest"}}, "[[connectors]] must be an array of tables"),
        ({"connectors": [{"type": "salesforce"}]}, "[[connectors]] #1 type = 'salesforce' is invalid"),
        ({"connectors": [{**REST, "name": "My CRM"}]}, "[[connectors]] #1 name = 'My CRM' is invalid"),
        ({"connectors": [REST, REST]}, '[[connectors]] name "rest" is used twice'),
        ({"connectors": [{**REST, "colour": "red"}]}, '[[connectors]] "rest" colour is not a known setting'),
        ({"connectors": [{"type": "rest"}]}, '[[connectors]] "rest" url is missing'),
        ({"connectors": [{**REST, "url": "ftp://crm"}]}, "is invalid: use a URL starting with http:// or https://"),
        ({"connectors": [{**REST, "url": "https://user:pw@crm.example.com/"}]}, "must not contain a user name"),
        ({"connectors": [{**REST, "method": "put"}]}, 'method = "put" is invalid'),
        ({"connectors": [{**REST, "method": "get"}]}, "url has no placeholder for the number"),
        ({"connectors": [{**REST, "token_header": "X Token"}]}, "is not an HTTP header name"),
        ({"connectors": [{**REST, "token_env": "RINGBOARD_TEST_UNSET"}]}, "RINGBOARD_TEST_UNSET is not set or empty"),
        ({"connectors": [{**REST, "token_file": "/nonexistent/token"}]}, "cannot be read"),
        (
            {"connectors": [{**REST, "token_file": "/a", "token_env": "B"}]},
            "sets both token_file and token_env: keep one",
        ),
        ({"connectors": [{**REST, "logo": "https://crm.example.com/logo.png"}]}, "must be a path served by the agent"),
        ({"connectors": [{"type": "ldap", "url": "ldap://dc1"}]}, '[[connectors]] "ldap" base_dn is missing'),
        (
            {"connectors": [{"type": "ldap", "url": "http://dc1", "base_dn": "dc=x"}]},
            "use a URL starting with ldap:// or ldaps://",
        ),
        (
            {"connectors": [{"type": "ldap", "url": "ldap://dc1", "base_dn": "dc=x", "filter": "objectClass=*"}]},
            "must be an LDAP filter in parentheses",
        ),
        (
            {"connectors": [{"type": "ldap", "url": "ldap://dc1", "base_dn": "dc=x", "phone_attributes": []}]},
            "phone_attributes must list LDAP attribute names",
        ),
        (
            {"connectors": [{"type": "carddav", "url": "https://dav", "contact_url": "https://dav/contacts"}]},
            'contact_url = "https://dav/contacts" has no placeholder',
        ),
        (
            {"connectors": [{"type": "carddav", "url": "https://dav", "sync_minutes": 0}]},
            "sync_minutes = 0 is out of range",
        ),
        ({"connectors": [{"type": "addressbook", "demo": "yes"}]}, "demo must be true or false"),
    ],
)
def test_invalid_value_names_key(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_lookup_settings(raw)
    assert expected in str(error.value)

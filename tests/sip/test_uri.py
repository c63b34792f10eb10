"""SIP and tel URIs, name-addr values and the remote party they present."""

from __future__ import annotations

import pytest

from sip.model import RemoteParty
from sip.uri import UriError, parse_name_addr, parse_params, parse_uri, remote_party_from_uri

# parse_uri ------------------------------------------------------------------------------


def test_uri_sip_parts():
    uri = parse_uri("SIP:alice:secret@PBX.example.com:5062;transport=TCP;lr?Subject=hi")

    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.host == "PBX.example.com"
    assert uri.port == 5062
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == "Subject=hi"


def test_uri_sips_ipv6_host():
    uri = parse_uri("sips:201@[2001:db8::10]:5061")

    assert uri.scheme == "sips"
    assert uri.host == "[2001:db8::10]"
    assert uri.port == 5061


def test_uri_user_percent_decoded():
    assert parse_uri("sip:%2B41441234567@example.com").user == "+41441234567"


def test_uri_user_phone_subscriber_params():
    uri = parse_uri("sip:0441234567;phone-context=+41@pbx.example.com;user=phone")

    assert uri.user == "0441234567;phone-context=+41"
    assert uri.host == "pbx.example.com"
    assert uri.params == {"user": "phone"}


def test_uri_tel_number():
    uri = parse_uri("tel:+41-44-123-45-67;ext=12")

    assert uri.scheme == "tel"
    assert uri.user == "+41-44-123-45-67"
    assert uri.host is None
    assert uri.params == {"ext": "12"}


def test_uri_without_user():
    assert parse_uri("sip:example.net").user is None
    assert parse_uri("sip:192.0.2.111:5060").port == 5060


def test_uri_empty_user():
    uri = parse_uri("sip:@example.net")

    assert uri.user == ""
    assert uri.host == "example.net"


def test_uri_scheme_less_target():
    uri = parse_uri("**201@192.0.2.10:5060")

    assert uri.scheme == "sip"
    assert uri.user == "**201"
    assert uri.port == 5060


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://example.com/", "unsupported URI scheme"),
        ("example.com", "no scheme"),
        ("sip:alice@", "invalid host"),
        ("sip:alice@example.com:70000", "invalid port"),
        ("tel:", "no number"),
    ],
)
def test_uri_invalid_rejected(text, reason):
    with pytest.raises(UriError, match=reason):
        parse_uri(text)


# parse_name_addr and parse_params ---------------------------------------------------------


def test_name_addr_escaped_display():
    value = parse_name_addr('"Al \\"the\\" Caller \\\\"   <sip:+41441234567@example.com> ; tag = 28from')

    assert value.display == 'Al "the" Caller \\'
    assert value.uri == "sip:+41441234567@example.com"
    assert value.tag == "28from"


def test_name_addr_unquoted_display():
    value = parse_name_addr("Bob Example <sip:bob@example.com>;tag=b1")

    assert value.display == "Bob Example"
    assert value.tag == "b1"


def test_name_addr_no_space_before_bracket():
    value = parse_name_addr('"uas"<sip:uas@192.0.2.5:5060>')

    assert value.display == "uas"
    assert value.uri == "sip:uas@192.0.2.5:5060"


def test_name_addr_colon_and_comma_in_quotes():
    value = parse_name_addr('"Direct: +41, desk" <sip:+41441234567@example.com>')

    assert value.display == "Direct: +41, desk"


def test_name_addr_utf8_display():
    assert parse_name_addr('"Zürich Empfang" <sip:100@example.com>').display == "Zürich Empfang"


def test_addr_spec_header_params():
    value = parse_name_addr("sip:alice@example.com;user=phone;tag=a1")

    assert value.display is None
    assert value.uri == "sip:alice@example.com"
    assert value.params == {"user": "phone", "tag": "a1"}


def test_name_addr_uri_params_kept():
    value = parse_name_addr("<sip:207@192.0.2.10;user=phone>;tag=2870350033")

    assert value.uri == "sip:207@192.0.2.10;user=phone"
    assert value.params == {"tag": "2870350033"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty name-addr"),
        ('"unterminated <sip:a@b>', "unterminated quoted string"),
        ('"Name" sip:a@b', "expected <uri> after the display name"),
        ("<sip:a@b", "'<' without '>'"),
        ("<sip:a@b> junk", "unexpected 'junk'"),
    ],
)
def test_name_addr_invalid_rejected(text, reason):
    with pytest.raises(UriError, match=reason):
        parse_name_addr(text)


def test_params_spacing_quotes_and_repeats():
    params = parse_params(' ; Cause = 200 ; text="Call ; completed" ; flag ; cause=9 ;')

    assert params == {"cause": "200", "text": "Call ; completed", "flag": None}


# remote_party_from_uri --------------------------------------------------------------------


def test_party_sip_number():
    party = remote_party_from_uri("sip:+41441234567@192.0.2.10", "Alice Example")

    assert party == RemoteParty(
        number="+41441234567", display_name="Alice Example", uri="sip:+41441234567@192.0.2.10"
    )


def test_party_tel_number():
    assert remote_party_from_uri("tel:+41441234567", None).number == "+41441234567"


def test_party_user_phone_number():
    party = remote_party_from_uri("sip:0441234567;phone-context=+41@example.com;user=phone", None)

    assert party.number == "0441234567"
    assert party.withheld is False


def test_party_name_as_number():
    assert remote_party_from_uri("sip:alice@example.com", None).number == "alice"


@pytest.mark.parametrize(
    "uri",
    [
        "sip:anonymous@anonymous.invalid",
        "sip:Anonymous@localhost",
        "sip:invalid@192.0.2.10",
        "sip:unknown@example.com",
        "sip:example.net",
        "sip:@example.net",
        "sip:201@anonymous.invalid",
    ],
)
def test_party_withheld_uri(uri):
    party = remote_party_from_uri(uri, "anonymous")

    assert party.withheld is True
    assert party.number is None
    assert party.display_name is None
    assert party.uri == uri


def test_party_withheld_keeps_real_display():
    party = remote_party_from_uri("sip:anonymous@anonymous.invalid", "Front Desk")

    assert party.withheld is True
    assert party.display_name == "Front Desk"


def test_party_anonymous_display_without_uri():
    party = remote_party_from_uri(None, "Anonymous")

    assert party.withheld is True
    assert party.number is None
    assert party.display_name is None


def test_party_display_only():
    party = remote_party_from_uri(None, "  Carol  ")

    assert party == RemoteParty(display_name="Carol")


def test_party_unreadable_uri_kept():
    party = remote_party_from_uri("urn:service:sos", "Emergency")

    assert party.number is None
    assert party.uri == "urn:service:sos"
    assert party.display_name == "Emergency"
    assert party.withheld is False


def test_party_invalid_utf8_display_replaced():
    party = remote_party_from_uri("sip:100@example.com", "Caf\udce9")

    assert party.display_name == "Caf\ufffd"

"""Digest authentication: RFC 7616 and RFC 2617 test vectors, challenge parsing, reuse."""

import dataclasses

import pytest

from sip.digest import (
    Challenge,
    Credentials,
    DigestClient,
    DigestError,
    authorization_value,
    compute_response,
    first_supported,
    parse_auth_params,
    parse_challenge,
)

# RFC 7616 §3.9.1: the credentials for one request, computed with MD5 and with SHA-256.
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
MUFASA = Credentials("Mufasa", "Circle of Life")


def test_rfc7616_md5_vector():
    challenge = parse_challenge(RFC7616_CHALLENGE)
    response = compute_response(
        challenge, MUFASA, "GET", "/dir/index.html", cnonce=RFC7616_CNONCE, nc=1, qop="auth"
    )
    assert response == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector():
    challenge = dataclasses.replace(parse_challenge(RFC7616_CHALLENGE), algorithm="SHA-256")
    response = compute_response(
        challenge, MUFASA, "GET", "/dir/index.html", cnonce=RFC7616_CNONCE, nc=1, qop="auth"
    )
    assert response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc2617_vector():
    # RFC 2617 §3.5 spells the password with a capital O.
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    response = compute_response(
        challenge, Credentials("Mufasa", "Circle Of Life"), "GET", "/dir/index.html", cnonce="0a4f113b", nc=1, qop="auth"
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_challenge_fields_parsed():
    challenge = parse_challenge(RFC7616_CHALLENGE + ", stale=TRUE, userhash=true")
    assert challenge.realm == "http-auth@example.org"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert challenge.stale is True
    assert challenge.userhash is True


def test_challenge_quoted_escapes():
    challenge = parse_challenge(r'Digest realm="a \"quoted\", realm", nonce="n,1"')
    assert challenge.realm == 'a "quoted", realm'
    assert challenge.nonce == "n,1"
    assert challenge.algorithm == "MD5"


@pytest.mark.parametrize(
    "value",
    ['Basic realm="x"', 'Digest realm="x"', 'Digest nonce="x"', "Digest realm"],
)
def test_bad_challenges_rejected(value):
    with pytest.raises(DigestError):
        parse_challenge(value)


def test_first_supported_skips_unknown_algorithm():
    values = [
        'Digest realm="r", nonce="a", algorithm=SHA3-999',
        'Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="c", algorithm=MD5, qop="auth"',
    ]
    chosen = first_supported(values)
    assert chosen is not None
    assert chosen.nonce == "b"


def test_authorization_without_qop_uses_rfc2069_form():
    challenge = Challenge(realm="pbx", nonce="abc")
    value = authorization_value(challenge, MUFASA, "SUBSCRIBE", "sip:201@pbx", cnonce="c", nc=1)
    params = parse_auth_params(value.removeprefix("Digest "))
    assert "qop" not in params
    assert "nc" not in params
    expected = compute_response(challenge, MUFASA, "SUBSCRIBE", "sip:201@pbx", cnonce="c", nc=1, qop=None)
    assert params["response"] == expected


def test_userhash_hides_user_name():
    challenge = Challenge(realm="pbx", nonce="abc", algorithm="SHA-256", qop=("auth",), userhash=True)
    params = parse_auth_params(
        authorization_value(challenge, MUFASA, "REGISTER", "sip:pbx", cnonce="c", nc=1).removeprefix("Digest ")
    )
    assert params["username"] != "Mufasa"
    assert len(params["username"]) == 64
    assert params["userhash"] == "true"


def test_sess_algorithm_differs_from_plain():
    plain = Challenge(realm="pbx", nonce="n", algorithm="MD5", qop=("auth",))
    session = dataclasses.replace(plain, algorithm="MD5-sess")
    args = dict(cnonce="c", nc=1, qop="auth")
    assert compute_response(plain, MUFASA, "SUBSCRIBE", "sip:x", **args) != compute_response(
        session, MUFASA, "SUBSCRIBE", "sip:x", **args
    )


def test_auth_int_hashes_body():
    challenge = Challenge(realm="pbx", nonce="n", qop=("auth-int",))
    args = dict(cnonce="c", nc=1, qop="auth-int")
    empty = compute_response(challenge, MUFASA, "NOTIFY", "sip:x", **args)
    with_body = compute_response(challenge, MUFASA, "NOTIFY", "sip:x", body=b"<x/>", **args)
    assert empty != with_body


def test_client_counts_nonce_uses_per_realm():
    client = DigestClient(MUFASA, cnonce_factory=lambda: "fixed")
    assert client.headers_for("SUBSCRIBE", "sip:201@pbx") == []
    client.learn("Proxy-Authenticate", ['Digest realm="pbx", nonce="n1", qop="auth"'])
    first = client.headers_for("SUBSCRIBE", "sip:201@pbx")
    second = client.headers_for("SUBSCRIBE", "sip:202@pbx")
    assert [name for name, _ in first] == ["Proxy-Authorization"]
    assert parse_auth_params(first[0][1].removeprefix("Digest "))["nc"] == "00000001"
    assert parse_auth_params(second[0][1].removeprefix("Digest "))["nc"] == "00000002"

    client.learn("Proxy-Authenticate", ['Digest realm="pbx", nonce="n2", qop="auth", stale=true'])
    renewed = parse_auth_params(client.headers_for("SUBSCRIBE", "sip:201@pbx")[0][1].removeprefix("Digest "))
    assert renewed["nonce"] == "n2"
    assert renewed["nc"] == "00000001"


def test_password_never_in_repr():
    assert "Circle" not in repr(MUFASA)
    assert "Circle" not in repr(DigestClient(MUFASA).credentials)

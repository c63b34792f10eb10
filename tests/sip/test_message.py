"""The SIP message parser, stream framer and builders."""

from __future__ import annotations

import pytest

from sip.message import (
    COMPACT_FORMS,
    MAX_HEADER_COUNT,
    MAX_MESSAGE_BYTES,
    Headers,
    Request,
    Response,
    SipParseError,
    StreamParser,
    build_request,
    build_response,
    is_keepalive,
    parse_message,
    parse_via,
)

NOTIFY = (
    b"NOTIFY sip:ringboard@192.0.2.50:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.11;branch=z9hG4bK-0\r\n"
    b"From: <sip:201@pbx.example.com>;tag=pbx-1\r\n"
    b"To: <sip:ringboard@pbx.example.com>;tag=rb-1\r\n"
    b"Call-ID: sub-1@192.0.2.50\r\n"
    b"CSeq: 7 NOTIFY\r\n"
    b"Event: dialog\r\n"
    b"Content-Type: application/dialog-info+xml\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"<xml>"
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bK-s\r\n"
    b"From: <sip:ringboard@pbx.example.com>;tag=rb-1\r\n"
    b"To: <sip:201@pbx.example.com>;tag=pbx-1\r\n"
    b"Call-ID: sub-1@192.0.2.50\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"Content-Length:     0\r\n"
    b"\r\n"
)


def with_header(message: bytes, line: bytes) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n\r\n" + body


# parse_message ------------------------------------------------------------------------


def test_parse_request_fields():
    request = parse_message(NOTIFY)

    assert isinstance(request, Request)
    assert request.method == "NOTIFY"
    assert request.uri == "sip:ringboard@192.0.2.50:5070"
    assert request.call_id == "sub-1@192.0.2.50"
    assert request.cseq == (7, "NOTIFY")
    assert request.from_tag == "pbx-1"
    assert request.to_tag == "rb-1"
    assert request.top_via.host == "192.0.2.10"
    assert request.top_via.port == 5060
    assert request.top_via.branch == "z9hG4bK-1"
    assert request.body == b"<xml>"


def test_parse_response_fields():
    response = parse_message(OK)

    assert isinstance(response, Response)
    assert response.status == 200
    assert response.reason == "OK"
    assert response.cseq == (1, "SUBSCRIBE")
    assert response.body == b""


def test_parse_custom_reason_phrase():
    data = OK.replace(b"200 OK", b"100 trying -- your call is important to us")
    response = parse_message(data)

    assert response.status == 100
    assert response.reason == "trying -- your call is important to us"


def test_parse_content_length_cuts_body():
    request = parse_message(NOTIFY + b"trailing bytes")

    assert request.body == b"<xml>"


def test_parse_short_body_rejected():
    with pytest.raises(SipParseError, match="shorter than Content-Length 5"):
        parse_message(NOTIFY[:-2])


def test_parse_no_content_length():
    data = NOTIFY.replace(b"Content-Length: 5\r\n", b"") + b" and more"

    assert parse_message(data).body == b"<xml> and more"


def test_parse_leading_crlf_skipped():
    assert parse_message(b"\r\n\r\n" + NOTIFY).method == "NOTIFY"


def test_parse_bare_lf_line_endings():
    request = parse_message(NOTIFY.replace(b"\r\n", b"\n"))

    assert request.call_id == "sub-1@192.0.2.50"
    assert request.body == b"<xml>"


def test_parse_keepalive_rejected():
    for data in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00"):
        assert is_keepalive(data)
        with pytest.raises(SipParseError, match="keep-alive"):
            parse_message(data)
    assert not is_keepalive(b"")
    assert not is_keepalive(NOTIFY)


def test_parse_size_limit():
    data = with_header(NOTIFY, b"X-Padding: " + b"a" * MAX_MESSAGE_BYTES)

    with pytest.raises(SipParseError, match="above the limit"):
        parse_message(data)


def test_parse_header_count_limit():
    many = b"\r\n".join(b"X-Filler: %d" % index for index in range(MAX_HEADER_COUNT))

    with pytest.raises(SipParseError, match=f"more than {MAX_HEADER_COUNT} header lines"):
        parse_message(with_header(NOTIFY, many))


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_parse_missing_required_header(name):
    lines = [line for line in OK.split(b"\r\n") if not line.startswith(name.encode() + b":")]

    with pytest.raises(SipParseError, match=f"missing {name} header"):
        parse_message(b"\r\n".join(lines))


@pytest.mark.parametrize(
    ("start_line", "reason"),
    [
        (b"NOTIFY sip:ringboard@192.0.2.50 SIP/3.0", "invalid request line"),
        (b"NOTIFY", "invalid request line"),
        (b"SIP/2.0 99 Odd", "invalid status line"),
        (b"SIP/2.0 OK", "invalid status line"),
    ],
)
def test_parse_invalid_start_line(start_line, reason):
    data = start_line + OK[OK.index(b"\r\n"):]

    with pytest.raises(SipParseError, match=reason):
        parse_message(data)


def test_parse_invalid_header_line():
    with pytest.raises(SipParseError, match="invalid header line"):
        parse_message(with_header(OK, b"this line has no colon"))


def test_parse_invalid_cseq():
    with pytest.raises(SipParseError, match="invalid CSeq"):
        parse_message(OK.replace(b"CSeq: 1 SUBSCRIBE", b"CSeq: one SUBSCRIBE"))


def test_parse_conflicting_content_length():
    with pytest.raises(SipParseError, match="conflicting Content-Length"):
        parse_message(with_header(NOTIFY, b"l: 4"))


def test_parse_invalid_content_length():
    with pytest.raises(SipParseError, match="invalid Content-Length"):
        parse_message(NOTIFY.replace(b"Content-Length: 5", b"Content-Length: five"))


def test_parse_folded_header():
    data = OK.replace(b"CSeq: 1 SUBSCRIBE", b"CSeq:\r\n  1\r\n\tSUBSCRIBE")

    assert parse_message(data).cseq == (1, "SUBSCRIBE")


def test_parse_invalid_utf8_kept():
    data = OK.replace(b"<sip:ringboard@", b'"Caf\xe9" <sip:ringboard@')
    response = parse_message(data)

    assert "\udce9" in response.headers.get("From")


# Headers ----------------------------------------------------------------------------


def test_headers_compact_forms_expanded():
    headers = Headers((letter, f"value of {letter}") for letter in COMPACT_FORMS)

    for letter, name in COMPACT_FORMS.items():
        assert headers.get(name) is not None
        assert headers.get(letter) == headers.get(name)
        assert name in headers
        assert letter.upper() in headers


def test_headers_case_insensitive():
    headers = Headers([("cAlL-iD", "abc"), ("X-Custom", "1")])

    assert headers.get("CALL-ID") == "abc"
    assert headers.get("i") == "abc"
    assert headers.items() == [("Call-ID", "abc"), ("X-Custom", "1")]
    assert "x-custom" in headers
    assert "Subject" not in headers
    assert headers.get("Subject") is None
    assert headers.get_all("Subject") == []


def test_headers_list_split_respects_quotes():
    headers = Headers(
        [
            ("Contact", '"Smith, Anna" <sip:anna@example.com;x=a,b>;q=0.5, <sip:bob@example.com>'),
            ("m", "sip:carol@example.com"),
        ]
    )

    assert headers.get_all("Contact") == [
        '"Smith, Anna" <sip:anna@example.com;x=a,b>;q=0.5',
        "<sip:bob@example.com>",
        "sip:carol@example.com",
    ]
    assert headers.get("Contact") == '"Smith, Anna" <sip:anna@example.com;x=a,b>;q=0.5'


def test_headers_non_list_not_split():
    challenge = 'Digest realm="pbx", nonce="abc", algorithm=MD5'
    headers = Headers([("WWW-Authenticate", challenge), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")])

    assert headers.get_all("WWW-Authenticate") == [challenge]
    assert headers.get("Date") == "Sat, 13 Nov 2010 23:29:00 GMT"


def test_headers_record_route_order():
    headers = Headers([("Record-Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Record-Route", "<sip:p3;lr>")])

    assert headers.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]


# Via ----------------------------------------------------------------------------


def test_via_spacing_and_params():
    via = parse_via("SIP  /  2.0 / udp  192.0.2.2:5062 ; branch = z9hG4bK-x ; rport ; received=198.51.100.1")

    assert via.transport == "UDP"
    assert via.host == "192.0.2.2"
    assert via.port == 5062
    assert via.params == {"branch": "z9hG4bK-x", "rport": None, "received": "198.51.100.1"}
    assert via.branch == "z9hG4bK-x"


def test_via_ipv6_host():
    via = parse_via("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK-6")

    assert via.transport == "TLS"
    assert via.host == "[2001:db8::1]"
    assert via.port == 5061


@pytest.mark.parametrize(
    "value",
    ["SIP/2.0/UDP", "HTTP/1.1/TCP host", "SIP/3.0/UDP host", "SIP/2.0/UDP host:99999", "garbage"],
)
def test_via_invalid_rejected(value):
    with pytest.raises(SipParseError, match="invalid Via"):
        parse_via(value)


# StreamParser -------------------------------------------------------------------------


def test_stream_byte_by_byte():
    parser = StreamParser()
    messages = []
    for index in range(len(NOTIFY)):
        messages.extend(parser.feed(NOTIFY[index:index + 1]))

    assert len(messages) == 1
    assert messages[0].body == b"<xml>"


def test_stream_several_per_segment():
    parser = StreamParser()

    messages = parser.feed(NOTIFY + OK + NOTIFY[:30])
    rest = parser.feed(NOTIFY[30:])

    assert [type(message) for message in messages] == [Request, Response]
    assert messages[1].headers.get("Content-Length") == "0"
    assert [message.method for message in rest] == ["NOTIFY"]


def test_stream_keepalives_skipped():
    parser = StreamParser()

    assert parser.feed(b"\r\n\r\n") == []
    assert parser.feed(b"\r\n") == []
    messages = parser.feed(b"\r\n\r\n" + OK + b"\r\n\r\n" + OK)

    assert [message.status for message in messages] == [200, 200]


def test_stream_missing_content_length_is_zero():
    bare = OK.replace(b"Content-Length:     0\r\n", b"")

    messages = StreamParser().feed(bare + bare)

    assert len(messages) == 2


def test_stream_error_is_final():
    parser = StreamParser()

    with pytest.raises(SipParseError, match="invalid request line"):
        parser.feed(b"GARBAGE\r\n\r\n")
    with pytest.raises(SipParseError, match="stream already failed"):
        parser.feed(OK)


def test_stream_headers_too_long():
    parser = StreamParser()
    parser.feed(b"NOTIFY sip:a@b SIP/2.0\r\n")

    with pytest.raises(SipParseError, match="no end of headers"):
        parser.feed(b"X-Padding: " + b"a" * MAX_MESSAGE_BYTES)


def test_stream_body_too_long():
    data = NOTIFY.replace(b"Content-Length: 5", b"Content-Length: %d" % MAX_MESSAGE_BYTES)

    with pytest.raises(SipParseError, match="above the limit"):
        StreamParser().feed(data)


# Builders ---------------------------------------------------------------------------


def test_build_request_round_trip():
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bK-b;rport"),
        ("From", "<sip:ringboard@pbx.example.com>;tag=rb-1"),
        ("To", "<sip:201@pbx.example.com>"),
        ("Call-ID", "sub-1@192.0.2.50"),
        ("CSeq", "1 SUBSCRIBE"),
        ("Event", "dialog"),
    ]

    data = build_request("SUBSCRIBE", "sip:201@pbx.example.com", headers, b"body")
    request = parse_message(data)

    assert data.startswith(b"SUBSCRIBE sip:201@pbx.example.com SIP/2.0\r\n")
    assert b"\r\nContent-Length: 4\r\n\r\nbody" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert request.headers.items()[:6] == headers
    assert request.body == b"body"


@pytest.mark.parametrize(
    ("method", "uri", "headers", "reason"),
    [
        ("SUB SCRIBE", "sip:a@b", [], "invalid SIP method"),
        ("SUBSCRIBE", "sip:a@b c", [], "invalid Request-URI"),
        ("SUBSCRIBE", "sip:a@b", [("Bad Name", "x")], "invalid header name"),
        ("SUBSCRIBE", "sip:a@b", [("Subject", "x\r\nInjected: 1")], "contains CR, LF or NUL"),
        ("SUBSCRIBE", "sip:a@b", [("Content-Length", "0")], "Content-Length is computed"),
    ],
)
def test_build_request_invalid(method, uri, headers, reason):
    with pytest.raises(ValueError, match=reason):
        build_request(method, uri, headers)


def test_build_response_copies_dialog_headers():
    request = parse_message(NOTIFY.replace(b";tag=rb-1", b""))

    data = build_response(request, 200, "OK", to_tag="rb-2", headers=[("Server", "Ringboard")])
    response = parse_message(data)

    assert isinstance(response, Response)
    assert (response.status, response.reason) == (200, "OK")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers.get("From") == request.headers.get("From")
    assert response.to_tag == "rb-2"
    assert response.call_id == request.call_id
    assert response.cseq == (7, "NOTIFY")
    assert response.headers.get("Server") == "Ringboard"
    assert response.body == b""
    assert [name for name, _ in response.headers.items()] == [
        "Via", "Via", "From", "To", "Call-ID", "CSeq", "Server", "Content-Length",
    ]


def test_build_response_keeps_existing_to_tag():
    request = parse_message(NOTIFY)

    response = parse_message(build_response(request, 481, "Call/Transaction Does Not Exist", to_tag="other"))

    assert response.to_tag == "rb-1"
    assert response.status == 481


def test_build_response_invalid_status():
    with pytest.raises(ValueError, match="invalid status code"):
        build_response(parse_message(NOTIFY), 700, "Nope")

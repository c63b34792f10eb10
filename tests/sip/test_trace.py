"""The trace reader: the SIP corpus's text format split into messages and documents."""

from __future__ import annotations

from sip.message import Request, parse_message
from sip.trace import SectionKind, read_trace, read_trace_file
from tests.sip.corpus import fixture_path


def test_trace_messages_parse():
    sections = read_trace_file(fixture_path("04-"))

    assert [section.kind for section in sections] == [SectionKind.MESSAGE, SectionKind.MESSAGE]
    first = sections[0]
    assert (first.label, first.sender, first.receiver) == ("1", "PBX", "observer")
    assert first.line == 13
    message = parse_message(first.data)
    assert isinstance(message, Request)
    assert message.method == "NOTIFY"
    assert len(message.body) == int(message.headers.get("Content-Length"))


def test_trace_title_comments_dropped():
    sections = read_trace_file(fixture_path("22-"))

    assert [(section.label, section.sender, section.receiver) for section in sections] == [
        ("A", "SBC", "PBX"),
        ("B", "SBC", "PBX"),
        ("C", "PBX", "SBC"),
        ("D", None, None),
    ]


def test_trace_bodies_are_documents():
    sections = read_trace_file(fixture_path("05-"))

    assert [section.kind for section in sections] == [SectionKind.DOCUMENT] * 4
    assert [section.title for section in sections][1] == "body v1 (ringing)"
    assert sections[0].data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"#" not in sections[0].data


def test_trace_bare_xml_file():
    (section,) = read_trace_file(fixture_path("02-"))

    assert (section.kind, section.line) == (SectionKind.DOCUMENT, 1)
    assert section.data == fixture_path("02-").read_bytes()


def test_trace_notes_and_other_sections():
    text = "leading text\n# note\n--- body empty ---\n# only a note\n--- hex dump ---\n48 45 50 33\n"

    empty, other = read_trace(text)

    assert (empty.kind, empty.data, empty.line) == (SectionKind.DOCUMENT, b"", 3)
    assert (other.kind, other.data) == (SectionKind.OTHER, b"48 45 50 33")


def test_trace_keeps_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"--- body broken ---\n<dialog-info>Z\xfcrich</dialog-info>\n")

    (section,) = read_trace_file(path)

    assert section.data == b"<dialog-info>Z\xfcrich</dialog-info>\n"


def test_trace_crlf_input_same_message():
    text = fixture_path("12-").read_text(encoding="utf-8")

    (lf,) = read_trace(text)
    (crlf,) = read_trace(text.replace("\n", "\r\n"))

    assert crlf.data == lf.data

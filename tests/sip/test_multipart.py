"""The multipart reader and RFC 4662 list notifications."""

from __future__ import annotations

import base64

import pytest

from sip.dialoginfo import DialogInfoError, RejectReason
from sip.multipart import MAX_PARTS, MultipartError, parse_multipart
from sip.resourcelist import parse_list_notification
from tests.sip.corpus import section

LIST_TYPE = 'multipart/related;type="application/rlmi+xml";start="<list@example.com>";boundary="b-1"'


def dialog_info(entity: str, version: int, dialogs: str = "") -> bytes:
    return (
        f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" '
        f'entity="{entity}">{dialogs}</dialog-info>'
    ).encode()


def list_body(*parts: tuple[str, str, bytes], boundary: bytes = b"b-1", line_end: bytes = b"\r\n") -> bytes:
    chunks = [b"preamble that readers ignore"]
    for content_type, content_id, body in parts:
        head = f"Content-Type: {content_type}\r\nContent-ID: <{content_id}>\r\n".encode().replace(b"\r\n", line_end)
        chunks.append(b"--" + boundary + line_end + head + line_end + body)
    chunks.append(b"--" + boundary + b"--" + line_end + b"epilogue")
    return line_end.join(chunks)


def rlmi_part() -> bytes:
    return section("16-", "RLMI part").body_bytes()


# Multipart ------------------------------------------------------------------------------


def test_multipart_parts_in_order():
    body = list_body(("text/plain", "a@x", b"first"), ("text/plain", "b@x", b"second\r\nline"))

    parts = parse_multipart(body, LIST_TYPE)

    assert [part.body for part in parts] == [b"first", b"second\r\nline"]
    assert [part.content_id for part in parts] == ["a@x", "b@x"]
    assert parts[0].content_type == "text/plain"


def test_multipart_lf_line_ends():
    body = list_body(("text/plain", "a@x", b"only LF"), line_end=b"\n")

    (part,) = parse_multipart(body, LIST_TYPE)

    assert part.body == b"only LF"
    assert part.content_id == "a@x"


def test_multipart_part_without_headers_is_text_plain():
    body = b"--b-1\r\n\r\nbare\r\n--b-1--\r\n"

    (part,) = parse_multipart(body, LIST_TYPE)

    assert (part.content_type, part.content_id, part.body) == ("text/plain", None, b"bare")


def test_multipart_base64_part_decoded():
    encoded = base64.encodebytes(b"<dialog-info/>")
    body = b"--b-1\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--b-1--"

    (part,) = parse_multipart(body, LIST_TYPE)

    assert part.body == b"<dialog-info/>"


def test_multipart_missing_close_keeps_parts():
    body = b"--b-1\r\nContent-Type: text/plain\r\n\r\ncut off"

    (part,) = parse_multipart(body, LIST_TYPE)

    assert part.body == b"cut off"


def test_multipart_part_limit():
    body = b"".join(b"--b-1\r\n\r\nx\r\n" for _ in range(MAX_PARTS + 1)) + b"--b-1--"

    with pytest.raises(MultipartError, match=f"more than {MAX_PARTS} parts"):
        parse_multipart(body, LIST_TYPE)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"--b-1\r\n\r\nx", "application/dialog-info+xml", "not multipart"),
        (b"--b-1\r\n\r\nx", "multipart/related", "no boundary parameter"),
        (b"--b-1\r\n\r\nx", "multipart/related;boundary=" + "b" * 71, "longer than 70"),
        (b"no delimiter here", LIST_TYPE, "no boundary 'b-1'"),
        (b"--b-1\r\nnot a header\r\n\r\nx\r\n--b-1--", LIST_TYPE, "invalid header line"),
        (b"--b-1\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b-1--", LIST_TYPE, "invalid base64"),
        (b"--b-1\r\nContent-Transfer-Encoding: x-gzip\r\n\r\nx\r\n--b-1--", LIST_TYPE, "not supported"),
    ],
)
def test_multipart_invalid_rejected(body, content_type, reason):
    with pytest.raises(MultipartError, match=reason):
        parse_multipart(body, content_type)


# List notifications -----------------------------------------------------------------------


def test_list_documents_per_resource():
    ringing = dialog_info(
        "sip:4605@example.com", 3, '<dialog id="d1" direction="recipient"><state>early</state></dialog>'
    )
    body = list_body(
        ("application/rlmi+xml", "list@example.com", rlmi_part()),
        ("application/dialog-info+xml", "part-4605@example.com", ringing),
        ("application/dialog-info+xml", "part-4607@example.com", dialog_info("sip:4607@example.com", 8)),
    )

    notification = parse_list_notification(body, LIST_TYPE)

    # Case 16: the list has 4605 and 4607; their call states are in the other parts.
    assert notification.listing.full_state is True
    assert [item.uri for item in notification.resources] == ["sip:4605@example.com", "sip:4607@example.com"]
    assert [item.name for item in notification.resources] == ["4605 Example", "4607 Example"]
    first, second = (item.document for item in notification.resources)
    assert [dialog.state for dialog in first.dialogs] == ["early"]
    assert (second.version, second.dialogs) == (8, [])
    assert all(item.error is None for item in notification.resources)


def test_list_root_is_first_part_without_start():
    body = list_body(("application/rlmi+xml", "list@example.com", rlmi_part()))

    notification = parse_list_notification(body, 'multipart/related;type="application/rlmi+xml";boundary=b-1')

    assert len(notification.listing.resources) == 2


def test_list_bad_part_fails_alone():
    body = list_body(
        ("application/rlmi+xml", "list@example.com", rlmi_part()),
        ("application/dialog-info+xml", "part-4605@example.com", b"<dialog-info version='1'"),
    )

    notification = parse_list_notification(body, LIST_TYPE)

    broken, missing = notification.resources
    assert broken.document is None
    assert broken.error.reason == RejectReason.TRUNCATED
    assert "resource sip:4605@example.com" in str(broken.error)
    assert missing.error.reason == RejectReason.MALFORMED
    assert "no body part with Content-ID 'part-4607@example.com'" in str(missing.error)


def test_list_terminated_instance_has_no_document():
    rlmi = (
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:list@example.com" version="3" fullState="false">'
        b'<resource uri="sip:4605@example.com"><instance id="i1" state="terminated" reason="noresource"/></resource>'
        b"</list>"
    )

    notification = parse_list_notification(list_body(("application/rlmi+xml", "list@example.com", rlmi)), LIST_TYPE)

    (item,) = notification.resources
    assert (item.state, item.document, item.error) == ("terminated", None, None)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"x", "application/dialog-info+xml", "is not multipart/related"),
        (b"nothing", LIST_TYPE, "unreadable list notification"),
        (list_body(("application/rlmi+xml", "other@example.com", b"<list/>")), LIST_TYPE, "no body part has the start"),
        (list_body(("text/plain", "list@example.com", b"x")), LIST_TYPE, "root part of the list notification is text/plain"),
        (list_body(("application/rlmi+xml", "list@example.com", section("16-", "malformed").body_bytes())), LIST_TYPE, "malformed XML"),
    ],
)
def test_list_invalid_rejected(body, content_type, reason):
    with pytest.raises(DialogInfoError, match=reason):
        parse_list_notification(body, content_type)

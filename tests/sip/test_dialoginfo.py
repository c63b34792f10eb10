"""The dialog-info and RLMI readers."""

from __future__ import annotations

import pytest

from sip.dialoginfo import MAX_DOCUMENT_BYTES, DialogInfoError, RejectReason, Replaces, parse_dialog_info, parse_rlmi
from tests.sip.corpus import fixture_path, section


def document(dialogs: str, root: str = 'version="1" state="full" entity="sip:201@pbx.example.com"') -> bytes:
    return (
        f'<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" {root}>'
        f"{dialogs}</dialog-info>"
    ).encode()


def test_read_rfc_minimal_dialog():
    info = parse_dialog_info(section("01-", "msg 1").message_bytes().partition(b"\r\n\r\n")[2])

    assert (info.version, info.state, info.entity) == (0, "full", "sip:alice@example.com")
    (dialog,) = info.dialogs
    assert dialog.id == "d-0001"
    assert dialog.call_id == "call-0001@192.0.2.21"
    assert dialog.local_tag == "lt-0001"
    assert dialog.remote_tag is None
    assert dialog.direction == "initiator"
    assert dialog.state == "trying"
    assert dialog.remote_identity is None
    assert info.warnings == []


def test_read_partial_with_replaces():
    info = parse_dialog_info(fixture_path("02-").read_bytes())

    assert (info.version, info.state) == (5, "partial")
    old, new = info.dialogs
    assert (old.id, old.state, old.state_event) == ("d-old", "terminated", "replaced")
    assert new.replaces == Replaces("call-A@192.0.2.21", "lt-A", "rt-A")
    assert new.referred_by == "sip:bob@example.net"
    assert new.remote_identity == "sip:carol@example.net"
    assert new.remote_display == "Carol Example"
    assert new.remote_target == "sip:line3@192.0.2.44"
    assert new.local_target == "sip:alice@192.0.2.21"
    assert new.rendering is True


def test_read_pvalue_hold_any_order():
    info = parse_dialog_info(section("05-", "body v3").body_bytes())

    (dialog,) = info.dialogs
    assert dialog.state == "confirmed"
    assert dialog.rendering is False
    assert dialog.local_target == "sip:201@192.0.2.10:5060"


def test_read_identities_and_displays():
    info = parse_dialog_info(section("07-", "body A").body_bytes())

    (dialog,) = info.dialogs
    assert dialog.remote_identity == "sip:+41441234567@192.0.2.10"
    assert dialog.remote_display == "Alice Example"
    assert dialog.local_identity == "sip:201@192.0.2.10"
    assert dialog.local_display == "Front Desk"
    assert dialog.direction == "recipient"


def test_read_state_case_insensitive():
    body = document('<dialog id="a" direction="Recipient"><state event="Cancelled" code="487">Trying</state></dialog>')

    info = parse_dialog_info(body)

    (dialog,) = info.dialogs
    assert dialog.state == "trying"
    assert dialog.direction == "recipient"
    assert dialog.state_event == "cancelled"
    assert dialog.state_code == 487


def test_read_single_quotes_without_namespace():
    body = (
        b"<dialog-info version='4' state='partial'>"
        b"<dialog id='x' call-id='c1'><state>early</state></dialog></dialog-info>"
    )

    info = parse_dialog_info(body)

    assert (info.version, info.state, info.entity) == (4, "partial", None)
    assert [(dialog.id, dialog.call_id, dialog.state) for dialog in info.dialogs] == [("x", "c1", "early")]


def test_read_other_namespace_ignored():
    body = document(
        '<dialog id="a"><state>early</state><x:state xmlns:x="urn:example:ext">confirmed</x:state></dialog>'
    )

    (dialog,) = parse_dialog_info(body).dialogs
    assert dialog.state == "early"


@pytest.mark.parametrize("body", [b"", b"  \r\n", b"\n"])
def test_read_empty_body_is_idle(body):
    info = parse_dialog_info(body)

    assert info.version is None
    assert info.state == "full"
    assert info.dialogs == []


def test_read_self_closing_document():
    body = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:201@pbx"/>'

    info = parse_dialog_info(body)

    assert info.version == 3
    assert info.dialogs == []


def test_read_missing_version_warns():
    info = parse_dialog_info(document("", root='state="full"'))

    assert info.version is None
    assert info.warnings == ["no version attribute on <dialog-info>: the document cannot be ordered"]


def test_read_missing_id_uses_call_id():
    body = document('<dialog call-id="c9"><state>early</state></dialog><dialog><state>early</state></dialog>')

    info = parse_dialog_info(body)

    assert [dialog.id for dialog in info.dialogs] == ["c9", "#1"]


def test_read_bad_dialog_skipped():
    body = document(
        '<dialog id="no-state"/>'
        '<dialog id="odd"><state>ringing</state></dialog>'
        '<dialog id="good" direction="sideways"><state code="abc">early</state></dialog>'
    )

    info = parse_dialog_info(body)

    assert [dialog.id for dialog in info.dialogs] == ["good"]
    assert info.dialogs[0].direction is None
    assert info.dialogs[0].state_code is None
    assert len(info.warnings) == 4
    assert "'no-state' skipped: it has no <state>" in info.warnings[0]
    assert "'odd' skipped: state 'ringing'" in info.warnings[1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<dialog-info version='1' state='full'><dialog>", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"<presence version='1'/>", "root element is <presence>, expected <dialog-info>"),
        (b"<dialog-info version='one' state='full'/>", "invalid version 'one'"),
        (b"<dialog-info version='-1' state='full'/>", "invalid version '-1'"),
        (b"<dialog-info version='1' state='some'/>", "invalid state 'some'"),
    ],
)
def test_read_invalid_document_rejected(body, reason):
    with pytest.raises(DialogInfoError, match=reason):
        parse_dialog_info(body)


def test_read_entities_rejected():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<dialog-info version="1" state="full">&b;</dialog-info>'
    )

    with pytest.raises(DialogInfoError, match="XML feature not accepted"):
        parse_dialog_info(body)


def test_read_size_limit():
    body = document("<!--" + "x" * MAX_DOCUMENT_BYTES + "-->")

    with pytest.raises(DialogInfoError, match="above the limit"):
        parse_dialog_info(body)


def test_rlmi_duplicate_resource_warns():
    body = (
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:list@example.com" version="2" fullState="false">'
        b'<resource uri="sip:4605@example.com"><instance id="i1" state="active" cid="c1"/></resource>'
        b'<resource uri="sip:4605@example.com"><instance id="i2" state="terminated" reason="noresource"/></resource>'
        b"</list>"
    )

    listing = parse_rlmi(body)

    assert (listing.uri, listing.version, listing.full_state) == ("sip:list@example.com", 2, False)
    assert [resource.instances[0].id for resource in listing.resources] == ["i1"]
    assert listing.warnings == ["resource 'sip:4605@example.com' listed twice; the first entry is kept"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<dialog-info version='1' state='full'/>", "expected the RLMI <list>"),
        (b"<list fullState='true'/>", "missing version"),
        (b"<list version='1' fullState='maybe'/>", "invalid fullState"),
    ],
)
def test_rlmi_invalid_rejected(body, reason):
    with pytest.raises(DialogInfoError, match=reason):
        parse_rlmi(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<dialog-info version='1' state='full'><dialog id='a'>", RejectReason.TRUNCATED),
        (b"<dialog-info version='1' state='full'><dialog id='a", RejectReason.TRUNCATED),
        (b"<dialog-info version='1' state='full'><dialog></x></dialog-info>", RejectReason.MALFORMED),
        (b"<dialog-info version='1' state='full'>Z\xfcrich</dialog-info>", RejectReason.ENCODING),
        (b"<?xml version='1.0' encoding='UTF-8'?><dialog-info>\xff</dialog-info>", RejectReason.ENCODING),
        (b"<?xml version='1.0' encoding='x-unknown'?><dialog-info/>", RejectReason.ENCODING),
        (b"<dialog-info version='x' state='full'/>", RejectReason.INVALID),
        (b"<!--" + b"x" * MAX_DOCUMENT_BYTES + b"-->", RejectReason.TOO_LARGE),
        (
            b'<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b"<dialog-info version='1' state='full'>&b;</dialog-info>",
            RejectReason.FORBIDDEN,
        ),
        (b'<!DOCTYPE d SYSTEM "http://example.com/d.dtd"><dialog-info>&ext;</dialog-info>', RejectReason.MALFORMED),
    ],
)
def test_read_reject_reasons(body, reason):
    with pytest.raises(DialogInfoError) as caught:
        parse_dialog_info(body)

    assert caught.value.reason == reason


def test_read_declared_latin1_accepted():
    body = "<?xml version='1.0' encoding='ISO-8859-1'?><dialog-info version='1' state='full'>" \
        "<dialog id='a'><state>early</state><remote><identity display='Zürich'>sip:1@x</identity></remote>" \
        "</dialog></dialog-info>"

    info = parse_dialog_info(body.encode("latin-1"))

    assert info.dialogs[0].remote_display == "Zürich"


def test_read_utf16_with_bom_accepted():
    body = "<?xml version='1.0' encoding='UTF-16'?><dialog-info version='2' state='full'/>"

    info = parse_dialog_info(body.encode("utf-16"))

    assert info.version == 2

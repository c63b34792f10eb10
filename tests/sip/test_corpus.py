"""The SIP corpus cases, each checked against the conclusion its log row expects."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from sip.dialoginfo import DialogInfoError, parse_dialog_info, parse_rlmi
from sip.message import Request, Response, SipParseError, StreamParser, parse_message, parse_via
from sip.model import CallState, Confidence, Direction, EventKind, Outcome
from sip.profiles import PROFILES
from sip.tracker import CallTracker
from sip.uri import parse_name_addr, parse_params, parse_uri, remote_party_from_uri
from tests.sip.corpus import fixture_path, kamailio_bodies, section, sections

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tracker(extensions: list[str], pbx: str = "generic") -> CallTracker:
    counter = itertools.count(1)
    return CallTracker(extensions, PROFILES[pbx], id_factory=lambda: f"call-{next(counter)}")


def notify_body(prefix: str, title_start: str) -> bytes:
    message = parse_message(section(prefix, title_start).message_bytes())
    assert isinstance(message, Request)
    assert message.method == "NOTIFY"
    assert message.headers.get("Content-Type") == "application/dialog-info+xml"
    return message.body


def body(prefix: str, title_start: str) -> bytes:
    return section(prefix, title_start).body_bytes()


# Dialog-info cases ------------------------------------------------------------------


def test_case01_outgoing_attempt_trying():
    document = parse_dialog_info(notify_body("01-", "msg 1"))
    calls = tracker(["alice"])

    events = calls.apply("alice", document, at(0))

    # "alice has started an outgoing call; nobody answered or rang yet; the callee is unknown"
    assert [event.kind for event in events] == [EventKind.RINGING]
    call = events[0].call
    assert call.direction == Direction.OUTBOUND
    assert call.state == CallState.RINGING
    assert call.answered_at is None
    assert call.remote.number is None
    assert call.remote.withheld is False
    assert call.sip_call_id == "call-0001@192.0.2.21"


def test_case02_replaced_call_is_transferred():
    earlier = b"""<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="4" state="partial"
        entity="sip:alice@example.com">
      <dialog id="d-old" call-id="call-A@192.0.2.21" local-tag="lt-A" remote-tag="rt-A" direction="initiator">
        <state>confirmed</state>
        <remote><identity>sip:bob@example.net</identity></remote>
      </dialog>
    </dialog-info>"""
    document = parse_dialog_info(fixture_path("02-").read_bytes())
    calls = tracker(["alice"])
    calls.apply("alice", parse_dialog_info(earlier), at(0))

    events = calls.apply("alice", document, at(30))

    # "alice is now in a confirmed incoming call with Carol Example, referred by bob.
    # Mark call A as transferred, not as ended normally."
    assert [event.kind for event in events] == [EventKind.CONNECTED, EventKind.ENDED]
    new_call, old_call = events[0].call, events[1].call
    assert new_call.direction == Direction.INBOUND
    assert new_call.remote.number == "carol"
    assert new_call.remote.display_name == "Carol Example"
    assert new_call.sip_call_id == "call-B@192.0.2.33"
    assert old_call.sip_call_id == "call-A@192.0.2.21"
    assert old_call.outcome == Outcome.TRANSFERRED
    assert old_call.transferred_to == "carol"
    assert document.dialogs[1].referred_by == "sip:bob@example.net"
    assert [call.id for call in calls.active_calls()] == [new_call.id]


def test_case04_asterisk_busy_raises_no_popup():
    in_use = parse_dialog_info(notify_body("04-", "msg 1"))
    idle = parse_dialog_info(notify_body("04-", "msg 2"))
    calls = tracker(["103"], "asterisk")

    busy_events = calls.apply("103", in_use, at(0))
    idle_events = calls.apply("103", idle, at(60))

    # "extension 103 is busy (direction and other party unknown), then idle":
    # a call first seen confirmed raises no ringing popup.
    assert [event.kind for event in busy_events] == [EventKind.CONNECTED]
    busy = busy_events[0].call
    assert busy.direction == Direction.UNKNOWN
    assert busy.remote.number is None
    assert busy.answered_at is None
    assert [event.kind for event in idle_events] == [EventKind.ENDED]
    assert idle_events[0].call.outcome == Outcome.ANSWERED
    assert idle_events[0].call.confidence == Confidence.INFERRED
    assert calls.active_calls() == []


def test_case05_asterisk_ringing_then_hold():
    calls = tracker(["201"], "asterisk")
    kinds = []
    for seconds, title in enumerate(["body v0", "body v1", "body v2", "body v3"]):
        events = calls.apply("201", parse_dialog_info(body("05-", title)), at(seconds))
        kinds.append([event.kind for event in events])

    # "201: idle -> ringing (caller unknown) -> in call -> on hold"
    assert kinds == [[], [EventKind.RINGING], [EventKind.CONNECTED], [EventKind.HELD]]
    (call,) = calls.active_calls()
    assert call.state == CallState.HELD
    assert call.direction == Direction.INBOUND
    assert call.remote.number is None


def test_case07_asterisk_caller_identity():
    events = tracker(["201"], "asterisk").apply("201", parse_dialog_info(body("07-", "body A")), at(0))

    # "201 is ringing from +41441234567 (Alice Example)"
    assert [event.kind for event in events] == [EventKind.RINGING]
    remote = events[0].call.remote
    assert remote.number == "+41441234567"
    assert remote.display_name == "Alice Example"
    assert remote.withheld is False
    assert events[0].call.direction == Direction.INBOUND


def test_case07_asterisk_withheld_caller():
    events = tracker(["201"], "asterisk").apply("201", parse_dialog_info(body("07-", "body B")), at(0))

    # "201 is ringing from a withheld number"
    assert [event.kind for event in events] == [EventKind.RINGING]
    remote = events[0].call.remote
    assert remote.withheld is True
    assert remote.number is None
    assert remote.display_name is None


def test_case08_freeswitch_one_leg_keeps_others():
    other_leg = b"""<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="11" state="full"
        entity="sip:201@example.com">
      <dialog id="0a0a0a0a-0000-4000-8000-000000000001" direction="initiator">
        <state>confirmed</state>
        <remote><identity>sip:0449876543@example.com</identity></remote>
      </dialog>
    </dialog-info>"""
    calls = tracker(["201"], "freeswitch")
    calls.apply("201", parse_dialog_info(other_leg), at(0))

    events = calls.apply("201", parse_dialog_info(notify_body("08-", "msg 1")), at(5))

    # "201 is ringing from +41441234567 (Alice Example). Other legs of 201 are unaffected."
    assert [event.kind for event in events] == [EventKind.RINGING]
    remote = events[0].call.remote
    assert remote.number == "+41441234567"
    assert remote.display_name == "Alice Example"
    assert events[0].call.direction == Direction.INBOUND
    states = sorted(call.state for call in calls.active_calls())
    assert states == [CallState.CONNECTED, CallState.RINGING]


def test_case10_freeswitch_empty_document_is_idle():
    document = parse_dialog_info(notify_body("10-", "msg 1"))
    calls = tracker(["2050"], "freeswitch")

    events = calls.apply("2050", document, at(0))
    older = parse_dialog_info(notify_body("08-", "msg 1"))
    older_events = calls.apply("2050", older, at(1))

    # "2050 has no calls (idle)"; the version counter is not reset between refreshes,
    # so a document numbered below 817 on the same subscription is stale.
    assert document.version == 817
    assert document.dialogs == []
    assert events == []
    assert older.version == 12
    assert older_events == []
    assert calls.active_calls() == []


def test_case12_yealink_partial_answered_call():
    document = parse_dialog_info(notify_body("12-", "msg 1"))
    events = tracker(["1011"]).apply("1011", document, at(0))

    # "1011 is in an answered incoming call from 1010"; 1010 is an internal number.
    assert document.state == "partial"
    assert [event.kind for event in events] == [EventKind.CONNECTED]
    call = events[0].call
    assert call.remote.number == "1010"
    assert call.direction == Direction.INTERNAL
    assert call.answered_at == at(0)
    assert call.sip_call_id == "0_2561109579@192.0.2.31"


def test_case14_innovaphone_untrusted_direction():
    message = parse_message(section("14-", "msg 1").message_bytes())
    document = parse_dialog_info(message.body)
    # The document has no entity: the monitored user comes from the NOTIFY's From.
    extension = parse_uri(parse_name_addr(message.headers.get("From")).uri).user
    calls = tracker([extension], "innovaphone")

    events = calls.apply(extension, document, at(0))

    # "207 is ringing; the caller is 211", although the dialog's direction is initiator.
    assert document.entity is None
    assert extension == "207"
    assert [event.kind for event in events] == [EventKind.RINGING]
    call = events[0].call
    assert call.remote.number == "211"
    assert call.direction == Direction.INTERNAL
    assert call.direction != Direction.OUTBOUND


def test_case16_rlmi_list_resources():
    listing = parse_rlmi(body("16-", "RLMI part"))

    # "the list has 4605 and 4607 with active subscriptions; their call states are in
    # the other MIME parts"
    assert listing.full_state is True
    assert listing.version == 0
    assert [resource.uri for resource in listing.resources] == ["sip:4605@example.com", "sip:4607@example.com"]
    assert [resource.instances[0].state for resource in listing.resources] == ["active", "active"]
    assert [resource.instances[0].cid for resource in listing.resources] == [
        "part-4605@example.com",
        "part-4607@example.com",
    ]


def test_case16_malformed_rlmi_rejected():
    with pytest.raises(DialogInfoError, match="malformed XML"):
        parse_rlmi(body("16-", "malformed variant"))


def test_case17_kamailio_forking_appears_ended():
    calls = tracker(["bob"], "kamailio")
    results = []
    for seconds, title in enumerate(["body v1", "body v2", "body v3"]):
        results.append(calls.apply("bob", parse_dialog_info(body("17-", title)), at(seconds)))

    # From dialog-info alone: "bob answered alice and the call then appeared to end".
    assert [[event.kind for event in events] for events in results] == [
        [EventKind.RINGING],
        [EventKind.CONNECTED],
        [EventKind.ENDED],
    ]
    ended = results[2][0].call
    assert ended.outcome == Outcome.ANSWERED
    assert ended.remote.number == "alice"
    assert ended.remote.display_name is None
    assert ended.direction == Direction.INBOUND


def test_kamailio_log_answered_then_missed():
    calls = tracker(["201"], "kamailio")
    calls.new_subscription("201")
    results = []
    for seconds, notify in enumerate(kamailio_bodies()):
        results.append(calls.apply("201", parse_dialog_info(notify), at(seconds * 3)))

    # The first NOTIFY has no body (idle); then an answered and a missed call to 201.
    summary = [[(event.kind, event.call.outcome) for event in events] for events in results]
    assert summary == [
        [],
        [(EventKind.RINGING, None)],
        [(EventKind.CONNECTED, None)],
        [(EventKind.ENDED, Outcome.ANSWERED)],
        [(EventKind.RINGING, None)],
        [(EventKind.ENDED, Outcome.MISSED)],
    ]
    answered, missed = results[3][0].call, results[5][0].call
    assert answered.id != missed.id
    assert answered.confidence == Confidence.CERTAIN
    assert answered.duration_seconds == 3.0
    assert missed.confidence == Confidence.CERTAIN
    assert missed.remote.number == "+41441234567"
    assert missed.sip_call_id == "1-9344@127.0.0.1"
    assert calls.active_calls() == []


# SIP message cases --------------------------------------------------------------------


def test_case28_torture_invite():
    message = parse_message(section("28-", "msg 1").message_bytes())
    headers = message.headers

    # "INVITE from +41441234567 to 201; Call-ID torture-28@192.0.2.1; CSeq 9"
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert message.uri == "sip:201@pbx.example.com;unknownparam"
    assert message.call_id == "torture-28@192.0.2.1"
    assert message.cseq == (9, "INVITE")
    assert int(headers.get("Max-Forwards")) == 68
    assert message.body == b""

    sender = parse_name_addr(headers.get("From"))
    assert sender.display == 'Al "the" Caller \\'
    assert parse_uri(sender.uri).user == "+41441234567"
    assert message.from_tag == "28from"
    assert parse_uri(parse_name_addr(headers.get("To")).uri).user == "201"
    assert message.to_tag == "28to"

    vias = [parse_via(value) for value in headers.get_all("Via")]
    assert [(via.transport, via.host, via.branch) for via in vias] == [
        ("UDP", "192.0.2.2", "z9hG4bK-28a"),
        ("TCP", "edge.example.com", "z9hG4bK-28b"),
        ("UDP", "192.0.2.3", "z9hG4bK-28c"),
    ]
    assert message.top_via == vias[0]

    assert headers.get("Subject") == ""
    assert headers.get("X-Odd-Header") == "first part continued part"
    assert headers.get("X-Only-Separators") == ";;,,;;,;"
    assert headers.get("Content-Type") == "application/sdp"
    assert headers.get_all("Supported") == ["100rel", "timer"]

    contact = parse_name_addr(headers.get("Contact"))
    assert contact.display == "Zürich Empfang"
    assert contact.params == {"q": "0.5"}

    identities = [parse_name_addr(value) for value in headers.get_all("P-Asserted-Identity")]
    assert [parse_uri(identity.uri).scheme for identity in identities] == ["sip", "tel"]
    assert [parse_uri(identity.uri).user for identity in identities] == ["+41441234567", "+41441234567"]


def test_case19_cancel_with_two_reasons():
    cancel = parse_message(section("19-", "msg 1").message_bytes())
    terminated = parse_message(section("19-", "msg 3").message_bytes())

    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    assert cancel.to_tag is None
    assert cancel.headers.get_all("Reason") == ['SIP;cause=200;text="Call completed elsewhere"', "Q.850;cause=26"]
    protocol, _, params = cancel.headers.get("Reason").partition(";")
    assert protocol == "SIP"
    assert parse_params(params) == {"cause": "200", "text": "Call completed elsewhere"}
    assert isinstance(terminated, Response)
    assert terminated.status == 487
    assert terminated.cseq == (cancel.cseq[0], "INVITE")
    assert terminated.top_via.branch == cancel.top_via.branch


def test_case20_forwarded_call_headers():
    invite = parse_message(section("20-", "msg 1").message_bytes())
    diversion = parse_name_addr(invite.headers.get("Diversion"))

    # "call from +41441234567, originally for +41447654321, forwarded on no-answer to
    # +41791234567"
    assert parse_uri(invite.uri).user == "+41791234567"
    assert parse_uri(parse_name_addr(invite.headers.get("To")).uri).user == "+41447654321"
    assert parse_uri(diversion.uri).user == "+41447654321"
    assert diversion.params == {"reason": "no-answer", "privacy": "off", "counter": "1"}
    caller = parse_name_addr(invite.headers.get("P-Asserted-Identity"))
    assert remote_party_from_uri(caller.uri, caller.display).number == "+41441234567"
    assert len(invite.body) == 157


def test_case22_segmented_stream():
    stream = b"".join(section("22-", title).message_bytes() for title in ("msg A", "msg B", "msg C"))
    parser = StreamParser()
    messages = []
    for offset in range(0, len(stream), 248):
        messages.extend(parser.feed(stream[offset:offset + 248]))

    assert [message.uri for message in messages] == [
        "sip:699810@192.0.2.131:6060;transport=tcp",
        "sip:699818@192.0.2.131:6060;transport=tcp",
        "sip:40820@example.net",
    ]
    withheld, named, internal = messages

    # msg A: "incoming call from a withheld number to 699810"
    sender = parse_name_addr(withheld.headers.get("From"))
    asserted = parse_name_addr(withheld.headers.get("P-Asserted-Identity"))
    assert remote_party_from_uri(sender.uri, sender.display).withheld is True
    assert remote_party_from_uri(asserted.uri, asserted.display).withheld is True
    assert withheld.headers.get("Privacy") == "id"

    # msg B: "call from +41441234567 ('Цюрих, Офис-5')"
    asserted = parse_name_addr(named.headers.get("P-Asserted-Identity"))
    party = remote_party_from_uri(asserted.uri, asserted.display)
    assert party.number == "+41441234567"
    assert party.display_name == "Цюрих, Офис-5"

    # msg C: "internal call from 499701 (Bob Example) to 40820"
    asserted = parse_name_addr(internal.headers.get("P-Asserted-Identity"))
    party = remote_party_from_uri(asserted.uri, asserted.display)
    assert (party.number, party.display_name) == ("499701", "Bob Example")
    assert len(internal.headers.get_all("Via")) == 2
    assert len(internal.headers.get_all("History-Info")) == 2
    assert internal.headers.get("Content-Length") == "0"


def test_case22_status_line_with_payload():
    status_only = section("22-", "msg D").message_bytes()
    with pytest.raises(SipParseError, match="missing Via"):
        parse_message(status_only)

    headers = (
        b"Via: SIP/2.0/TCP 192.0.2.1:6060;branch=z9hG4bK-d\r\nFrom: <sip:a@example.net>;tag=1\r\n"
        b"To: <sip:b@example.net>;tag=2\r\nCall-ID: d@example.net\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    response = parse_message(status_only.split(b"\r\n")[0] + b"\r\n" + headers)
    assert isinstance(response, Response)
    assert response.status == 182
    assert response.reason == "Queued, avaya-cm-data=0001001000200010"


def test_case23_tcp_call_stream():
    stream = b"".join(item.message_bytes() for item in sections("23-"))
    parser = StreamParser()
    messages = []
    for offset in range(0, len(stream), 100):
        messages.extend(parser.feed(stream[offset:offset + 100]))

    # "101 called 201; it rang, was answered, and 201 hung up normally"
    summary = [message.method if isinstance(message, Request) else message.status for message in messages]
    assert summary == ["INVITE", 100, 180, 200, "ACK", "BYE", 200]
    invite, trying, _, answer, _, bye, _ = messages
    assert trying.to_tag == "1c342958875"
    assert len(invite.body) == 193
    assert len(answer.body) == 190
    assert (bye.from_tag, bye.to_tag) == (invite.to_tag or answer.to_tag, invite.from_tag)
    assert bye.headers.get("Reason") == 'Q.850 ;cause=16 ;text="local"'
    assert invite.top_via.params == {"branch": "z9hG4bKac1589375893", "alias": None}


def test_case27_hep_payload_options_answer():
    lines = fixture_path("27-").read_text(encoding="utf-8").split("\n")
    packet = bytes.fromhex(lines[lines.index("full packet hex:") + 1])
    payload = packet[packet.index(b"SIP/2.0 "):]

    response = parse_message(payload)

    # "an OPTIONS keepalive answered 200: no call event"
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.cseq == (215834489, "OPTIONS")
    assert parse_uri(parse_name_addr(response.headers.get("From")).uri).user is None


@pytest.mark.parametrize("prefix", ["01-", "04-", "08-", "10-", "12-", "14-"])
def test_notify_cases_parse(prefix):
    for item in sections(prefix):
        message = parse_message(item.message_bytes())
        assert isinstance(message, Request)
        assert message.method == "NOTIFY"
        assert message.headers.get("Event") == "dialog"
        assert len(message.body) == int(message.headers.get("Content-Length"))
        assert message.body.rstrip().endswith(b"</dialog-info>")

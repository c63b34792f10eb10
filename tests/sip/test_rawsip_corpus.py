"""The raw-SIP corpus cases, each checked against the conclusion its log row expects."""

from __future__ import annotations

from sip.hep import decode_hep
from sip.message import Request, StreamParser, parse_message
from sip.model import CallState, Confidence, Direction, EventKind, Outcome
from sip.raw.headers import read_invite
from tests.sip.corpus import fixture_path, section, sections
from tests.support.sipflows import at, engine, feed, kinds, request, response

# Case 17's parties: alice calls bob, whose two devices ring through a forking proxy.
ALICE = "<sip:alice@example.com>;tag=ft-alice"
BOB = "<sip:bob@example.com>"
FORK_CALL_ID = "fork-call-17@192.0.2.21"


def case_message(prefix: str, title_start: str) -> Request:
    message = parse_message(section(prefix, title_start).message_bytes())
    assert isinstance(message, Request)
    return message


def case_messages(prefix: str) -> list:
    return [parse_message(part.message_bytes()) for part in sections(prefix) if part.title.startswith("msg ")]


# Case 17 -----------------------------------------------------------------------------


def forked_call_to_bob() -> list:
    """alice's INVITE forked by the proxy to bob's two devices; device 1 answers."""
    invite = request("INVITE", "sip:bob@example.com", call_id=FORK_CALL_ID, from_=ALICE, to=BOB, cseq=1, vias=["alice1"])
    to_dev1 = request(
        "INVITE", "sip:bob@192.0.2.31", call_id=FORK_CALL_ID, from_=ALICE, to=BOB, cseq=1, vias=["proxy-d1", "alice1"],
    )
    to_dev2 = request(
        "INVITE", "sip:bob@192.0.2.32", call_id=FORK_CALL_ID, from_=ALICE, to=BOB, cseq=1, vias=["proxy-d2", "alice1"],
    )
    cancel_dev2 = request(
        "CANCEL", "sip:bob@192.0.2.32", call_id=FORK_CALL_ID, from_=ALICE, to=BOB, cseq=1, vias=["proxy-d2", "alice1"],
        headers=[("Reason", 'SIP;cause=200;text="Call completed elsewhere"')],
    )
    return [
        invite, to_dev1, to_dev2,
        response(180, to_dev1, to_tag="rt-dev1"),
        response(180, to_dev2, to_tag="rt-dev2"),
        response(180, invite, to_tag="rt-dev1"),
        response(200, to_dev1, to_tag="rt-dev1"),
        response(200, invite, to_tag="rt-dev1"),
        cancel_dev2,
        response(200, cancel_dev2, to_tag="rt-dev2"),
        response(487, to_dev2, to_tag="rt-dev2"),
    ]


def test_case17_raw_fork_answered_on_device_one():
    calls = engine(["bob"])
    events = feed(calls, forked_call_to_bob())

    assert kinds(events) == ["bob:ringing", "bob:connected"]
    live = calls.active_calls()
    assert len(live) == 1
    assert live[0].state == CallState.CONNECTED
    assert live[0].remote.number == "alice"
    assert live[0].sip_call_id == FORK_CALL_ID


def test_case17_raw_cancelled_device_sees_answer_elsewhere():
    calls = engine(["bob"], dids={"bob-dev2": "bob"})
    messages = forked_call_to_bob()
    # Only device 2's hop is seen: its CANCEL names why it stopped ringing.
    device_two = [messages[2], messages[4], messages[8], messages[10]]
    events = feed(calls, device_two)

    ended = events[-1].call
    assert ended.outcome == Outcome.ANSWERED_ELSEWHERE
    assert ended.confidence == Confidence.CERTAIN


# Case 19 -----------------------------------------------------------------------------


def ring_group_invite(cancel: Request) -> Request:
    """Rebuild the INVITE a CANCEL cancels: RFC 3261 §9.1 copies its URI, tags, Call-ID, CSeq number and Via."""
    lines = [f"INVITE {cancel.uri} SIP/2.0"]
    for name, value in cancel.headers.items():
        if name == "CSeq":
            value = f"{cancel.cseq[0]} INVITE"
        if name in ("Reason", "Content-Length"):
            continue
        lines.append(f"{name}: {value}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_case19_cancel_completed_elsewhere_not_missed():
    cancel, ok, terminated = case_messages("19-")
    invite = ring_group_invite(cancel)
    calls = engine(["110"])
    events = feed(calls, [invite, response(180, invite, to_tag="ph110tag"), cancel, ok, terminated])

    assert kinds(events) == ["110:ringing", "110:ended"]
    ended = events[-1].call
    assert ended.outcome == Outcome.ANSWERED_ELSEWHERE
    assert ended.outcome != Outcome.MISSED
    assert ended.confidence == Confidence.CERTAIN
    assert ended.remote.number == "+41441234567"
    assert ended.remote.display_name == "Alice Example"


def test_case19_cancel_without_reason_is_missed():
    cancel, ok, terminated = case_messages("19-")
    bare = parse_message(section("19-", "msg 1").message_bytes().replace(
        b'Reason: SIP;cause=200;text="Call completed elsewhere"\r\nReason: Q.850;cause=26\r\n', b""
    ))
    invite = ring_group_invite(cancel)
    calls = engine(["110"])
    events = feed(calls, [invite, bare, ok, terminated])

    ended = events[-1].call
    assert ended.outcome == Outcome.MISSED
    assert ended.outcome_reason == "caller_hangup"


def test_case19_cancel_of_unseen_invite_raises_nothing():
    calls = engine(["110"])
    assert feed(calls, case_messages("19-")) == []


# Case 20 -----------------------------------------------------------------------------


def test_case20_forwarded_call_shows_original_number():
    invite = case_message("20-", "msg 1")
    calls = engine(["201"], dids={"+41791234567": "201"})
    events = feed(calls, [invite])

    assert kinds(events) == ["201:ringing"]
    call = events[0].call
    assert call.remote.number == "+41441234567"
    assert call.called == "+41447654321"
    assert call.direction == Direction.INBOUND
    assert read_invite(invite).target_user == "+41791234567"


def test_case20_other_did_not_monitored():
    calls = engine(["201"], dids={"+41440000000": "201"})
    assert feed(calls, [case_message("20-", "msg 1")]) == []


# Case 22 -----------------------------------------------------------------------------


def test_case22_withheld_caller_to_699810():
    calls = engine(["699810"])
    events = feed(calls, [case_message("22-", "msg A")])

    call = events[0].call
    assert call.extension == "699810"
    assert call.direction == Direction.INBOUND
    assert call.remote.withheld is True
    assert call.remote.number is None


def test_case22_utf8_caller_name():
    calls = engine(["699818"])
    events = feed(calls, [case_message("22-", "msg B")])

    call = events[0].call
    assert call.remote.number == "+41441234567"
    assert call.remote.display_name == "Цюрих, Офис-5"
    assert call.remote.withheld is False


def test_case22_internal_call_with_history_info():
    calls = engine(["40820", "499701"])
    events = feed(calls, [case_message("22-", "msg C")])

    by_extension = {event.call.extension: event.call for event in events}
    assert by_extension["40820"].direction == Direction.INTERNAL
    assert by_extension["40820"].remote.number == "499701"
    assert by_extension["40820"].remote.display_name == "Bob Example"
    assert by_extension["40820"].called is None
    assert by_extension["499701"].direction == Direction.INTERNAL
    assert by_extension["499701"].remote.number == "40820"


def test_case22_segmented_stream_gives_same_calls():
    stream = b"".join(section("22-", title).message_bytes() for title in ("msg A", "msg B", "msg C"))
    parser = StreamParser()
    messages = []
    for start in range(0, len(stream), 248):
        messages.extend(parser.feed(stream[start:start + 248]))
    calls = engine(["699810", "699818", "40820"])
    events = feed(calls, messages)

    assert [event.call.extension for event in events] == ["699810", "699818", "40820"]


# Case 23 -----------------------------------------------------------------------------


def test_case23_answered_then_callee_hangs_up():
    calls = engine(["201"])
    events = feed(calls, case_messages("23-"))

    assert kinds(events) == ["201:ringing", "201:connected", "201:ended"]
    ended = events[-1].call
    assert ended.outcome == Outcome.ANSWERED
    assert ended.confidence == Confidence.CERTAIN
    assert ended.remote.number == "101"
    assert ended.direction == Direction.INTERNAL
    assert ended.answered_at == at(1.5)
    assert ended.ended_at == at(2.5)


def test_case23_caller_side_sees_outgoing_call():
    calls = engine(["101"])
    events = feed(calls, case_messages("23-"))

    assert kinds(events) == ["101:ringing", "101:connected", "101:ended"]
    assert events[-1].call.remote.number == "201"
    assert events[-1].call.outcome == Outcome.ANSWERED


# Case 25 -----------------------------------------------------------------------------

SOFTPHONE = "<sip:201@voip.example.net>"
DIALLED = "<sip:0441234567@voip.example.net>"


def abandoned_attempt() -> list:
    """F2: INVITE sent three times, a custom 100, CANCEL sent twice, then 408."""
    invite = request(
        "INVITE", "sip:0441234567@voip.example.net", call_id="c25-f2@192.0.2.2", from_=f"{SOFTPHONE};tag=f2",
        to=DIALLED, cseq=1, vias=["f2inv"], body=b"",
    )
    cancel = request(
        "CANCEL", "sip:0441234567@voip.example.net", call_id="c25-f2@192.0.2.2", from_=f"{SOFTPHONE};tag=f2",
        to=DIALLED, cseq=1, vias=["f2inv"],
    )
    trying = response(100, invite, reason="trying -- your call is important to us")
    return [invite, invite, invite, trying, cancel, cancel, response(408, invite)]


def refused_attempt() -> list:
    """F3: 407, the INVITE again with credentials on CSeq 2, then 403."""
    first = request(
        "INVITE", "sip:0441234567@voip.example.net", call_id="c25-f3@192.0.2.2", from_=f"{SOFTPHONE};tag=f3",
        to=DIALLED, cseq=1, vias=["f3a"],
    )
    second = request(
        "INVITE", "sip:0441234567@voip.example.net", call_id="c25-f3@192.0.2.2", from_=f"{SOFTPHONE};tag=f3",
        to=DIALLED, cseq=2, vias=["f3b"], headers=[("Proxy-Authorization", 'Digest username="201"')],
    )
    return [first, response(407, first, to_tag="p1"), second, response(403, second, to_tag="p2")]


def announcement_attempt() -> list:
    """F4: 407, INVITE again, 183 with early media, then 480."""
    first = request(
        "INVITE", "sip:0441234567@voip.example.net", call_id="c25-f4@192.0.2.2", from_=f"{SOFTPHONE};tag=f4",
        to=DIALLED, cseq=1, vias=["f4a"],
    )
    second = request(
        "INVITE", "sip:0441234567@voip.example.net", call_id="c25-f4@192.0.2.2", from_=f"{SOFTPHONE};tag=f4",
        to=DIALLED, cseq=2, vias=["f4b"],
    )
    early = response(183, second, to_tag="ann", body=b"v=0\r\nm=audio 5000 RTP/AVP 8\r\n")
    return [first, response(407, first, to_tag="p3"), second, early, response(480, second, to_tag="ann")]


def test_case25_three_failed_attempts():
    calls = engine(["201"])
    events = feed(calls, abandoned_attempt() + refused_attempt() + announcement_attempt())

    ended = [event.call for event in events if event.kind == EventKind.ENDED]
    assert [event.kind for event in events].count(EventKind.RINGING) == 3
    assert EventKind.CONNECTED not in [event.kind for event in events]
    assert [call.outcome for call in ended] == [Outcome.FAILED] * 3
    assert [call.outcome_reason for call in ended] == ["caller_hangup", "403", "480"]
    assert all(call.direction == Direction.OUTBOUND for call in ended)
    assert all(call.remote.number == "0441234567" for call in ended)
    assert calls.stats.duplicates == 3


# Case 27 -----------------------------------------------------------------------------


def test_case27_options_keepalive_raises_no_event():
    text = fixture_path("27-").read_text(encoding="utf-8")
    packet = decode_hep(bytes.fromhex(text.split("full packet hex:")[1].split()[0]))
    calls = engine(["201"])
    message = parse_message(packet.payload)

    assert calls.observe(message, packet.source, packet.destination, packet.timestamp) == []
    assert calls.active_calls() == []


# Case 28 -----------------------------------------------------------------------------


def test_case28_torture_invite_reading():
    invite = case_message("28-", "msg 1")
    info = read_invite(invite)

    assert info.caller.number == "+41441234567"
    assert info.target_user == "201"
    assert info.call_id == "torture-28@192.0.2.1"
    assert info.cseq == 9
    assert info.caller_user == "+41441234567"


def test_case28_in_dialog_invite_opens_no_call():
    # The torture INVITE carries a To-tag, so it belongs to a dialog the engine never saw.
    calls = engine(["201"])
    assert feed(calls, [case_message("28-", "msg 1")]) == []

"""The raw-SIP call engine: flows a PBX produces, message by message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sip.model import CallState, Confidence, Direction, EventKind, Outcome
from sip.raw.engine import MAX_LEGS, PHANTOM_RING_SECONDS, RETRY_WAIT_SECONDS, STALE_CALL_SECONDS
from sip.raw.headers import caller_party, offer_holds, original_called, refer_target
from sip.message import Headers
from tests.support.sipflows import at, engine, feed, kinds, request, response, sdp

CALLER = '"Max Muster" <sip:+41441234567@pbx.local>'
TO_201 = "<sip:201@pbx.local>"


def invite(call_id="c1", to="201", from_=f"{CALLER};tag=caller", vias=("caller",), uri=None, headers=(), body=b""):
    return request(
        "INVITE", uri or f"sip:{to}@pbx.local", call_id=call_id, from_=from_, to=f"<sip:{to}@pbx.local>",
        cseq=1, vias=list(vias), headers=headers, body=body,
    )


def in_dialog(method, call_id, from_, to, cseq, headers=(), body=b""):
    return request(method, "sip:peer@192.0.2.99", call_id=call_id, from_=from_, to=to, cseq=cseq,
                   vias=[f"{method.lower()}{cseq}"], headers=headers, body=body)


def answered_call(call_id="c1", to="201", tag="t201"):
    first = invite(call_id, to)
    return [first, response(180, first, to_tag=tag), response(200, first, to_tag=tag, body=sdp())]


# Basic outcomes ------------------------------------------------------------------------


def test_answered_call_then_caller_bye():
    calls = engine()
    bye = in_dialog("BYE", "c1", f"{CALLER};tag=caller", f"{TO_201};tag=t201", 2)
    events = feed(calls, [*answered_call(), bye, response(200, bye)])

    assert kinds(events) == ["201:ringing", "201:connected", "201:ended"]
    call = events[-1].call
    assert call.outcome == Outcome.ANSWERED
    assert call.direction == Direction.INBOUND
    assert call.remote.display_name == "Max Muster"
    assert call.duration_seconds == pytest.approx(0.5)


@pytest.mark.parametrize(("status", "outcome"), [(486, Outcome.BUSY), (603, Outcome.REJECTED), (600, Outcome.BUSY)])
def test_callee_refuses_call(status, outcome):
    calls = engine()
    first = invite()
    events = feed(calls, [first, response(status, first, to_tag="t201")])

    call = events[-1].call
    assert call.outcome == outcome
    assert call.outcome_reason == str(status)
    assert call.confidence == Confidence.CERTAIN


def test_outgoing_call_busy_and_failed():
    calls = engine()
    busy = invite("o1", to="0441234567", from_="<sip:201@pbx.local>;tag=a")
    failed = invite("o2", to="0449999999", from_="<sip:201@pbx.local>;tag=b")
    events = feed(calls, [busy, response(486, busy, to_tag="x"), failed, response(404, failed, to_tag="y")])

    ended = [event.call for event in events if event.kind == EventKind.ENDED]
    assert [(call.outcome, call.outcome_reason) for call in ended] == [(Outcome.BUSY, "486"), (Outcome.FAILED, "404")]
    assert all(call.direction == Direction.OUTBOUND for call in ended)


def test_no_answer_timeout_is_missed():
    calls = engine()
    first = invite()
    events = feed(calls, [first, response(180, first, to_tag="t"), response(480, first, to_tag="t")])

    assert events[-1].call.outcome == Outcome.MISSED
    assert events[-1].call.outcome_reason == "no_answer"


def test_internal_call_seen_by_both_extensions():
    calls = engine()
    first = invite("i1", to="202", from_='"Anna" <sip:201@pbx.local>;tag=a')
    events = feed(calls, [first, response(200, first, to_tag="b")])

    directions = {event.call.extension: event.call.direction for event in events}
    assert directions == {"201": Direction.INTERNAL, "202": Direction.INTERNAL}
    assert kinds(events) == ["201:ringing", "202:ringing", "201:connected", "202:connected"]


# Privacy and identity --------------------------------------------------------------------


def test_privacy_id_withholds_asserted_caller():
    calls = engine()
    first = invite(headers=[("P-Asserted-Identity", "<sip:+41441234567@pbx.local>"), ("Privacy", "id")])
    call = feed(calls, [first])[0].call

    assert call.remote.withheld is True
    assert call.remote.number is None


def test_identity_order_pai_rpid_from():
    def party(*pairs):
        return caller_party(Headers([("From", "<sip:0441111111@pbx>;tag=f"), *pairs]))

    assert party().number == "0441111111"
    assert party(("Remote-Party-ID", '"R" <sip:0442222222@pbx>;party=calling;screen=yes')).number == "0442222222"
    assert party(("Remote-Party-ID", "<sip:0442222222@pbx>;party=calling;privacy=full")).withheld is True
    pai = ("P-Asserted-Identity", "<sip:0443333333@pbx>")
    assert party(pai, ("Remote-Party-ID", "<sip:0442222222@pbx>;party=calling")).number == "0443333333"
    assert party(("P-Asserted-Identity", "<sip:anonymous@anonymous.invalid>, <tel:+41443333333>")).number == "+41443333333"


def test_original_called_prefers_history_info():
    headers = Headers([
        ("Diversion", "<sip:0440000002@pbx>;reason=user-busy, <sip:0440000001@pbx>;reason=no-answer"),
        ("History-Info", "<sip:0440000009@pbx?Reason=SIP%3Bcause%3D302>;index=1.1, <sip:0440000008@pbx>;index=1"),
    ])
    assert original_called(headers) == "0440000008"
    assert original_called(Headers([headers.items()[0]])) == "0440000001"


def test_did_reaches_its_extension_in_any_form():
    calls = engine(dids={"+41 44 765 43 01": "201"})

    assert calls.extension_of("0447654301") == ("201", False)
    assert calls.extension_of("+41447654301") == ("201", False)
    assert calls.extension_of("201") == ("201", True)
    assert calls.extension_of("7654301") is None


def test_did_for_unmonitored_extension_rejected():
    with pytest.raises(ValueError, match="unmonitored"):
        engine(dids={"+41447654301": "299"})


# Ring groups and forks ---------------------------------------------------------------------


def ring_group_via_proxy(reason=True):
    """Caller -> proxy (600) -> 201 and 202 in parallel; 201 answers; the proxy CANCELs 202."""
    upstream = invite("rg", to="600")
    to_201 = invite("rg", uri="sip:201@192.0.2.21", to="600", vias=("k201", "caller"))
    to_202 = invite("rg", uri="sip:202@192.0.2.22", to="600", vias=("k202", "caller"))
    cancel = request("CANCEL", "sip:202@192.0.2.22", call_id="rg", from_=f"{CALLER};tag=caller",
                     to="<sip:600@pbx.local>", cseq=1, vias=["k202", "caller"],
                     headers=[("Reason", 'SIP;cause=200;text="Call completed elsewhere"')] if reason else [])
    return [
        upstream, to_201, to_202,
        response(180, to_201, to_tag="t201"), response(180, to_202, to_tag="t202"),
        response(200, to_201, to_tag="t201"), response(200, upstream, to_tag="t201"),
        cancel, response(487, to_202, to_tag="t202"),
    ]


def test_ring_group_answered_by_one_member():
    calls = engine()
    events = feed(calls, ring_group_via_proxy())

    assert kinds(events) == ["201:ringing", "202:ringing", "201:connected", "202:ended"]
    other = events[-1].call
    assert other.outcome == Outcome.ANSWERED_ELSEWHERE
    assert other.answered_by == "201"
    assert other.called == "600"
    assert events[0].call.called == "600"


def test_ring_group_missed_when_caller_cancels():
    calls = engine()
    upstream, to_201, to_202 = ring_group_via_proxy()[:3]
    cancel = request("CANCEL", "sip:600@pbx.local", call_id="rg", from_=f"{CALLER};tag=caller",
                     to="<sip:600@pbx.local>", cseq=1, vias=["caller"])
    events = feed(calls, [upstream, to_201, to_202, cancel, response(487, upstream, to_tag="x")])

    ended = [event.call for event in events if event.kind == EventKind.ENDED]
    assert [(call.extension, call.outcome, call.outcome_reason) for call in ended] == [
        ("201", Outcome.MISSED, "caller_hangup"), ("202", Outcome.MISSED, "caller_hangup"),
    ]


def test_proxy_timeout_cancel_is_no_answer():
    calls = engine()
    upstream, to_201 = ring_group_via_proxy()[:2]
    cancel = request("CANCEL", "sip:201@192.0.2.21", call_id="rg", from_=f"{CALLER};tag=caller",
                     to="<sip:600@pbx.local>", cseq=1, vias=["k201", "caller"])
    events = feed(calls, [upstream, to_201, cancel])

    assert events[-1].call.outcome == Outcome.MISSED
    assert events[-1].call.outcome_reason == "no_answer"


def test_same_message_at_two_hops_counted_once():
    calls = engine()
    messages = ring_group_via_proxy()
    hop_a, hop_b = ("192.0.2.1", 5060), ("192.0.2.2", 5060)
    events = []
    for index, message in enumerate(messages):
        for copy in range(2):
            source, destination = (hop_a, hop_b) if copy == 0 else (hop_b, hop_a)
            events.extend(calls.observe(message, source, destination, at(index)))
            events.extend(calls.observe(message, source, destination, at(index + 0.1)))

    assert kinds(events) == ["201:ringing", "202:ringing", "201:connected", "202:ended"]
    assert calls.stats.duplicates == len(messages) * 2


# Hold and transfer -------------------------------------------------------------------------


def test_hold_and_resume_by_reinvite():
    calls = engine()
    caller_tag, callee_tag = f"{CALLER};tag=caller", f"{TO_201};tag=t201"
    hold = in_dialog("INVITE", "c1", callee_tag, caller_tag, 1, body=sdp("sendonly", version=2))
    resume = in_dialog("INVITE", "c1", callee_tag, caller_tag, 2, body=sdp("sendrecv", version=3))
    inactive = in_dialog("INVITE", "c1", caller_tag, callee_tag, 2, body=sdp("inactive", version=4))
    rejected = in_dialog("INVITE", "c1", caller_tag, callee_tag, 3, body=sdp("sendrecv", version=5))
    events = feed(calls, [
        *answered_call(), hold, response(200, hold, body=sdp("recvonly")),
        resume, response(200, resume, body=sdp()),
        inactive, response(200, inactive), rejected, response(491, rejected),
    ])

    assert kinds(events) == ["201:ringing", "201:connected", "201:held", "201:resumed", "201:held"]
    assert calls.active_calls()[0].state == CallState.HELD


def test_offer_hold_detection():
    assert offer_holds(sdp("sendonly"), "application/sdp") is True
    assert offer_holds(sdp("inactive"), None) is True
    assert offer_holds(sdp(address="0.0.0.0"), "application/sdp") is True
    assert offer_holds(sdp("sendrecv"), "application/sdp") is False
    assert offer_holds(b"", "application/sdp") is None
    assert offer_holds(b"<xml/>", "application/xml") is None


def test_blind_transfer_by_callee():
    calls = engine()
    caller_tag, callee_tag = f"{CALLER};tag=caller", f"{TO_201};tag=t201"
    refer = in_dialog("REFER", "c1", callee_tag, caller_tag, 1, headers=[("Refer-To", "<sip:202@pbx.local>")])
    notify = in_dialog("NOTIFY", "c1", caller_tag, callee_tag, 2, headers=[("Event", "refer"), ("Content-Type", "message/sipfrag")])
    bye = in_dialog("BYE", "c1", callee_tag, caller_tag, 2)
    new_call = invite("c2", to="202", headers=[("Referred-By", "<sip:201@pbx.local>")])
    events = feed(calls, [
        *answered_call(), refer, response(202, refer),
        new_call, response(200, new_call, to_tag="t202"), notify, bye,
    ])

    assert kinds(events) == ["201:ringing", "201:connected", "202:ringing", "202:connected", "201:ended"]
    ended = events[-1].call
    assert ended.outcome == Outcome.TRANSFERRED
    assert ended.transferred_to == "202"
    assert events[2].call.remote.number == "+41441234567"
    assert events[2].call.referred_by == "201"


def test_refused_refer_keeps_answered_outcome():
    calls = engine()
    caller_tag, callee_tag = f"{CALLER};tag=caller", f"{TO_201};tag=t201"
    refer = in_dialog("REFER", "c1", callee_tag, caller_tag, 1, headers=[("Refer-To", "<sip:202@pbx.local>")])
    bye = in_dialog("BYE", "c1", callee_tag, caller_tag, 2)
    events = feed(calls, [*answered_call(), refer, response(403, refer), bye])

    assert events[-1].call.outcome == Outcome.ANSWERED


def test_attended_transfer_with_replaces():
    calls = engine()
    caller_tag, callee_tag = f"{CALLER};tag=caller", f"{TO_201};tag=t201"
    consult = invite("c-b", to="202", from_="<sip:201@pbx.local>;tag=b201")
    replaces = "c-b%3Bto-tag%3Dt202%3Bfrom-tag%3Db201"
    refer = in_dialog("REFER", "c1", callee_tag, caller_tag, 1,
                      headers=[("Refer-To", f"<sip:202@pbx.local?Replaces={replaces}>")])
    joined = invite("c-c", to="202", headers=[("Replaces", "c-b;to-tag=t202;from-tag=b201")])
    bye_b = in_dialog("BYE", "c-b", "<sip:202@pbx.local>;tag=t202", "<sip:201@pbx.local>;tag=b201", 1)
    bye_a = in_dialog("BYE", "c1", callee_tag, caller_tag, 2)
    events = feed(calls, [
        *answered_call(), consult, response(200, consult, to_tag="t202"),
        refer, response(202, refer), joined, response(200, joined, to_tag="t202c"), bye_b, bye_a,
    ])

    assert kinds(events) == [
        "201:ringing", "201:connected", "201:ringing", "202:ringing", "201:connected", "202:connected",
        "202:connected", "201:ended", "202:ended", "201:ended",
    ]
    consult_201, consult_202, first_201 = (event.call for event in events[-3:])
    assert (consult_201.outcome, consult_201.outcome_reason) == (Outcome.TRANSFERRED, "replaced")
    assert consult_201.transferred_to == "+41441234567"
    assert consult_202.outcome == Outcome.ANSWERED
    assert (first_201.outcome, first_201.transferred_to) == (Outcome.TRANSFERRED, "202")
    assert events[6].call.remote.number == "+41441234567"


def test_refer_target_reads_replaces():
    target, replaces = refer_target("<sip:202@pbx.local?Replaces=abc%40host%3Bto-tag%3Dx%3Bfrom-tag%3Dy>")
    assert target == "202"
    assert (replaces.call_id, replaces.to_tag, replaces.from_tag) == ("abc@host", "x", "y")


def test_pickup_replaces_ringing_dialog():
    calls = engine()
    first = invite()
    pickup = invite("c-p", to="201", from_="<sip:202@pbx.local>;tag=p202",
                    headers=[("Replaces", "c1;to-tag=t201;from-tag=caller")])
    events = feed(calls, [first, response(180, first, to_tag="t201"), pickup, response(200, pickup, to_tag="x")])

    ended = [event.call for event in events if event.kind == EventKind.ENDED and event.call.sip_call_id == "c1"]
    assert (ended[0].outcome, ended[0].outcome_reason, ended[0].answered_by) == (
        Outcome.ANSWERED_ELSEWHERE, "pickup", "202",
    )


# B2BUA legs --------------------------------------------------------------------------------


def test_b2bua_legs_linked_by_header():
    calls = engine(dids={"+41447654300": "201"}, link_header="X-Linked-ID")
    trunk = invite("leg-a", uri="sip:+41447654300@pbx.local", to="+41447654300", vias=("trunk",))
    phone = invite("leg-b", to="201", vias=("pbx",), from_=f"{CALLER};tag=pbx",
                   headers=[("X-Linked-ID", "leg-a")])
    bye = in_dialog("BYE", "leg-b", f"{CALLER};tag=pbx", f"{TO_201};tag=t201", 2)
    events = feed(calls, [trunk, phone, response(200, phone, to_tag="t201"), response(200, trunk, to_tag="pbxa"), bye])

    assert kinds(events) == ["201:ringing", "201:connected", "201:ended"]
    assert events[0].call.called == "+41447654300"
    assert events[-1].call.outcome == Outcome.ANSWERED


def test_b2bua_voicemail_after_phone_leg_cancelled_is_missed():
    calls = engine(dids={"+41447654300": "201"})
    trunk = invite("leg-a", uri="sip:+41447654300@pbx.local", to="+41447654300", vias=("trunk",))
    phone = invite("leg-b", to="201", vias=("pbx",), from_=f"{CALLER};tag=pbx")
    cancel = request("CANCEL", "sip:201@pbx.local", call_id="leg-b", from_=f"{CALLER};tag=pbx",
                     to=TO_201, cseq=1, vias=["pbx"])
    events = feed(calls, [trunk, phone, cancel, response(487, phone, to_tag="t201"), response(200, trunk, to_tag="vm")])

    assert kinds(events) == ["201:ringing", "201:ended"]
    assert (events[-1].call.outcome, events[-1].call.outcome_reason) == (Outcome.MISSED, "no_answer")


# Time ----------------------------------------------------------------------------------------


def test_unretried_challenge_fails_on_expire():
    calls = engine()
    first = invite("o1", to="0441234567", from_="<sip:201@pbx.local>;tag=a")
    feed(calls, [first, response(407, first, to_tag="p")])

    assert calls.expire(at(RETRY_WAIT_SECONDS - 1)) == []
    events = calls.expire(at(RETRY_WAIT_SECONDS + 1))
    assert (events[0].call.outcome, events[0].call.outcome_reason) == (Outcome.FAILED, "407")


def test_phantom_ring_and_stale_call_expire():
    calls = engine()
    feed(calls, [invite("ring")])
    feed(calls, answered_call("talk", to="202", tag="t"), start=1)

    events = calls.expire(at(PHANTOM_RING_SECONDS + 1))
    assert [(event.call.extension, event.call.outcome_reason) for event in events] == [("201", "phantom")]
    assert events[0].call.confidence == Confidence.INFERRED
    events = calls.expire(at(STALE_CALL_SECONDS + 10))
    assert [(event.call.extension, event.call.outcome) for event in events] == [("202", Outcome.ANSWERED)]


def test_legs_forgotten_after_end():
    calls = engine()
    bye = in_dialog("BYE", "c1", f"{CALLER};tag=caller", f"{TO_201};tag=t201", 2)
    feed(calls, [*answered_call(), bye])
    calls.expire(at(100))

    assert calls.stats.live_legs == 0


def test_leg_limit_drops_new_legs(monkeypatch):
    monkeypatch.setattr("sip.raw.engine.MAX_LEGS", 2)
    calls = engine()
    callers = [f'<sip:04412345{index:02d}@pbx.local>;tag=t{index}' for index in range(3)]
    events = feed(calls, [invite(call_id, from_=caller) for call_id, caller in zip("abc", callers)])

    assert len(events) == 2
    assert calls.stats.legs_dropped == 1
    assert MAX_LEGS > 2


def test_naive_timestamp_rejected():
    calls = engine()
    with pytest.raises(ValueError, match="timezone-aware"):
        calls.observe(invite(), None, None, at(0).replace(tzinfo=None))


def test_events_keep_their_snapshot():
    calls = engine()
    events = feed(calls, answered_call())
    assert events[0].call.state == CallState.RINGING
    assert events[0].call.answered_at is None
    assert events[1].call.answered_at == at(1.0)
    assert events[1].call.started_at == at(0)
    assert at(1) - events[1].call.started_at == timedelta(seconds=1)

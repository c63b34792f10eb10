"""The merger of raw-SIP and dialog-info calls: raw SIP owns state and identity, dialog-info fills in."""

from __future__ import annotations

import itertools

from sip.dialoginfo import parse_dialog_info
from sip.merge import CallMerger
from sip.model import CallState, Direction, EventKind, Outcome
from sip.profiles import PROFILES
from sip.tracker import CallTracker
from tests.sip.corpus import section
from tests.sip.test_rawsip_corpus import forked_call_to_bob
from tests.support.sipflows import at, engine, request, response

KAMAILIO_DOCUMENT = (
    '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" entity="sip:201@pbx">'
    '<dialog id="d1"{call_id} direction="recipient"><state>{state}</state>'
    "<remote><identity{display}>sip:+41441234567@pbx</identity></remote></dialog></dialog-info>"
)


def merger() -> CallMerger:
    counter = itertools.count(1)
    return CallMerger(id_factory=lambda: f"merged-{next(counter)}")


def tracker(extensions, pbx="generic") -> CallTracker:
    counter = itertools.count(1)
    return CallTracker(extensions, PROFILES[pbx], id_factory=lambda: f"dlg-{next(counter)}")


def document(version, state, call_id=None, display=None):
    return parse_dialog_info(KAMAILIO_DOCUMENT.format(
        version=version, state=state,
        call_id=f' call-id="{call_id}"' if call_id else "",
        display=f' display="{display}"' if display else "",
    ).encode())


def kinds(events):
    return [str(event.kind) for event in events]


def test_case17_raw_call_outlives_dialog_end():
    raw_engine, blf, merged = engine(["bob"]), tracker(["bob"], "kamailio"), merger()
    messages = forked_call_to_bob()
    bodies = [parse_dialog_info(section("17-", f"body v{version}").body_bytes()) for version in (1, 2, 3)]
    out = []
    out += merged.dialog_info(blf.apply("bob", bodies[0], at(0.2)))
    for index, message in enumerate(messages[:8]):
        out += merged.raw(raw_engine.observe(message, None, None, at(0.1 * index)))
    out += merged.dialog_info(blf.apply("bob", bodies[1], at(1.0)))
    for index, message in enumerate(messages[8:]):
        out += merged.raw(raw_engine.observe(message, None, None, at(1.1 + 0.1 * index)))
    out += merged.dialog_info(blf.apply("bob", bodies[2], at(2.0)))

    assert EventKind.ENDED not in [event.kind for event in out]
    assert {event.call.id for event in out} == {"merged-1"}
    live = merged.active_calls()
    assert len(live) == 1
    assert live[0].state == CallState.CONNECTED


def test_dialog_info_alone_drives_call():
    blf, merged = tracker(["201"]), merger()
    out = merged.dialog_info(blf.apply("201", document(1, "early", "c1"), at(0)))
    out += merged.dialog_info(blf.apply("201", document(2, "terminated", "c1"), at(3)))

    assert kinds(out) == ["ringing", "ended"]
    assert out[-1].call.outcome == Outcome.MISSED
    assert out[-1].call.id == "merged-1"


def test_raw_owns_outcome_and_direction():
    raw_engine, blf, merged = engine(["201"]), tracker(["201"]), merger()
    invite = request("INVITE", "sip:201@pbx", call_id="c1", from_="<sip:+41441234567@pbx>;tag=a",
                     to="<sip:201@pbx>", cseq=1, vias=["a"])
    out = merged.raw(raw_engine.observe(invite, None, None, at(0)))
    out += merged.dialog_info(blf.apply("201", document(1, "early", "c1", display="Max Muster"), at(0.1)))
    out += merged.raw(raw_engine.observe(response(486, invite, to_tag="b"), None, None, at(1)))
    out += merged.dialog_info(blf.apply("201", document(2, "terminated", "c1"), at(1.1)))

    assert kinds(out) == ["ringing", "updated", "ended"]
    assert out[1].call.remote.display_name == "Max Muster"
    assert out[-1].call.outcome == Outcome.BUSY
    assert out[-1].call.direction == Direction.INBOUND


def test_dialog_info_without_call_id_matched_by_time():
    raw_engine, blf, merged = engine(["201"]), tracker(["201"], "asterisk"), merger()
    invite = request("INVITE", "sip:201@pbx", call_id="c1", from_="<sip:+41441234567@pbx>;tag=a",
                     to="<sip:201@pbx>", cseq=1, vias=["a"])
    out = merged.dialog_info(blf.apply("201", document(1, "early"), at(0)))
    out += merged.raw(raw_engine.observe(invite, None, None, at(0.05)))
    out += merged.raw(raw_engine.observe(response(200, invite, to_tag="b"), None, None, at(2)))
    out += merged.dialog_info(blf.apply("201", document(2, "confirmed"), at(2.1)))

    assert {event.call.id for event in out} == {"merged-1"}
    assert kinds(out).count("connected") == 1
    assert out[-1].call.sip_call_id == "c1"


def test_dialog_info_ahead_does_not_move_call_back():
    raw_engine, blf, merged = engine(["201"]), tracker(["201"]), merger()
    invite = request("INVITE", "sip:201@pbx", call_id="c1", from_="<sip:+41441234567@pbx>;tag=a",
                     to="<sip:201@pbx>", cseq=1, vias=["a"])
    out = merged.dialog_info(blf.apply("201", document(1, "early", "c1"), at(0)))
    out += merged.dialog_info(blf.apply("201", document(2, "confirmed", "c1"), at(1)))
    out += merged.raw(raw_engine.observe(invite, None, None, at(0.9)))

    assert kinds(out) == ["ringing", "connected"]
    assert merged.active_calls()[0].state == CallState.CONNECTED


def test_separate_calls_stay_apart_and_expire():
    blf, merged = tracker(["201"]), merger()
    out = merged.dialog_info(blf.apply("201", document(1, "early", "c1"), at(0)))
    out += merged.dialog_info(blf.apply("201", document(2, "terminated", "c1"), at(1)))
    raw_engine = engine(["201"])
    invite = request("INVITE", "sip:201@pbx", call_id="c2", from_="<sip:+41449999999@pbx>;tag=a",
                     to="<sip:201@pbx>", cseq=1, vias=["a"])
    out += merged.raw(raw_engine.observe(invite, None, None, at(2)))

    assert [event.call.id for event in out] == ["merged-1", "merged-1", "merged-2"]
    merged.expire(at(500))
    assert len(merged.active_calls()) == 1

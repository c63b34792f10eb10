"""`ringboard inspect` on the SIP corpus: each dialog-info case against the conclusion its log row expects.

Every test here runs the command's own code path (agent.inspect.main) on the fixture
file, or on a trace written in the same format, and reads the JSON lines it prints.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pytest

from agent.config import Config, SipSettings
from agent.inspect import add_commands, main
from tests.sip.corpus import fixture_path, kamailio_bodies

START = "2026-12-04T09:00:00Z"

EARLIER_CALL_A = """<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="4" state="partial"
    entity="sip:alice@example.com">
  <dialog id="d-old" call-id="call-A@192.0.2.21" local-tag="lt-A" remote-tag="rt-A" direction="initiator">
    <state>confirmed</state>
    <remote><identity>sip:bob@example.net</identity></remote>
  </dialog>
</dialog-info>"""

FREESWITCH_OTHER_LEG = """<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="11" state="full" entity="sip:201@example.com">
<dialog id="0a0a0a0a-0000-4000-8000-000000000001" direction="initiator">
<state>confirmed</state>
<remote><identity>sip:0449876543@example.com</identity></remote>
</dialog>
</dialog-info>"""


def inspect(*args: object, expect_status: int = 0) -> list[dict]:
    out = io.StringIO()
    status = main([*(str(arg) for arg in args), "--start", START], out)
    assert status == expect_status
    return [json.loads(line) for line in out.getvalue().splitlines()]


def calls(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["type"] == "call"]


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def events(lines: list[dict]) -> list[tuple[str, str]]:
    return [(line["event"], line["id"]) for line in calls(lines)]


def notify(version: int, body: str, *, extension: str = "201", call_id: str = "sub-1", cseq: int = 1) -> str:
    """Write a dialog NOTIFY in the corpus format, with Content-Length for the CRLF form."""
    length = len((body + "\n").replace("\n", "\r\n").encode())
    return (
        f"--- msg {version}: PBX -> observer ---\n"
        "NOTIFY sip:observer@192.0.2.50:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{call_id}-{cseq}\n"
        f"From: <sip:{extension}@example.com>;tag=ntf\n"
        "To: <sip:observer@example.com>;tag=sub\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} NOTIFY\n"
        "Event: dialog\n"
        "Subscription-State: active;expires=600\n"
        "Content-Type: application/dialog-info+xml\n"
        f"Content-Length: {length}\n"
        "\n"
        f"{body}\n"
    )


def write_trace(tmp_path: Path, *sections: str, name: str = "trace.txt") -> Path:
    path = tmp_path / name
    path.write_text("# written by the test\n\n" + "\n".join(sections), encoding="utf-8")
    return path


def last_line_of(path: Path, text: str) -> int:
    """Return the 1-based number of the last line of a file that equals `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return len(lines) - lines[::-1].index(text)


def body_of(fixture: str, marker: str = "<?xml") -> str:
    """Return the text of a fixture from `marker` to the next section line."""
    text = fixture_path(fixture).read_text(encoding="utf-8")
    text = text[text.index(marker):]
    return text.split("\n--- ")[0].strip()


# Dialog-info cases ----------------------------------------------------------------------


def test_case01_outgoing_attempt_trying():
    lines = inspect(fixture_path("01-"), "--documents")

    # "alice has started an outgoing call; nobody answered or rang yet; the callee is unknown"
    (document,) = of_type(lines, "document")
    assert [dialog["state"] for dialog in document["dialogs"]] == ["trying"]
    (ringing,) = calls(lines)
    assert ringing["event"] == "ringing"
    assert ringing["extension"] == "alice"
    assert ringing["direction"] == "outbound"
    assert ringing["state"] == "ringing"
    assert ringing["answered_at"] is None
    assert ringing["remote"]["number"] is None
    assert ringing["remote"]["withheld"] is False
    assert ringing["sip_call_id"] == "call-0001@192.0.2.21"


def test_case02_bare_document_shows_transferred_call():
    lines = inspect(fixture_path("02-"))

    # "alice is now in a confirmed incoming call with Carol Example <sip:carol@example.net>,
    # referred by bob"
    (connected,) = calls(lines)
    assert connected["event"] == "connected"
    assert connected["extension"] == "alice"
    assert connected["direction"] == "inbound"
    assert connected["remote"]["number"] == "carol"
    assert connected["remote"]["name"] == "Carol Example"
    assert connected["remote"]["uri"] == "sip:carol@example.net"
    assert connected["referred_by"] == "bob"


def test_case02_replaced_call_marked_transferred(tmp_path):
    trace = write_trace(tmp_path, "--- body v4 (call A) ---", EARLIER_CALL_A, "--- body v5 ---", body_of("02-"))

    lines = inspect(trace)

    # "alice's call A was replaced (transfer or pickup). Mark call A as transferred, not
    # as ended normally."
    assert [line["event"] for line in calls(lines)] == ["connected", "connected", "ended"]
    call_a, call_b, call_a_ended = calls(lines)
    assert call_a["sip_call_id"] == "call-A@192.0.2.21"
    assert call_a_ended["id"] == call_a["id"]
    assert call_a_ended["outcome"] == "transferred"
    assert call_a_ended["outcome_reason"] == "replaced"
    assert call_a_ended["transferred_to"] == "carol"
    assert call_b["sip_call_id"] == "call-B@192.0.2.33"
    assert call_b["state"] == "connected"
    assert call_b["referred_by"] == "bob"


def test_case04_asterisk_busy_raises_no_popup():
    lines = inspect(fixture_path("04-"), "--pbx", "asterisk")

    # "extension 103 is busy (direction and other party unknown; 'confirmed' can also be
    # an outgoing call still ringing at the far end), then idle": no ringing event.
    assert [line["event"] for line in calls(lines)] == ["connected", "ended"]
    busy, idle = calls(lines)
    assert busy["extension"] == "103"
    assert busy["direction"] == "unknown"
    assert busy["remote"]["number"] is None
    assert busy["answered_at"] is None
    assert idle["id"] == busy["id"]
    assert idle["state"] == "ended"
    assert (idle["outcome"], idle["confidence"]) == ("answered", "inferred")


def test_case05_asterisk_ringing_then_hold():
    lines = inspect(fixture_path("05-"), "--pbx", "asterisk")

    # "201: idle -> ringing (caller unknown) -> in call -> on hold"
    assert [line["event"] for line in calls(lines)] == ["ringing", "connected", "held"]
    ringing, connected, held = calls(lines)
    assert ringing["source"].endswith(":23")
    assert ringing["remote"]["number"] is None
    assert ringing["direction"] == "inbound"
    assert connected["state"] == "connected"
    assert held["state"] == "held"
    assert {line["id"] for line in calls(lines)} == {ringing["id"]}


def test_case07_asterisk_caller_then_withheld_caller():
    lines = inspect(fixture_path("07-"), "--pbx", "asterisk")

    # Body A: "201 is ringing from +41441234567 (Alice Example)"; body B: "201 is ringing
    # from a withheld number". Asterisk reuses the dialog id, so B is a new call.
    assert [line["event"] for line in calls(lines)] == ["ringing", "ended", "ringing"]
    first, first_ended, second = calls(lines)
    assert first["remote"]["number"] == "+41441234567"
    assert first["remote"]["name"] == "Alice Example"
    assert first["remote"]["withheld"] is False
    assert first["direction"] == "inbound"
    assert first_ended["id"] == first["id"]
    assert (first_ended["outcome"], first_ended["confidence"]) == ("missed", "inferred")
    assert second["id"] != first["id"]
    assert second["remote"]["withheld"] is True
    assert second["remote"]["number"] is None
    assert second["remote"]["name"] is None


def test_case08_freeswitch_one_leg_keeps_others(tmp_path):
    trace = write_trace(
        tmp_path,
        notify(1, FREESWITCH_OTHER_LEG, call_id="sub-case08-fs", cseq=983549050),
        fixture_path("08-").read_text(encoding="utf-8"),
    )

    lines = inspect(trace, "--pbx", "freeswitch")
    generic = inspect(trace, "--pbx", "generic")

    # "201 is ringing from +41441234567 (Alice Example). Other legs of 201 are unaffected
    # by this document."
    assert [line["event"] for line in calls(lines)] == ["connected", "ringing"]
    other_leg, ringing = calls(lines)
    assert other_leg["remote"]["number"] == "0449876543"
    assert ringing["remote"]["number"] == "+41441234567"
    assert ringing["remote"]["name"] == "Alice Example"
    assert ringing["direction"] == "inbound"
    assert [line["event"] for line in calls(generic)] == ["connected", "ringing", "ended"]


def test_case10_freeswitch_empty_document_is_idle():
    lines = inspect(fixture_path("10-"), "--pbx", "freeswitch", "--documents")

    # "2050 has no calls (idle)"
    (document,) = lines
    assert document["type"] == "document"
    assert document["extension"] == "2050"
    assert document["version"] == 817
    assert document["dialogs"] == []


def test_case10_version_kept_across_refreshes(tmp_path):
    ringing = body_of("08-").replace("sip:201@", "sip:2050@")
    trace = write_trace(
        tmp_path,
        fixture_path("10-").read_text(encoding="utf-8"),
        notify(12, ringing, extension="2050", call_id="sub-case10-fs12", cseq=405410585),
        notify(12, ringing, extension="2050", call_id="sub-after-restart"),
    )

    lines = inspect(trace, "--pbx", "freeswitch")

    # The version counter is not reset between refreshes, so version 12 on the same
    # subscription is stale; a new subscription starts counting anew.
    (ringing_call,) = calls(lines)
    assert ringing_call["source"] == f"{trace}:{last_line_of(trace, '--- msg 12: PBX -> observer ---')}"
    assert ringing_call["extension"] == "2050"


def test_case12_yealink_partial_answered_call():
    lines = inspect(fixture_path("12-"))

    # "1011 is in an answered incoming call from 1010"
    (connected,) = calls(lines)
    assert connected["event"] == "connected"
    assert connected["extension"] == "1011"
    assert connected["remote"]["number"] == "1010"
    assert connected["remote"]["name"] is None
    assert connected["direction"] == "internal"
    assert connected["answered_at"] == "2026-12-04T09:00:00.000Z"
    assert connected["sip_call_id"] == "0_2561109579@192.0.2.31"


def test_case14_innovaphone_extension_from_notify(tmp_path):
    lines = inspect(fixture_path("14-"), "--pbx", "innovaphone", "--documents")

    # "207 is ringing; the caller is 211". The monitored user comes from the From header.
    (document,) = of_type(lines, "document")
    assert document["entity"] is None
    assert document["dialogs"][0]["direction"] == "initiator"
    (ringing,) = calls(lines)
    assert ringing["extension"] == "207"
    assert ringing["event"] == "ringing"
    assert ringing["remote"]["number"] == "211"
    assert ringing["direction"] != "outbound"


def test_case14_innovaphone_direction_not_trusted(tmp_path):
    ended = body_of("14-").replace('version="9"', 'version="10"').replace("<state>early</state>", "<state>terminated</state>")
    trace = write_trace(
        tmp_path,
        fixture_path("14-").read_text(encoding="utf-8"),
        notify(10, ended, extension="207", call_id="0ce2cb4794c2-sub14@watcher", cseq=19),
    )

    innovaphone = calls(inspect(trace, "--pbx", "innovaphone"))
    generic = calls(inspect(trace, "--pbx", "generic"))

    # "Do not trust direction": the unanswered ring is a missed call for 207, while a
    # reader that believed `initiator` would call it a failed outgoing call.
    assert innovaphone[-1]["outcome"] == "missed"
    assert generic[-1]["outcome"] == "failed"


def test_case16_rlmi_list_and_malformed_variant(caplog):
    caplog.set_level(logging.WARNING)

    lines = inspect(fixture_path("16-"))

    # "the list has 4605 and 4607 with active subscriptions; their call states are in the
    # other MIME parts". "Fail soft on malformed XML."
    (listing,) = of_type(lines, "list")
    assert listing["full_state"] is True
    assert [resource["extension"] for resource in listing["resources"]] == ["4605", "4607"]
    assert [resource["states"] for resource in listing["resources"]] == [["active"], ["active"]]
    (rejected,) = of_type(lines, "rejected")
    assert rejected["reason"] == "malformed"
    assert "malformed XML" in rejected["detail"]
    assert calls(lines) == []
    assert any("input rejected (malformed)" in record.message for record in caplog.records)


def test_case16_list_notification_parts_per_resource(tmp_path):
    rlmi = body_of("16-", "<?xml")
    ringing = (
        '<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" '
        'state="full" entity="sip:4605@example.com">\n<dialog id="x1" call-id="c-4605" direction="recipient">'
        "<state>early</state><remote><identity display=\"Alice Example\">sip:+41441234567@example.com</identity>"
        "</remote></dialog>\n</dialog-info>"
    )
    idle = (
        '<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="8" '
        'state="full" entity="sip:4607@example.com"/>'
    )
    body = (
        "--blf-list\nContent-Type: application/rlmi+xml\nContent-ID: <rlmi-0@example.com>\n\n"
        f"{rlmi}\n"
        "--blf-list\nContent-Type: application/dialog-info+xml\nContent-ID: <part-4605@example.com>\n\n"
        f"{ringing}\n"
        "--blf-list\nContent-Type: application/dialog-info+xml\nContent-ID: <part-4607@example.com>\n\n"
        f"{idle}\n"
        "--blf-list--"
    )
    message = notify(1, body, extension="blf-list-1").replace(
        "Content-Type: application/dialog-info+xml",
        'Content-Type: multipart/related;type="application/rlmi+xml";start="<rlmi-0@example.com>";boundary=blf-list',
        1,
    )

    lines = inspect(write_trace(tmp_path, message), "--documents")

    assert [line["type"] for line in lines] == ["list", "document", "call", "document"]
    assert [document["extension"] for document in of_type(lines, "document")] == ["4605", "4607"]
    assert len({document["at"] for document in of_type(lines, "document")}) == 1
    (ringing_call,) = calls(lines)
    assert ringing_call["extension"] == "4605"
    assert ringing_call["remote"]["name"] == "Alice Example"


def test_case17_kamailio_forking_appears_ended():
    lines = inspect(fixture_path("17-"), "--pbx", "kamailio")

    # From dialog-info alone: "bob answered alice and the call then appeared to end"
    # (a known limit of Kamailio before 5.6).
    assert [line["event"] for line in calls(lines)] == ["ringing", "connected", "ended"]
    ended = calls(lines)[-1]
    assert ended["extension"] == "bob"
    assert (ended["outcome"], ended["confidence"]) == ("answered", "certain")
    assert ended["remote"]["number"] == "alice"
    assert ended["remote"]["name"] is None
    assert ended["direction"] == "inbound"


def test_kamailio_log_answered_then_missed(tmp_path):
    sections = []
    for number, body in enumerate(kamailio_bodies(), start=1):
        sections += [f"--- body {number} ---", body.decode()]
    trace = write_trace(tmp_path, *sections)

    lines = inspect(trace, "--pbx", "kamailio", "--interval", "3", "--extension", "201")

    # The first NOTIFY has no body (idle); then an answered and a missed call to 201.
    summary = [(line["event"], line["outcome"]) for line in calls(lines)]
    assert summary == [
        ("ringing", None),
        ("connected", None),
        ("ended", "answered"),
        ("ringing", None),
        ("ended", "missed"),
    ]
    answered, missed = calls(lines)[2], calls(lines)[4]
    assert answered["id"] != missed["id"]
    assert answered["confidence"] == "certain"
    assert answered["duration"] == 3.0
    assert missed["confidence"] == "certain"
    assert missed["outcome_reason"] is None
    assert missed["remote"]["number"] == "+41441234567"
    assert missed["sip_call_id"] == "1-9344@127.0.0.1"
    assert of_type(lines, "rejected") == []


# The command itself ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(fixture_path("01-").parent.glob("*")), ids=lambda path: path.name[:20])
def test_every_fixture_reads(path):
    lines = inspect(path)

    assert all(line["type"] in ("call", "list", "rejected") for line in lines)


def test_raw_sip_cases_print_nothing():
    for prefix in ("19-", "20-", "22-", "23-", "28-"):
        lines = inspect(fixture_path(prefix))

        assert of_type(lines, "call") == [], prefix


def test_extension_option_names_bare_document(tmp_path):
    document = tmp_path / "no-entity.xml"
    document.write_text(
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full">'
        '<dialog id="1"><state>early</state></dialog></dialog-info>'
    )

    without = inspect(document)
    named = inspect(document, "--extension", "205")

    assert [(line["type"], line["reason"]) for line in without] == [("rejected", "no_extension")]
    assert [(line["event"], line["extension"]) for line in named] == [("ringing", "205")]


def test_times_follow_start_and_interval():
    lines = inspect(fixture_path("17-"), "--interval", "2.5")

    assert [line["started_at"] for line in calls(lines)] == ["2026-12-04T09:00:00.000Z"] * 3
    assert calls(lines)[1]["answered_at"] == "2026-12-04T09:00:02.500Z"
    assert calls(lines)[2]["ended_at"] == "2026-12-04T09:00:05.000Z"
    assert calls(lines)[2]["duration"] == 2.5


def test_missing_file_fails(tmp_path, capsys):
    lines = inspect(tmp_path / "absent.txt", fixture_path("12-"), expect_status=1)

    assert [line["extension"] for line in calls(lines)] == ["1011"]
    assert "cannot read" in capsys.readouterr().err


def test_bad_documents_rejected_with_reason(tmp_path):
    ringing = (
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="4" state="full" entity="sip:bob@example.com">'
        '<dialog id="x"><state>early</state></dialog></dialog-info>'
    )
    truncated = '<dialog-info version="5" state="full" entity="sip:bob@example.com"><dialog id="x">'
    oversized = "<dialog-info><!--" + "x" * 70_000 + "--></dialog-info>"
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><dialog-info version="9" state="full">&c;</dialog-info>'
    )
    latin1 = '<dialog-info version="6" state="full" entity="sip:bob@example.com"><!-- Z\u00fcrich --></dialog-info>'
    sections = [("ringing", ringing), ("truncated", truncated), ("oversized", oversized), ("laughs", laughs), ("latin-1", latin1)]
    text = "\n".join(f"--- body {title} ---\n{body}" for title, body in sections)
    path = tmp_path / "bad.txt"
    path.write_bytes(text.encode("utf-8").replace("Z\u00fcrich".encode(), b"Z\xfcrich"))

    lines = inspect(path)

    # Each bad document is reported with its reason; the ringing call is not ended by any.
    assert [line["type"] for line in lines] == ["call", "rejected", "rejected", "rejected", "rejected"]
    assert [line["reason"] for line in of_type(lines, "rejected")] == ["truncated", "too_large", "forbidden", "encoding"]
    assert "not valid UTF-8 at byte" in of_type(lines, "rejected")[-1]["detail"]


def test_subcommand_takes_profile_from_config(capsys):
    parser = argparse.ArgumentParser(prog="ringboard")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["inspect", str(fixture_path("04-")), "--start", START])
    config = Config(sip=SipSettings(server="192.0.2.10", pbx="asterisk"))

    status = args.handler(args, config)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [line["event"] for line in lines] == ["connected", "ended"]
    assert lines[0]["answered_at"] is None
    assert lines[1]["confidence"] == "inferred"

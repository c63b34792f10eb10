"""`inspect_raw`: corpus traces and capture files replayed through the raw-SIP engine."""

from __future__ import annotations

import json
from datetime import timedelta

from agent.protocol import call_json
from sip.raw.inspect import inspect_raw
from tests.sip.corpus import fixture_path, sections
from tests.support.captures import ethernet, ipv4, pcap_file, udp
from tests.support.sipflows import T0


def test_trace_of_case23_gives_answered_call():
    lines = inspect_raw([fixture_path("23-")], ["201"], start=T0, interval=0.5)

    assert [(line["type"], line["event"]) for line in lines] == [("call", "ringing"), ("call", "connected"), ("call", "ended")]
    assert lines[-1]["outcome"] == "answered"
    assert lines[-1]["sip_call_id"] == "158936656982201062716@192.0.2.100"
    assert lines[0]["source"].endswith("23-tcp-basic-call-callee-hangup.txt:15")


def test_all_parties_monitored_without_extensions():
    lines = inspect_raw([fixture_path("23-")], start=T0)

    assert {line["extension"] for line in lines} == {"101", "201"}


def test_protocol_serialiser_gives_protocol_lines():
    lines = inspect_raw([fixture_path("22-")], ["699810", "699818"], start=T0, serialise_call=lambda call: call_json(call, "CH"))

    assert lines[0]["remote"]["withheld"] is True
    assert lines[1]["remote"]["e164"] == "+41441234567"
    assert lines[1]["remote"]["name"] == "Цюрих, Офис-5"
    json.dumps(lines, ensure_ascii=False)


def test_invalid_sip_in_trace_is_rejected(tmp_path):
    trace = tmp_path / "broken.txt"
    trace.write_text("--- msg 1: A -> B ---\nINVITE nonsense\nVia: broken\n", encoding="utf-8")
    lines = inspect_raw([trace], ["201"], start=T0)

    assert [line["type"] for line in lines] == ["rejected"]
    assert lines[0]["reason"] == "invalid_sip"


def test_capture_file_replayed_with_capture_times(tmp_path):
    messages = [part.message_bytes() for part in sections("23-") if part.title.startswith("msg ")]
    frames = [(T0 + timedelta(seconds=index), ethernet(ipv4("192.0.2.100", "192.0.2.101", 17, udp(5060, 5060, data))))
              for index, data in enumerate(messages)]
    capture = tmp_path / "call.pcap"
    capture.write_bytes(pcap_file(frames))
    lines = inspect_raw([capture], ["201"])

    assert [line["event"] for line in lines] == ["ringing", "connected", "ended"]
    assert lines[0]["started_at"] == T0.isoformat()
    assert lines[0]["source"] == f"{capture}#1"


def test_corrupt_capture_rejected(tmp_path):
    capture = tmp_path / "corrupt.pcap"
    capture.write_bytes(pcap_file([(T0, b"x" * 10)])[:24] + b"\xff" * 16)
    lines = inspect_raw([capture], ["201"])

    assert lines[-1]["type"] == "rejected"
    assert lines[-1]["reason"] == "invalid_capture"


def test_missing_file_rejected(tmp_path):
    lines = inspect_raw([tmp_path / "missing.pcap"], ["201"])
    assert lines[0]["reason"] == "unreadable"

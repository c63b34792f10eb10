"""`ringboard inspect --raw` and capture files go through the raw-SIP engine."""

import io
import json
from pathlib import Path

from agent.inspect import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sip"


def run(*argv):
    out = io.StringIO()
    status = main(list(argv), out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def test_raw_trace_basic_call():
    status, lines = run("--raw", "--extension", "201", str(FIXTURES / "23-tcp-basic-call-callee-hangup.txt"))
    assert status == 0
    assert [line["event"] for line in lines] == ["ringing", "connected", "ended"]
    assert lines[-1]["outcome"] == "answered"
    assert lines[-1]["remote"]["number"] == "101"


def test_raw_garbage_capture_rejected(tmp_path):
    capture = tmp_path / "broken.pcap"
    capture.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 7)
    status, lines = run(str(capture))
    assert lines
    assert all(line["type"] == "rejected" for line in lines)
    assert status in (0, 1)

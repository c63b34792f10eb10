"""Benchmark 2: dialog-info parse + track, and raw SIP parsing, per core.

Everything runs in this process on one thread, so a rate is what one core does. Rounds
are timed in CPU time of this thread (`time.thread_time`), so time spent waiting while
other work on the machine has the core is not counted, and each figure is the best of
several rounds. PyPI's `sipmessage` parses the same SIP messages in the same
run as the reference.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from defusedxml.ElementTree import fromstring

from sip.dialoginfo import parse_dialog_info
from sip.message import parse_message
from sip.profiles import PROFILES
from sip.tracker import CallTracker
from tests.support.fake_pbx import kamailio_document

from . import common
from .common import Figure, checked

ROUNDS = 5
EXTENSIONS = [str(2000 + index) for index in range(100)]

# The service calls CallTracker.expire every 10 s; at one document per 20 ms of
# simulated time that is every 500 documents.
SIMULATED_STEP = timedelta(milliseconds=20)
EXPIRE_EVERY = 500

# Messages as Kamailio 5.6 and the phones behind it send them: a call from a desk phone
# through the proxy (two Vias, Record-Route, P-Asserted-Identity, SDP), a dialog-event
# NOTIFY to the agent, and the 200 OK to the agent's SUBSCRIBE.
INVITE = (
    "INVITE sip:201@192.0.2.10;user=phone SIP/2.0\r\n"
    "Record-Route: <sip:192.0.2.10;lr;ftag=as5f3e2a1b;did=3b1.e1a2>\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK8d1f.6a0b8e4c2f7d1e9a3b5c0d2e4f6a8b1c.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.55:5060;rport=5060;branch=z9hG4bK1977482391;received=192.0.2.55\r\n"
    "Max-Forwards: 69\r\n"
    'From: "Max Muster" <sip:+41441234567@pbx.example.com>;tag=as5f3e2a1b\r\n'
    "To: <sip:201@pbx.example.com;user=phone>\r\n"
    "Call-ID: 7c9f1a2b3d4e5f60718293a4b5c6d7e8@192.0.2.55\r\n"
    "CSeq: 102 INVITE\r\n"
    "Contact: <sip:+41441234567@192.0.2.55:5060;transport=udp>\r\n"
    'P-Asserted-Identity: "Max Muster" <sip:+41441234567@pbx.example.com>\r\n'
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n"
    "Supported: replaces, timer\r\n"
    "User-Agent: Yealink SIP-T46U 108.86.0.45\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 265\r\n"
    "\r\n"
    "v=0\r\n"
    "o=- 20034 20034 IN IP4 192.0.2.55\r\n"
    "s=SDP data\r\n"
    "c=IN IP4 192.0.2.55\r\n"
    "t=0 0\r\n"
    "m=audio 11780 RTP/AVP 9 8 0 18 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=no\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
).encode()

_DOCUMENT = kamailio_document(
    "201",
    7,
    [("padi-6b131805-2452-1", "7c9f1a2b3d4e5f60718293a4b5c6d7e8@192.0.2.55", "early")],
    local_tag="9318SIPpTag011",
    remote_tag="as5f3e2a1b",
)
NOTIFY = (
    "NOTIFY sip:ringboard@192.0.2.20:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK5a4f.0d1c5d74000000000000000000000000.0\r\n"
    "To: <sip:ringboard@pbx.example.com>;tag=8f3e1c2a\r\n"
    "From: <sip:201@pbx.example.com>;tag=c1b0b5d4e6d0e5b5c3d2e4f6a7b8c9d0-6f1a\r\n"
    "CSeq: 7 NOTIFY\r\n"
    "Call-ID: 4b8c2f6e9a1d3e5f@192.0.2.20\r\n"
    f"Content-Length: {len(_DOCUMENT)}\r\n"
    "User-Agent: kamailio (5.6.3 (x86_64/linux))\r\n"
    "Max-Forwards: 70\r\n"
    "Event: dialog\r\n"
    "Contact: <sip:192.0.2.10:5060;transport=udp>\r\n"
    "Subscription-State: active;expires=583\r\n"
    "Content-Type: application/dialog-info+xml\r\n"
    "\r\n"
).encode() + _DOCUMENT

OK_TO_SUBSCRIBE = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.20:5070;rport=5070;branch=z9hG4bK9c3a7e51d2f04b68;received=192.0.2.20\r\n"
    "From: <sip:ringboard@pbx.example.com>;tag=8f3e1c2a\r\n"
    "To: <sip:201@pbx.example.com>;tag=c1b0b5d4e6d0e5b5c3d2e4f6a7b8c9d0-6f1a\r\n"
    "Call-ID: 4b8c2f6e9a1d3e5f@192.0.2.20\r\n"
    "CSeq: 2 SUBSCRIBE\r\n"
    "Expires: 600\r\n"
    "Contact: <sip:192.0.2.10:5060;transport=udp>\r\n"
    "Server: kamailio (5.6.3 (x86_64/linux))\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
).encode()

SIP_MESSAGES = (INVITE, NOTIFY, OK_TO_SUBSCRIBE)


def document_stream(calls: int) -> list[tuple[str, bytes]]:
    """Return (extension, document) for `calls` calls that ring, connect and end, in order.

    Calls are spread over the extensions; each extension's versions rise from 1.
    """
    versions = dict.fromkeys(EXTENSIONS, 0)
    stream = []
    for call in range(calls):
        extension = EXTENSIONS[call % len(EXTENSIONS)]
        caller = f"+41442{call:06d}"
        for state in ("early", "confirmed", "terminated"):
            versions[extension] += 1
            body = kamailio_document(
                extension,
                versions[extension],
                [(f"padi-{call:08x}-2452-1", f"{call}-9320@127.0.0.1", state)],
                caller=caller,
                local_tag=f"{call}SIPpTag011",
                remote_tag=f"{call}SIPpTag001",
            )
            stream.append((extension, body))
    return stream


def best_rate(run_round: Callable[[], int], seconds: float) -> float:
    """Run rounds until `seconds` pass (at least ROUNDS) and return the best items per CPU second."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < ROUNDS or time.perf_counter() < deadline:
        started = time.thread_time()
        items = run_round()
        elapsed = time.thread_time() - started
        best = max(best, items / elapsed)
        rounds += 1
    return best


def parse_and_track_round(stream: list[tuple[str, bytes]]) -> int:
    """Parse and apply every document of the stream on a new tracker; return the count."""
    tracker = CallTracker(EXTENSIONS, PROFILES["kamailio"])
    now = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
    for index, (extension, body) in enumerate(stream):
        tracker.apply(extension, parse_dialog_info(body), now)
        now += SIMULATED_STEP
        if index % EXPIRE_EVERY == EXPIRE_EVERY - 1:
            tracker.expire(now)
    return len(stream)


def parse_round(stream: list[tuple[str, bytes]]) -> int:
    for _, body in stream:
        parse_dialog_info(body)
    return len(stream)


def xml_round(stream: list[tuple[str, bytes]]) -> int:
    for _, body in stream:
        fromstring(body)
    return len(stream)


def sip_round(parse: Callable[[bytes], object], repeat: int) -> int:
    for _ in range(repeat):
        for message in SIP_MESSAGES:
            parse(message)
    return repeat * len(SIP_MESSAGES)


def ours_with_fields(data: bytes) -> tuple[object, ...]:
    """Parse with sip.message and read what a transaction layer needs."""
    message = parse_message(data)
    return message.call_id, message.cseq, message.from_tag, message.to_tag, message.top_via.branch


def reference_with_fields(data: bytes) -> tuple[object, ...]:
    """Parse with sipmessage and read the same fields."""
    from sipmessage import Message

    message = Message.parse(data)
    return (
        message.call_id,
        message.cseq,
        message.from_address.parameters.get("tag"),
        message.to_address.parameters.get("tag"),
        message.via[0].parameters.get("branch"),
    )


def profile_parsing(stream: list[tuple[str, bytes]]) -> None:
    """Write pyinstrument profiles of parse + track and of SIP parsing to `--profile DIR`."""
    if common.profile_dir is None:
        return
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return
    common.profile_dir.mkdir(parents=True, exist_ok=True)
    for name, work in (
        ("parse_track", lambda: [parse_and_track_round(stream) for _ in range(3)]),
        ("sip_parse", lambda: sip_round(ours_with_fields, 5000)),
    ):
        profiler = Profiler(interval=0.0005)
        profiler.start()
        work()
        profiler.stop()
        output = common.profile_dir / f"{name}.txt"
        output.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        print(f"profile of {name}: {output}", file=sys.stderr, flush=True)


def parsing_throughput(seconds: float) -> list[Figure]:
    """Measure documents and SIP messages per second on one core."""
    stream = document_stream(2000)
    profile_parsing(stream)
    size = sum(len(body) for _, body in stream) / len(stream)
    doc_setup = (
        f"one-dialog Kamailio documents of {size:.0f} bytes on average, 100 extensions, "
        f"ring/connect/end per call; one thread, CPU time, best of {ROUNDS}+ rounds of {len(stream)}"
    )
    figures = [
        checked(
            Figure(
                "parse_track",
                "parse_dialog_info + CallTracker.apply",
                round(best_rate(lambda: parse_and_track_round(stream), seconds)),
                "documents/s",
                doc_setup,
            ),
            ">= 30000/s",
            30_000,
            below=False,
        ),
        Figure(
            "parse_track",
            "parse_dialog_info alone",
            round(best_rate(lambda: parse_round(stream), seconds)),
            "documents/s",
            doc_setup,
        ),
        Figure(
            "parse_track",
            "defusedxml fromstring alone",
            round(best_rate(lambda: xml_round(stream), seconds)),
            "documents/s",
            doc_setup,
        ),
    ]

    try:
        from sipmessage import Message
        import sipmessage
    except ImportError:
        reference = None
    else:
        reference = Message.parse
        version = sipmessage.__version__
    sizes = "/".join(str(len(message)) for message in SIP_MESSAGES)
    sip_setup = (
        f"INVITE with SDP, Kamailio NOTIFY, 200 OK to SUBSCRIBE ({sizes} bytes); one thread, CPU time. "
        "sipmessage's parse splits the lines only, parse_message also checks Via, CSeq, From and To; "
        "'+ fields' then reads Call-ID, CSeq, the From and To tags and the top Via branch"
    )
    repeat = 1000
    ours = best_rate(lambda: sip_round(parse_message, repeat), seconds)
    ours_fields = best_rate(lambda: sip_round(ours_with_fields, repeat), seconds)
    figures.append(Figure("sip_parse", "sip.message.parse_message", round(ours), "messages/s", sip_setup))
    figures.append(Figure("sip_parse", "parse_message + fields", round(ours_fields), "messages/s", sip_setup))
    if reference is None:
        figures.append(Figure("sip_parse", "sipmessage", "not installed", "", "pip install -e '.[bench]'"))
        return figures

    theirs = best_rate(lambda: sip_round(reference, repeat), seconds)
    theirs_fields = best_rate(lambda: sip_round(reference_with_fields, repeat), seconds)
    figures += [
        Figure("sip_parse", f"sipmessage {version} Message.parse", round(theirs), "messages/s", sip_setup),
        Figure("sip_parse", f"sipmessage {version} parse + fields", round(theirs_fields), "messages/s", sip_setup),
        checked(
            Figure("sip_parse", "ratio, parse call", round(ours / theirs, 2), "x sipmessage", sip_setup),
            ">= 2x",
            2.0,
            below=False,
        ),
        checked(
            Figure("sip_parse", "ratio, parse + fields", round(ours_fields / theirs_fields, 2), "x sipmessage", sip_setup),
            ">= 2x",
            2.0,
            below=False,
        ),
    ]
    return figures

    theirs = best_rate(lambda: sip_round(reference, repeat), seconds)
    theirs_fields = best_rate(lambda: sip_round(reference_with_fields, repeat), seconds)
    figures += [
        Figure("sip_parse", f"sipmessage {version} Message.parse", round(theirs), "messages/s", sip_setup),
        Figure("sip_parse", f"sipmessage {version} parse + dialog fields", round(theirs_fields), "messages/s",
               sip_setup + "; then Call-ID, CSeq, From/To tags, top Via branch"),
        checked(
            Figure("sip_parse", "ratio, parse call alone", round(ours / theirs, 2), "x sipmessage",
                   "sipmessage splits lines only; parse_message also checks Via, CSeq, From and To"),
            ">= 2x", 2.0, below=False,
        ),
        checked(
            Figure("sip_parse", "ratio, parse + dialog fields", round(ours_fields / theirs_fields, 2), "x sipmessage",
                   "both read Call-ID, CSeq, From/To tags and the top Via branch"),
            ">= 2x", 2.0, below=False,
        ),
    ]
    return figures

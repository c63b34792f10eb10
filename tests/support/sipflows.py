"""Build SIP requests and responses for raw-SIP engine tests, as phones and proxies send them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from sip.message import Request, Response, parse_message
from sip.model import CallEvent
from sip.raw import RawCallEngine

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)

SDP_TEMPLATE = (
    "v=0\r\no=- 1 {version} IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sdp(direction: str = "sendrecv", address: str = "192.0.2.50", version: int = 1) -> bytes:
    return SDP_TEMPLATE.format(direction=direction, address=address, version=version).encode()


def request(
    method: str,
    uri: str,
    *,
    call_id: str,
    from_: str,
    to: str,
    cseq: int,
    vias: Iterable[str],
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """Build a request; `vias` are branch names, top first, each on its own host."""
    lines = [f"{method} {uri} SIP/2.0"]
    lines += [f"Via: SIP/2.0/UDP 192.0.2.{10 + index};branch=z9hG4bK{branch}" for index, branch in enumerate(vias)]
    lines += [f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


def response(
    status: int,
    to_request: Request,
    *,
    to_tag: str | None = None,
    vias: Iterable[str] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    reason: str = "Reason",
) -> Response:
    """Build a response to `to_request`, with its Vias or the given branches (the hop's view)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    if vias is None:
        lines += [f"Via: {value}" for value in to_request.headers.get_all("Via")]
    else:
        lines += [f"Via: SIP/2.0/UDP 192.0.2.{10 + index};branch=z9hG4bK{branch}" for index, branch in enumerate(vias)]
    to_value = to_request.headers.get("To") or ""
    if to_tag and ";tag=" not in to_value:
        to_value = f"{to_value};tag={to_tag}"
    lines += [f"From: {to_request.headers.get('From')}", f"To: {to_value}", f"Call-ID: {to_request.call_id}"]
    lines.append(f"CSeq: {to_request.headers.get('CSeq')}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Response)
    return message


def engine(extensions=("201", "202"), **options) -> RawCallEngine:
    counter = itertools.count(1)
    return RawCallEngine(extensions, id_factory=lambda: f"call-{next(counter)}", **options)


def feed(calls: RawCallEngine, messages: Iterable[Request | Response], start: float = 0.0, step: float = 0.5) -> list[CallEvent]:
    """Observe messages half a second apart and return every event."""
    events: list[CallEvent] = []
    for index, message in enumerate(messages):
        events.extend(calls.observe(message, None, None, at(start + index * step)))
    return events


def kinds(events: Iterable[CallEvent]) -> list[str]:
    return [f"{event.call.extension}:{event.kind}" for event in events]

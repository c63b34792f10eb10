"""Replay raw SIP from traces and capture files through the raw-SIP engine, for `ringboard inspect`.

A FILE is either a capture (pcap or pcapng, recognised by its magic number) or a trace
in the SIP corpus format (sip/trace.py). Capture frames keep their capture times;
trace messages are spaced `interval` seconds apart from `start`. Each call event
becomes one dict in the shape `ringboard inspect` prints as a JSON line:
`{"type": "call", "source": ..., "event": ..., <call fields>, "sip_call_id": ...}`,
and input that cannot be read becomes `{"type": "rejected", ...}`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sip.message import Request, Response, SipParseError, parse_message
from sip.model import Call, CallEvent
from sip.packet import PacketDecoder
from sip.pcap import CaptureError, is_capture_file, read_capture_file
from sip.raw.engine import RawCallEngine
from sip.raw.headers import read_invite
from sip.trace import SectionKind, TraceError, read_trace_file

log = logging.getLogger("ringboard.inspect")

REASON_INVALID_SIP = "invalid_sip"
REASON_INVALID_CAPTURE = "invalid_capture"
REASON_UNREADABLE = "unreadable"

# The agent calls `expire` every 10 s. A replay does the same in capture time, so that
# unretried challenges and phantom rings end as they would live.
EXPIRY_INTERVAL_SECONDS = 10.0

CallSerialiser = Callable[[Call], dict[str, Any]]


def inspect_raw(
    paths: Iterable[Path],
    extensions: Iterable[str] | None = None,
    *,
    dids: Mapping[str, str] | None = None,
    link_header: str | None = None,
    ports: Iterable[int] | None = None,
    start: datetime | None = None,
    interval: float = 1.0,
    serialise_call: CallSerialiser | None = None,
) -> list[dict[str, Any]]:
    """Return one dict per call event (and per rejected input) of each file, file by file.

    Without `extensions`, every caller and callee user of the file's INVITEs is
    monitored. `ports` limits capture decoding to SIP on those UDP/TCP ports.
    `serialise_call` turns a Call into the protocol's call object; the default writes
    the dataclass fields with ISO 8601 times.
    """
    serialise = serialise_call or plain_call
    start = start or datetime.now(timezone.utc).replace(microsecond=0)
    lines: list[dict[str, Any]] = []
    for path in paths:
        try:
            observed = list(_capture(path, ports) if is_capture_file(path) else _trace(path, start, interval))
        except OSError as error:
            lines.append(_rejected(str(path), REASON_UNREADABLE, str(error)))
            continue

        wanted = set(extensions) if extensions is not None else _parties(observed)
        numbers = itertools.count(1)
        engine = RawCallEngine(wanted, dids=dids, link_header=link_header, id_factory=lambda: f"call-{next(numbers)}")
        lines.extend(_replay(engine, observed, serialise))
    return lines


def plain_call(call: Call) -> dict[str, Any]:
    """Return a call's fields as JSON-ready values: enums as strings, times in ISO 8601."""
    fields = asdict(call)
    for name, value in fields.items():
        if isinstance(value, Enum):
            fields[name] = str(value)
        elif isinstance(value, datetime):
            fields[name] = value.isoformat()
    return fields


# Reading --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Input:
    """One message of a file with its hop and time, or the reason it could not be read."""

    source: str
    moment: datetime
    message: Request | Response | None = None
    sender: tuple[str, int] | None = None
    receiver: tuple[str, int] | None = None
    reason: str | None = None
    detail: str | None = None


def _capture(path: Path, ports: Iterable[int] | None) -> Iterator[_Input]:
    decoder = PacketDecoder(set(ports) if ports else None)
    try:
        for frame in read_capture_file(path):
            for item in decoder.decode(frame.data, frame.linktype, frame.timestamp):
                yield _Input(f"{path}#{frame.number}", item.timestamp, item.message, item.source, item.destination)
    except CaptureError as error:
        yield _Input(str(path), datetime.now(timezone.utc), reason=REASON_INVALID_CAPTURE, detail=str(error))
    stats = decoder.stats
    if stats.invalid_sip or stats.undecodable:
        log.warning(
            "%s: %d frames, %d SIP messages, %d frames not decoded, %d invalid SIP messages",
            path, stats.frames, stats.messages, stats.undecodable, stats.invalid_sip,
        )


def _trace(path: Path, start: datetime, interval: float) -> Iterator[_Input]:
    try:
        sections = read_trace_file(path)
    except TraceError as error:
        yield _Input(str(path), start, reason=REASON_UNREADABLE, detail=str(error))
        return
    messages = [section for section in sections if section.kind == SectionKind.MESSAGE]
    for index, section in enumerate(messages):
        source = f"{path}:{section.line}"
        moment = start + timedelta(seconds=index * interval)
        try:
            message = parse_message(section.data)
        except SipParseError as error:
            yield _Input(source, moment, reason=REASON_INVALID_SIP, detail=str(error))
            continue
        # Trace titles name the hop ("PBX -> phone 110"); that is enough to tell hops apart.
        sender = (section.sender, 0) if section.sender else None
        receiver = (section.receiver, 0) if section.receiver else None
        yield _Input(source, moment, message, sender, receiver)


def _parties(observed: list[_Input]) -> set[str]:
    parties: set[str] = set()
    for item in observed:
        message = item.message
        if isinstance(message, Request) and message.method.upper() == "INVITE" and message.to_tag is None:
            info = read_invite(message)
            parties.update(user for user in (info.target_user, info.caller_user) if user)
    return parties


# Replaying ------------------------------------------------------------------------------


def _replay(engine: RawCallEngine, observed: list[_Input], serialise: CallSerialiser) -> Iterator[dict[str, Any]]:
    next_expiry: datetime | None = None
    for item in observed:
        source, moment, message = item.source, item.moment, item.message
        if message is None:
            log.warning("%s: input rejected (%s): %s", source, item.reason, item.detail)
            yield _rejected(source, item.reason or REASON_UNREADABLE, item.detail or "")
            continue
        if next_expiry is None:
            next_expiry = moment + timedelta(seconds=EXPIRY_INTERVAL_SECONDS)
        while moment >= next_expiry:
            yield from _lines(source, engine.expire(next_expiry), serialise)
            next_expiry += timedelta(seconds=EXPIRY_INTERVAL_SECONDS)
        yield from _lines(source, engine.observe(message, item.sender, item.receiver, moment), serialise)


def _lines(source: str, events: list[CallEvent], serialise: CallSerialiser) -> Iterator[dict[str, Any]]:
    for event in events:
        call = event.call
        yield {"type": "call", "source": source, "event": str(event.kind), **serialise(call), "sip_call_id": call.sip_call_id}


def _rejected(source: str, reason: str, detail: str) -> dict[str, Any]:
    return {"type": "rejected", "source": source, "extension": None, "reason": reason, "detail": detail}

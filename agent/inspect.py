"""`ringboard inspect`: replay a SIP trace or a dialog-info document through the call tracker.

Each FILE is a trace in the SIP corpus format (see sip/trace.py) or a bare XML document.
NOTIFY messages and documents are applied in file order to a fresh tracker, one input
every `--interval` seconds from `--start`, and every resulting call event is printed as
one JSON line on standard output:

- `{"type": "call", "event": ..., ...}` with the call object of docs/protocol.md plus
  the SIP Call-ID;
- `{"type": "rejected", "reason": ..., "detail": ...}` for input that cannot be read;
- `{"type": "list", ...}` for an RFC 4662 resource list;
- `{"type": "document", ...}` for each dialog-info document read, with `--documents`.

Every line names its `source` as FILE:LINE of the section it came from.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from agent.config import Config, ConfigError, NumberSettings, load_config
from agent.protocol import call_json, format_time
from sip.dialoginfo import DialogInfo, DialogInfoError, RlmiList, parse_dialog_info, parse_rlmi
from sip.message import Request, SipParseError, parse_message
from sip.multipart import media_type
from sip.pcap import is_capture_file
from sip.profiles import PROFILES, PbxProfile
from sip.raw.inspect import inspect_raw
from sip.resourcelist import DIALOG_INFO_TYPE, LIST_CONTENT_TYPE, parse_list_notification
from sip.trace import SectionKind, TraceError, TraceSection, read_trace_file
from sip.tracker import CallTracker
from sip.uri import UriError, parse_name_addr, parse_uri

log = logging.getLogger("ringboard.inspect")

# Reasons for rejected input that the dialog-info reader does not name itself.
REASON_NO_EXTENSION = "no_extension"
REASON_CONTENT_TYPE = "content_type"
REASON_INVALID_SIP = "invalid_sip"


@dataclass(slots=True)
class Observation:
    """One input for the tracker, or the reason an input was rejected."""

    source: str
    extension: str | None = None
    document: DialogInfo | None = None
    listing: RlmiList | None = None
    subscription: str | None = None
    reason: str | None = None
    detail: str | None = None
    # The index of the trace section it came from: every input of one section (the
    # parts of a list notification) is applied at the same time.
    step: int = 0


def add_commands(subparsers: Any) -> None:
    """Register the `inspect` sub-command."""
    parser = subparsers.add_parser(
        "inspect",
        help="print the calls a SIP trace or dialog-info document shows",
        description="Replay SIP traces or dialog-info documents through the call tracker "
        "and print each call event as one JSON line.",
    )
    _configure(parser)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE",
        help="a trace (.txt), a dialog-info document (.xml), or a pcap/pcapng capture",
    )
    parser.add_argument(
        "--raw", action="store_true",
        help="read a trace's SIP messages with the raw-SIP engine (INVITE, CANCEL, BYE, REFER) "
        "instead of its NOTIFY bodies; captures are always read this way",
    )
    parser.add_argument(
        "--extension",
        help="the monitored extension of documents that name none, neither in their entity nor, "
        "for a NOTIFY, in its From header",
    )
    parser.add_argument(
        "--pbx", choices=sorted(PROFILES), help="the PBX profile whose quirks apply (default: [sip] pbx, else generic)"
    )
    parser.add_argument(
        "--start", type=_parse_start, help="UTC time of the first input in ISO 8601, such as 2026-12-04T09:00:00Z (default: now)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between two inputs, since traces carry no times (default: 1)"
    )
    parser.add_argument(
        "--region",
        help="two-letter country code for the E.164 and display forms of numbers "
        f"(default: [numbers] default_region, else {NumberSettings().default_region})",
    )
    parser.add_argument("--documents", action="store_true", help="also print a line for each dialog-info document read")
    parser.add_argument("--config", type=Path, help="configuration file whose [sip] pbx and [numbers] default_region apply")
    parser.set_defaults(handler=run_inspect)


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run `inspect` with the arguments that follow the sub-command's name."""
    parser = argparse.ArgumentParser(prog="ringboard inspect", description="Replay SIP traces through the call tracker.")
    _configure(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as error:
        print(f"ringboard inspect: {error}", file=sys.stderr)
        return 2
    return run_inspect(args, config, out)


def run_inspect(args: argparse.Namespace, config: Config | None, out: TextIO | None = None) -> int:
    """Print the events of each file; return 1 when a file could not be read, else 0.

    `config`, when the `ringboard` command found one, gives the defaults of `--pbx`
    and `--region`.
    """
    out = out or sys.stdout
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.interval < 0:
        print(f"ringboard inspect: invalid --interval {args.interval}: expected zero or more seconds", file=sys.stderr)
        return 2

    profile = PROFILES[args.pbx or (config.sip.pbx if config else "generic")]
    region = args.region or (config.numbers.default_region if config else NumberSettings().default_region)
    start = args.start or datetime.now(timezone.utc).replace(microsecond=0)
    status = 0
    for path in args.files:
        if args.raw or (path.is_file() and is_capture_file(path)):
            status = max(status, _inspect_raw(path, args, config, start, region.upper(), out))
            continue
        try:
            sections = read_trace_file(path)
        except OSError as error:
            print(f"ringboard inspect: cannot read {path}: {error.strerror or error}", file=sys.stderr)
            status = 1
            continue
        except TraceError as error:
            print(f"ringboard inspect: cannot read {path}: {error}", file=sys.stderr)
            status = 1
            continue
        observations = list(_observe(path, sections, args.extension))
        for line in _replay(observations, profile, start, args.interval, region.upper(), args.documents):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return status


def _inspect_raw(path: Path, args: argparse.Namespace, config: Config | None, start: datetime, region: str, out: TextIO) -> int:
    """Print the raw-SIP engine's events of one trace or capture; return 1 if it was unreadable."""
    extensions: list[str] | None = None
    if args.extension:
        extensions = [args.extension]
    elif config is not None:
        extensions = list(config.sip.extensions)
    lines = inspect_raw(
        [path],
        extensions,
        start=start,
        interval=args.interval,
        serialise_call=lambda call: call_json(call, region),
    )
    for line in lines:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 1 if any(line.get("type") == "rejected" and line.get("reason") == "unreadable" for line in lines) else 0


# Reading sections -----------------------------------------------------------------------


def _observe(path: Path, sections: list[TraceSection], extension: str | None) -> Iterator[Observation]:
    if not sections:
        log.warning("%s: no sections found: expected '--- msg N: A -> B ---' or '--- body ---' lines", path)
    for step, section in enumerate(sections):
        source = f"{path}:{section.line}"
        if section.kind == SectionKind.DOCUMENT:
            observations = [_read_document(source, section.data, extension)]
        elif section.kind == SectionKind.MESSAGE:
            observations = list(_read_message(source, section.data, extension))
        else:
            log.info("%s: section %r is neither a SIP message nor an XML document; skipped", source, section.title)
            continue
        for observation in observations:
            observation.step = step
            yield observation


def _read_document(source: str, body: bytes, fallback: str | None, subscription: str | None = None) -> Observation:
    """Read one document; `fallback` names the extension when the document has no entity."""
    if _root_name(body) == "list":
        try:
            listing = parse_rlmi(body)
        except DialogInfoError as error:
            return Observation(source, reason=error.reason, detail=str(error))
        return Observation(source, listing=listing)

    try:
        document = parse_dialog_info(body)
    except DialogInfoError as error:
        return Observation(source, extension=fallback, reason=error.reason, detail=str(error))
    extension = _user_of(document.entity) or fallback
    if extension is None:
        detail = "the document has no entity: name the monitored extension with --extension"
        return Observation(source, reason=REASON_NO_EXTENSION, detail=detail)
    return Observation(source, extension=extension, document=document, subscription=subscription)


def _read_message(source: str, data: bytes, extension: str | None) -> Iterator[Observation]:
    try:
        message = parse_message(data)
    except SipParseError as error:
        yield Observation(source, reason=REASON_INVALID_SIP, detail=str(error))
        return
    if not isinstance(message, Request) or message.method != "NOTIFY":
        # NOTE: only dialog-event NOTIFYs are read; other messages wait for the raw-SIP engine.
        log.info("%s: %s skipped: only dialog-event NOTIFYs are read", source, _describe(message))
        return
    event = (message.headers.get("Event") or "").split(";")[0].strip().lower()
    if event != "dialog":
        log.info("%s: NOTIFY for event %r skipped", source, event or "(none)")
        return

    # RFC 6665 §4.1.3: the NOTIFY's From is the monitored resource, so it names the
    # extension of a document without an entity (innovaphone).
    notifier = _user_of(_uri_in(message.headers.get("From")))
    content_type = message.headers.get("Content-Type") or ""
    subscription = message.call_id
    if media_type(content_type) == LIST_CONTENT_TYPE:
        yield from _read_list(source, message.body, content_type, subscription)
        return
    if message.body.strip() and media_type(content_type) != DIALOG_INFO_TYPE:
        detail = f"unexpected Content-Type {content_type or '(none)'}"
        yield Observation(source, extension=extension or notifier, reason=REASON_CONTENT_TYPE, detail=detail)
        return

    yield _read_document(source, message.body, notifier or extension, subscription)


def _read_list(source: str, body: bytes, content_type: str, subscription: str) -> Iterator[Observation]:
    try:
        notification = parse_list_notification(body, content_type)
    except DialogInfoError as error:
        yield Observation(source, reason=error.reason, detail=str(error))
        return
    for warning in notification.warnings:
        log.warning("%s: resource list %s: %s", source, notification.listing.uri, warning)

    yield Observation(source, listing=notification.listing)
    for resource in notification.resources:
        extension = _user_of(resource.uri)
        if resource.error is not None:
            yield Observation(source, extension=extension, reason=resource.error.reason, detail=str(resource.error))
        elif resource.document is not None and extension is not None:
            # Each resource has its own back-end subscription and version counter.
            resource_subscription = f"{subscription} {resource.uri}"
            yield Observation(source, extension=extension, document=resource.document, subscription=resource_subscription)


# Replaying --------------------------------------------------------------------------------


def _replay(
    observations: list[Observation], profile: PbxProfile, start: datetime, interval: float, region: str, documents: bool
) -> Iterator[dict[str, Any]]:
    extensions = {item.extension for item in observations if item.extension is not None}
    numbers = itertools.count(1)
    tracker = CallTracker(extensions, profile, id_factory=lambda: f"call-{next(numbers)}")
    subscriptions: dict[str, str | None] = {}

    for item in observations:
        now = start + timedelta(seconds=item.step * interval)
        if item.reason is not None:
            log.warning("%s: input rejected (%s): %s", item.source, item.reason, item.detail)
            yield {
                "type": "rejected",
                "source": item.source,
                "extension": item.extension,
                "reason": str(item.reason),
                "detail": item.detail,
            }
            continue
        if item.listing is not None:
            yield _list_line(item)
            continue
        if item.document is None or item.extension is None:
            continue

        # A NOTIFY on a new subscription dialog restarts the version count (RFC 4235 §4.1).
        known = subscriptions.get(item.extension)
        if item.extension in subscriptions and item.subscription != known:
            tracker.new_subscription(item.extension)
        subscriptions[item.extension] = item.subscription

        for warning in item.document.warnings:
            log.warning("%s: extension %s: %s", item.source, item.extension, warning)
        if documents:
            yield _document_line(item, now)
        for event in tracker.apply(item.extension, item.document, now):
            line = {"type": "call", "source": item.source, "event": str(event.kind)}
            line.update(call_json(event.call, region))
            line["sip_call_id"] = event.call.sip_call_id
            yield line


def _list_line(item: Observation) -> dict[str, Any]:
    listing = item.listing
    assert listing is not None
    return {
        "type": "list",
        "source": item.source,
        "uri": listing.uri,
        "version": listing.version,
        "full_state": listing.full_state,
        "resources": [
            {
                "uri": resource.uri,
                "name": resource.name,
                "extension": _user_of(resource.uri),
                "states": [instance.state for instance in resource.instances],
            }
            for resource in listing.resources
        ],
        "warnings": list(listing.warnings),
    }


def _document_line(item: Observation, now: datetime) -> dict[str, Any]:
    document = item.document
    assert document is not None
    return {
        "type": "document",
        "source": item.source,
        "extension": item.extension,
        "at": format_time(now),
        "version": document.version,
        "state": document.state,
        "entity": document.entity,
        "dialogs": [
            {
                "id": dialog.id,
                "state": dialog.state,
                "event": dialog.state_event,
                "code": dialog.state_code,
                "direction": dialog.direction,
                "call_id": dialog.call_id,
                "remote": dialog.remote_identity,
            }
            for dialog in document.dialogs
        ],
    }


# Helpers ----------------------------------------------------------------------------------


def _parse_start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: expected ISO 8601 such as 2026-12-04T09:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _root_name(body: bytes) -> str | None:
    """Return the local name of the first element, read without parsing the document."""
    text = body.decode("utf-8", "replace")
    index = 0
    while (index := text.find("<", index)) != -1:
        following = text[index + 1:index + 2]
        if following and (following.isalpha() or following == "_"):
            name = text[index + 1:].split(None, 1)[0].split(">", 1)[0].rstrip("/")
            return name.rpartition(":")[2]
        index += 1
    return None


def _uri_in(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parse_name_addr(value).uri
    except UriError:
        return None


def _user_of(uri: str | None) -> str | None:
    if not uri:
        return None
    try:
        user = parse_uri(uri).user
    except UriError:
        return None
    return user.partition(";")[0] or None if user else None


def _describe(message: Any) -> str:
    if isinstance(message, Request):
        return f"{message.method} request"
    return f"{message.status} response"

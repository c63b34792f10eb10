"""Split an RFC 4662 list notification into one dialog-info body per resource, without I/O.

A list NOTIFY carries `multipart/related` (RFC 2387): the root part is the RLMI `<list>`
(RFC 4662 §5), and each resource `<instance>` names by `cid` the part that contains the
resource's own document. The subscriber hands each part to the same path as a NOTIFY of
a single subscription, so the parts stay bytes here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sip.dialoginfo import DialogInfoError, parse_rlmi
from sip.uri import parse_params

LIST_CONTENT_TYPE = "multipart/related"
RLMI_TYPE = "application/rlmi+xml"

# Request headers of a list subscription (RFC 4662 §4.1): the subscriber announces
# `eventlist` support and accepts the multipart body and both of its part types.
LIST_ACCEPT = "application/dialog-info+xml, application/rlmi+xml, multipart/related"

# A list of a few hundred keys is the largest seen on office BLF panels. The cap bounds
# the work one body causes.
MAX_PARTS = 1024

# RFC 4662 §5.2: an instance in these states has a body part with the resource's state.
_STATES_WITH_BODY = ("active", "pending")

_HEAD_END = re.compile(rb"\r?\n\r?\n")


class EventListError(ValueError):
    """A list notification that cannot be split, with the reason in the text."""


@dataclass(frozen=True, slots=True)
class ResourcePart:
    """The document of one resource of the list."""

    uri: str
    state: str
    body: bytes
    content_type: str


def split_list_notification(body: bytes, content_type: str) -> list[ResourcePart]:
    """Return one part per resource instance that carries a document, in list order."""
    media, _, param_text = content_type.partition(";")
    if media.strip().lower() != LIST_CONTENT_TYPE:
        raise EventListError(f"Content-Type {content_type!r} is not {LIST_CONTENT_TYPE}")
    params = {name: value for name, value in parse_params(";" + param_text).items() if value is not None}
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        raise EventListError(f"Content-Type {content_type!r} has no boundary parameter")

    parts = _split_parts(body, boundary.encode())
    root = _root_part(parts, params.get("start", "").strip('"<>'))
    if root[1] != RLMI_TYPE:
        raise EventListError(f"the root part is {root[1] or 'untyped'}, expected {RLMI_TYPE}")
    try:
        listing = parse_rlmi(root[2])
    except DialogInfoError as error:
        raise EventListError(f"unreadable RLMI list: {error}") from None

    by_cid = {cid: (ctype, data) for cid, ctype, data in parts if cid}
    resources: list[ResourcePart] = []
    for resource in listing.resources:
        for instance in resource.instances:
            if instance.state not in _STATES_WITH_BODY or not instance.cid:
                continue
            found = by_cid.get(instance.cid.strip("<>"))
            if found is None:
                continue
            resources.append(ResourcePart(resource.uri, instance.state, found[1], found[0]))
    return resources


def _split_parts(body: bytes, boundary: bytes) -> list[tuple[str | None, str, bytes]]:
    """Return (Content-ID, media type, body) per part; RFC 2046 §5.1.1 delimiters."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[tuple[str | None, str, bytes]] = []
    matches = list(delimiter.finditer(body))
    for current, following in zip(matches, matches[1:]):
        if current.group(1):
            break  # The close delimiter: what follows is the epilogue.
        if len(parts) >= MAX_PARTS:
            raise EventListError(f"more than {MAX_PARTS} parts in one list notification")
        parts.append(_read_part(body[current.end() : following.start()]))
    if not parts:
        raise EventListError("no body part between the boundaries")
    return parts


def _read_part(data: bytes) -> tuple[str | None, str, bytes]:
    head_end = _HEAD_END.search(data)
    if head_end is None:
        head, content = data, b""
    else:
        head, content = data[: head_end.start()], data[head_end.end() :]
    content_id: str | None = None
    media = ""
    for line in head.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-id":
            content_id = value.strip().strip("<>") or None
        elif name == "content-type":
            media = value.partition(";")[0].strip().lower()
    return content_id, media, content


def _root_part(parts: list[tuple[str | None, str, bytes]], start: str) -> tuple[str | None, str, bytes]:
    """Return the part the `start` parameter names, else the first (RFC 2387 §3.2)."""
    if start:
        for part in parts:
            if part[0] == start:
                return part
    return parts[0]

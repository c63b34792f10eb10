"""Split an RFC 4662 list notification into one dialog-info body per resource, without I/O.

A list NOTIFY carries `multipart/related` (RFC 2387): the root part is the RLMI `<list>`
(RFC 4662 §5), and each resource `<instance>` names by `cid` the part that contains the
resource's own document. The subscriber hands each part to the same path as a NOTIFY of
a single subscription, so the parts stay bytes here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sip.dialoginfo import DialogInfoError, parse_rlmi
from sip.multipart import BodyPart, MultipartError, content_type_params, media_type, parse_multipart

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
    if media_type(content_type) != LIST_CONTENT_TYPE:
        raise EventListError(f"Content-Type {content_type!r} is not {LIST_CONTENT_TYPE}")
    try:
        parts = parse_multipart(body, content_type)
    except MultipartError as error:
        raise EventListError(f"unreadable list notification: {error}") from None
    if not parts:
        raise EventListError("no body part between the boundaries")
    if len(parts) > MAX_PARTS:
        raise EventListError(f"more than {MAX_PARTS} parts in one list notification")

    root = _root_part(parts, content_type_params(content_type).get("start", "").strip('"<> '))
    if root.content_type != RLMI_TYPE:
        raise EventListError(f"the root part is {root.content_type}, expected {RLMI_TYPE}")
    try:
        listing = parse_rlmi(root.body)
    except DialogInfoError as error:
        raise EventListError(f"unreadable RLMI list: {error}") from None

    by_cid = {part.content_id: part for part in parts if part.content_id}
    resources: list[ResourcePart] = []
    for resource in listing.resources:
        for instance in resource.instances:
            if instance.state not in _STATES_WITH_BODY or not instance.cid:
                continue
            found = by_cid.get(instance.cid.strip("<>"))
            if found is None:
                continue
            resources.append(ResourcePart(resource.uri, instance.state, found.body, found.content_type))
    return resources


def _root_part(parts: list[BodyPart], start: str) -> BodyPart:
    """Return the part the `start` parameter names, else the first (RFC 2387 §3.2)."""
    if start:
        for part in parts:
            if part.content_id == start:
                return part
    return parts[0]

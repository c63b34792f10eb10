"""RFC 4662 list notifications: one NOTIFY with the dialog-info of many resources.

The body is `multipart/related` whose root part is the RLMI `<list>`. Each `<instance>`
of a resource names, by `cid`, the body part holding that resource's own dialog-info
document. Reading one resource's part can fail without losing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sip.dialoginfo import DialogInfo, DialogInfoError, RejectReason, RlmiList, parse_dialog_info, parse_rlmi
from sip.multipart import BodyPart, MultipartError, content_type_params, media_type, parse_multipart

RLMI_TYPE = "application/rlmi+xml"
DIALOG_INFO_TYPE = "application/dialog-info+xml"
LIST_CONTENT_TYPE = "multipart/related"

# RFC 4662 §5.2: an instance in one of these states has a body part with its state.
_STATES_WITH_BODY = frozenset({"active", "pending"})


@dataclass(slots=True)
class ResourceDocument:
    """The dialog-info of one resource of a list, or why it could not be read.

    `document` is None when the instance has no body part (its back-end subscription is
    pending without state or has ended) or when the part could not be read (`error`).
    """

    uri: str
    name: str | None
    state: str
    document: DialogInfo | None = None
    error: DialogInfoError | None = None


@dataclass(slots=True)
class ListNotification:
    """One list notification: the RLMI list and a document per resource it lists."""

    listing: RlmiList
    resources: list[ResourceDocument] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_list_notification(body: bytes, content_type: str) -> ListNotification:
    """Read a `multipart/related` list notification into per-resource documents.

    Raises DialogInfoError when the body cannot be split or its RLMI part cannot be
    read. A resource whose part is missing or unreadable gets its error instead.
    """
    if media_type(content_type) != LIST_CONTENT_TYPE:
        raise DialogInfoError(f"Content-Type {content_type!r} is not {LIST_CONTENT_TYPE}", RejectReason.INVALID)
    try:
        parts = parse_multipart(body, content_type)
    except MultipartError as error:
        raise DialogInfoError(f"unreadable list notification: {error}", RejectReason.MALFORMED) from None

    root = _root_part(parts, content_type)
    if root.content_type != RLMI_TYPE:
        raise DialogInfoError(
            f"the root part of the list notification is {root.content_type}, expected {RLMI_TYPE}",
            RejectReason.INVALID,
        )
    notification = ListNotification(listing=parse_rlmi(root.body))
    notification.warnings.extend(notification.listing.warnings)

    by_cid = {part.content_id: part for part in parts if part is not root and part.content_id}
    for resource in notification.listing.resources:
        for instance in resource.instances:
            item = ResourceDocument(uri=resource.uri, name=resource.name, state=instance.state)
            if instance.state in _STATES_WITH_BODY and instance.cid:
                _read_part(item, by_cid.get(instance.cid), instance.cid)
            notification.resources.append(item)
    return notification


def _root_part(parts: list[BodyPart], content_type: str) -> BodyPart:
    """Return the part named by the `start` parameter, else the first (RFC 2387 §3.2)."""
    if not parts:
        raise DialogInfoError("the list notification has no body parts", RejectReason.MALFORMED)
    start = content_type_params(content_type).get("start")
    if start:
        start_id = start.strip().removeprefix("<").removesuffix(">")
        for part in parts:
            if part.content_id == start_id:
                return part
        raise DialogInfoError(f"no body part has the start Content-ID {start_id!r}", RejectReason.MALFORMED)
    return parts[0]


def _read_part(item: ResourceDocument, part: BodyPart | None, cid: str) -> None:
    if part is None:
        item.error = DialogInfoError(f"resource {item.uri}: no body part with Content-ID {cid!r}", RejectReason.MALFORMED)
        return
    if part.content_type != DIALOG_INFO_TYPE:
        item.error = DialogInfoError(
            f"resource {item.uri}: body part {cid!r} is {part.content_type}, expected {DIALOG_INFO_TYPE}",
            RejectReason.INVALID,
        )
        return
    try:
        item.document = parse_dialog_info(part.body)
    except DialogInfoError as error:
        item.error = DialogInfoError(f"resource {item.uri}: {error}", error.reason)

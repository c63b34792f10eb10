"""Dialog-info documents (RFC 4235) and RLMI lists (RFC 4662), read with defusedxml.

The reader is tolerant of what PBXs send: elements in any order, a missing namespace,
a missing `entity`, `pvalue` for `pval`, whitespace around identities, and an empty body
(which Kamailio sends as the first NOTIFY of an idle extension). It raises
DialogInfoError only when the document as a whole cannot be read; a single unreadable
dialog is skipped and named in `warnings`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple, cast
from xml.etree.ElementTree import Element, ParseError
from xml.etree.ElementTree import fromstring as _fromstring_without_dtd
from xml.parsers.expat import errors as expat_errors

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

# A dialog-info body travels in one SIP message, which is at most 64 KiB
# (sip.message.MAX_MESSAGE_BYTES), so a larger body cannot be genuine.
MAX_DOCUMENT_BYTES = 65_535

DIALOG_INFO_NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"
RLMI_NAMESPACE = "urn:ietf:params:xml:ns:rlmi"

# RFC 4235: the dialog states, in the order a dialog moves through them.
DIALOG_STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
DIRECTIONS = ("initiator", "recipient")

# The +sip.rendering target parameter (RFC 4235, from RFC 3840) tells whether the user's
# side is rendering media. PBXs report a call on hold as "no".
RENDERING_PARAM = "+sip.rendering"
_RENDERING_VALUES = {"yes": True, "true": True, "no": False, "false": False}


# expat error codes for a document that stops before its root element is closed.
_TRUNCATION_ERRORS = frozenset(
    expat_errors.codes[message]
    for message in (
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
    )
)
_ENCODING_ERRORS = frozenset(
    expat_errors.codes[message]
    for message in (expat_errors.XML_ERROR_UNKNOWN_ENCODING, expat_errors.XML_ERROR_INCORRECT_ENCODING)
)

# The encoding named in an XML declaration (XML 1.0 §4.3.3). Without one, and without a
# byte order mark, a document is UTF-8.
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


# Built once: a subscripted Literal evaluated in `cast` on every document cost about a
# tenth of the parse time.
DocumentState = Literal["full", "partial"]
DialogDirection = Literal["initiator", "recipient"]


class RejectReason(StrEnum):
    """Why a document was rejected: a short code for logs and metric labels."""

    TOO_LARGE = "too_large"
    ENCODING = "encoding"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"


class DialogInfoError(ValueError):
    """A dialog-info or RLMI document that cannot be read, with the details in the text."""

    def __init__(self, message: str, reason: RejectReason = RejectReason.INVALID) -> None:
        super().__init__(message)
        self.reason = reason


class Replaces(NamedTuple):
    """The dialog that a dialog replaced (RFC 3891), for a transfer or a pickup."""

    call_id: str
    local_tag: str | None
    remote_tag: str | None


@dataclass(slots=True)
class Dialog:
    """One `<dialog>` element, with text stripped and state and direction in lower case."""

    id: str
    state: str
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    direction: DialogDirection | None = None
    state_event: str | None = None
    state_code: int | None = None
    local_identity: str | None = None
    local_display: str | None = None
    local_target: str | None = None
    remote_identity: str | None = None
    remote_display: str | None = None
    remote_target: str | None = None
    rendering: bool | None = None
    replaces: Replaces | None = None
    referred_by: str | None = None


@dataclass(slots=True)
class DialogInfo:
    """One dialog-info document. `version` is None for an empty body or a missing attribute."""

    version: int | None
    state: DocumentState
    entity: str | None
    dialogs: list[Dialog] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RlmiInstance:
    """One `<instance>` of an RLMI resource: a back-end subscription and its body part."""

    id: str
    state: str
    cid: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class RlmiResource:
    """One `<resource>` of an RLMI list."""

    uri: str
    name: str | None = None
    instances: list[RlmiInstance] = field(default_factory=list)


@dataclass(slots=True)
class RlmiList:
    """An RLMI `<list>` document: the first part of an RFC 4662 list notification."""

    uri: str | None
    version: int
    full_state: bool
    resources: list[RlmiResource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_dialog_info(body: bytes) -> DialogInfo:
    """Read a dialog-info document. An empty body is an idle extension with no dialogs."""
    if not body.strip():
        return DialogInfo(version=None, state="full", entity=None)
    root = _parse_xml(body)

    namespace, name = _split_tag(root.tag)
    if name != "dialog-info":
        raise DialogInfoError(f"root element is <{name}>, expected <dialog-info>")

    state = (root.get("state") or "full").strip().lower()
    if state not in ("full", "partial"):
        raise DialogInfoError(f"invalid state {state!r} on <dialog-info>: expected 'full' or 'partial'")
    document = DialogInfo(
        version=_parse_version(root.get("version")),
        state=cast(DocumentState, state),
        entity=_text(root.get("entity")),
    )
    if document.version is None:
        document.warnings.append("no version attribute on <dialog-info>: the document cannot be ordered")

    for index, element in enumerate(_children(root, namespace, "dialog")):
        dialog = _parse_dialog(element, namespace, index, document.warnings)
        if dialog is not None:
            document.dialogs.append(dialog)
    return document


def _parse_dialog(element: Element, namespace: str | None, index: int, warnings: list[str]) -> Dialog | None:
    call_id = _text(element.get("call-id"))
    # RFC 4235 requires `id`. Without one, the call-id or the position keeps dialogs apart.
    dialog_id = _text(element.get("id")) or call_id or f"#{index}"

    children = _first_children(element, namespace)
    state_element = children.get("state")
    if state_element is None:
        warnings.append(f"dialog {dialog_id!r} skipped: it has no <state>")
        return None
    # Compared case-insensitively: Kamailio can send "Trying".
    state = _lower(state_element.text)
    if state not in DIALOG_STATES:
        warnings.append(f"dialog {dialog_id!r} skipped: state {state!r} is not one of {', '.join(DIALOG_STATES)}")
        return None

    direction = _text(element.get("direction"))
    direction = direction.lower() if direction else None
    if direction is not None and direction not in DIRECTIONS:
        warnings.append(f"dialog {dialog_id!r}: direction {direction!r} ignored")
        direction = None

    dialog = Dialog(
        id=dialog_id,
        state=state,
        call_id=call_id,
        local_tag=_text(element.get("local-tag")),
        remote_tag=_text(element.get("remote-tag")),
        direction=cast(DialogDirection | None, direction),
        state_event=_lower(state_element.get("event")),
        state_code=_parse_code(state_element.get("code"), dialog_id, warnings),
        replaces=_parse_replaces(children.get("replaces")),
        referred_by=_text(_element_text(children.get("referred-by"))),
    )
    local = children.get("local")
    if local is not None:
        local_children = _first_children(local, namespace)
        identity, target = local_children.get("identity"), local_children.get("target")
        dialog.local_identity = _text(_element_text(identity))
        dialog.local_display = _text(identity.get("display")) if identity is not None else None
        dialog.local_target = _text(target.get("uri")) if target is not None else None
        if target is not None:
            dialog.rendering = _rendering(target, namespace)
    remote = children.get("remote")
    if remote is not None:
        remote_children = _first_children(remote, namespace)
        identity, target = remote_children.get("identity"), remote_children.get("target")
        dialog.remote_identity = _text(_element_text(identity))
        dialog.remote_display = _text(identity.get("display")) if identity is not None else None
        dialog.remote_target = _text(target.get("uri")) if target is not None else None
    return dialog


def _read_participant(dialog: Dialog, side: str, element: Element | None, namespace: str | None) -> None:
    if element is None:
        return
    identity = _child(element, namespace, "identity")
    target = _child(element, namespace, "target")
    setattr(dialog, f"{side}_identity", _text(_element_text(identity)))
    setattr(dialog, f"{side}_display", _text(identity.get("display")) if identity is not None else None)
    setattr(dialog, f"{side}_target", _text(target.get("uri")) if target is not None else None)
    if side == "local" and target is not None:
        dialog.rendering = _rendering(target, namespace)


def _rendering(target: Element, namespace: str | None) -> bool | None:
    for param in _children(target, namespace, "param"):
        if (param.get("pname") or "").strip().lower() != RENDERING_PARAM:
            continue
        # The RFC spells the value attribute `pval`, but Asterisk and FreeSWITCH write `pvalue`.
        value = param.get("pval") or param.get("pvalue") or ""
        return _RENDERING_VALUES.get(value.strip().lower())
    return None


def _parse_replaces(element: Element | None) -> Replaces | None:
    if element is None:
        return None
    call_id = _text(element.get("call-id"))
    if call_id is None:
        return None
    return Replaces(call_id, _text(element.get("local-tag")), _text(element.get("remote-tag")))


def _parse_code(value: str | None, dialog_id: str, warnings: list[str]) -> int | None:
    text = _text(value)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not 100 <= int(text) <= 699:
        warnings.append(f"dialog {dialog_id!r}: state code {text!r} ignored")
        return None
    return int(text)


def _parse_version(value: str | None) -> int | None:
    text = _text(value)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise DialogInfoError(f"invalid version {text!r}: expected a non-negative integer")
    return int(text)


def parse_rlmi(body: bytes) -> RlmiList:
    """Read the RLMI `<list>` part of an RFC 4662 list notification.

    A resource listed twice keeps its first entry and adds a warning.
    """
    root = _parse_xml(body)
    namespace, name = _split_tag(root.tag)
    if name != "list":
        raise DialogInfoError(f"root element is <{name}>, expected the RLMI <list>")

    version = _parse_version(root.get("version"))
    if version is None:
        raise DialogInfoError("missing version attribute on <list>")
    full_state_text = (root.get("fullState") or "").strip().lower()
    if full_state_text not in ("true", "false", "1", "0"):
        raise DialogInfoError(f"invalid fullState {full_state_text!r} on <list>: expected true or false")
    listing = RlmiList(uri=_text(root.get("uri")), version=version, full_state=full_state_text in ("true", "1"))

    seen: set[str] = set()
    for element in _children(root, namespace, "resource"):
        uri = _text(element.get("uri"))
        if uri is None:
            listing.warnings.append("resource without uri skipped")
            continue
        if uri in seen:
            listing.warnings.append(f"resource {uri!r} listed twice; the first entry is kept")
            continue
        seen.add(uri)
        resource = RlmiResource(uri=uri, name=_text(_element_text(_child(element, namespace, "name"))))
        for instance in _children(element, namespace, "instance"):
            resource.instances.append(
                RlmiInstance(
                    id=_text(instance.get("id")) or "",
                    state=_lower(instance.get("state")) or "",
                    cid=_text(instance.get("cid")),
                    reason=_lower(instance.get("reason")),
                )
            )
        listing.resources.append(resource)
    return listing


def _parse_xml(body: bytes) -> Element:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DialogInfoError(
            f"document of {len(body)} bytes is above the limit of {MAX_DOCUMENT_BYTES}", RejectReason.TOO_LARGE
        )
    body = body.strip()
    utf8 = _check_utf8(body)
    # Entities and external references are refused: a PBX document never needs them,
    # and nested entities expand a small body into gigabytes ("billion laughs"). They
    # can only be declared in a DTD, so a UTF-8 document without one is parsed by the
    # C ElementTree parser, 2.5 times faster than defusedxml's pure-Python tree builder.
    # A NUL byte is never in UTF-8 XML but is in UTF-16 without a byte order mark, which
    # expat detects on its own and where "<!DOCTYPE" would not appear as these bytes.
    safe = utf8 and b"\x00" not in body and b"<!DOCTYPE" not in body and b"<!ENTITY" not in body
    try:
        return _fromstring_without_dtd(body) if safe else fromstring(body)
    except ParseError as error:
        if error.code in _TRUNCATION_ERRORS:
            raise DialogInfoError(f"malformed XML, the document ends early: {error}", RejectReason.TRUNCATED) from None
        if error.code in _ENCODING_ERRORS:
            raise DialogInfoError(f"malformed XML, unusable encoding: {error}", RejectReason.ENCODING) from None
        raise DialogInfoError(f"malformed XML: {error}", RejectReason.MALFORMED) from None
    except DefusedXmlException as error:
        raise DialogInfoError(f"XML feature not accepted: {error}", RejectReason.FORBIDDEN) from None
    except (LookupError, UnicodeError) as error:
        # pyexpat raises LookupError for an encoding name Python does not know.
        raise DialogInfoError(f"malformed XML, unusable encoding: {error}", RejectReason.ENCODING) from None


def _check_utf8(body: bytes) -> bool:
    """Reject a body that is not UTF-8 although it names no other encoding.

    expat would report such a body as an invalid token somewhere in the middle; this
    names the real problem and the byte where it starts.
    """
    if body.startswith(_UTF16_BOMS):
        return False
    declared = _DECLARED_ENCODING.match(body)
    if declared is not None and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DialogInfoError(
            f"document is not valid UTF-8 at byte {error.start} and declares no other encoding",
            RejectReason.ENCODING,
        ) from None
    return True


def _split_tag(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return None, tag


def _children(element: Element, namespace: str | None, name: str) -> list[Element]:
    # Children match in the document's namespace or in none, so a document that omits
    # its namespace still reads. Elements of extension namespaces are left out.
    wanted = _wanted_tags(namespace, name)
    return [child for child in element if child.tag in wanted]


def _child(element: Element, namespace: str | None, name: str) -> Element | None:
    wanted = _wanted_tags(namespace, name)
    for child in element:
        if child.tag in wanted:
            return child
    return None


def _first_children(element: Element, namespace: str | None) -> dict[str, Element]:
    """Return the first child of each name, in the document's namespace or in none."""
    found: dict[str, Element] = {}
    for child in element:
        name = _local_name(child.tag, namespace)
        if name is not None and name not in found:
            found[name] = child
    return found


@functools.lru_cache(maxsize=256)
def _local_name(tag: str, namespace: str | None) -> str | None:
    """Return a tag's name without the namespace, None for a tag of another namespace."""
    if not tag.startswith("{"):
        return tag
    tag_namespace, _, name = tag[1:].partition("}")
    return name if tag_namespace == namespace else None


@functools.lru_cache(maxsize=256)
def _wanted_tags(namespace: str | None, name: str) -> frozenset[str]:
    return frozenset((name, f"{{{namespace}}}{name}")) if namespace else frozenset((name,))


def _element_text(element: Element | None) -> str | None:
    return element.text if element is not None else None


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _lower(value: str | None) -> str | None:
    text = _text(value)
    return text.lower() if text else None

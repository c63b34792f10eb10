"""MIME multipart bodies (RFC 2046 §5.1), as RFC 4662 list notifications carry them.

A list notification is `multipart/related` (RFC 2387): a root part with the RLMI list,
then one part per resource, each named by its Content-ID. The parser works on bytes and
accepts LF as well as CRLF line ends, because bodies copied from logs lose their CRs.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from sip.message import MAX_MESSAGE_BYTES, Headers
from sip.uri import parse_params

# A list notification carries one part per resource. Office BLF lists have a few hundred
# keys at most (an estimate from phone vendors' key-expansion modules), and the cap
# bounds the work one body can cause.
MAX_PARTS = 512

# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(r"\r?\n")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


class MultipartError(ValueError):
    """A multipart body that cannot be split into parts, with the reason in the text."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a multipart body, with its transfer encoding already undone."""

    headers: Headers
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type in lower case without parameters; `text/plain` when absent (RFC 2046 §5.1)."""
        value = self.headers.get("Content-Type")
        return media_type(value) if value else "text/plain"

    @property
    def content_id(self) -> str | None:
        """The Content-ID without its angle brackets (RFC 2392)."""
        value = self.headers.get("Content-ID")
        if value is None:
            return None
        return value.strip().removeprefix("<").removesuffix(">").strip() or None


def media_type(content_type: str) -> str:
    """Return `type/subtype` of a Content-Type value, in lower case."""
    return content_type.partition(";")[0].strip().lower()


def content_type_params(content_type: str) -> dict[str, str | None]:
    """Return the parameters of a Content-Type value, names in lower case."""
    return parse_params(content_type.partition(";")[2])


def parse_multipart(body: bytes, content_type: str) -> list[BodyPart]:
    """Split a multipart body into its parts, in order.

    The preamble before the first boundary and the epilogue after the last are ignored
    (RFC 2046 §5.1.1). A body without a closing boundary keeps the parts it completed.
    """
    if not media_type(content_type).startswith("multipart/"):
        raise MultipartError(f"Content-Type {content_type!r} is not multipart")
    if len(body) > MAX_MESSAGE_BYTES:
        raise MultipartError(f"multipart body of {len(body)} bytes is above the limit of {MAX_MESSAGE_BYTES}")
    boundary = _boundary(content_type)

    # RFC 2046 §5.1.1: a boundary line is "--" + boundary at the start of a line, with
    # only blanks after it. The line break before it belongs to the boundary.
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|$)")
    parts: list[BodyPart] = []
    matches = list(delimiter.finditer(body))
    if not matches:
        raise MultipartError(f"no boundary {boundary.decode()!r} in the body")

    for current, following in zip(matches, matches[1:] + [None]):
        if current.group(1):
            break
        start = _line_end(body, current.end())
        end = following.start() if following is not None else len(body)
        parts.append(_parse_part(body[start:end], len(parts)))
        if len(parts) > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
    return parts


def _boundary(content_type: str) -> bytes:
    boundary = content_type_params(content_type).get("boundary")
    if not boundary:
        raise MultipartError(f"Content-Type {content_type!r} has no boundary parameter")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise MultipartError(f"boundary of {len(boundary)} characters is longer than {MAX_BOUNDARY_LENGTH}")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError(f"boundary {boundary!r} is not ASCII") from None


def _line_end(body: bytes, index: int) -> int:
    """Return the index after the line break that ends a boundary line."""
    if body.startswith(b"\r\n", index):
        return index + 2
    if body.startswith(b"\n", index):
        return index + 1
    return index


def _parse_part(data: bytes, index: int) -> BodyPart:
    # A part with no headers starts with its empty line (RFC 2046 §5.1.1).
    if data.startswith((b"\r\n", b"\n")):
        head, content = b"", data[_line_end(data, 0):]
    else:
        head_end = _HEAD_END.search(data)
        if head_end is None:
            head, content = data, b""
        else:
            head, content = data[:head_end.start()], data[head_end.end():]
    headers = _parse_headers(head, index)
    return BodyPart(headers, _decode(content, headers, index))


def _parse_headers(head: bytes, index: int) -> Headers:
    headers = Headers()
    lines = _LINE_BREAK.split(head.decode("utf-8", "surrogateescape"))
    fields: list[list[str]] = []
    for line in lines:
        if not line:
            continue
        if line[0] in " \t" and fields:
            fields[-1][1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME.match(name.strip()):
            raise MultipartError(f"part {index + 1}: invalid header line {line!r}")
        fields.append([name.strip(), value.strip()])
    for name, value in fields:
        headers.add(name, value)
    return headers


def _decode(content: bytes, headers: Headers, index: int) -> bytes:
    encoding = (headers.get("Content-Transfer-Encoding") or "binary").strip().lower()
    if encoding in ("binary", "8bit", "7bit"):
        return content
    if encoding == "base64":
        try:
            return base64.b64decode(b"".join(content.split()), validate=True)
        except binascii.Error as error:
            raise MultipartError(f"part {index + 1}: invalid base64 content: {error}") from None
    raise MultipartError(f"part {index + 1}: Content-Transfer-Encoding {encoding!r} is not supported")

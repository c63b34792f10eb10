"""SIP traces as text: SIP messages and XML bodies written one after another.

The format is the one of the project's SIP corpus (tests/fixtures/sip):
- a line starting with `#` is a note and is dropped;
- `--- msg N: A -> B ---` starts a SIP message that A sent to B; the part after the
  arrow may carry a comment after a comma or in brackets;
- `--- body ... ---` starts an XML document, which may be empty;
- any other `--- title ---` line starts a section of its own, such as
  `--- RLMI part ---`, read as an XML document when its text starts with `<`;
- text before the first section line is ignored.

Traces are written with LF line ends for reading. A SIP message is returned with CRLF
line ends, for which its Content-Length is written. A file that contains a bare XML
document is one section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# A trace is read whole into memory. Corpus cases are a few kilobytes, and by estimate
# a busy office hour of NOTIFYs is a few megabytes, so the cap only stops a wrong file.
MAX_TRACE_BYTES = 64 * 1024 * 1024

_SECTION_LINE = re.compile(r"^--- (.*) ---$")
_MESSAGE_TITLE = re.compile(r"^msg\s+(?P<label>[^\s:]+)\s*(?::\s*(?P<rest>.*))?$")
_SENDER_RECEIVER = re.compile(r"^(?P<sender>.+?)\s*->\s*(?P<receiver>[^,(]+?)\s*(?:[,(].*)?$")


class SectionKind(StrEnum):
    """The kind of content of a section."""

    MESSAGE = "message"
    DOCUMENT = "document"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TraceSection:
    """One section of a trace.

    `data` is the SIP message with CRLF line ends for a MESSAGE, the XML text for a
    DOCUMENT, and the text as written for OTHER. `line` is the 1-based line number of
    the section's title line, or 1 for a bare document.
    """

    kind: SectionKind
    title: str
    line: int
    data: bytes
    label: str | None = None
    sender: str | None = None
    receiver: str | None = None


class TraceError(ValueError):
    """A trace that cannot be read, with the reason in the text."""


def read_trace_file(path: Path) -> list[TraceSection]:
    """Read a trace file; a `.xml` file, or one starting with `<`, is a bare document."""
    size = path.stat().st_size
    if size > MAX_TRACE_BYTES:
        raise TraceError(f"file of {size} bytes is above the limit of {MAX_TRACE_BYTES}")
    data = path.read_bytes()
    if path.suffix.lower() == ".xml" or data.lstrip().startswith(b"<"):
        return [TraceSection(SectionKind.DOCUMENT, path.name, 1, data)]
    # Invalid UTF-8 is kept byte for byte (surrogateescape), so that a section with a
    # broken body reaches the parser that rejects it, and the rest of the trace reads.
    return read_trace(data.decode("utf-8", "surrogateescape"))


def read_trace(text: str) -> list[TraceSection]:
    """Split trace text into its sections, in order."""
    sections: list[TraceSection] = []
    title: str | None = None
    title_line = 0
    lines: list[str] = []

    for number, line in enumerate(text.splitlines(), start=1):
        match = _SECTION_LINE.match(line)
        if match is not None:
            if title is not None:
                sections.append(_section(title, title_line, lines))
            title, title_line, lines = match.group(1).strip(), number, []
        elif title is not None and not line.startswith("#"):
            lines.append(line)

    if title is not None:
        sections.append(_section(title, title_line, lines))
    return sections


def _section(title: str, line: int, lines: list[str]) -> TraceSection:
    text = "\n".join(lines).strip("\n")
    message = _MESSAGE_TITLE.match(title)
    if message is not None:
        parties = _SENDER_RECEIVER.match(message.group("rest") or "")
        return TraceSection(
            SectionKind.MESSAGE,
            title,
            line,
            _message_bytes(text),
            label=message.group("label"),
            sender=parties.group("sender") if parties else None,
            receiver=parties.group("receiver") if parties else None,
        )
    # An empty body section is a document too: Kamailio's first NOTIFY for an idle
    # extension has no body.
    if title.startswith("body") or text.lstrip().startswith("<"):
        return TraceSection(SectionKind.DOCUMENT, title, line, _encode(text + "\n") if text else b"")
    return TraceSection(SectionKind.OTHER, title, line, _encode(text))


def _message_bytes(text: str) -> bytes:
    # The corpus counts Content-Length over the CRLF form with one line end after the
    # body. A message without a body still needs the empty line that ends its headers.
    text = text + ("\n" if "\n\n" in text else "\n\n")
    return _encode(text.replace("\n", "\r\n"))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")

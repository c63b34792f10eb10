"""Read the SIP corpus fixtures in tests/fixtures/sip.

A `.txt` case contains notes (lines starting with `#`) and sections, each started by a
`--- title ---` line: a SIP message or an XML body. Files use LF line endings for
reading. SIP messages are converted to CRLF, for which their Content-Length was computed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sip"

_SECTION = re.compile(r"^--- (.*) ---$", re.MULTILINE)


@dataclass(frozen=True)
class Section:
    """One `--- title ---` section of a case, without note lines or trailing blank lines."""

    title: str
    text: str

    def message_bytes(self) -> bytes:
        """Return the section as a SIP message with CRLF line endings."""
        # A message without a body still needs the empty line that ends its headers.
        text = self.text + ("\n" if "\n\n" in self.text else "\n\n")
        return text.replace("\n", "\r\n").encode("utf-8")

    def body_bytes(self) -> bytes:
        """Return the section as an XML body, UTF-8 encoded."""
        return (self.text + "\n").encode("utf-8")


def fixture_path(prefix: str) -> Path:
    """Return the one fixture whose name starts with `prefix`, such as "07-"."""
    matches = sorted(FIXTURES.glob(f"{prefix}*"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one fixture named {prefix}* in {FIXTURES}, found {len(matches)}")
    return matches[0]


def sections(prefix: str) -> list[Section]:
    """Split a `.txt` case into its sections, in file order."""
    text = fixture_path(prefix).read_text(encoding="utf-8")
    parts = _SECTION.split(text)
    result = []
    for title, content in zip(parts[1::2], parts[2::2]):
        lines = [line for line in content.split("\n") if not line.startswith("#")]
        result.append(Section(title=title, text="\n".join(lines).strip("\n")))
    return result


def section(prefix: str, title_start: str) -> Section:
    """Return the section of a case whose title starts with `title_start`."""
    found = [item for item in sections(prefix) if item.title.startswith(title_start)]
    if len(found) != 1:
        raise LookupError(f"expected one section {title_start!r} in case {prefix}, found {len(found)}")
    return found[0]


def kamailio_bodies() -> list[bytes]:
    """Return the NOTIFY bodies of the Kamailio 5.6 lab log in order, with b"" for an empty body.

    The log prints one `RAW NOTIFY` line per NOTIFY, then its body (if any) as indented
    lines after `BODY:`.
    """
    bodies: list[bytes] = []
    current: list[str] | None = None
    for line in fixture_path("kamailio-notify-bodies").read_text(encoding="utf-8").split("\n"):
        if " RAW NOTIFY " in line:
            if current is not None:
                bodies.append("\n".join(current).encode("utf-8"))
            current = []
        elif current is not None and line.startswith("    BODY: "):
            current.append(line[len("    BODY: "):])
        elif current is not None and current and line.startswith("          "):
            current.append(line[len("          "):])
    if current is not None:
        bodies.append("\n".join(current).encode("utf-8"))
    return bodies

"""SIP messages (RFC 3261): parsing from bytes and building to bytes, without I/O.

`parse_message` reads one datagram; `StreamParser` frames messages on a TCP or TLS stream
by Content-Length. Both accept what PBXs and phones send in practice: compact header
names, folded lines, odd case and spacing, padded numbers, and CRLF keep-alives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sip.uri import UriError, parse_name_addr, parse_params, split_host_port, split_quoted

# A UDP datagram carries at most 65,535 bytes, so no SIP message on UDP is larger. A
# stream peer that sends more than that in one message is broken, and buffering it
# would let one peer hold unbounded memory.
MAX_MESSAGE_BYTES = 65_535

# The PBX messages in tests/fixtures/sip carry 6 to 16 header lines. The cap bounds
# the work a broken or hostile message can cause and leaves room for long Via and
# Route sets.
MAX_HEADER_COUNT = 256

# RFC 3261 §8.1.1.5: a CSeq number is a 32-bit unsigned integer.
MAX_CSEQ = 2**32 - 1

SIP_VERSION = "SIP/2.0"

# Compact header names: RFC 3261 §7.3.3 (i m e l c f s k t v), RFC 6665 (o u),
# RFC 3515 (r), RFC 3892 (b), RFC 4028 (x), RFC 3841 (a j d), RFC 4474 (y n).
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Usual spellings, so that headers copied into a response read like everyone else's.
_CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Authorization",
        "CSeq", "Call-Info", "Content-Disposition", "Content-Language", "Date", "Diversion",
        "Error-Info", "Expires", "History-Info", "In-Reply-To", "Max-Forwards", "Min-Expires",
        "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
        "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
        "RSeq", "Reason", "Record-Route", "Remote-Party-ID", "Reply-To", "Require",
        "Retry-After", "Route", "Server", "Service-Route", "SIP-ETag", "SIP-If-Match",
        "Subscription-State", "Timestamp", "Unsupported", "User-Agent", "WWW-Authenticate",
        "Warning",
    )
}

# Headers whose grammar is a comma-separated list, so several values may share one line
# (RFC 3261 §7.3.1). Others, such as WWW-Authenticate or Date, have commas inside one value.
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Call-Info", "Contact", "Content-Encoding",
        "Content-Language", "Diversion", "Error-Info", "History-Info", "In-Reply-To", "Path",
        "P-Asserted-Identity", "P-Preferred-Identity", "Proxy-Require", "Reason",
        "Record-Route", "Reject-Contact", "Remote-Party-ID", "Request-Disposition", "Require",
        "Route", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    )
)

# RFC 3261 §8.1.1 and §8.2.6.2: without these a message cannot be matched to a
# transaction or dialog, nor answered.
REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(r"\r?\n")
_STATUS_LINE = re.compile(r"^SIP/2\.0[ \t]+([1-6][0-9]{2})(?:[ \t]+(.*))?$", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^(\S+)[ \t]+(\S+)[ \t]+SIP/2\.0$", re.IGNORECASE)
_VIA = re.compile(
    r"^\s*([A-Za-z0-9.!%*_+`'~-]+)\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s*/\s*"
    r"([A-Za-z0-9.!%*_+`'~-]+)\s+([^;\s]+)\s*(;.*)?$",
    re.DOTALL,
)
_KEEPALIVE_BYTES = b"\r\n\t \x00"


class SipParseError(ValueError):
    """A message that is not valid SIP, with the reason in the text."""


def canonical_header_name(name: str) -> str:
    """Return the full, usual spelling of a header name (compact forms expanded)."""
    lowered = name.lower()
    if lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    return _CANONICAL_NAMES.get(lowered, name)


class Headers:
    """Header fields in order, looked up case-insensitively by full or compact name."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        # Raw values by lower-case full name, so a lookup does not scan every line.
        self._index: dict[str, list[str]] = {}
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append one header line."""
        name = canonical_header_name(name)
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        """Return the first value of a header, or None. A list header gives its first element."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Return every value of a header in order, with list headers split at their commas.

        Commas inside quoted strings and `<...>` do not split, and empty elements are
        dropped.
        """
        wanted = canonical_header_name(name).lower()
        raw = self._index.get(wanted)
        if not raw:
            return []
        if wanted not in LIST_HEADERS:
            return list(raw)
        values: list[str] = []
        for value in raw:
            # Without quotes or brackets no comma is protected, so str.split gives the
            # same pieces as split_quoted at a fraction of the cost.
            pieces = value.split(",") if '"' not in value and "<" not in value else split_quoted(value, ",")
            values.extend(piece.strip() for piece in pieces if piece.strip())
        return values

    def items(self) -> list[tuple[str, str]]:
        """Return (name, value) per header line, in order, with full names."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return canonical_header_name(name).lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Via:
    """One Via value: transport (upper-case), sent-by host and port, and parameters."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str | None:
        """The transaction's branch parameter (RFC 3261 §8.1.1.7)."""
        return self.params.get("branch")


def parse_via(value: str) -> Via:
    """Parse one Via value such as `SIP / 2.0 / UDP host:5060;branch=z9hG4bK1`.

    Whitespace is allowed around each `/` of the sent-protocol and around `;` and `=`
    (RFC 3261 §25.1 SLASH, SEMI and EQUAL).
    """
    match = _VIA.match(value)
    if match is None:
        raise SipParseError(f"invalid Via {value!r}: expected SIP/2.0/<transport> <host>[:port]")
    protocol, version, transport, sent_by, param_text = match.groups()
    if protocol.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"invalid Via {value!r}: protocol is {protocol}/{version}, expected SIP/2.0")
    try:
        host, port = split_host_port(sent_by, value)
    except UriError as error:
        raise SipParseError(f"invalid Via {value!r}: {error}") from None
    return Via(transport=transport.upper(), host=host, port=port, params=parse_params(param_text or ""))


class _MessageFields:
    """Header shortcuts shared by requests and responses."""

    headers: Headers

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return _required(self.headers, "Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method."""
        return parse_cseq(_required(self.headers, "CSeq"))

    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        return _tag_of(_required(self.headers, "From"), "From")

    @property
    def to_tag(self) -> str | None:
        """The To tag, None before the dialog has one."""
        return _tag_of(_required(self.headers, "To"), "To")

    @property
    def top_via(self) -> Via:
        """The first Via, which names the transaction (branch) and where to respond."""
        return parse_via(_required(self.headers, "Via"))


@dataclass(slots=True)
class Request(_MessageFields):
    """A SIP request."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""


@dataclass(slots=True)
class Response(_MessageFields):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse `CSeq: 0009 INVITE` into (9, "INVITE")."""
    parts = value.split()
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
        raise SipParseError(f"invalid CSeq {value!r}: expected '<number> <method>'")
    number = int(parts[0])
    if number > MAX_CSEQ:
        raise SipParseError(f"invalid CSeq {value!r}: number above {MAX_CSEQ}")
    return number, parts[1]


def is_keepalive(data: bytes) -> bool:
    """Return True for a keep-alive datagram or segment: only CR, LF, blanks or NUL bytes.

    RFC 5626 §3.5.1 uses CRLF pairs, and some phones send other short blank datagrams.
    """
    return bool(data) and not data.strip(_KEEPALIVE_BYTES)


def parse_message(data: bytes) -> Request | Response:
    """Parse one SIP message from a datagram.

    Leading CRLFs are skipped (RFC 3261 §7.5). With a Content-Length the body is that many
    bytes and any excess is dropped. Without one, the body is the rest of the datagram
    (RFC 3261 §18.3). Raises SipParseError, also for a keep-alive (see is_keepalive).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes is above the limit of {MAX_MESSAGE_BYTES}")
    if not data or is_keepalive(data):
        raise SipParseError("keep-alive or empty datagram, not a SIP message")

    start = len(data) - len(data.lstrip(b"\r\n"))
    head_end = _HEAD_END.search(data, start)
    if head_end is None:
        head, body = data[start:], b""
    else:
        head, body = data[start:head_end.start()], data[head_end.end():]

    start_line, headers = _parse_head(head)
    length = _content_length(headers)
    if length is not None:
        if len(body) < length:
            raise SipParseError(f"body of {len(body)} bytes is shorter than Content-Length {length}")
        body = body[:length]
    return _make_message(start_line, headers, body)


class StreamParser:
    """Split a TCP or TLS byte stream into SIP messages, framed by Content-Length.

    CRLF keep-alives between messages are skipped (RFC 5626 §3.5.1). A missing
    Content-Length counts as 0. Any SipParseError leaves the stream out of step, so the
    parser then fails every later call too and the connection must be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> list[Request | Response]:
        """Add received bytes and return the messages they complete, in order."""
        if self._error is not None:
            raise SipParseError(f"stream already failed ({self._error}): close the connection")
        self._buffer += data
        messages: list[Request | Response] = []
        try:
            while (message := self._next_message()) is not None:
                messages.append(message)
        except SipParseError as error:
            self._error = error
            raise
        return messages

    def _next_message(self) -> Request | Response | None:
        skipped = 0
        while skipped < len(self._buffer) and self._buffer[skipped] in b"\r\n":
            skipped += 1
        if skipped:
            del self._buffer[:skipped]
            self._scanned = 0

        # Resume the search a few bytes back so a terminator split across segments is found.
        head_end = _HEAD_END.search(self._buffer, max(0, self._scanned - 3))
        if head_end is None:
            self._scanned = len(self._buffer)
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise SipParseError(f"no end of headers within {MAX_MESSAGE_BYTES} bytes")
            return None

        start_line, headers = _parse_head(bytes(self._buffer[:head_end.start()]))
        length = _content_length(headers) or 0
        total = head_end.end() + length
        if total > MAX_MESSAGE_BYTES:
            raise SipParseError(f"message of {total} bytes is above the limit of {MAX_MESSAGE_BYTES}")
        if len(self._buffer) < total:
            # The header section is parsed again once the body is complete, which is cheap.
            self._scanned = 0
            return None

        body = bytes(self._buffer[head_end.end():total])
        del self._buffer[:total]
        self._scanned = 0
        return _make_message(start_line, headers, body)


def build_request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """Serialise a request with CRLF line endings and a Content-Length for `body`."""
    if not _TOKEN.match(method):
        raise ValueError(f"invalid SIP method {method!r}: expected a token such as SUBSCRIBE")
    if not uri or any(char.isspace() for char in uri):
        raise ValueError(f"invalid Request-URI {uri!r}: it must be non-empty and contain no whitespace")
    return _serialise(f"{method} {uri} {SIP_VERSION}", headers, body)


def build_response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """Serialise a response to `request`.

    Following RFC 3261 §8.2.6.2, the response copies every Via in order, From, Call-ID
    and CSeq, and To with `to_tag` added when the request's To has no tag yet.
    `headers` follow those, and Content-Length is added for `body`.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"invalid status code {status}: expected 100-699")

    copied: list[tuple[str, str]] = [(name, value) for name, value in request.headers.items() if name == "Via"]
    copied.append(("From", _required(request.headers, "From")))
    to_value = _required(request.headers, "To")
    if to_tag is not None and _tag_of(to_value, "To") is None:
        to_value = f"{to_value};tag={to_tag}"
    copied.append(("To", to_value))
    copied.append(("Call-ID", _required(request.headers, "Call-ID")))
    copied.append(("CSeq", _required(request.headers, "CSeq")))
    copied.extend(headers)
    return _serialise(f"{SIP_VERSION} {status} {reason}", copied, body)


def _serialise(start_line: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    _check_text(start_line, "start line")
    lines = [start_line]
    for name, value in headers:
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}: expected a token")
        if canonical_header_name(name) == "Content-Length":
            raise ValueError("Content-Length is computed from the body: remove it from the headers")
        _check_text(value, f"{name} header")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def _check_text(text: str, what: str) -> None:
    # A CR or LF from a network-derived value would start a new header line.
    if any(char in text for char in "\r\n\x00"):
        raise ValueError(f"invalid {what} {text!r}: it contains CR, LF or NUL")


def _parse_head(head: bytes) -> tuple[str, Headers]:
    # SIP text is UTF-8 (RFC 3261 §7.3.1). surrogateescape keeps invalid bytes, so a
    # header copied into a response is sent back byte for byte.
    lines = _LINE_BREAK.split(head.decode("utf-8", "surrogateescape"))
    start_line = lines[0].strip()

    fields: list[list[str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # Obsolete line folding: the continuation joins the previous value with one
            # space (RFC 3261 §7.3.1).
            if not fields:
                raise SipParseError(f"continuation line {line!r} before any header")
            previous = fields[-1][1]
            fields[-1][1] = f"{previous} {line.strip()}" if previous else line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.rstrip()
        if not sep or not _TOKEN.match(name):
            raise SipParseError(f"invalid header line {line!r}: expected 'Name: value'")
        fields.append([name, value.strip()])
        if len(fields) > MAX_HEADER_COUNT:
            raise SipParseError(f"more than {MAX_HEADER_COUNT} header lines")

    return start_line, Headers((name, value) for name, value in fields)


def _content_length(headers: Headers) -> int | None:
    values = {value.strip() for value in headers.get_all("Content-Length")}
    if not values:
        return None
    lengths = set()
    for value in values:
        if not value.isascii() or not value.isdigit():
            raise SipParseError(f"invalid Content-Length {value!r}: expected a number of bytes")
        lengths.add(int(value))
    if len(lengths) > 1:
        raise SipParseError(f"conflicting Content-Length values {sorted(lengths)}")
    return lengths.pop()


def _make_message(start_line: str, headers: Headers, body: bytes) -> Request | Response:
    message: Request | Response
    if start_line[:4].upper() == "SIP/":
        status = _STATUS_LINE.match(start_line)
        if status is None:
            raise SipParseError(f"invalid status line {start_line!r}: expected 'SIP/2.0 <code> <reason>'")
        message = Response(int(status.group(1)), (status.group(2) or "").strip(), headers, body)
    else:
        request = _REQUEST_LINE.match(start_line)
        if request is None or not _TOKEN.match(request.group(1)):
            raise SipParseError(f"invalid request line {start_line!r}: expected '<method> <uri> SIP/2.0'")
        message = Request(request.group(1), request.group(2), headers, body)

    for name in REQUIRED_HEADERS:
        if name not in headers:
            raise SipParseError(f"missing {name} header in {start_line!r}")
    # Check each header the properties read, so that they do not raise on a parsed message.
    parse_cseq(_required(headers, "CSeq"))
    parse_via(_required(headers, "Via"))
    _tag_of(_required(headers, "From"), "From")
    _tag_of(_required(headers, "To"), "To")
    return message


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name} header")
    return value


def _tag_of(value: str, name: str) -> str | None:
    try:
        return parse_name_addr(value).tag
    except UriError as error:
        raise SipParseError(f"invalid {name} header {value!r}: {error}") from None

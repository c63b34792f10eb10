"""SIP and tel URIs, name-addr values and the remote party they present (RFC 3261, RFC 3966).

Parsing is tolerant of what PBXs send in practice: a URI with no user part, an empty
user (`sip:@host`), a scheme-less `user@host` target, quoted display names with escapes
and UTF-8, and spaces around `;` and `=`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from sip.model import RemoteParty

URI_SCHEMES = frozenset({"sip", "sips", "tel"})

# User parts and display names that PBXs put where a caller withheld the number, or where
# the number is unknown: `anonymous` (RFC 3323), Asterisk's `invalid` for an unknown number,
# and the spellings carriers use for the same thing.
WITHHELD_USERS = frozenset({"anonymous", "invalid", "unknown", "restricted", "private", "withheld"})
WITHHELD_DISPLAY_NAMES = WITHHELD_USERS | {"unavailable"}

# RFC 3323 recommends `sip:anonymous@anonymous.invalid` for a withheld identity.
ANONYMOUS_HOST = "anonymous.invalid"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]*))?$")
MAX_PORT = 65535


class UriError(ValueError):
    """A URI or name-addr that cannot be read."""


@dataclass(slots=True)
class SipUri:
    """The parts of a sip:, sips: or tel: URI.

    `user` is percent-decoded. It is None when the URI has no user part and "" for an
    empty one (`sip:@host`). For tel: URIs `user` is the number and `host` is None.
    IPv6 hosts keep their brackets.
    """

    scheme: str
    user: str | None
    host: str | None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec header value: display name, URI text and header parameters."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The `tag` parameter, which identifies a dialog's end (RFC 3261 §19.3)."""
        return self.params.get("tag")


def split_quoted(text: str, separator: str) -> list[str]:
    """Split at `separator` outside quoted strings and `<...>`, keeping empty pieces."""
    if '"' not in text and "<" not in text:
        return text.split(separator)
    pieces: list[str] = []
    start = 0
    in_quotes = False
    in_brackets = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_quotes:
            if char == "\\":
                index += 1
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_brackets = True
        elif char == ">":
            in_brackets = False
        elif char == separator and not in_brackets:
            pieces.append(text[start:index])
            start = index + 1
        index += 1
    pieces.append(text[start:])
    return pieces


def unquote_string(text: str) -> str:
    """Remove the quotes of a quoted-string and undo its quoted-pairs (RFC 3261 §25.1)."""
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        return text
    value, end = _read_quoted(text, 0)
    if end != len(text):
        return text
    return value


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `;name=value;flag` parameters into a dict.

    Names are lower-cased because parameter names are case-insensitive (RFC 3261 §7.3.1);
    values keep their case, and quoted values are unquoted. Whitespace around `;` and `=`
    is allowed (RFC 3261 §25.1 SEMI and EQUAL). The first of repeated names wins.
    """
    params: dict[str, str | None] = {}
    for piece in split_quoted(text, ";"):
        name, sep, value = piece.partition("=")
        name = name.strip().lower()
        if not name or name in params:
            continue
        params[name] = unquote_string(value.strip()) if sep else None
    return params


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI, and raise UriError for anything else.

    A scheme-less `user@host` is read as sip, because FreeSWITCH sends dialog-info
    targets such as `**201@host` without one.
    """
    text = text.strip()
    match = _SCHEME.match(text)
    if match is None:
        if "@" not in text:
            raise UriError(f"invalid URI {text!r}: no scheme (expected sip:, sips: or tel:)")
        scheme, rest = "sip", text
    else:
        scheme, rest = match.group(1).lower(), text[match.end():]
    if scheme not in URI_SCHEMES:
        raise UriError(f"unsupported URI scheme {scheme!r} in {text!r}: expected sip, sips or tel")

    if scheme == "tel":
        return _parse_tel(rest, text)
    return _parse_sip(scheme, rest, text)


def _parse_tel(rest: str, text: str) -> SipUri:
    number, _, param_text = rest.partition(";")
    number = unquote(number.strip())
    if not number:
        raise UriError(f"invalid tel URI {text!r}: no number")
    return SipUri(scheme="tel", user=number, host=None, params=parse_params(param_text))


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    rest, _, headers = rest.partition("?")

    # A user part may itself contain ';' (telephone-subscriber parameters), so the host
    # starts after the last '@': '@' is not allowed unescaped anywhere else (RFC 3261 §25.1).
    user: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user = unquote(userinfo.partition(":")[0])

    host_port, _, param_text = rest.partition(";")
    host, port = split_host_port(host_port.strip(), text)
    return SipUri(
        scheme=scheme,
        user=user,
        host=host,
        port=port,
        params=parse_params(param_text),
        headers=headers or None,
    )


def split_host_port(text: str, context: str) -> tuple[str, int | None]:
    """Split `host[:port]`, with IPv6 in brackets. `context` names the value in errors."""
    match = _HOST_PORT.match(text)
    if match is None:
        raise UriError(f"invalid host {text!r} in {context!r}")
    host, port_text = match.group(1), match.group(2)
    if port_text is None:
        return host, None
    if not port_text or int(port_text) > MAX_PORT:
        raise UriError(f"invalid port {port_text!r} in {context!r}: expected 0-{MAX_PORT}")
    return host, int(port_text)


def parse_name_addr(value: str) -> NameAddr:
    """Parse a From/To/Contact-style value: `"Name" <uri>;params`, `Name <uri>` or `uri;params`.

    In the addr-spec form (no angle brackets) every `;` parameter belongs to the header,
    not to the URI (RFC 3261 §20.10). The URI itself is kept as text for parse_uri.
    """
    text = value.strip()
    if not text:
        raise UriError("empty name-addr")

    display: str | None = None
    if text.startswith('"'):
        display, end = _read_quoted(text, 0)
        rest = text[end:].lstrip()
        if not rest.startswith("<"):
            raise UriError(f"invalid name-addr {value!r}: expected <uri> after the display name")
    elif "<" in text:
        bracket = text.index("<")
        display = text[:bracket].strip() or None
        rest = text[bracket:]
    else:
        uri, _, param_text = text.partition(";")
        return NameAddr(display=None, uri=uri.strip(), params=parse_params(param_text))

    close = rest.find(">")
    if close < 0:
        raise UriError(f"invalid name-addr {value!r}: '<' without '>'")
    uri = rest[1:close].strip()
    tail = rest[close + 1:].strip()
    if tail and not tail.startswith(";"):
        raise UriError(f"invalid name-addr {value!r}: unexpected {tail!r} after '>'")
    return NameAddr(display=display, uri=uri, params=parse_params(tail[1:]))


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Return the unescaped content of the quoted-string at `start` and the index after it."""
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(chars), index + 1
        chars.append(char)
        index += 1
    raise UriError(f"unterminated quoted string in {text!r}")


def remote_party_from_uri(uri: str | None, display: str | None) -> RemoteParty:
    """Build the remote party a URI and display name present.

    The number is the user part of a sip/sips URI (without telephone-subscriber
    parameters) or the number of a tel URI, as presented. A withheld or unknown caller
    (`anonymous`, `invalid`, `unknown`, no or empty user, host `anonymous.invalid`, or a
    display name such as "Anonymous" with no usable number) gives number None and
    withheld True.
    """
    display = _clean_display(display)
    display_withheld = display is not None and display.lower() in WITHHELD_DISPLAY_NAMES
    uri = uri.strip() if uri else None
    if not uri:
        return RemoteParty(
            display_name=None if display_withheld else display,
            withheld=display_withheld,
        )

    try:
        parsed = parse_uri(uri)
    except UriError:
        return RemoteParty(display_name=display, uri=uri, withheld=display_withheld)

    number = _presented_number(parsed)
    host_withheld = (parsed.host or "").lower() == ANONYMOUS_HOST
    if number is None or number.lower() in WITHHELD_USERS or host_withheld:
        return RemoteParty(display_name=None if display_withheld else display, uri=uri, withheld=True)
    return RemoteParty(number=number, display_name=display, uri=uri)


def _presented_number(uri: SipUri) -> str | None:
    if uri.user is None:
        return None
    # With user=phone the user part is a telephone-subscriber that may carry its own
    # parameters (`0441234567;phone-context=+41`), so the number is what precedes them.
    number = uri.user.partition(";")[0].strip()
    return number or None


def _clean_display(display: str | None) -> str | None:
    if display is None:
        return None
    # Header text is decoded with surrogateescape. Invalid UTF-8 bytes become U+FFFD here,
    # so that a display name can always be encoded again.
    text = display.encode("utf-8", "surrogateescape").decode("utf-8", "replace").strip()
    # Some notifiers copy the quoted-string of the SIP header into a dialog-info
    # `display` attribute, quotes and escapes included.
    text = unquote_string(text).strip()
    return text or None

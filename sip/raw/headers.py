"""Read the facts about a call from the headers and bodies of raw SIP messages, without I/O.

Each function reads one fact: who is calling (RFC 3325, Remote-Party-ID, RFC 3323
privacy), which number was called first (RFC 7044 History-Info, RFC 5806 Diversion),
why a CANCEL was sent (RFC 3326 Reason), which dialog a transfer replaces (RFC 3891),
whether an SDP offer puts a call on hold (RFC 3264), and the status in a sipfrag body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from sip.message import Headers, Request, Response
from sip.model import RemoteParty
from sip.uri import UriError, parse_name_addr, parse_params, parse_uri, remote_party_from_uri

# RFC 3323 §4.2 and RFC 3325 §9.3: these Privacy values ask that the caller's identity
# is not shown to the called user. `none` and `session` do not hide the number.
WITHHOLDING_PRIVACY = frozenset({"id", "header", "user"})

# Remote-Party-ID `privacy=` values that hide the number (`name` hides only the display
# name), as FreeSWITCH and older Asterisk send them.
RPID_HIDES_NUMBER = frozenset({"full", "uri"})

# RFC 3326 Reason values that mean another device answered: SIP cause 200, and ISDN
# Q.850 cause 26 "non-selected user clearing", which Asterisk adds on the same CANCEL.
ANSWERED_ELSEWHERE_CAUSES = frozenset({("sip", "200"), ("q.850", "26")})

# RFC 4566 direction attributes. An offer that is `sendonly` or `inactive` holds the
# other party (RFC 3264 §8.4); RFC 2543 phones hold with a zero connection address.
HOLD_DIRECTIONS = frozenset({"sendonly", "inactive"})
MEDIA_DIRECTIONS = frozenset({"sendonly", "recvonly", "inactive", "sendrecv"})
HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})

_SIPFRAG_STATUS = re.compile(rb"^\s*SIP/2\.0\s+([1-6][0-9]{2})\b", re.IGNORECASE)
_HISTORY_INDEX = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog named by a Replaces header or Refer-To parameter (RFC 3891)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False


@dataclass(frozen=True, slots=True)
class InviteInfo:
    """The parties of an INVITE as the raw-SIP engine reads them."""

    call_id: str
    cseq: int
    caller: RemoteParty
    caller_user: str | None
    target_user: str | None
    to_user: str | None
    to_display: str | None
    original_called: str | None
    replaces: Replaces | None
    referred_by: str | None


def read_invite(request: Request) -> InviteInfo:
    """Read the caller, the Request-URI target and the original called number of an INVITE."""
    to_value = parse_name_addr(request.headers.get("To") or "")
    return InviteInfo(
        call_id=request.call_id,
        cseq=request.cseq[0],
        caller=caller_party(request.headers),
        caller_user=caller_user(request.headers),
        target_user=uri_user(request.uri),
        to_user=uri_user(to_value.uri),
        to_display=to_value.display,
        original_called=original_called(request.headers),
        replaces=_header_replaces(request.headers),
        referred_by=_name_addr_user(request.headers.get("Referred-By")),
    )


def uri_user(uri: str | None) -> str | None:
    """Return the number or user of a sip/tel URI without telephone-subscriber parameters."""
    if not uri:
        return None
    try:
        parsed = parse_uri(uri)
    except UriError:
        return None
    if parsed.user is None:
        return None
    return parsed.user.partition(";")[0].strip() or None


def caller_party(headers: Headers) -> RemoteParty:
    """Return the caller an INVITE presents, honouring the caller's privacy request.

    The order follows what a PBX trusts: P-Asserted-Identity (RFC 3325), then
    Remote-Party-ID with `party=calling`, then From.
    """
    privacy = _privacy_values(headers)
    if privacy & WITHHOLDING_PRIVACY:
        return RemoteParty(withheld=True)

    from_party = _name_addr_party(headers.get("From"))
    asserted = _first_numbered([_name_addr_party(value) for value in headers.get_all("P-Asserted-Identity")])
    if asserted is None:
        asserted = _remote_party_id(headers)
    if asserted is None:
        return from_party
    if asserted.display_name is None and from_party.number == asserted.number and from_party.display_name:
        # A PAI without a display name presents the same caller as a From that has one.
        return RemoteParty(asserted.number, from_party.display_name, asserted.uri, asserted.withheld)
    return asserted


def caller_user(headers: Headers) -> str | None:
    """Return the user part the caller's own PBX identity uses: the asserted one, else From's.

    This is what names a monitored extension as the caller, so privacy does not hide it.
    """
    for value in headers.get_all("P-Asserted-Identity"):
        user = _name_addr_user(value)
        if user:
            return user
    return _name_addr_user(headers.get("From"))


def original_called(headers: Headers) -> str | None:
    """Return the number first called before the PBX or a carrier forwarded the call.

    History-Info (RFC 7044) is preferred when present: its entry with the lowest index is
    the original target. Otherwise the bottom-most Diversion (RFC 5806) is the first
    forwarding party, because each redirection adds its entry on top.
    """
    entries: list[tuple[tuple[int, ...], str]] = []
    for value in headers.get_all("History-Info"):
        try:
            name_addr = parse_name_addr(value)
        except UriError:
            continue
        index = name_addr.params.get("index") or ""
        if not _HISTORY_INDEX.match(index):
            continue
        user = uri_user(name_addr.uri.partition("?")[0])
        if user:
            entries.append((tuple(int(part) for part in index.split(".")), user))
    if entries:
        return min(entries)[1]

    diversions = headers.get_all("Diversion")
    for value in reversed(diversions):
        user = _name_addr_user(value)
        if user:
            return user
    return None


def answered_elsewhere(message: Request | Response) -> bool:
    """Tell whether a CANCEL or BYE carries an RFC 3326 Reason for an answer on another device."""
    for value in message.headers.get_all("Reason"):
        protocol, _, param_text = value.partition(";")
        params = parse_params(param_text)
        cause = (params.get("cause") or "").strip()
        if (protocol.strip().lower(), cause) in ANSWERED_ELSEWHERE_CAUSES:
            return True
    return False


def parse_replaces(value: str) -> Replaces | None:
    """Parse `call-id;to-tag=x;from-tag=y[;early-only]`, or return None when a part is missing."""
    call_id, _, param_text = value.partition(";")
    params = parse_params(param_text)
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not call_id.strip() or not to_tag or not from_tag:
        return None
    return Replaces(call_id.strip(), to_tag, from_tag, "early-only" in params)


def refer_target(refer_to: str) -> tuple[str | None, Replaces | None]:
    """Return the user a REFER sends the call to, and the dialog it replaces (attended transfer).

    An attended transfer carries the consultation dialog as an escaped URI header:
    `<sip:202@pbx?Replaces=callid%3Bto-tag%3Dx%3Bfrom-tag%3Dy>` (RFC 3891 §7).
    """
    try:
        uri = parse_name_addr(refer_to).uri
        parsed = parse_uri(uri)
    except UriError:
        return None, None
    replaces = None
    for field in (parsed.headers or "").split("&"):
        name, _, value = field.partition("=")
        if name.strip().lower() == "replaces":
            replaces = parse_replaces(unquote(value))
    user = parsed.user.partition(";")[0].strip() if parsed.user else None
    return user or None, replaces


def offer_holds(body: bytes, content_type: str | None) -> bool | None:
    """Tell whether an SDP offer puts the call on hold; None when the body is no SDP.

    The audio stream's own direction attribute wins over the session-level one
    (RFC 4566 §6). With no attribute at all a stream is `sendrecv`.
    """
    if not body.strip() or (content_type or "application/sdp").split(";")[0].strip().lower() != "application/sdp":
        return None
    session_direction = "sendrecv"
    session_address: str | None = None
    audio: dict[str, str | None] | None = None
    for raw_line in body.decode("utf-8", "replace").splitlines():
        line = raw_line.strip()
        if line.startswith("m="):
            if audio is not None:
                break  # Only the first audio stream counts.
            if line[2:].startswith("audio"):
                audio = {"direction": None, "address": None}
            continue
        target = audio
        if line.startswith("a=") and line[2:] in MEDIA_DIRECTIONS:
            if target is None:
                session_direction = line[2:]
            else:
                target["direction"] = line[2:]
        elif line.startswith("c="):
            address = line.split()[-1] if len(line.split()) >= 3 else None
            if target is None:
                session_address = address
            else:
                target["address"] = address
    direction = (audio or {}).get("direction") or session_direction
    address = (audio or {}).get("address") or session_address
    return direction in HOLD_DIRECTIONS or address in HOLD_ADDRESSES


def sipfrag_status(body: bytes) -> int | None:
    """Return the status code of a `message/sipfrag` body, as REFER's NOTIFYs carry (RFC 3515)."""
    match = _SIPFRAG_STATUS.match(body)
    return int(match.group(1)) if match else None


def _privacy_values(headers: Headers) -> set[str]:
    values: set[str] = set()
    for value in headers.get_all("Privacy"):
        values.update(token.strip().lower() for token in value.split(";") if token.strip())
    return values


def _name_addr_party(value: str | None) -> RemoteParty:
    if not value:
        return RemoteParty()
    try:
        name_addr = parse_name_addr(value)
    except UriError:
        return RemoteParty()
    return remote_party_from_uri(name_addr.uri, name_addr.display)


def _name_addr_user(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return uri_user(parse_name_addr(value).uri)
    except UriError:
        return None


def _first_numbered(parties: list[RemoteParty]) -> RemoteParty | None:
    """Return the first party with a number (PAI may carry a sip: and a tel: value), else the first."""
    for party in parties:
        if party.number is not None:
            return party
    return parties[0] if parties else None


def _remote_party_id(headers: Headers) -> RemoteParty | None:
    for value in headers.get_all("Remote-Party-ID"):
        try:
            name_addr = parse_name_addr(value)
        except UriError:
            continue
        if (name_addr.params.get("party") or "calling").lower() != "calling":
            continue
        privacy = (name_addr.params.get("privacy") or "off").lower()
        if privacy in RPID_HIDES_NUMBER:
            return RemoteParty(withheld=True)
        display = None if privacy == "name" else name_addr.display
        return remote_party_from_uri(name_addr.uri, display)
    return None


def _header_replaces(headers: Headers) -> Replaces | None:
    value = headers.get("Replaces")
    return parse_replaces(value) if value else None


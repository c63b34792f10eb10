"""Digest authentication of SIP requests (RFC 7616 as RFC 3261 §22 and RFC 8760 use it).

The module is sans-I/O. `parse_challenge` reads a `WWW-Authenticate` or
`Proxy-Authenticate` value, `compute_response` is the hash of RFC 7616 §3.4.1, and
`DigestClient` keeps the challenges a server sent so that later requests carry
credentials at once and count their nonce uses (`nc`).

Supported: MD5, SHA-256 and SHA-512-256, each also as `-sess`; qop `auth`, `auth-int`
and the RFC 2069 form without qop; `userhash`; `stale=true`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sip.uri import split_quoted

# RFC 7616 §3.3 and RFC 8760 §2.2: the algorithms a SIP server may name. The name is
# compared case-insensitively; an absent `algorithm` means MD5.
HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}
SESSION_SUFFIX = "-SESS"

# RFC 7616 §3.4: `nc` is 8 hexadecimal digits, so a nonce serves at most this many
# requests before a new challenge is needed.
MAX_NONCE_COUNT = 0xFFFFFFFF

# A challenge value is a few hundred bytes; this bounds the work a hostile one causes.
MAX_CHALLENGE_LENGTH = 4096

WWW_AUTHENTICATE = "WWW-Authenticate"
PROXY_AUTHENTICATE = "Proxy-Authenticate"

# RFC 3261 §22.2 and §22.3: the retry after a 401 (WWW-Authenticate) carries
# Authorization, and the retry after a 407 (Proxy-Authenticate) Proxy-Authorization.
ANSWER_HEADER = {WWW_AUTHENTICATE: "Authorization", PROXY_AUTHENTICATE: "Proxy-Authorization"}


class DigestError(ValueError):
    """A challenge that cannot be read or computed, with the reason in the text."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password; the password never appears in `repr`."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge of a 401 or 407 response."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False

    @property
    def supported(self) -> bool:
        """Whether this module supports the challenge's algorithm and qop."""
        base = self.algorithm.upper().removesuffix(SESSION_SUFFIX)
        qop_ok = not self.qop or "auth" in self.qop or "auth-int" in self.qop
        return base in HASHES and qop_ok


def parse_auth_params(text: str) -> dict[str, str]:
    """Split `a=b, c="d, e"` into a dict with lower-case names and unquoted values."""
    params: dict[str, str] = {}
    for item in split_quoted(text, ","):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if not sep:
            raise DigestError(f"invalid auth parameter {item.strip()!r}: expected name=value")
        params[name] = _unquote(value.strip())
    return params


def parse_challenge(value: str) -> Challenge:
    """Read one `Digest realm="…", nonce="…", …` challenge; raise DigestError otherwise."""
    if len(value) > MAX_CHALLENGE_LENGTH:
        raise DigestError(f"challenge of {len(value)} characters is above the limit of {MAX_CHALLENGE_LENGTH}")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"authentication scheme {scheme!r} is not supported, only Digest")

    params = parse_auth_params(rest)
    realm = params.get("realm")
    nonce = params.get("nonce")
    if realm is None or nonce is None:
        raise DigestError(f"Digest challenge without realm or nonce: {value!r}")

    qop = tuple(option.strip().lower() for option in params.get("qop", "").split(",") if option.strip())
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=params.get("algorithm", "MD5").strip(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").strip().lower() == "true",
        userhash=params.get("userhash", "").strip().lower() == "true",
    )


def first_supported(values: list[str]) -> Challenge | None:
    """Return the first challenge among header values that this module can answer.

    A server lists its challenges in order of preference, and RFC 8760 has the client
    take the topmost one it supports. Values that cannot be read are skipped.
    """
    for value in values:
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue
        if challenge.supported:
            return challenge
    return None


def compute_response(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """Return the `response` value: the hex digest of RFC 7616 §3.4.1 (RFC 2069 without qop)."""
    digest = _hash_of(challenge.algorithm)

    # RFC 7616 §3.4.2: A1 is user:realm:password, and a -sess algorithm hashes it
    # once more with both nonces.
    ha1 = digest(f"{credentials.username}:{challenge.realm}:{credentials.password}".encode())
    if challenge.algorithm.upper().endswith(SESSION_SUFFIX):
        ha1 = digest(f"{ha1}:{challenge.nonce}:{cnonce}".encode())

    # RFC 7616 §3.4.3: auth-int adds the hash of the body to A2.
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += f":{digest(body)}"
    ha2 = digest(a2.encode())

    if qop is None:
        return digest(f"{ha1}:{challenge.nonce}:{ha2}".encode())
    return digest(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}".encode())


def authorization_value(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """Return the `Digest …` credentials that answer the challenge for one request."""
    qop = _choose_qop(challenge.qop)
    response = compute_response(challenge, credentials, method, uri, cnonce=cnonce, nc=nc, qop=qop, body=body)

    # RFC 7616 §3.4.4: with userhash the user name travels as H(user:realm).
    username = credentials.username
    if challenge.userhash:
        username = _hash_of(challenge.algorithm)(f"{username}:{challenge.realm}".encode())

    parts = [
        f'username="{_escape(username)}"',
        f'realm="{_escape(challenge.realm)}"',
        f'nonce="{_escape(challenge.nonce)}"',
        f'uri="{_escape(uri)}"',
        f'response="{response}"',
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f'opaque="{_escape(challenge.opaque)}"')
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc:08x}", f'cnonce="{_escape(cnonce)}"']
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


@dataclass(slots=True)
class _Nonce:
    """A challenge in use, with its client nonce and the count of requests sent with it."""

    challenge: Challenge
    header: str
    cnonce: str
    count: int = 0


class DigestClient:
    """Answer challenges with one set of credentials and reuse them for later requests.

    `learn` stores the challenge of a 401 or 407 response. `headers_for` then returns
    `Authorization` or `Proxy-Authorization` for every realm learned and counts each use
    of the nonce, because a server may accept a nonce again with a higher `nc` (RFC 7616 §3.4).
    """

    def __init__(self, credentials: Credentials, *, cnonce_factory: Callable[[], str] | None = None) -> None:
        self.credentials = credentials
        self._new_cnonce = cnonce_factory or (lambda: secrets.token_hex(16))
        self._nonces: dict[tuple[str, str], _Nonce] = {}

    def learn(self, header: str, values: list[str]) -> Challenge | None:
        """Store the first supported challenge of a response, or return None when none is.

        `header` is WWW_AUTHENTICATE or PROXY_AUTHENTICATE, `values` its header values.
        """
        challenge = first_supported(values)
        if challenge is None:
            return None
        self._nonces[(header, challenge.realm)] = _Nonce(challenge, header, self._new_cnonce())
        return challenge

    def forget(self) -> None:
        """Drop every learned challenge, so the next request goes without credentials."""
        self._nonces.clear()

    def headers_for(self, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """Return the credential header lines for a request, one per learned realm."""
        lines: list[tuple[str, str]] = []
        for key, entry in list(self._nonces.items()):
            if entry.count >= MAX_NONCE_COUNT:
                # The nonce is used up: the server's next challenge brings a new one.
                del self._nonces[key]
                continue
            entry.count += 1
            value = authorization_value(
                entry.challenge, self.credentials, method, uri, cnonce=entry.cnonce, nc=entry.count, body=body
            )
            lines.append((ANSWER_HEADER[entry.header], value))
        return lines


def _hash_of(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix(SESSION_SUFFIX)
    if base not in HASHES:
        raise DigestError(f"digest algorithm {algorithm!r} is not supported; expected one of {', '.join(HASHES)}")
    return HASHES[base]


def _choose_qop(options: tuple[str, ...]) -> str | None:
    # `auth` needs no body hash, so it is preferred when the server offers both.
    if not options:
        return None
    if "auth" in options:
        return "auth"
    if "auth-int" in options:
        return "auth-int"
    raise DigestError(f"qop {', '.join(options)} is not supported; expected auth or auth-int")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')

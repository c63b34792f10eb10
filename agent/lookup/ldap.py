"""LDAP and Active Directory: search the phone attributes at ring time, verify each hit here.

The telephoneNumber matching rules of RFC 4517 ignore only spaces and hyphens, so
`+41441234567` does not find `044 123 45 67` or `+41 (0)44 123 45 67`. The filter
therefore requests the caller's number in several exact forms and any value ending in
its last digits (`*41234567`), and the number matcher then drops the false hits.
ldap3 is synchronous, so each lookup runs in a worker thread with ldap3's own timeouts
set to the lookup timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from agent.lookup.connector import Card, Connector, ConnectorError, ConnectorHealth, ErrorCode
from agent.lookup.numbers import MIN_MATCH_DIGITS, CallerNumber
from agent.lookup.settings import LdapSettings

log = logging.getLogger("ringboard.lookup.ldap")

# A search returns at most this many entries, because a number shared by more is a
# switchboard and the page shows five cards at most.
MAX_ENTRIES = 20

# LDAP result code 49: the bind DN or password is wrong (RFC 4511).
INVALID_CREDENTIALS = 49


class LdapConnector(Connector):
    """A directory searched by phone number."""

    kind = "live"

    def __init__(self, settings: LdapSettings, *, timeout: float, match_digits: int) -> None:
        self.name = settings.name
        self.label = settings.label
        self.logo = settings.logo
        self.settings = settings
        self.timeout = timeout
        self.tail_length = max(match_digits, MIN_MATCH_DIGITS)
        parts = urlsplit(settings.url)
        self._server = ldap3.Server(
            parts.hostname or "",
            port=parts.port,
            use_ssl=parts.scheme.lower() == "ldaps",
            get_info=ldap3.NONE,
            connect_timeout=timeout,
        )
        self._last_error: ConnectorError | None = None

    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Search the directory in a worker thread and return verified cards."""
        try:
            cards = await asyncio.to_thread(self._search, number)
        except ConnectorError as error:
            self._last_error = error
            raise
        self._last_error = None
        return cards

    async def health(self) -> ConnectorHealth:
        """Bind to the directory and report whether it worked."""
        try:
            await asyncio.to_thread(self._bind_and_close)
        except ConnectorError as error:
            return ConnectorHealth(ok=False, code=error.code, params=error.params)
        return ConnectorHealth(ok=True)

    def search_filter(self, number: CallerNumber) -> str:
        """Return the LDAP filter for the caller (and the main numbers of its direct-dial blocks)."""
        assertions: list[str] = []
        exact_forms = _unique(re.sub(r"[\s-]", "", form) for form in number.search_forms())
        tails = [main.digits[-self.tail_length :] for main in (number.number, *number.main_numbers) if main]
        for attribute in self.settings.phone_attributes:
            for form in exact_forms:
                assertions.append(f"({attribute}={escape_filter_chars(form)})")
            for tail in _unique(tails):
                if self.settings.digit_wildcards:
                    assertions.append(f"({attribute}=*{'*'.join(tail)})")
                else:
                    assertions.append(f"({attribute}=*{tail})")
        return f"(&{self.settings.filter}(|{''.join(assertions)}))"

    # Steps -------------------------------------------------------------------------

    def _connect(self) -> ldap3.Connection:
        """Open and bind a connection; raise ConnectorError with the reason."""
        password = self.settings.password.value if self.settings.password else None
        connection = ldap3.Connection(
            self._server,
            user=self.settings.bind_dn,
            password=password,
            read_only=True,
            # ldap3 2.9.1 packs this into SO_RCVTIMEO as whole seconds, so it must be an int.
            receive_timeout=math.ceil(self.timeout),
            raise_exceptions=False,
        )
        try:
            connection.open()
            if self.settings.start_tls:
                connection.start_tls()
            bound = connection.bind()
        except ldap_errors.LDAPSocketOpenError as error:
            raise ConnectorError(ErrorCode.UNREACHABLE, f"{self.settings.url}: {error}") from error
        except ldap_errors.LDAPSocketReceiveError as error:
            raise ConnectorError(ErrorCode.TIMEOUT, f"{self.settings.url}: {error}") from error
        except ldap_errors.LDAPException as error:
            raise ConnectorError(ErrorCode.FAILED, f"{self.settings.url}: {error}") from error

        if not bound:
            result = connection.result or {}
            connection.unbind()
            if result.get("result") == INVALID_CREDENTIALS:
                raise ConnectorError(ErrorCode.AUTH_FAILED, f"bind as {self.settings.bind_dn} was rejected")
            raise ConnectorError(
                ErrorCode.FAILED, f"bind failed: {result.get('description')} {result.get('message', '')}".strip()
            )
        return connection

    def _bind_and_close(self) -> None:
        self._connect().unbind()

    def _search(self, number: CallerNumber) -> list[Card]:
        """Run the search and keep the entries whose stored numbers match the caller."""
        attributes = [
            *self.settings.phone_attributes,
            *self.settings.name_attributes,
            *self.settings.company_attributes,
        ]
        connection = self._connect()
        try:
            ok = connection.search(
                self.settings.base_dn,
                self.search_filter(number),
                search_scope=ldap3.SUBTREE,
                attributes=attributes,
                size_limit=MAX_ENTRIES,
                time_limit=max(1, int(self.timeout)),
            )
            result = connection.result or {}
            # sizeLimitExceeded (4) still returns the first entries.
            if not ok and result.get("result") not in (0, 4, 32):
                raise ConnectorError(
                    ErrorCode.FAILED, f"search failed: {result.get('description')} {result.get('message', '')}".strip()
                )
            entries = [entry for entry in connection.response or [] if entry.get("type") == "searchResEntry"]
        except ldap_errors.LDAPException as error:
            raise ConnectorError(ErrorCode.FAILED, f"search failed: {error}") from error
        finally:
            connection.unbind()

        cards: list[Card] = []
        for entry in entries:
            values = entry.get("attributes", {})
            stored = [
                str(value) for attribute in self.settings.phone_attributes for value in _list(values.get(attribute))
            ]
            match = number.best_match(stored)
            if match is None:
                continue
            dn = entry.get("dn", "")
            cards.append(
                self.card(
                    match,
                    contact_id=dn,
                    name=_first(values, self.settings.name_attributes),
                    company=_first(values, self.settings.company_attributes),
                    url=self.settings.contact_url.replace("{dn}", quote(dn, safe=""))
                    if self.settings.contact_url
                    else None,
                )
            )
        return cards


def _first(values: dict[str, object], attributes: tuple[str, ...]) -> str | None:
    for attribute in attributes:
        for value in _list(values.get(attribute)):
            if str(value).strip():
                return str(value).strip()
    return None


def _list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen

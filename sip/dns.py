"""Locate the PBX by RFC 3263: NAPTR, then SRV, then A/AAAA, into an ordered target list.

`order_srv` and `naptr_services` are the sans-I/O rules (RFC 2782 weighting, RFC 3263
§4.1 service selection). `ServerLocator` runs the queries with dnspython. Given
`nameservers`, every query, address lookups included, goes to those servers only;
without them, NAPTR and SRV use the system's resolver configuration and host names are
resolved by the operating system (so /etc/hosts applies).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

log = logging.getLogger("ringboard.sip.dns")

TRANSPORTS = ("udp", "tcp", "tls")

# RFC 3261 §19.1.2: the default ports of `sip:` (UDP, TCP) and `sips:` (TLS) URIs.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

# RFC 3263 §4.1: NAPTR services and SRV prefixes per transport.
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}

# Without NAPTR records every transport's SRV name is tried; the secure ones first.
SRV_TRANSPORT_ORDER = ("tls", "tcp", "udp")

# One DNS query may take this long, retries included. A PBX's zone is normally served
# from the office network, where an answer takes milliseconds.
QUERY_LIFETIME_SECONDS = 3.0

# A zone lists a handful of SIP servers; a longer list is cut to bound the failover.
MAX_TARGETS = 16


class ServerNotFound(LookupError):
    """No address could be found for the PBX, with the names tried in the text."""


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send requests: transport, IP address and port.

    `server_name` is the host name from the configuration, which a TLS certificate must
    name (RFC 5922 §4: the domain that was looked up, not the SRV target).
    """

    transport: str
    host: str
    port: int
    server_name: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """One NAPTR answer (RFC 3403), reduced to what RFC 3263 reads."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str


def is_ip_address(host: str) -> bool:
    """Tell whether `host` is an IPv4 or IPv6 literal, which needs no lookup."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """Order SRV records by priority, and within one priority by weighted random choice.

    RFC 2782: lower priority first; among equal priorities a record is picked with a
    chance proportional to its weight, zero-weight records first in the running sum.
    A target of "." means the service is not offered there and is dropped.
    """
    usable = [record for record in records if record.target not in ("", ".")]
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in usable}):
        group = sorted((record for record in usable if record.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(record.weight for record in group)
            pick = rng.uniform(0, total) if total else 0
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def naptr_services(records: Iterable[NaptrRecord], transports: Sequence[str]) -> list[tuple[str, str]]:
    """Return (transport, SRV name) for each usable NAPTR record, best first.

    RFC 3263 §4.1: only records with flag "s" and a SIP service of a supported
    transport count, ordered by `order` and then `preference`.
    """
    usable = [
        record
        for record in records
        if record.flags.lower() == "s"
        and NAPTR_SERVICES.get(record.service.upper()) in transports
        and record.replacement not in ("", ".")
    ]
    usable.sort(key=lambda record: (record.order, record.preference))
    return [(NAPTR_SERVICES[record.service.upper()], record.replacement) for record in usable]


class ServerLocator:
    """Resolve the PBX's name into targets to try in order (RFC 3263 §4)."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        *,
        rng: random.Random | None = None,
        lifetime: float = QUERY_LIFETIME_SECONDS,
    ) -> None:
        self._rng = rng or random.Random()
        self._custom = bool(nameservers)
        self._resolver = self._make_resolver(nameservers, lifetime)

    @staticmethod
    def _make_resolver(nameservers: Sequence[tuple[str, int]] | None, lifetime: float) -> dns.asyncresolver.Resolver | None:
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [host for host, _ in nameservers]
            # dnspython has one port for all servers; the configuration check allows one.
            resolver.port = nameservers[0][1]
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                log.warning("no DNS resolver configuration found: SRV and NAPTR lookups are skipped")
                return None
        resolver.lifetime = lifetime
        return resolver

    async def locate(self, host: str, *, port: int | None = None, transport: str | None = None) -> list[Target]:
        """Return the targets for `host`, best first; raise ServerNotFound when none exists.

        `transport` None means "any": NAPTR records choose, else SRV of every transport.
        An IP address or an explicit port skips NAPTR and SRV (RFC 3263 §4.1, §4.2).
        """
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"invalid transport {transport!r}: expected one of {', '.join(TRANSPORTS)}")
        name = host.strip("[]")

        if is_ip_address(name):
            chosen = transport or "udp"
            return [Target(chosen, name, port or DEFAULT_PORTS[chosen], name)]

        if port:
            chosen = transport or "udp"
            return self._targets(chosen, await self._addresses(name), port, name)

        services = await self._services(name, transport)
        targets: list[Target] = []
        for service_transport, srv_name in services:
            for record in order_srv(await self._srv(srv_name), self._rng):
                addresses = await self._addresses(record.target.rstrip("."))
                targets += self._targets(service_transport, addresses, record.port, name)
        if not targets:
            # RFC 3263 §4.2: without SRV records, the name's own address and the default port.
            chosen = transport or "udp"
            targets = self._targets(chosen, await self._addresses(name), DEFAULT_PORTS[chosen], name)
        if not targets:
            raise ServerNotFound(f"no NAPTR, SRV or address record found for {name!r}")
        return targets[:MAX_TARGETS]

    async def _services(self, name: str, transport: str | None) -> list[tuple[str, str]]:
        if transport is not None:
            return [(transport, f"{SRV_PREFIXES[transport]}.{name}")]
        records = [
            NaptrRecord(rr.order, rr.preference, _text(rr.flags), _text(rr.service), rr.replacement.to_text())
            for rr in await self._query(name, "NAPTR")
        ]
        services = naptr_services(records, TRANSPORTS)
        if services:
            return [(chosen, srv_name.rstrip(".")) for chosen, srv_name in services]
        return [(chosen, f"{SRV_PREFIXES[chosen]}.{name}") for chosen in SRV_TRANSPORT_ORDER]

    async def _srv(self, name: str) -> list[SrvRecord]:
        return [
            SrvRecord(rr.priority, rr.weight, rr.port, rr.target.to_text())
            for rr in await self._query(name, "SRV")
        ]

    async def _addresses(self, name: str) -> list[str]:
        if is_ip_address(name):
            return [name]
        if self._custom:
            answers = [rr.address for rr in await self._query(name, "A")]
            return answers + [rr.address for rr in await self._query(name, "AAAA")]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_DGRAM)
        except socket.gaierror as error:
            log.debug("address lookup of %s failed: %s", name, error)
            return []
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if address not in addresses:
                addresses.append(address)
        return addresses

    async def _query(self, name: str, rdtype: str) -> list:
        if self._resolver is None:
            return []
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as error:
            log.warning("DNS %s query for %s failed: %s", rdtype, name, error)
            return []
        return list(answer)

    @staticmethod
    def _targets(transport: str, addresses: list[str], port: int, name: str) -> list[Target]:
        return [Target(transport, address, port, name) for address in addresses]


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value

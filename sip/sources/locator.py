"""Locate the PBX by RFC 3263: NAPTR, then SRV, then A/AAAA queries with dnspython.

Given `nameservers`, every query goes to those servers only, address lookups included.
Without them, NAPTR and SRV use the system's resolver configuration, and the operating
system resolves host names, so /etc/hosts applies. The ordering rules are the sans-I/O
ones of `sip.dns`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver

from sip.dns import (
    DEFAULT_PORTS,
    SRV_PREFIXES,
    SRV_TRANSPORT_ORDER,
    TRANSPORTS,
    NaptrRecord,
    SrvRecord,
    Target,
    is_ip_address,
    naptr_services,
    order_srv,
)

log = logging.getLogger("ringboard.sip.dns")

# One DNS query may take this long, retries included. A PBX's zone is normally served
# from the office network, where a response takes milliseconds.
QUERY_LIFETIME_SECONDS = 3.0

# A zone lists a handful of SIP servers; a longer list is cut to bound the failover.
MAX_TARGETS = 16


class ServerNotFound(LookupError):
    """No address could be found for the PBX, with the names tried in the text."""


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

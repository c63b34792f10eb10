"""RFC 3263 server location rules, without I/O: targets, SRV weighting, NAPTR selection.

`order_srv` applies RFC 2782 priorities and weights, and `naptr_services` the service
selection of RFC 3263 §4.1. The queries themselves run in `sip.sources.locator`.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TRANSPORTS = ("udp", "tcp", "tls")

# RFC 3261 §19.1.2: the default ports of `sip:` (UDP, TCP) and `sips:` (TLS) URIs.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

# RFC 3263 §4.1: NAPTR services and SRV prefixes per transport.
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}

# Without NAPTR records every transport's SRV name is tried; the secure ones first.
SRV_TRANSPORT_ORDER = ("tls", "tcp", "udp")

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
    """One SRV record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """One NAPTR record (RFC 3403), reduced to the fields RFC 3263 uses."""

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

    RFC 2782: a lower priority comes first. Among equal priorities a record is picked
    with a chance proportional to its weight, zero-weight records first in the running
    sum. A target of "." means the service is not offered there, so it is dropped.
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

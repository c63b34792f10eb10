"""Settings of the raw-SIP sources: `[sip] sources`, `dids`, `link_header`, `[hep]` and `[capture]`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("subscribe", "hep", "capture")

# HEP collectors listen on 9060 by convention (heplify-server, Homer).
DEFAULT_HEP_PORT = 9060


class RawConfigError(ValueError):
    """A raw-source setting is invalid; the message names the key and the fix."""


@dataclass(frozen=True, slots=True)
class RawSettings:
    """Which sources observe the PBX, and how raw SIP is received and mapped to extensions."""

    sources: tuple[str, ...] = ("subscribe",)
    dids: dict[str, str] = field(default_factory=dict)
    link_header: str | None = None
    hep_host: str = "0.0.0.0"
    hep_port: int = DEFAULT_HEP_PORT
    hep_auth_key: str | None = field(default=None, repr=False)
    hep_transports: tuple[str, ...] = ("udp", "tcp")
    capture_interface: str | None = None
    capture_ports: tuple[int, ...] = (5060,)


def parse_raw_settings(sip: dict[str, Any], hep: dict[str, Any], capture: dict[str, Any], extensions: tuple[str, ...]) -> RawSettings:
    """Check the raw-source keys of `[sip]` and the `[hep]` and `[capture]` tables."""
    sources = _sources(sip.get("sources", ["subscribe"]))
    dids = _dids(sip.get("dids", {}), extensions)
    link_header = sip.get("link_header")
    if link_header is not None and (not isinstance(link_header, str) or not link_header.strip() or ":" in link_header):
        raise RawConfigError('[sip] link_header must be a header name such as "X-Linked-ID"')

    _reject_unknown(hep, "hep", {"listen_host", "listen_port", "auth_key", "transports"})
    hep_host = str(hep.get("listen_host", "0.0.0.0"))
    try:
        ipaddress.ip_address(hep_host)
    except ValueError:
        raise RawConfigError(f'[hep] listen_host = "{hep_host}" is not an IP address, e.g. "0.0.0.0"') from None
    hep_port = hep.get("listen_port", DEFAULT_HEP_PORT)
    if isinstance(hep_port, bool) or not isinstance(hep_port, int) or not 0 <= hep_port <= 65535:
        raise RawConfigError(f"[hep] listen_port = {hep_port!r} is invalid: use 0 to 65535")
    transports = hep.get("transports", ["udp", "tcp"])
    if not isinstance(transports, list) or not transports or any(item not in ("udp", "tcp") for item in transports):
        raise RawConfigError('[hep] transports must list "udp", "tcp" or both')
    auth_key = hep.get("auth_key")
    if auth_key is not None and not isinstance(auth_key, str):
        raise RawConfigError("[hep] auth_key must be a string in quotes")

    _reject_unknown(capture, "capture", {"interface", "ports"})
    interface = capture.get("interface")
    if "capture" in sources and not isinstance(interface, str):
        raise RawConfigError('[capture] interface is missing: name the mirror port, e.g. interface = "eth1"')
    ports = capture.get("ports", [5060])
    if not isinstance(ports, list) or not ports or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535 for p in ports):
        raise RawConfigError("[capture] ports must list the SIP ports to decode, e.g. ports = [5060]")

    return RawSettings(
        sources=sources,
        dids=dids,
        link_header=link_header.strip() if isinstance(link_header, str) else None,
        hep_host=hep_host,
        hep_port=hep_port,
        hep_auth_key=auth_key,
        hep_transports=tuple(transports),
        capture_interface=interface if isinstance(interface, str) else None,
        capture_ports=tuple(ports),
    )


def _sources(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise RawConfigError('[sip] sources must list one or more of "subscribe", "hep", "capture"')
    for item in value:
        if item not in SOURCES:
            raise RawConfigError(f'[sip] sources: "{item}" is unknown; use "subscribe", "hep" or "capture"')
    if len(set(value)) != len(value):
        raise RawConfigError("[sip] sources lists a source twice")
    return tuple(value)


def _dids(value: Any, extensions: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RawConfigError('[sip] dids must be a table such as dids = { "+41447654301" = "201" }')
    dids: dict[str, str] = {}
    for number, extension in value.items():
        if str(extension) not in extensions:
            raise RawConfigError(f'[sip] dids: "{number}" maps to "{extension}", which is not in [sip] extensions')
        dids[str(number)] = str(extension)
    return dids


def _reject_unknown(raw: dict[str, Any], table: str, known: set[str]) -> None:
    for key in raw:
        if key not in known:
            raise RawConfigError(f"[{table}] {key} is not a known setting; known ones here: {', '.join(sorted(known))}")

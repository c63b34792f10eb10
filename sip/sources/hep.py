"""asyncio adapter that receives HEP v3 over UDP and TCP and hands on the SIP it carries.

Decoding is sans-I/O (sip.hep); this module owns the sockets. Invalid packets and
payloads that are not valid SIP are counted and dropped, and logged once per
DROP_LOG_EVERY so that a flood cannot fill the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from sip.hep import MAX_HEP_PACKET_BYTES, HepError, HepPacket, HepStreamFramer, decode_hep
from sip.message import Request, Response, SipParseError, is_keepalive, parse_message

log = logging.getLogger("ringboard.sip.hep")

MessageHandler = Callable[[Request | Response, HepPacket], None]

# Drop notices are logged once per this many drops.
DROP_LOG_EVERY = 100

# PBXs and capture agents each hold one connection; the cap stops a misbehaving
# sender from opening sockets without end.
MAX_TCP_CONNECTIONS = 64

# Bytes read from a TCP connection at once; a HEP packet is at most 64 KiB.
TCP_READ_BYTES = MAX_HEP_PACKET_BYTES + 1


@dataclass
class HepCounters:
    """Counts of the packets the receiver took in and dropped."""

    packets: int = 0
    messages: int = 0
    invalid_packets: int = 0
    invalid_sip: int = 0
    not_sip: int = 0
    connections_refused: int = 0


class HepReceiver:
    """Listen for HEP v3 on UDP and TCP and pass each SIP message on with its packet."""

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 9060,
        auth_key: bytes | None = None,
        udp: bool = True,
        tcp: bool = True,
    ) -> None:
        if not udp and not tcp:
            raise ValueError("HEP receiver needs UDP, TCP or both")
        self._on_message = on_message
        self._host, self._port = host, port
        self._auth_key = auth_key
        self._want_udp, self._want_tcp = udp, tcp
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.counters = HepCounters()

    @property
    def udp_address(self) -> tuple[str, int]:
        """The bound UDP address (the port is the real one when 0 was asked for)."""
        if self._udp is None:
            raise RuntimeError("the HEP receiver has no UDP socket: start it with udp=True")
        return self._udp.get_extra_info("sockname")[:2]

    @property
    def tcp_address(self) -> tuple[str, int]:
        """The bound TCP address."""
        if self._tcp is None:
            raise RuntimeError("the HEP receiver has no TCP socket: start it with tcp=True")
        return self._tcp.sockets[0].getsockname()[:2]

    async def start(self) -> None:
        """Bind the sockets. With port 0, UDP picks a free port and TCP binds the same one."""
        loop = asyncio.get_running_loop()
        port = self._port
        if self._want_udp:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _HepDatagrams(self), local_addr=(self._host, port)
            )
            port = self.udp_address[1]
        if self._want_tcp:
            self._tcp = await asyncio.start_server(self._serve_connection, self._host, port)
        log.info("receiving HEP on %s port %d (%s)", self._host, port, "+".join(
            name for name, wanted in (("udp", self._want_udp), ("tcp", self._want_tcp)) if wanted
        ))

    async def stop(self) -> None:
        """Close the sockets and every open connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    # Packets ----------------------------------------------------------------------------

    def packet_received(self, data: bytes, peer: tuple[str, int]) -> None:
        """Decode one HEP packet and hand on its SIP message; drop and count anything invalid."""
        self.counters.packets += 1
        try:
            packet = decode_hep(data, self._auth_key)
        except HepError as error:
            self.counters.invalid_packets += 1
            self._log_drop("an invalid HEP packet", peer, str(error), self.counters.invalid_packets)
            return
        if not packet.is_sip:
            self.counters.not_sip += 1
            return
        if is_keepalive(packet.payload):
            return
        try:
            message = parse_message(packet.payload)
        except SipParseError as error:
            self.counters.invalid_sip += 1
            self._log_drop("a HEP packet with invalid SIP", peer, str(error), self.counters.invalid_sip)
            return
        if packet.timestamp is None:
            packet = _with_arrival_time(packet)
        self.counters.messages += 1
        self._on_message(message, packet)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            self.counters.connections_refused += 1
            log.warning("HEP connection from %s:%s rejected: %d connections already open", peer[0], peer[1], MAX_TCP_CONNECTIONS)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        framer = HepStreamFramer()
        log.info("HEP connection from %s:%s", peer[0], peer[1])
        try:
            while data := await reader.read(TCP_READ_BYTES):
                for packet in framer.feed(data):
                    self.packet_received(packet, peer)
        except HepError as error:
            self.counters.invalid_packets += 1
            log.warning("HEP connection from %s:%s closed: %s", peer[0], peer[1], error)
        except ConnectionError as error:
            log.info("HEP connection from %s:%s failed: %s", peer[0], peer[1], error)
        finally:
            self._connections.discard(task)
            writer.close()

    def _log_drop(self, description: str, peer: tuple[str, int], reason: str, count: int) -> None:
        if count % DROP_LOG_EVERY == 1:
            log.warning("dropped %s from %s:%s (%s); %d dropped so far", description, peer[0], peer[1], reason, count)


class _HepDatagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: HepReceiver) -> None:
        self._receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._receiver.packet_received(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.warning("HEP socket error: %s", exc)


def _with_arrival_time(packet: HepPacket) -> HepPacket:
    # A sender without the timestamp chunks gets the time the packet arrived.
    return replace(packet, timestamp=datetime.now(timezone.utc))

"""Decode captured frames into SIP messages, without I/O.

A frame goes through its link layer (Ethernet with 802.1Q/802.1ad tags, Linux cooked
SLL and SLL2, BSD loopback, raw IP), IPv4 or IPv6 with fragment reassembly, IP-in-IP
and GRE tunnels, and then UDP or TCP. TCP streams are reassembled per direction and
split into SIP messages by Content-Length; SIP over WebSocket (RFC 7118) is de-framed
first (RFC 6455). Anything else is counted and skipped, never raised.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sip.message import MAX_MESSAGE_BYTES, Request, Response, SipParseError, StreamParser, is_keepalive, parse_message

Address = tuple[str, int]

# Link types (tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# OpenBSD and old BSDs number raw IP 12 and 14.
RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_TEB = 0x6558
ETHERTYPE_ERSPAN_II = 0x88BE
VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})

IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
# IPv6 extension headers that may precede the fragment header or the payload.
IPV6_EXTENSION_HEADERS = frozenset({0, 43, 60})
IPV6_FRAGMENT_HEADER = 44

# Fragments of one datagram arrive within seconds. Linux gives up on a datagram after
# 30 s (net.ipv4.ipfrag_time), and so does this decoder.
FRAGMENT_TIMEOUT_SECONDS = 30.0

# Datagrams being reassembled at once: a PBX sends few fragmented messages (large
# INVITEs), and the cap keeps a flood of stray fragments from holding memory.
MAX_PENDING_DATAGRAMS = 1024

# An IPv4 or IPv6 datagram is at most 65,535 bytes (the payload length field).
MAX_DATAGRAM_BYTES = 65_535

# TCP segments held after a gap, per direction of a connection. A gap larger than this
# is a loss: the stream skips it and resynchronises on the next SIP start line.
MAX_OUT_OF_ORDER_BYTES = 256 * 1024

# A TCP connection silent this long is forgotten. SIP phones keep theirs open with
# CRLF keep-alives every 30 to 120 s (RFC 5626 §4.4.1).
TCP_IDLE_SECONDS = 600.0

# Connections followed at once, so that a scan or a flood cannot grow the table.
MAX_TCP_STREAMS = 4096

# Nested tunnels followed before a frame is given up (IP-in-IP in GRE in VLAN ...).
MAX_TUNNEL_DEPTH = 4

_SIP_START = re.compile(
    rb"^(?:[A-Z]{2,16} (?:sips?|tel|urn):[^ ]* SIP/2\.0\r?\n|SIP/2\.0 [1-6][0-9]{2}[ \r\n])"
)
_SIP_RESYNC = re.compile(rb"\r\n(?=(?:[A-Z]{2,16} (?:sips?|tel):[^ \r\n]* SIP/2\.0\r?\n|SIP/2\.0 [1-6][0-9]{2} ))")

_WS_TEXT, _WS_BINARY, _WS_CONTINUATION, _WS_CLOSE = 1, 2, 0, 8


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """A SIP message found in a capture, with its hop and capture time."""

    message: Request | Response
    source: Address
    destination: Address
    timestamp: datetime
    transport: str


@dataclass
class DecoderStats:
    """Counters of what the decoder skipped, for logs and metrics."""

    frames: int = 0
    messages: int = 0
    undecodable: int = 0
    invalid_sip: int = 0
    fragments_dropped: int = 0
    streams_dropped: int = 0


@dataclass
class _Datagram:
    """Fragments of one IP datagram being reassembled."""

    first_seen: datetime
    parts: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None
    protocol: int | None = None


@dataclass
class _Direction:
    """One direction of a TCP connection."""

    last_seen: datetime
    next_seq: int | None = None
    pending: dict[int, bytes] = field(default_factory=dict)
    mode: str = "new"  # new, sip, websocket-handshake, websocket, resync
    parser: StreamParser = field(default_factory=StreamParser)
    buffer: bytearray = field(default_factory=bytearray)
    fragments: bytearray = field(default_factory=bytearray)


class PacketDecoder:
    """Turn captured frames into SIP messages, keeping IP fragments and TCP streams between frames."""

    def __init__(self, ports: set[int] | frozenset[int] | None = None) -> None:
        # Without ports, every UDP and TCP payload that starts like SIP is read.
        self._ports = frozenset(ports) if ports else None
        self._datagrams: dict[tuple[object, ...], _Datagram] = {}
        self._streams: dict[tuple[Address, Address], _Direction] = {}
        self.stats = DecoderStats()

    def decode(self, frame: bytes, linktype: int, timestamp: datetime) -> list[CapturedMessage]:
        """Decode one captured frame and return the SIP messages it completes."""
        self.stats.frames += 1
        try:
            found = self._link(frame, linktype, timestamp)
        except (struct.error, ValueError, IndexError):
            self.stats.undecodable += 1
            return []
        self.stats.messages += len(found)
        return found

    def expire(self, now: datetime) -> None:
        """Forget fragments and TCP connections that saw no traffic for too long."""
        fragments = timedelta(seconds=FRAGMENT_TIMEOUT_SECONDS)
        for key, datagram in list(self._datagrams.items()):
            if now - datagram.first_seen > fragments:
                del self._datagrams[key]
                self.stats.fragments_dropped += 1
        idle = timedelta(seconds=TCP_IDLE_SECONDS)
        for key, stream in list(self._streams.items()):
            if now - stream.last_seen > idle:
                del self._streams[key]

    # Link layer ---------------------------------------------------------------------------

    def _link(self, frame: bytes, linktype: int, now: datetime) -> list[CapturedMessage]:
        if linktype == LINKTYPE_ETHERNET:
            return self._ethernet(frame, now, 0)
        if linktype == LINKTYPE_LINUX_SLL:
            (protocol,) = struct.unpack_from(">H", frame, 14)
            return self._ethertype(protocol, frame[16:], now, 0)
        if linktype == LINKTYPE_LINUX_SLL2:
            (protocol,) = struct.unpack_from(">H", frame, 0)
            return self._ethertype(protocol, frame[20:], now, 0)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            # NULL stores the address family in the capturing host's byte order, LOOP
            # in network order. IPv4 is 2 everywhere; IPv6 is 10, 24, 28 or 30.
            family = frame[0] or frame[3]
            return self._ip(frame[4:], now, 0) if family in (2, 10, 24, 28, 30) else self._skip()
        if linktype in RAW_IP_LINKTYPES:
            return self._ip(frame, now, 0)
        return self._skip()

    def _ethernet(self, frame: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        (ethertype,) = struct.unpack_from(">H", frame, 12)
        return self._ethertype(ethertype, frame[14:], now, depth)

    def _ethertype(self, ethertype: int, payload: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        # 802.1Q and 802.1ad (QinQ) tags: 2 bytes of tag control, then the next type.
        while ethertype in VLAN_ETHERTYPES:
            (ethertype,) = struct.unpack_from(">H", payload, 2)
            payload = payload[4:]
        if ethertype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return self._ip(payload, now, depth)
        return self._skip()

    # IP -----------------------------------------------------------------------------------

    def _ip(self, packet: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        if depth > MAX_TUNNEL_DEPTH or not packet:
            return self._skip()
        version = packet[0] >> 4
        if version == 4:
            return self._ipv4(packet, now, depth)
        if version == 6:
            return self._ipv6(packet, now, depth)
        return self._skip()

    def _ipv4(self, packet: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        header_length = (packet[0] & 0x0F) * 4
        total_length, identification, flags_offset = struct.unpack_from(">HHH", packet, 2)
        protocol = packet[9]
        # A frame cut at the snapshot length holds less than the header promises.
        if header_length < 20 or total_length < header_length or len(packet) < total_length:
            return self._skip()
        source = str(ipaddress.IPv4Address(packet[12:16]))
        destination = str(ipaddress.IPv4Address(packet[16:20]))
        payload = packet[header_length:total_length]

        more_fragments = bool(flags_offset & 0x2000)
        offset = (flags_offset & 0x1FFF) * 8
        if more_fragments or offset:
            key = (4, source, destination, identification, protocol)
            whole = self._reassemble(key, offset, payload, more_fragments, protocol, now)
            if whole is None:
                return []
            payload = whole[0]
        return self._transport(protocol, source, destination, payload, now, depth)

    def _ipv6(self, packet: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        (payload_length,) = struct.unpack_from(">H", packet, 4)
        next_header = packet[6]
        source = str(ipaddress.IPv6Address(packet[8:24]))
        destination = str(ipaddress.IPv6Address(packet[24:40]))
        if len(packet) < 40 + payload_length:
            return self._skip()
        payload = packet[40:40 + payload_length]

        while next_header in IPV6_EXTENSION_HEADERS:
            length = (payload[1] + 1) * 8
            next_header, payload = payload[0], payload[length:]
        if next_header == IPV6_FRAGMENT_HEADER:
            next_header = payload[0]
            (offset_flags, identification) = struct.unpack_from(">HI", payload, 2)
            offset, more_fragments = offset_flags & 0xFFF8, bool(offset_flags & 1)
            key = (6, source, destination, identification)
            whole = self._reassemble(key, offset, payload[8:], more_fragments, next_header, now)
            if whole is None:
                return []
            payload, next_header = whole
        return self._transport(next_header, source, destination, payload, now, depth)

    def _reassemble(
        self, key: tuple[object, ...], offset: int, data: bytes, more: bool, protocol: int, now: datetime
    ) -> tuple[bytes, int] | None:
        """Add one fragment (RFC 791, RFC 8200 §4.5); return the payload and its protocol once complete.

        The protocol is the one the first fragment names, as RFC 8200 §4.5 prescribes.
        """
        datagram = self._datagrams.get(key)
        if datagram is None:
            if len(self._datagrams) >= MAX_PENDING_DATAGRAMS:
                self.stats.fragments_dropped += 1
                return None
            datagram = self._datagrams[key] = _Datagram(first_seen=now)
        if offset == 0:
            datagram.protocol = protocol
        if offset + len(data) > MAX_DATAGRAM_BYTES:
            del self._datagrams[key]
            self.stats.fragments_dropped += 1
            return None
        datagram.parts.setdefault(offset, data)
        if not more:
            datagram.total = offset + len(data)
        if datagram.total is None or datagram.protocol is None:
            return None

        whole = bytearray()
        for start in sorted(datagram.parts):
            if start > len(whole):
                return None  # A fragment is still missing.
            whole[start:start + len(datagram.parts[start])] = datagram.parts[start]
        if len(whole) < datagram.total:
            return None
        del self._datagrams[key]
        return bytes(whole[:datagram.total]), datagram.protocol

    def _transport(
        self, protocol: int, source: str, destination: str, payload: bytes, now: datetime, depth: int
    ) -> list[CapturedMessage]:
        if protocol == IPPROTO_UDP:
            return self._udp(source, destination, payload, now)
        if protocol == IPPROTO_TCP:
            return self._tcp(source, destination, payload, now)
        if protocol in (IPPROTO_IPIP, IPPROTO_IPV6):
            return self._ip(payload, now, depth + 1)
        if protocol == IPPROTO_GRE:
            return self._gre(payload, now, depth + 1)
        return self._skip()

    def _gre(self, packet: bytes, now: datetime, depth: int) -> list[CapturedMessage]:
        # RFC 2784/2890: flags (checksum, key, sequence) add 4 bytes each.
        flags, protocol = struct.unpack_from(">HH", packet, 0)
        offset = 4 + 4 * sum(bool(flags & bit) for bit in (0x8000, 0x2000, 0x1000))
        payload = packet[offset:]
        if protocol == ETHERTYPE_ERSPAN_II:
            return self._ethernet(payload[8:], now, depth)
        if protocol == ETHERTYPE_TEB:
            return self._ethernet(payload, now, depth)
        if protocol in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
            return self._ip(payload, now, depth)
        return self._skip()

    # UDP and TCP --------------------------------------------------------------------------

    def _udp(self, source: str, destination: str, datagram: bytes, now: datetime) -> list[CapturedMessage]:
        source_port, destination_port, length = struct.unpack_from(">HHH", datagram, 0)
        if not self._wanted(source_port, destination_port):
            return []
        if length < 8 or len(datagram) < length:
            return self._skip()
        payload = datagram[8:length]
        if is_keepalive(payload) or not _SIP_START.match(payload):
            return []
        try:
            message = parse_message(payload)
        except SipParseError:
            self.stats.invalid_sip += 1
            return []
        return [CapturedMessage(message, (source, source_port), (destination, destination_port), now, "udp")]

    def _tcp(self, source: str, destination: str, segment: bytes, now: datetime) -> list[CapturedMessage]:
        source_port, destination_port, seq = struct.unpack_from(">HHI", segment, 0)
        if not self._wanted(source_port, destination_port):
            return []
        data_offset = (segment[12] >> 4) * 4
        flags = segment[13]
        payload = segment[data_offset:]
        key = ((source, source_port), (destination, destination_port))

        stream = self._streams.get(key)
        if stream is None:
            if not payload and not flags & 0x02:
                return []
            if len(self._streams) >= MAX_TCP_STREAMS:
                self.stats.streams_dropped += 1
                return []
            stream = self._streams[key] = _Direction(last_seen=now)
        stream.last_seen = now
        if flags & 0x02:  # SYN takes one sequence number.
            stream.next_seq = (seq + 1) & 0xFFFFFFFF
            return []

        data = self._in_order(stream, seq, payload)
        messages = self._stream_data(stream, data, key, now) if data else []
        if flags & 0x05:  # FIN or RST ends this direction.
            self._streams.pop(key, None)
        return messages

    def _in_order(self, stream: _Direction, seq: int, payload: bytes) -> bytes:
        """Return the bytes this segment makes available in sequence order."""
        if not payload:
            return b""
        if stream.next_seq is None:
            stream.next_seq = seq  # The capture started mid-connection.
        gap = (seq - stream.next_seq) & 0xFFFFFFFF
        if gap >= 0x80000000:
            # Older than what was delivered: a retransmission, maybe with new bytes at its end.
            overlap = (stream.next_seq - seq) & 0xFFFFFFFF
            if overlap >= len(payload):
                return b""
            payload, seq = payload[overlap:], stream.next_seq
        elif gap:
            stream.pending.setdefault(seq, payload)
            if sum(len(part) for part in stream.pending.values()) <= MAX_OUT_OF_ORDER_BYTES:
                return b""
            # The gap will not be filled: skip it and resynchronise.
            seq = min(stream.pending, key=lambda start: (start - stream.next_seq) & 0xFFFFFFFF)
            payload = stream.pending.pop(seq)
            stream.mode = "resync" if stream.mode == "sip" else stream.mode
            stream.parser = StreamParser()

        data = bytearray(payload)
        stream.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        while stream.next_seq in stream.pending:
            part = stream.pending.pop(stream.next_seq)
            data += part
            stream.next_seq = (stream.next_seq + len(part)) & 0xFFFFFFFF
        return bytes(data)

    def _stream_data(
        self, stream: _Direction, data: bytes, key: tuple[Address, Address], now: datetime
    ) -> list[CapturedMessage]:
        if stream.mode == "new":
            if data.startswith((b"GET ", b"HTTP/1.1 101", b"HTTP/1.0 101")):
                stream.mode = "websocket-handshake"
            elif _SIP_START.match(data.lstrip(b"\r\n")):
                stream.mode = "sip"
            else:
                stream.mode = "resync"

        if stream.mode == "websocket-handshake":
            stream.buffer += data
            end = stream.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(stream.buffer) > MAX_MESSAGE_BYTES:
                    stream.mode, stream.buffer = "ignored", bytearray()
                return []
            data = bytes(stream.buffer[end + 4:])
            stream.buffer = bytearray()
            stream.mode = "websocket"
        if stream.mode == "websocket":
            return [self._captured(message, key, now, "ws") for message in self._websocket(stream, data)]

        if stream.mode == "resync":
            match = _SIP_RESYNC.search(data)
            if match is None:
                return []
            data, stream.mode, stream.parser = data[match.end():], "sip", StreamParser()
        if stream.mode != "sip":
            return []
        try:
            messages = stream.parser.feed(data)
        except SipParseError:
            self.stats.invalid_sip += 1
            stream.mode, stream.parser = "resync", StreamParser()
            return []
        return [self._captured(message, key, now, "tcp") for message in messages]

    def _websocket(self, stream: _Direction, data: bytes) -> list[Request | Response]:
        """Read RFC 6455 frames; each complete WebSocket message is one SIP message (RFC 7118 §5)."""
        stream.buffer += data
        messages: list[Request | Response] = []
        while True:
            frame = _read_frame(stream.buffer)
            if frame is None:
                if len(stream.buffer) > MAX_MESSAGE_BYTES + 14:
                    stream.mode, stream.buffer = "ignored", bytearray()
                return messages
            used, final, opcode, payload = frame
            del stream.buffer[:used]
            if opcode == _WS_CLOSE:
                stream.mode = "ignored"
                return messages
            if opcode not in (_WS_TEXT, _WS_BINARY, _WS_CONTINUATION):
                continue  # Ping and pong.
            stream.fragments += payload
            if len(stream.fragments) > MAX_MESSAGE_BYTES:
                stream.fragments = bytearray()
                self.stats.invalid_sip += 1
                continue
            if not final:
                continue
            text, stream.fragments = bytes(stream.fragments), bytearray()
            if is_keepalive(text):
                continue
            try:
                messages.append(parse_message(text))
            except SipParseError:
                self.stats.invalid_sip += 1

    # Helpers ------------------------------------------------------------------------------

    def _wanted(self, source_port: int, destination_port: int) -> bool:
        return self._ports is None or source_port in self._ports or destination_port in self._ports

    def _captured(
        self, message: Request | Response, key: tuple[Address, Address], now: datetime, transport: str
    ) -> CapturedMessage:
        return CapturedMessage(message, key[0], key[1], now, transport)

    def _skip(self) -> list[CapturedMessage]:
        self.stats.undecodable += 1
        return []


def _read_frame(buffer: bytearray) -> tuple[int, bool, int, bytes] | None:
    """Return (bytes used, FIN, opcode, unmasked payload) of the first frame, or None if incomplete."""
    if len(buffer) < 2:
        return None
    final, opcode = bool(buffer[0] & 0x80), buffer[0] & 0x0F
    masked, length = bool(buffer[1] & 0x80), buffer[1] & 0x7F
    offset = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack_from(">H", buffer, 2)
        offset = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack_from(">Q", buffer, 2)
        offset = 10
    mask = b""
    if masked:
        if len(buffer) < offset + 4:
            return None
        mask, offset = bytes(buffer[offset:offset + 4]), offset + 4
    if len(buffer) < offset + length:
        return None
    payload = bytes(buffer[offset:offset + length])
    if masked:
        # RFC 6455 §5.3: octet i is XORed with mask octet i mod 4.
        payload = bytes(octet ^ mask[index % 4] for index, octet in enumerate(payload))
    return offset + length, final, opcode, payload

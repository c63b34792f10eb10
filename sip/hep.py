"""HEP v3 (EEP), the encapsulation PBXs use to mirror SIP to a collector, without I/O.

A packet is the ASCII magic `HEP3`, a 16-bit total length (network order, header
included) and chunks. Each chunk has a 16-bit vendor id, a 16-bit type and a 16-bit
length that includes its own 6-byte header. Chunk types follow the HEP3 specification
of the sipcapture project, as Kamailio's siptrace, Asterisk's res_hep and heplify send
them. Unknown types and vendor chunks are skipped.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

from sip.message import MAX_MESSAGE_BYTES

MAGIC = b"HEP3"

# The packet length field is 16 bits wide, so no HEP3 packet is larger; over TCP this
# also bounds the bytes buffered for one packet.
MAX_HEP_PACKET_BYTES = 65_535

# A SIP message is at most MAX_MESSAGE_BYTES; a compressed payload that inflates past
# it is rejected before it is expanded further.
MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES

HEADER_BYTES = 6
CHUNK_HEADER_BYTES = 6

# Chunk types of the generic vendor (0x0000).
FAMILY = 0x0001
PROTOCOL = 0x0002
IPV4_SOURCE = 0x0003
IPV4_DESTINATION = 0x0004
IPV6_SOURCE = 0x0005
IPV6_DESTINATION = 0x0006
SOURCE_PORT = 0x0007
DESTINATION_PORT = 0x0008
TIMESTAMP_SECONDS = 0x0009
TIMESTAMP_MICROSECONDS = 0x000A
PROTOCOL_TYPE = 0x000B
CAPTURE_ID = 0x000C
KEEPALIVE = 0x000D
AUTH_KEY = 0x000E
PAYLOAD = 0x000F
COMPRESSED_PAYLOAD = 0x0010
CORRELATION_ID = 0x0011
VLAN_ID = 0x0012
NODE_NAME = 0x0013

# Protocol type 1 is SIP; 5 RTCP, 53 DNS and 100 log lines are other payloads.
PROTOCOL_TYPE_SIP = 1

# Address families as Linux numbers them, which the HEP family chunk carries.
AF_INET = 2
AF_INET6 = 10

_UINT_SIZES = {1: ">B", 2: ">H", 4: ">I"}


class HepError(ValueError):
    """A packet that is not valid HEP v3, with the reason in the text."""


@dataclass(frozen=True, slots=True)
class HepPacket:
    """One decoded HEP v3 packet: who sent the captured message to whom, when, and the message."""

    family: int | None
    protocol: int | None
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    timestamp: datetime | None
    protocol_type: int | None
    capture_id: int | None
    auth_key: bytes | None
    payload: bytes
    correlation_id: str | None = None
    node_name: str | None = None

    @property
    def is_sip(self) -> bool:
        """Tell whether the payload is a SIP message (protocol type 1)."""
        return self.protocol_type == PROTOCOL_TYPE_SIP


def decode_hep(data: bytes, auth_key: bytes | None = None) -> HepPacket:
    """Decode one HEP v3 packet; raise HepError with the reason for anything invalid.

    With `auth_key`, a packet must carry that key in its auth chunk (compared in constant
    time). Without one, a key in the packet is ignored.
    """
    if len(data) < HEADER_BYTES:
        raise HepError(f"packet of {len(data)} bytes is shorter than the {HEADER_BYTES}-byte HEP header")
    if data[:4] != MAGIC:
        if data[:1] in (b"\x01", b"\x02"):
            raise HepError(f"HEP version {data[0]} is not supported: configure the sender for HEP version 3")
        raise HepError(f"invalid magic {data[:4]!r}: expected {MAGIC!r}")
    (length,) = struct.unpack_from(">H", data, 4)
    if length != len(data):
        raise HepError(f"invalid length field {length}: the packet has {len(data)} bytes")

    chunks = _read_chunks(data)
    if auth_key is not None and not hmac.compare_digest(chunks.get(AUTH_KEY, b""), auth_key):
        raise HepError("auth key missing or wrong: check the sender's HEP password")

    payload = _payload(chunks)
    family = _uint(chunks, FAMILY)
    source_host, destination_host = _addresses(chunks, family)
    source_port, destination_port = _uint(chunks, SOURCE_PORT), _uint(chunks, DESTINATION_PORT)
    return HepPacket(
        family=family,
        protocol=_uint(chunks, PROTOCOL),
        source=(source_host, source_port or 0) if source_host else None,
        destination=(destination_host, destination_port or 0) if destination_host else None,
        timestamp=_timestamp(chunks),
        protocol_type=_uint(chunks, PROTOCOL_TYPE),
        capture_id=_uint(chunks, CAPTURE_ID),
        auth_key=chunks.get(AUTH_KEY),
        payload=payload,
        correlation_id=_text(chunks, CORRELATION_ID),
        node_name=_text(chunks, NODE_NAME),
    )


def encode_hep(
    payload: bytes,
    source: tuple[str, int],
    destination: tuple[str, int],
    timestamp: datetime,
    *,
    protocol: int = 17,
    protocol_type: int = PROTOCOL_TYPE_SIP,
    capture_id: int = 0,
    auth_key: bytes | None = None,
    correlation_id: str | None = None,
    compress: bool = False,
) -> bytes:
    """Encode one HEP v3 packet, in the chunk order Kamailio's siptrace uses."""
    source_ip, destination_ip = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if source_ip.version != destination_ip.version:
        raise ValueError(f"source {source[0]} and destination {destination[0]} are of different IP versions")
    v4 = source_ip.version == 4
    moment = timestamp.astimezone(timezone.utc)
    seconds = int(moment.timestamp())

    chunks = [
        _chunk(FAMILY, struct.pack(">B", AF_INET if v4 else AF_INET6)),
        _chunk(PROTOCOL, struct.pack(">B", protocol)),
        _chunk(IPV4_SOURCE if v4 else IPV6_SOURCE, source_ip.packed),
        _chunk(IPV4_DESTINATION if v4 else IPV6_DESTINATION, destination_ip.packed),
        _chunk(SOURCE_PORT, struct.pack(">H", source[1])),
        _chunk(DESTINATION_PORT, struct.pack(">H", destination[1])),
        _chunk(TIMESTAMP_SECONDS, struct.pack(">I", seconds)),
        _chunk(TIMESTAMP_MICROSECONDS, struct.pack(">I", moment.microsecond)),
        _chunk(PROTOCOL_TYPE, struct.pack(">B", protocol_type)),
        _chunk(CAPTURE_ID, struct.pack(">I", capture_id)),
    ]
    if auth_key is not None:
        chunks.append(_chunk(AUTH_KEY, auth_key))
    if correlation_id is not None:
        chunks.append(_chunk(CORRELATION_ID, correlation_id.encode()))
    if compress:
        chunks.append(_chunk(COMPRESSED_PAYLOAD, gzip.compress(payload)))
    else:
        chunks.append(_chunk(PAYLOAD, payload))

    body = b"".join(chunks)
    length = HEADER_BYTES + len(body)
    if length > MAX_HEP_PACKET_BYTES:
        raise ValueError(f"HEP packet of {length} bytes is above the limit of {MAX_HEP_PACKET_BYTES}")
    return MAGIC + struct.pack(">H", length) + body


class HepStreamFramer:
    """Split a TCP byte stream into HEP packets, framed by their length field.

    Bytes that do not start with the magic leave the stream out of step, so the framer
    then fails every later call too and the connection must be closed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: HepError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes and return the complete packets, in order."""
        if self._error is not None:
            raise HepError(f"stream already failed ({self._error}): close the connection")
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= HEADER_BYTES:
            if self._buffer[:4] != MAGIC:
                self._error = HepError(f"invalid magic {bytes(self._buffer[:4])!r} in stream: expected {MAGIC!r}")
                raise self._error
            (length,) = struct.unpack_from(">H", self._buffer, 4)
            if length < HEADER_BYTES:
                self._error = HepError(f"length field {length} is shorter than the HEP header")
                raise self._error
            if len(self._buffer) < length:
                break
            packets.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
        return packets


def _read_chunks(data: bytes) -> dict[int, bytes]:
    chunks: dict[int, bytes] = {}
    offset = HEADER_BYTES
    while offset < len(data):
        if len(data) - offset < CHUNK_HEADER_BYTES:
            raise HepError(f"truncated chunk header at byte {offset}")
        vendor, kind, length = struct.unpack_from(">HHH", data, offset)
        if length < CHUNK_HEADER_BYTES:
            raise HepError(f"chunk 0x{kind:04x} at byte {offset} has length {length}, below its 6-byte header")
        if offset + length > len(data):
            raise HepError(f"chunk 0x{kind:04x} at byte {offset} runs {offset + length - len(data)} bytes past the packet")
        if vendor == 0:
            chunks.setdefault(kind, data[offset + CHUNK_HEADER_BYTES:offset + length])
        offset += length
    return chunks


def _payload(chunks: dict[int, bytes]) -> bytes:
    if PAYLOAD in chunks:
        payload = chunks[PAYLOAD]
    elif COMPRESSED_PAYLOAD in chunks:
        payload = _inflate(chunks[COMPRESSED_PAYLOAD])
    else:
        raise HepError("no payload chunk (0x000f or 0x0010)")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise HepError(f"payload of {len(payload)} bytes is above the limit of {MAX_PAYLOAD_BYTES}")
    return payload


def _inflate(data: bytes) -> bytes:
    # wbits 47 accepts gzip and zlib headers. max_length stops at the limit, so a small
    # packet cannot expand into a large allocation.
    inflater = zlib.decompressobj(wbits=47)
    try:
        payload = inflater.decompress(data, MAX_PAYLOAD_BYTES + 1)
    except zlib.error as error:
        raise HepError(f"compressed payload cannot be inflated: {error}") from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise HepError(f"compressed payload inflates past the limit of {MAX_PAYLOAD_BYTES} bytes")
    return payload


def _uint(chunks: dict[int, bytes], kind: int) -> int | None:
    value = chunks.get(kind)
    if value is None:
        return None
    fmt = _UINT_SIZES.get(len(value))
    if fmt is None:
        # Some agents send the capture id as 16 bits, so sizes 1, 2 and 4 are all read.
        raise HepError(f"chunk 0x{kind:04x} has {len(value)} value bytes: expected 1, 2 or 4")
    return int(struct.unpack(fmt, value)[0])


def _addresses(chunks: dict[int, bytes], family: int | None) -> tuple[str | None, str | None]:
    if family == AF_INET6 or (family is None and IPV6_SOURCE in chunks):
        kinds, size = (IPV6_SOURCE, IPV6_DESTINATION), 16
    else:
        kinds, size = (IPV4_SOURCE, IPV4_DESTINATION), 4
    hosts: list[str | None] = []
    for kind in kinds:
        value = chunks.get(kind)
        if value is None:
            hosts.append(None)
            continue
        if len(value) != size:
            raise HepError(f"address chunk 0x{kind:04x} has {len(value)} bytes: expected {size}")
        hosts.append(str(ipaddress.ip_address(value)))
    return hosts[0], hosts[1]


def _timestamp(chunks: dict[int, bytes]) -> datetime | None:
    seconds = _uint(chunks, TIMESTAMP_SECONDS)
    if seconds is None:
        return None
    microseconds = _uint(chunks, TIMESTAMP_MICROSECONDS) or 0
    if microseconds >= 1_000_000:
        raise HepError(f"timestamp microseconds {microseconds} is not below 1000000")
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=microseconds)


def _text(chunks: dict[int, bytes], kind: int) -> str | None:
    value = chunks.get(kind)
    if value is None:
        return None
    return value.decode("utf-8", "replace") or None


def _chunk(kind: int, value: bytes) -> bytes:
    if CHUNK_HEADER_BYTES + len(value) > MAX_HEP_PACKET_BYTES:
        raise ValueError(f"HEP chunk of {len(value)} bytes does not fit the limit of {MAX_HEP_PACKET_BYTES} bytes per packet")
    return struct.pack(">HHH", 0, kind, CHUNK_HEADER_BYTES + len(value)) + value

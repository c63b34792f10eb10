"""Build captured frames and pcap/pcapng files for the capture tests, byte by byte."""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable
from datetime import datetime

from sip.packet import LINKTYPE_ETHERNET

ETHERNET_HEADER = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"


def ipv4(source: str, destination: str, protocol: int, payload: bytes, *, identification: int = 1,
         offset: int = 0, more: bool = False) -> bytes:
    flags = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), identification, flags, 64, protocol, 0,
        ipaddress.IPv4Address(source).packed, ipaddress.IPv4Address(destination).packed,
    )
    return header + payload


def ipv6(source: str, destination: str, next_header: int, payload: bytes) -> bytes:
    return struct.pack(
        ">IHBB16s16s", 6 << 28, len(payload), next_header, 64,
        ipaddress.IPv6Address(source).packed, ipaddress.IPv6Address(destination).packed,
    ) + payload


def ipv6_fragments(source: str, destination: str, next_header: int, payload: bytes, size: int, identification: int = 7) -> list[bytes]:
    packets = []
    for start in range(0, len(payload), size):
        part = payload[start:start + size]
        more = start + size < len(payload)
        fragment_header = struct.pack(">BBHI", next_header, 0, start | int(more), identification)
        packets.append(ipv6(source, destination, 44, fragment_header + part))
    return packets


def ipv4_fragments(source: str, destination: str, protocol: int, payload: bytes, size: int, identification: int = 9) -> list[bytes]:
    return [
        ipv4(source, destination, protocol, payload[start:start + size], identification=identification,
             offset=start, more=start + size < len(payload))
        for start in range(0, len(payload), size)
    ]


def udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def tcp(source_port: int, destination_port: int, seq: int, payload: bytes = b"", *, flags: int = 0x18) -> bytes:
    return struct.pack(">HHIIBBHHH", source_port, destination_port, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ethernet(packet: bytes, *, vlans: Iterable[int] = (), ethertype: int | None = None) -> bytes:
    if ethertype is None:
        ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack(">HH", 0x8100, vlan) for vlan in vlans)
    return ETHERNET_HEADER + tags + struct.pack(">H", ethertype) + packet


def linux_sll(packet: bytes) -> bytes:
    return struct.pack(">HHH8sH", 0, 772, 6, b"\x00" * 8, 0x0800) + packet


def linux_sll2(packet: bytes) -> bytes:
    return struct.pack(">HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\x00" * 8) + packet


def websocket_frame(payload: bytes, *, opcode: int = 1, final: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if final else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", first, length | (0x80 if mask else 0))
    elif length < 65536:
        header = struct.pack(">BBH", first, 126 | (0x80 if mask else 0), length)
    else:
        header = struct.pack(">BBQ", first, 127 | (0x80 if mask else 0), length)
    if mask:
        payload = bytes(octet ^ mask[index % 4] for index, octet in enumerate(payload))
        header += mask
    return header + payload


def pcap_file(frames: Iterable[tuple[datetime, bytes]], *, linktype: int = LINKTYPE_ETHERNET,
              nanoseconds: bool = False, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for moment, data in frames:
        stamp = moment.timestamp()
        seconds = int(stamp)
        fraction = moment.microsecond * (1000 if nanoseconds else 1)
        out.append(struct.pack(order + "IIII", seconds, fraction, len(data), len(data)) + data)
    return b"".join(out)


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def pcapng_file(frames: Iterable[tuple[datetime, bytes]], *, linktype: int = LINKTYPE_ETHERNET,
                big_endian: bool = False, tsresol: int | None = None) -> bytes:
    order = ">" if big_endian else "<"
    section = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    options = b""
    units = 1_000_000
    if tsresol is not None:
        options = struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\x00" * 3 + struct.pack(order + "HH", 0, 0)
        units = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol
    interface = _block(order, 1, struct.pack(order + "HHI", linktype, 0, 262144) + options)
    blocks = [section, interface, _block(order, 0x0BAD, b"custom block")]
    for moment, data in frames:
        stamp = int(moment.timestamp()) * units + moment.microsecond * units // 1_000_000
        body = struct.pack(order + "IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(data), len(data)) + data
        blocks.append(_block(order, 6, body))
    return b"".join(blocks)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)

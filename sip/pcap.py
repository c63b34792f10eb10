"""Read capture files in the pcap and pcapng formats, without I/O.

`CaptureReader` takes the file's bytes in chunks of any size and returns the frames they
complete, so a file is read in bounded memory. Both formats are read in either byte
order. pcap files may have microsecond or nanosecond times, and pcapng files give each
interface its link type and time resolution (draft-ietf-opsawg-pcapng, `if_tsresol`
and `if_tsoffset`).
A file that ends in the middle of a record, as a capture cut short does, keeps the
frames before it and sets `truncated`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

# tcpdump's largest snapshot length (MAXIMUM_SNAPLEN in libpcap). A record claiming
# more is corrupt, and the cap bounds what one record can make the reader buffer.
MAX_FRAME_BYTES = 262_144

# A pcapng block holds one frame plus options and headers.
MAX_BLOCK_BYTES = MAX_FRAME_BYTES + 65_536

# Files are read in chunks of this size.
READ_CHUNK_BYTES = 1 << 16

PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAPNG_SECTION_HEADER = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

BLOCK_INTERFACE_DESCRIPTION = 0x00000001
BLOCK_PACKET_OBSOLETE = 0x00000002
BLOCK_SIMPLE_PACKET = 0x00000003
BLOCK_ENHANCED_PACKET = 0x00000006

OPTION_END = 0
OPTION_TSRESOL = 9
OPTION_TSOFFSET = 14

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class CaptureError(ValueError):
    """A capture file that cannot be read, with the reason in the text."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: its link type, capture time and bytes (as captured, maybe cut at snaplen)."""

    number: int
    linktype: int
    timestamp: datetime
    data: bytes


@dataclass
class _Interface:
    linktype: int
    units_per_second: int = 1_000_000
    offset_seconds: int = 0


@dataclass
class _State:
    kind: str | None = None  # "pcap" or "pcapng"
    order: str = "<"
    linktype: int = 0
    units_per_second: int = 1_000_000
    interfaces: list[_Interface] = field(default_factory=list)


class CaptureReader:
    """Split the bytes of a pcap or pcapng file into frames, incrementally."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _State()
        self._count = 0

    @property
    def format(self) -> str | None:
        """`pcap` or `pcapng` once the file header was read, else None."""
        return self._state.kind

    @property
    def truncated(self) -> bool:
        """True when bytes are left over that do not complete a record."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add file bytes and return the frames they complete; raise CaptureError on a corrupt file."""
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._state.kind is None and not self._read_file_header():
                return frames
            frame_or_none = self._next_record() if self._state.kind == "pcap" else self._next_block()
            if frame_or_none is False:
                return frames
            if isinstance(frame_or_none, Frame):
                frames.append(frame_or_none)

    # pcap ---------------------------------------------------------------------------------

    def _read_file_header(self) -> bool:
        if len(self._buffer) < 4:
            return False
        (big,) = struct.unpack_from(">I", self._buffer, 0)
        (little,) = struct.unpack_from("<I", self._buffer, 0)
        if big == PCAPNG_SECTION_HEADER:
            self._state.kind = "pcapng"
            return True
        for order, magic in ((">", big), ("<", little)):
            if magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
                if len(self._buffer) < 24:
                    return False
                (network,) = struct.unpack_from(order + "I", self._buffer, 20)
                self._state = _State(
                    kind="pcap",
                    order=order,
                    # The upper bits of the link type field carry FCS length flags.
                    linktype=network & 0xFFFF,
                    units_per_second=1_000_000_000 if magic == PCAP_MAGIC_NANOSECONDS else 1_000_000,
                )
                del self._buffer[:24]
                return True
        raise CaptureError(f"unknown file format: magic 0x{big:08x} is neither pcap nor pcapng")

    def _next_record(self) -> Frame | None | bool:
        order = self._state.order
        if len(self._buffer) < 16:
            return False
        seconds, fraction, included, _original = struct.unpack_from(order + "IIII", self._buffer, 0)
        if included > MAX_FRAME_BYTES:
            raise CaptureError(f"record of {included} bytes is above the limit of {MAX_FRAME_BYTES}: the file is corrupt")
        if len(self._buffer) < 16 + included:
            return False
        data = bytes(self._buffer[16:16 + included])
        del self._buffer[:16 + included]
        return self._frame(self._state.linktype, seconds, fraction, self._state.units_per_second, data)

    # pcapng -------------------------------------------------------------------------------

    def _next_block(self) -> Frame | None | bool:
        if len(self._buffer) < 12:
            return False
        (block_type_big,) = struct.unpack_from(">I", self._buffer, 0)
        if block_type_big == PCAPNG_SECTION_HEADER:
            (magic_big,) = struct.unpack_from(">I", self._buffer, 8)
            order = ">" if magic_big == PCAPNG_BYTE_ORDER_MAGIC else "<"
            (magic,) = struct.unpack_from(order + "I", self._buffer, 8)
            if magic != PCAPNG_BYTE_ORDER_MAGIC:
                raise CaptureError(f"invalid pcapng byte-order magic 0x{magic_big:08x}")
            self._state.order = order
            self._state.interfaces = []  # Interface ids are per section.

        order = self._state.order
        block_type, length = struct.unpack_from(order + "II", self._buffer, 0)
        if length < 12 or length % 4 or length > MAX_BLOCK_BYTES:
            raise CaptureError(f"invalid pcapng block length {length} (block type 0x{block_type:08x})")
        if len(self._buffer) < length:
            return False
        (trailer,) = struct.unpack_from(order + "I", self._buffer, length - 4)
        if trailer != length:
            raise CaptureError(f"pcapng block length {length} does not match its trailing copy {trailer}")
        body = bytes(self._buffer[8:length - 4])
        del self._buffer[:length]
        try:
            return self._block(block_type, body)
        except struct.error:
            raise CaptureError(f"pcapng block of type 0x{block_type:08x} is shorter than its fields") from None

    def _block(self, block_type: int, body: bytes) -> Frame | None:
        order = self._state.order
        if block_type == BLOCK_INTERFACE_DESCRIPTION:
            (linktype,) = struct.unpack_from(order + "H", body, 0)
            self._state.interfaces.append(_interface(linktype, body[8:], order))
            return None
        if block_type == BLOCK_ENHANCED_PACKET:
            interface_id, high, low, captured = struct.unpack_from(order + "IIII", body, 0)
            data = body[20:20 + captured]
        elif block_type == BLOCK_PACKET_OBSOLETE:
            interface_id, _drops, high, low, captured = struct.unpack_from(order + "HHIII", body, 0)
            data = body[20:20 + captured]
        elif block_type == BLOCK_SIMPLE_PACKET:
            # A simple packet block has no time and belongs to the first interface.
            (original,) = struct.unpack_from(order + "I", body, 0)
            interface_id, high, low = 0, 0, 0
            data = body[4:4 + min(original, len(body) - 4)]
        else:
            return None

        if interface_id >= len(self._state.interfaces):
            raise CaptureError(f"packet names interface {interface_id}, but only {len(self._state.interfaces)} are described")
        if len(data) > MAX_FRAME_BYTES:
            raise CaptureError(f"frame of {len(data)} bytes is above the limit of {MAX_FRAME_BYTES}")
        interface = self._state.interfaces[interface_id]
        units = (high << 32) | low
        seconds, fraction = divmod(units, interface.units_per_second)
        return self._frame(interface.linktype, seconds + interface.offset_seconds, fraction, interface.units_per_second, data)

    def _frame(self, linktype: int, seconds: int, fraction: int, units_per_second: int, data: bytes) -> Frame:
        self._count += 1
        microseconds = fraction * 1_000_000 // units_per_second
        timestamp = _EPOCH + timedelta(seconds=seconds, microseconds=microseconds)
        return Frame(self._count, linktype, timestamp, data)


def read_capture_file(path: Path) -> Iterator[Frame]:
    """Yield the frames of a pcap or pcapng file; raise CaptureError for a corrupt or unknown file."""
    reader = CaptureReader()
    with open(path, "rb") as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            yield from reader.feed(chunk)
    if reader.format is None:
        raise CaptureError(f"{path} is too short to be a capture file")


def is_capture_file(path: Path) -> bool:
    """Tell whether a file starts with a pcap or pcapng magic number."""
    with open(path, "rb") as stream:
        head = stream.read(4)
    if len(head) < 4:
        return False
    magics = {PCAPNG_SECTION_HEADER, PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS}
    return struct.unpack(">I", head)[0] in magics or struct.unpack("<I", head)[0] in magics


def _interface(linktype: int, options: bytes, order: str) -> _Interface:
    interface = _Interface(linktype=linktype)
    offset = 0
    while offset + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, offset)
        value = options[offset + 4:offset + 4 + length]
        if code == OPTION_END:
            break
        if code == OPTION_TSRESOL and length >= 1:
            # The high bit selects a power of two, else a power of ten.
            exponent = value[0] & 0x7F
            binary = bool(value[0] & 0x80)
            if exponent > (30 if binary else 9):
                raise CaptureError(f"unsupported if_tsresol {value[0]}: finer than a nanosecond")
            interface.units_per_second = 2**exponent if binary else 10**exponent
        elif code == OPTION_TSOFFSET and length >= 8:
            (interface.offset_seconds,) = struct.unpack(order + "q", value[:8])
        offset += 4 + length + (-length % 4)
    return interface

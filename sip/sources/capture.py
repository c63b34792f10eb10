"""Live capture of SIP from a network interface: an AF_PACKET socket driven by asyncio.

The kernel filters the traffic down to the configured SIP ports with a classic BPF
program, so RTP (audio) never reaches the agent. Frames are decoded by the sans-I/O
PacketDecoder. Opening the socket needs CAP_NET_RAW; without it `start` raises
CaptureUnavailable with the fix in its message. Linux only.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from sip.packet import LINKTYPE_RAW, CapturedMessage, PacketDecoder

log = logging.getLogger("ringboard.sip.capture")

MessageHandler = Callable[[CapturedMessage], None]

# linux/if_ether.h and linux/if_packet.h.
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26

# libpcap's largest snapshot length: a whole IP datagram of any size fits.
SNAPSHOT_BYTES = 262_144

# Frames read per wake-up of the event loop, so that a busy interface cannot starve
# the agent's other work. The rest wait in the socket's buffer.
MAX_FRAMES_PER_WAKEUP = 256

# How often stale fragments and TCP connections are dropped from the decoder.
EXPIRY_INTERVAL_SECONDS = 30.0

# Classic BPF opcodes (linux/bpf_common.h).
_LD_B_ABS, _LD_H_ABS, _LD_H_IND, _LDX_B_MSH = 0x30, 0x28, 0x48, 0xB1
_AND_K, _JEQ_K, _JSET_K, _RET_K = 0x54, 0x15, 0x45, 0x06


class CaptureUnavailable(RuntimeError):
    """The capture socket could not be opened. The message names the reason and the fix."""


def port_filter(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """Compile a classic BPF program that accepts UDP and TCP to or from `ports`.

    The program runs on frames without link header (SOCK_DGRAM), so offset 0 is the IP
    header. IPv4 fragments after the first carry no ports and are all accepted, as is
    an IPv6 fragment header, so that the decoder can reassemble them.
    """
    ports = sorted(set(ports))
    if not ports or any(not 0 < port < 65536 for port in ports):
        raise ValueError(f"invalid capture ports {ports}: expected one or more of 1-65535")

    program: list[tuple[int, str | None, str | None, int]] = []

    def emit(code: int, k: int = 0, true: str | None = None, false: str | None = None) -> None:
        program.append((code, true, false, k))

    labels: dict[str, int] = {}

    def label(name: str) -> None:
        labels[name] = len(program)

    emit(_LD_B_ABS, 0)
    emit(_AND_K, 0xF0)
    emit(_JEQ_K, 0x40, None, "ipv6")
    # IPv4: UDP or TCP, then ports at the offset the header length gives.
    emit(_LD_B_ABS, 9)
    emit(_JEQ_K, 17, "ipv4-fragment", None)
    emit(_JEQ_K, 6, None, "drop")
    label("ipv4-fragment")
    emit(_LD_H_ABS, 6)
    emit(_JSET_K, 0x1FFF, "accept", None)
    emit(_LDX_B_MSH, 0)
    _emit_port_checks(emit, _LD_H_IND, 0, 2, ports)
    label("ipv6")
    emit(_JEQ_K, 0x60, None, "drop")
    emit(_LD_B_ABS, 6)
    emit(_JEQ_K, 44, "accept", None)
    emit(_JEQ_K, 17, "ipv6-ports", None)
    emit(_JEQ_K, 6, None, "drop")
    label("ipv6-ports")
    _emit_port_checks(emit, _LD_H_ABS, 40, 42, ports)
    label("accept")
    emit(_RET_K, SNAPSHOT_BYTES)
    label("drop")
    emit(_RET_K, 0)

    compiled = []
    for index, (code, true, false, k) in enumerate(program):
        jump_true = labels[true] - index - 1 if true else 0
        jump_false = labels[false] - index - 1 if false else 0
        if not (0 <= jump_true < 256 and 0 <= jump_false < 256):
            raise ValueError(f"too many capture ports ({len(ports)}) for one BPF jump")
        compiled.append((code, jump_true, jump_false, k))
    return compiled


def _emit_port_checks(emit: Callable[..., None], load: int, source: int, destination: int, ports: list[int]) -> None:
    for offset in (source, destination):
        emit(load, offset)
        for port in ports:
            emit(_JEQ_K, port, "accept", None)
    emit(_RET_K, 0)


class LiveCapture:
    """Capture SIP on one interface and hand each decoded message on."""

    def __init__(self, interface: str, ports: Iterable[int], on_message: MessageHandler) -> None:
        self.interface = interface
        self.ports = frozenset(ports)
        self._program = port_filter(self.ports)
        self._on_message = on_message
        self._socket: socket.socket | None = None
        self._loopback = False
        self._timer: asyncio.TimerHandle | None = None
        self.decoder = PacketDecoder(self.ports)

    async def start(self) -> None:
        """Open the capture socket, attach the port filter and start reading."""
        try:
            # Protocol 0 receives nothing until bind, so no frame passes before the filter.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        except PermissionError:
            raise CaptureUnavailable(
                f"capturing on {self.interface} needs the CAP_NET_RAW capability: run the agent with "
                "AmbientCapabilities=CAP_NET_RAW (systemd) or grant it with setcap cap_net_raw+ep"
            ) from None
        except (AttributeError, OSError) as error:
            raise CaptureUnavailable(f"capturing on {self.interface} needs Linux AF_PACKET sockets: {error}") from None

        try:
            _attach_filter(sock, self._program)
            sock.bind((self.interface, ETH_P_ALL))
        except OSError as error:
            sock.close()
            raise CaptureUnavailable(f"cannot capture on interface {self.interface!r}: {error.strerror or error}") from None
        sock.setblocking(False)
        self._socket = sock
        self._loopback = self.interface == "lo" or self.interface.startswith("lo:")

        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._readable)
        self._timer = loop.call_later(EXPIRY_INTERVAL_SECONDS, self._expire)
        log.info("capturing SIP on %s, ports %s", self.interface, ", ".join(map(str, sorted(self.ports))))

    async def stop(self) -> None:
        """Stop reading and close the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None

    def _readable(self) -> None:
        assert self._socket is not None
        for _ in range(MAX_FRAMES_PER_WAKEUP):
            try:
                frame, address = self._socket.recvfrom(SNAPSHOT_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("capture on %s failed to read: %s", self.interface, error)
                return
            protocol, packet_type = address[1], address[2]
            # On loopback every frame is seen leaving and arriving; keep the arrival.
            if self._loopback and packet_type == PACKET_OUTGOING:
                continue
            if protocol not in (ETH_P_IP, ETH_P_IPV6):
                continue
            for message in self.decoder.decode(frame, LINKTYPE_RAW, datetime.now(timezone.utc)):
                self._on_message(message)

    def _expire(self) -> None:
        self.decoder.expire(datetime.now(timezone.utc))
        self._timer = asyncio.get_running_loop().call_later(EXPIRY_INTERVAL_SECONDS, self._expire)


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    instructions = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(instructions)
    # struct sock_fprog: unsigned short length, then a pointer to the instructions.
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

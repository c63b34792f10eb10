"""Live capture on the loopback interface, filtered to this test's own ports, and tcpdump files.

Capturing needs CAP_NET_RAW. Every capture here runs on `lo` with a filter on ports
that the test itself bound on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sip.message import Request
from sip.model import EventKind, Outcome
from sip.packet import PacketDecoder
from sip.pcap import read_capture_file
from sip.sources.capture import CaptureUnavailable, LiveCapture, port_filter
from tests.sip.corpus import sections
from tests.support.sipflows import engine

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def can_capture() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0).close()
    except (PermissionError, AttributeError, OSError):
        return False
    return True


needs_capture = pytest.mark.skipif(not can_capture(), reason="capturing needs CAP_NET_RAW on Linux")


def case23_messages() -> list[bytes]:
    return [part.message_bytes() for part in sections("23-") if part.title.startswith("msg ")]


def bound_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    return sock


def test_port_filter_rejects_bad_ports():
    with pytest.raises(ValueError, match="capture ports"):
        port_filter([])
    with pytest.raises(ValueError, match="capture ports"):
        port_filter([70000])
    assert port_filter([5060])[-1] == (0x06, 0, 0, 0)


@needs_capture
async def test_live_capture_on_loopback_sees_only_own_port():
    receiver, other, sender = bound_udp(), bound_udp(), bound_udp()
    port = receiver.getsockname()[1]
    captured = []
    capture = LiveCapture("lo", [port], captured.append)
    await capture.start()
    try:
        for data in case23_messages():
            sender.sendto(data, (LOOPBACK, port))
            sender.sendto(data, other.getsockname())
        deadline = time.monotonic() + 5
        while len(captured) < len(case23_messages()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    finally:
        await capture.stop()
        for sock in (receiver, other, sender):
            sock.close()

    assert len(captured) == len(case23_messages())
    assert all(item.destination == (LOOPBACK, port) for item in captured)
    assert isinstance(captured[0].message, Request)
    calls = engine(["201"])
    events = [event for item in captured for event in calls.observe(item.message, item.source, item.destination, item.timestamp)]
    assert [event.kind for event in events] == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]


@needs_capture
async def test_live_capture_reassembles_tcp():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((LOOPBACK, 0))
    server.listen(1)
    port = server.getsockname()[1]
    captured = []
    capture = LiveCapture("lo", [port], captured.append)
    await capture.start()
    try:
        client = socket.create_connection((LOOPBACK, port))
        accepted, _ = server.accept()
        stream = b"".join(case23_messages())
        for start in range(0, len(stream), 248):
            client.sendall(stream[start:start + 248])
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 5
        while len(captured) < len(case23_messages()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        client.close()
        accepted.close()
    finally:
        await capture.stop()
        server.close()

    assert [item.transport for item in captured] == ["tcp"] * len(case23_messages())


async def test_missing_capability_reported_clearly():
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs setpriv and root to run a child without CAP_NET_RAW")
    script = (
        "import asyncio\n"
        "from sip.sources.capture import LiveCapture, CaptureUnavailable\n"
        "try:\n"
        "    asyncio.run(LiveCapture('lo', [5999], print).start())\n"
        "except CaptureUnavailable as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [setpriv, "--bounding-set=-net_raw", sys.executable, "-c", script],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert "needs the CAP_NET_RAW capability" in result.stdout, result.stderr


async def test_capture_permission_error_raises_unavailable(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refuse)
    with pytest.raises(CaptureUnavailable, match="CAP_NET_RAW"):
        await LiveCapture("lo", [5999], print).start()


@needs_capture
async def test_unknown_interface_reported():
    with pytest.raises(CaptureUnavailable, match="no-such-if0"):
        await LiveCapture("no-such-if0", [5999], print).start()


# tcpdump -----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tcpdump") is None or not can_capture(), reason="needs tcpdump and CAP_NET_RAW")
def test_tcpdump_capture_read_back(tmp_path):
    receiver, sender = bound_udp(), bound_udp()
    port = receiver.getsockname()[1]
    # tcpdump 4.99 writes pcap only; pcapng files are built in test_pcap.py.
    path = tmp_path / "lo.pcap"
    # --immediate-mode hands each packet to tcpdump at once; otherwise libpcap holds
    # packets in its ring buffer for up to a second and SIGTERM loses them.
    argv = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-w", str(path), "udp", "port", str(port)]
    tcpdump = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(tcpdump)
        for data in case23_messages():
            sender.sendto(data, (LOOPBACK, port))
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        tcpdump.terminate()
        tcpdump.wait(timeout=10)
        receiver.close()
        sender.close()

    decoder, calls, events = PacketDecoder({port}), engine(["201"]), []
    for frame in read_capture_file(path):
        for item in decoder.decode(frame.data, frame.linktype, frame.timestamp):
            events.extend(calls.observe(item.message, item.source, item.destination, item.timestamp))

    assert [event.kind for event in events] == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]
    assert events[-1].call.outcome == Outcome.ANSWERED


def _wait_listening(process: subprocess.Popen) -> None:
    """Wait for tcpdump's 'listening on' line, which it prints once capturing."""
    assert process.stderr is not None
    deadline = time.monotonic() + 10
    line = process.stderr.readline()
    while b"listening on" not in line:
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"tcpdump did not start: {line!r}")
        line = process.stderr.readline()

"""The lab against the real Kamailio and SIPp on 127.0.0.1 (needs scripts/setup)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab, LabError
from agent.lab.calls import CallHandle

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed: run scripts/setup"),
]

DIALOG_INFO_NS = "{urn:ietf:params:xml:ns:dialog-info}"

# Time for a call's last NOTIFY to reach the watcher after SIPp exits; the
# PUBLISH-to-NOTIFY path takes a few milliseconds on loopback.
NOTIFY_WAIT_SECONDS = 5.0


# ----- a minimal SIP client over UDP, for these tests only -----


def parse_sip(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Split a SIP message into its start line, headers (in order) and body."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers, body


def header(headers: list[tuple[str, str]], name: str) -> str:
    values = [value for key, value in headers if key == name]
    return values[0] if values else ""


class SipSocket:
    """A UDP socket on 127.0.0.1 that builds requests towards the lab."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def request(self, method: str, uri: str, from_uri: str, to_uri: str, extra: str = "", cseq: int = 1) -> str:
        """Send a request without body; return its Call-ID."""
        call_id = uuid.uuid4().hex
        message = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{from_uri}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{to_uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(message.encode(), self.lab.sip_address)
        return call_id

    def close(self) -> None:
        self.sock.close()


def query_bindings(lab: Lab, extension: str) -> list[str]:
    """REGISTER without Contact, which asks the registrar for the current bindings."""
    client = SipSocket(lab)
    try:
        client.request("REGISTER", f"sip:{lab.domain}", lab.aor(extension), lab.aor(extension))
        client.sock.settimeout(3.0)
        data, _ = client.sock.recvfrom(65535)
    finally:
        client.close()

    status, headers, _ = parse_sip(data)
    assert status.startswith("SIP/2.0 200"), status
    return [value for key, value in headers if key in ("contact", "m")]


class DialogWatcher:
    """Subscribes to Event: dialog of one extension and records every dialog state."""

    def __init__(self, lab: Lab, extension: str) -> None:
        self.lab = lab
        self.extension = extension
        self.client = SipSocket(lab)
        self.client.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.notify_count = 0
        self.states: dict[str, list[str]] = {}  # call-id -> states in order, repeats dropped
        self.directions: dict[str, str] = {}
        self.remotes: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name=f"watcher-{extension}", daemon=True)

    def subscribe(self) -> None:
        """SUBSCRIBE and wait until the subscription's first NOTIFY arrived."""
        self._thread.start()
        contact = f"sip:watcher@127.0.0.1:{self.client.port}"
        extra = (
            f"Contact: <{contact}>\r\n"
            "Event: dialog\r\n"
            "Accept: application/dialog-info+xml\r\n"
            "Expires: 600\r\n"
        )
        aor = self.lab.aor(self.extension)
        self.client.request("SUBSCRIBE", aor, f"sip:watcher@{self.lab.domain}", aor, extra)
        assert self.subscribed.wait(5.0), f"no NOTIFY for the subscription to {aor}"

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self.client.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return

            start, headers, body = parse_sip(data)
            if not start.startswith("NOTIFY "):
                continue
            self._answer(headers, address)
            self._record(body)
            self.subscribed.set()

    def _answer(self, headers: list[tuple[str, str]], address: tuple[str, int]) -> None:
        vias = [f"Via: {value}\r\n" for key, value in headers if key in ("via", "v")]
        reply = (
            "SIP/2.0 200 OK\r\n"
            + "".join(vias)
            + f"From: {header(headers, 'from')}\r\n"
            f"To: {header(headers, 'to')}\r\n"
            f"Call-ID: {header(headers, 'call-id')}\r\n"
            f"CSeq: {header(headers, 'cseq')}\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.client.sock.sendto(reply.encode(), address)

    def _record(self, body: bytes) -> None:
        with self.lock:
            self.notify_count += 1
            if not body.strip():
                return
            root = ElementTree.fromstring(body)
            for dialog in root.iter(f"{DIALOG_INFO_NS}dialog"):
                call_id = dialog.get("call-id", "")
                state = (dialog.findtext(f"{DIALOG_INFO_NS}state") or "").lower()
                history = self.states.setdefault(call_id, [])
                if not history or history[-1] != state:
                    history.append(state)
                self.directions[call_id] = dialog.get("direction", "")
                identity = dialog.findtext(f"{DIALOG_INFO_NS}remote/{DIALOG_INFO_NS}identity")
                self.remotes[call_id] = identity or ""

    def states_of(self, call_id: str) -> list[str]:
        with self.lock:
            return list(self.states.get(call_id, []))

    def wait_for_state(self, call_id: str, state: str, timeout: float = NOTIFY_WAIT_SECONDS) -> list[str]:
        """Wait until the call's dialog reached a state; return its states so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states_of(call_id)
            if state in states:
                return states
            time.sleep(0.05)
        return self.states_of(call_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.client.close()


# ----- process helpers -----


def process_ids_in_groups(groups: set[int]) -> list[int]:
    """Return every process whose process group is one of the given ones."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) in groups:
            found.append(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fd_dir.iterdir()]
    except OSError:
        return inodes
    for link in links:
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    return inodes


def local_addresses(inodes: set[str]) -> list[str]:
    """Return the local address (hex, as in /proc/net) of each inet socket among the inodes."""
    addresses = []
    for table in ("udp", "tcp", "udp6", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                addresses.append(f"{table} {fields[1]}")
    return addresses


# ----- fixtures -----


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path / "lab", sip_port=0) as running:
        yield running


@pytest.fixture
def watchers(lab: Lab) -> Iterator[dict[str, DialogWatcher]]:
    started: dict[str, DialogWatcher] = {}
    for extension in ("201", "202", "203"):
        watcher = DialogWatcher(lab, extension)
        watcher.subscribe()
        started[extension] = watcher
    yield started
    for watcher in started.values():
        watcher.close()


def finish(handle: CallHandle, timeout: float = 20.0) -> int:
    code = handle.wait(timeout)
    assert code == 0, f"sipp exit code {code}: {handle.error_log()}"
    return code


# ----- tests -----


@pytest.mark.timeout(30)
def test_lab_starts_and_registers(lab: Lab) -> None:
    host, port = lab.sip_address
    assert host == "127.0.0.1"
    assert port > 0
    assert lab.running

    for extension in lab.extensions:
        contacts = query_bindings(lab, extension)
        assert len(contacts) == 1, f"{extension}: {contacts}"
        assert "127.0.0.1" in contacts[0]


@pytest.mark.timeout(30)
def test_lab_binds_only_loopback(lab: Lab) -> None:
    pids = process_ids_in_groups(set(lab.process_groups()))
    assert len(pids) >= 5  # kamailio (with workers), three phones, the carrier

    inodes: set[str] = set()
    for pid in pids:
        inodes |= socket_inodes(pid)
    addresses = local_addresses(inodes)
    assert addresses
    for address in addresses:
        table, local = address.split()
        assert table in ("udp", "tcp"), f"IPv6 socket: {address}"
        assert local.startswith("0100007F:"), f"not bound to 127.0.0.1: {address}"


@pytest.mark.timeout(30)
def test_lab_stop_ends_every_process(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    lab.start()
    groups = set(lab.process_groups())
    assert process_ids_in_groups(groups)

    lab.stop()
    assert process_ids_in_groups(groups) == []
    assert not lab.running


@pytest.mark.timeout(30)
def test_busy_port_raises_with_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        lab = Lab(tmp_path / "lab", sip_port=port)
        with pytest.raises(LabError) as raised:
            lab.start()

    message = str(raised.value)
    assert "kamailio exited" in message
    assert "kamailio.log" in message
    assert "bind" in message.lower()
    assert lab.process_groups() == []


@pytest.mark.timeout(30)
def test_answered_call_notifies_confirmed(lab: Lab, watchers: dict[str, DialogWatcher]) -> None:
    handle = lab.call(to="201", caller="+41441234567", display="Max Muster", answer_after=1.0, talk=1.0)
    finish(handle)

    watcher = watchers["201"]
    states = watcher.wait_for_state(handle.call_id, "terminated")
    assert states == ["early", "confirmed", "terminated"]
    assert watcher.directions[handle.call_id] == "recipient"
    assert watcher.remotes[handle.call_id] == "sip:+41441234567@pbx.local"
    assert watchers["202"].states_of(handle.call_id) == []


@pytest.mark.timeout(30)
def test_cancelled_call_notifies_early_terminated(lab: Lab, watchers: dict[str, DialogWatcher]) -> None:
    handle = lab.call(to="201", caller="+493012345678", answer_after=None, cancel_after=1.0)
    finish(handle)

    states = watchers["201"].wait_for_state(handle.call_id, "terminated")
    assert states == ["early", "terminated"]


@pytest.mark.timeout(30)
def test_ring_group_one_phone_answers(lab: Lab, watchers: dict[str, DialogWatcher]) -> None:
    handle = lab.call(to="600", caller="+4312345678", answer_after={"201": None, "202": 1.0}, talk=1.0)
    finish(handle)

    winner = watchers["202"].wait_for_state(handle.call_id, "terminated")
    loser = watchers["201"].wait_for_state(handle.call_id, "terminated")
    assert winner == ["early", "confirmed", "terminated"]
    assert loser == ["early", "terminated"]

    trace = lab.phone_trace("201").read_text(errors="replace")
    assert 'Reason: SIP;cause=200;text="Call completed elsewhere"' in trace


@pytest.mark.timeout(30)
def test_outgoing_call_reaches_carrier(lab: Lab, watchers: dict[str, DialogWatcher]) -> None:
    handle = lab.call(to="+41791234567", caller="203", answer_after=1.0, talk=1.0)
    finish(handle)

    watcher = watchers["203"]
    states = watcher.wait_for_state(handle.call_id, "terminated")
    assert "confirmed" in states
    assert states[-1] == "terminated"
    assert watcher.directions[handle.call_id] == "initiator"
    assert watcher.remotes[handle.call_id] == "sip:+41791234567@pbx.local"

    trace = lab.phone_trace("external").read_text(errors="replace")
    assert f"Call-ID: {handle.call_id}" in trace


@pytest.mark.timeout(30)
def test_withheld_caller_is_anonymous(lab: Lab, watchers: dict[str, DialogWatcher]) -> None:
    handle = lab.call(to="202", withheld=True, cancel_after=1.0)
    finish(handle)

    watcher = watchers["202"]
    assert watcher.wait_for_state(handle.call_id, "terminated") == ["early", "terminated"]
    assert watcher.remotes[handle.call_id] == "sip:anonymous@anonymous.invalid"


@pytest.mark.timeout(30)
def test_subscribe_over_tcp(lab: Lab) -> None:
    with socket.create_connection(lab.sip_address, timeout=5.0) as stream:
        local_port = stream.getsockname()[1]
        aor = lab.aor("203")
        request = (
            f"SUBSCRIBE {aor} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:watcher@{lab.domain}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <{aor}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:watcher@127.0.0.1:{local_port};transport=tcp>\r\n"
            "Event: dialog\r\n"
            "Accept: application/dialog-info+xml\r\n"
            "Expires: 60\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        stream.sendall(request.encode())

        received = b""
        deadline = time.monotonic() + 5.0
        while b"NOTIFY " not in received and time.monotonic() < deadline:
            received += stream.recv(65535)

    assert received.startswith(b"SIP/2.0 20"), received[:80]
    assert b"\r\nNOTIFY " in received
    assert b"Event: dialog" in received


@pytest.mark.timeout(30)
def test_call_plan_rejects_crossing_cancel(lab: Lab) -> None:
    with pytest.raises(ValueError, match="cancel_after"):
        lab.call(to="201", answer_after=1.0, cancel_after=1.0)
    with pytest.raises(ValueError, match="cancel_after must be set"):
        lab.call(to="201", answer_after=None)


@pytest.mark.timeout(45)
def test_traffic_mix_calls_succeed(lab: Lab) -> None:
    placed: list[tuple[str, CallHandle]] = []
    stop = threading.Event()
    runner = threading.Thread(
        target=lab.run_traffic,
        kwargs={"stop_event": stop, "seed": 7, "time_scale": 0.25, "on_call": lambda kind, handle: placed.append((kind, handle))},
    )
    runner.start()
    time.sleep(6.0)
    stop.set()
    runner.join(timeout=5.0)
    assert not runner.is_alive()

    assert len(placed) >= 3
    for kind, handle in placed:
        code = handle.wait(15.0)
        assert code == 0, f"{kind} call {handle.call_id}: sipp exit code {code}: {handle.error_log()}"
    assert lab.active_calls() == []

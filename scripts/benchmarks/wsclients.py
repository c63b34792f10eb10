"""Many WebSocket clients of /api/events in one process, cheap enough not to skew a benchmark.

The benchmarks start this file as a child process, so the clients share no interpreter
with the agent or with the PBX load generator:

    python wsclients.py --url ws://127.0.0.1:PORT/api/events --count 200 --out FILE

It connects every client, waits for each snapshot, prints `ready N` on stdout, then
records the arrival time of every frame until a line `stop` arrives on stdin (or
`--max-seconds` pass). It then writes the records as JSON to `--out` and prints `done`.

The client is a minimal RFC 6455 implementation on an asyncio Protocol rather than the
`websockets` library. At 200 clients and 150 messages per second the clients receive
30,000 frames per second, and on a two-core machine their CPU use must stay small next
to the agent's. Times are `time.perf_counter()` seconds, which
is CLOCK_MONOTONIC on Linux and so comparable with the load generator's clock.
Standard library only: it runs as a plain script.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

# RFC 6455 §1.3: the GUID appended to the key to compute Sec-WebSocket-Accept.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA

# Clients connecting at once. The agent's listen backlog is 2048 (uvicorn's default);
# batches keep the handshakes from timing out on a loaded machine.
CONNECT_BATCH = 50
HANDSHAKE_TIMEOUT = 30.0


class MessageCatalogue:
    """Distinct messages seen by any client, each decoded once and numbered.

    The agent's bus encodes a message once and sends the same bytes to every client,
    so a dictionary lookup on the bytes replaces a JSON decode per client.
    """

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.messages: list[dict[str, Any]] = []

    def identify(self, payload: bytes) -> int:
        """Return the number of a message, decoding it the first time it is seen."""
        number = self.ids.get(payload)
        if number is None:
            number = len(self.messages)
            self.ids[payload] = number
            self.messages.append(summarise(json.loads(payload)))
        return number


def summarise(message: dict[str, Any]) -> dict[str, Any]:
    """Keep the fields a benchmark matches on: kind, seq, event, call id, number, cards."""
    kind = message.get("type")
    if kind == "call":
        call = message.get("call") or {}
        remote = call.get("remote") or {}
        return {
            "type": "call",
            "seq": message.get("seq"),
            "event": message.get("event"),
            "call_id": call.get("id"),
            "extension": call.get("extension"),
            "number": remote.get("number"),
        }
    if kind == "crm":
        return {
            "type": "crm",
            "call_id": message.get("call_id"),
            "number": message.get("number"),
            "cards": len(message.get("cards") or []),
            "pending": len(message.get("pending") or []),
        }
    return {"type": kind}


class BenchClient(asyncio.Protocol):
    """One WebSocket client that timestamps every frame it receives."""

    def __init__(self, catalogue: MessageCatalogue, request: bytes, key: str) -> None:
        self.catalogue = catalogue
        self.request = request
        self.expected_accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake_done = False
        self.opened = asyncio.get_running_loop().create_future()
        self.snapshot = asyncio.get_running_loop().create_future()
        self.fragments = bytearray()
        self.fragment_opcode = 0
        # (message number, arrival time) per received text message after the snapshot.
        self.received: list[tuple[int, float]] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for future in (self.opened, self.snapshot):
            if not future.done():
                future.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter()
        self.buffer += data
        if not self.handshake_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            self._check_handshake(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            if not self.handshake_done:
                return
        self._read_frames(arrived)

    def _check_handshake(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self.opened.set_exception(ConnectionError(f"handshake rejected: {lines[0]}"))
            self.transport.close()
            return
        if headers.get("sec-websocket-accept") != self.expected_accept:
            self.opened.set_exception(ConnectionError("handshake has a wrong Sec-WebSocket-Accept"))
            self.transport.close()
            return
        self.handshake_done = True
        self.opened.set_result(None)

    def _read_frames(self, arrived: float) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length = int.from_bytes(buffer[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length = int.from_bytes(buffer[2:10], "big")
                offset = 10
            if second & 0x80:
                offset += 4  # A server must not mask (RFC 6455 §5.1); the key is skipped.
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._on_frame(first & 0x80 != 0, first & 0x0F, payload, arrived)

    def _on_frame(self, final: bool, opcode: int, payload: bytes, arrived: float) -> None:
        if opcode == OPCODE_PING:
            self._send(OPCODE_PONG, payload)
            return
        if opcode == OPCODE_CLOSE:
            if not self.closed:
                self._send(OPCODE_CLOSE, payload[:2])
                self.transport.close()
            return
        if opcode == OPCODE_PONG:
            return
        if opcode != OPCODE_CONTINUATION:
            self.fragment_opcode = opcode
            self.fragments = bytearray()
        self.fragments += payload
        if not final:
            return
        message = bytes(self.fragments)
        self.fragments = bytearray()
        if not self.snapshot.done():
            self.snapshot.set_result(json.loads(message))
            return
        self.received.append((self.catalogue.identify(message), arrived))

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames are masked (RFC 6455 §5.3); payloads here are control frames (< 126 bytes).
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        """Send a close frame (1000, normal closure) and close the connection."""
        if self.transport is not None and not self.closed:
            self._send(OPCODE_CLOSE, (1000).to_bytes(2, "big"))
            self.transport.close()


async def connect(url: str, catalogue: MessageCatalogue, cookie: str | None) -> BenchClient:
    """Open one client and wait for its snapshot."""
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: BenchClient(catalogue, request, key), parts.hostname, parts.port or 80
    )
    await asyncio.wait_for(client.opened, HANDSHAKE_TIMEOUT)
    snapshot = await asyncio.wait_for(client.snapshot, HANDSHAKE_TIMEOUT)
    if snapshot.get("type") != "snapshot":
        raise ConnectionError(f"first message is {snapshot.get('type')!r}, expected a snapshot")
    return client


async def run(args: argparse.Namespace) -> int:
    cookies: list[str | None] = [None] * args.count
    if args.cookies:
        with open(args.cookies, encoding="utf-8") as file:
            cookies = json.load(file)
        if len(cookies) != args.count:
            raise SystemExit(f"--cookies lists {len(cookies)} cookies for {args.count} clients")

    catalogue = MessageCatalogue()
    clients: list[BenchClient] = []
    started = time.perf_counter()
    for first in range(0, args.count, CONNECT_BATCH):
        batch = cookies[first : first + CONNECT_BATCH]
        clients.extend(await asyncio.gather(*(connect(args.url, catalogue, cookie) for cookie in batch)))
    connect_seconds = time.perf_counter() - started
    print(f"ready {len(clients)} {connect_seconds:.3f}", flush=True)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if (not line or line.strip() == "stop") and not stop.done():
            stop.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    try:
        await asyncio.wait_for(stop, args.max_seconds)
    except TimeoutError:
        print("max-seconds reached before stop", file=sys.stderr, flush=True)
    finally:
        loop.remove_reader(sys.stdin.fileno())

    lost_connections = sum(client.closed for client in clients)
    result = {
        "connect_seconds": connect_seconds,
        "closed_early": lost_connections,
        "messages": catalogue.messages,
        "received": [client.received for client in clients],
    }
    for client in clients:
        client.close()
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump(result, file, separators=(",", ":"))
    await asyncio.sleep(0.2)  # Let the close frames go out before the process ends.
    print("done", flush=True)
    return 0


def raise_file_limit() -> None:
    """Raise the soft limit of open files to the hard limit: each client is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description="WebSocket clients for the Ringboard benchmarks.")
    parser.add_argument("--url", required=True, help="ws://host:port/api/events")
    parser.add_argument("--count", type=int, required=True, help="number of clients")
    parser.add_argument("--cookies", help="JSON file with one Cookie header value (or null) per client")
    parser.add_argument("--out", required=True, help="file to write the records to, as JSON")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop recording after this long")
    args = parser.parse_args()
    raise_file_limit()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

"""A dialog-event notifier over TCP or TLS on 127.0.0.1, for the subscription adapter's tests.

It accepts connections, answers each SUBSCRIBE with 200 and an empty NOTIFY on the same
connection (as Kamailio reuses the watcher's connection), sends a CRLF pong for each
CRLF ping unless `answer_pings` is off, and lets a test drop connections or stop listening.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
from dataclasses import dataclass, field

from sip.message import Request, Response, StreamParser, build_request, build_response

DOMAIN = "pbx.local"


@dataclass
class StreamSubscription:
    """What the notifier keeps of one subscriber's dialog."""

    extension: str
    call_id: str
    subscriber_tag: str
    notifier_tag: str
    writer: asyncio.StreamWriter
    cseq: itertools.count = field(default_factory=lambda: itertools.count(1))
    answered: dict[int, int] = field(default_factory=dict)


class StreamPbx:
    """Accept SUBSCRIBE over a stream and send NOTIFYs back over the same connection."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, answer_pings: bool = True) -> None:
        self.ssl_context = ssl_context
        self.answer_pings = answer_pings
        self.subscriptions: dict[str, StreamSubscription] = {}
        self.subscribe_count = 0
        self.connection_count = 0
        self.pings = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> tuple[str, int]:
        """Listen on 127.0.0.1 (the same port again when given) and return the address."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port or self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return "127.0.0.1", self.port

    async def stop_listening(self) -> None:
        """Close the listening socket and every connection, as a PBX that went down."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections()
        await asyncio.sleep(0)

    def drop_connections(self) -> None:
        """Reset every open connection."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.subscriptions.clear()

    async def close(self) -> None:
        await self.stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_subscribed(self, extensions: list[str], timeout: float = 5.0) -> None:
        async def all_there() -> None:
            while not all(extension in self.subscriptions for extension in extensions):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_there(), timeout)

    def send_notify(self, extension: str, body: bytes, *, in_pieces: bool = False) -> int:
        """Send a NOTIFY to the extension's subscriber; `in_pieces` writes it a few bytes at a time."""
        subscription = self.subscriptions[extension]
        cseq = next(subscription.cseq)
        headers = [
            ("Via", f"SIP/2.0/TCP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(8)}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{extension}@{DOMAIN}>;tag={subscription.notifier_tag}"),
            ("To", f"<sip:ringboard@{DOMAIN}>;tag={subscription.subscriber_tag}"),
            ("Call-ID", subscription.call_id),
            ("CSeq", f"{cseq} NOTIFY"),
            ("Contact", f"<sip:127.0.0.1:{self.port};transport=tcp>"),
            ("Event", "dialog"),
            ("Subscription-State", "active;expires=590"),
        ]
        if body:
            headers.append(("Content-Type", "application/dialog-info+xml"))
        data = build_request("NOTIFY", "sip:ringboard@127.0.0.1", headers, body)
        if in_pieces:
            task = asyncio.get_running_loop().create_task(self._write_in_pieces(subscription.writer, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            subscription.writer.write(data)
        return cseq

    async def _write_in_pieces(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for start in range(0, len(data), 7):
            writer.write(data[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0.001)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connection_count += 1
        self._writers.add(writer)
        parser = StreamParser()
        try:
            while data := await reader.read(65536):
                if data.startswith(b"\r\n\r\n"):
                    self.pings += 1
                    if self.answer_pings:
                        writer.write(b"\r\n")
                for message in parser.feed(data):
                    self._handle(message, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, message: Request | Response, writer: asyncio.StreamWriter) -> None:
        if isinstance(message, Response):
            for subscription in self.subscriptions.values():
                if subscription.call_id == message.call_id:
                    subscription.answered[message.cseq[0]] = message.status
            return
        if message.method != "SUBSCRIBE":
            return

        self.subscribe_count += 1
        extension = message.uri.split(":", 1)[1].split("@", 1)[0]
        expires = message.headers.get("Expires") or "600"
        existing = self.subscriptions.get(extension)
        same_dialog = existing is not None and existing.call_id == message.call_id
        tag = existing.notifier_tag if same_dialog and existing is not None else secrets.token_hex(4)
        writer.write(build_response(message, 200, "OK", to_tag=tag, headers=[("Expires", expires)]))
        if expires == "0" or same_dialog:
            return
        self.subscriptions[extension] = StreamSubscription(
            extension, message.call_id, message.from_tag or "", tag, writer
        )
        self.send_notify(extension, b"")

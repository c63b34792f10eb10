"""asyncio transports for SIP signalling: one UDP socket, or one TCP or TLS connection.

These are thin: they move bytes, frame stream messages with `StreamParser`, and keep
a stream alive with CRLF pings (RFC 5626 §4.4.1). Every SIP decision is taken by the
sans-I/O subscriber that the source adapter drives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable

from sip.dns import Target
from sip.message import Request, Response, SipParseError, StreamParser

log = logging.getLogger("ringboard.sip.transport")

# RFC 5626 §4.4.1: a stream is pinged at a random time between 80 % and 100 % of an
# upper bound of 120 s, and has failed when no pong comes within 10 s.
KEEPALIVE_SECONDS = 120.0
KEEPALIVE_SPREAD = 0.2
PONG_TIMEOUT_SECONDS = 10.0

# A TCP or TLS connection (handshake included) to a PBX on the office network takes
# milliseconds. A target that does not respond within this is skipped for the next.
CONNECT_TIMEOUT_SECONDS = 5.0

PING = b"\r\n\r\n"

MessageHandler = Callable[[Request | Response, tuple[str, int] | None], None]


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Return a client context that verifies the PBX's certificate and host name.

    With `ca_file` only the certificates in that file are trusted, as for a PBX with its
    own CA or a self-signed certificate. Without it the system's trust store is used.
    """
    context = ssl.create_default_context(cafile=ca_file)
    # TLS 1.0 and 1.1 are deprecated (RFC 8996).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class DatagramEndpoint(asyncio.DatagramProtocol):
    """The agent's UDP socket: datagrams in, datagrams out, errors logged."""

    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self, local: tuple[str, int]) -> None:
        """Bind the socket."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=local)

    @property
    def local_address(self) -> tuple[str, int]:
        if self._transport is None:
            raise RuntimeError("the UDP socket is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, address)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors such as "port unreachable" surface here; the transaction timer
        # decides whether a request failed.
        log.warning("SIP UDP socket error: %s", exc)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection to the PBX, framed by Content-Length.

    `closed` completes with the reason once the connection is gone, whether the peer
    closed it, a message could not be framed, or a ping got no pong. A missing pong
    counts only once the peer has sent one, because not every PBX responds to pings.
    """

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self._on_message = on_message
        self._keepalive_seconds = keepalive_seconds
        self._pong_timeout = pong_timeout
        self._rng = rng or random.Random()
        self._parser = StreamParser()
        self._transport: asyncio.Transport | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._answers_pings = False
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def peer_address(self) -> tuple[str, int]:
        assert self._transport is not None
        host, port = self._transport.get_extra_info("peername")[:2]
        return host, port

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._schedule_ping()

    def data_received(self, data: bytes) -> None:
        if self._pong_timer is not None:
            # Anything received after a ping shows the peer is alive. A CRLF first is the
            # pong of RFC 5626 §4.4.1, which shows that this peer responds to pings.
            self._pong_timer.cancel()
            self._pong_timer = None
            if data.startswith(b"\r\n"):
                self._answers_pings = True
        try:
            messages = self._parser.feed(data)
        except SipParseError as error:
            log.warning("SIP stream from %s:%s closed: %s", *self.peer_address, error)
            self._finish(f"invalid stream: {error}")
            return
        for message in messages:
            self._on_message(message, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "closed by the server")

    # Keep-alive ---------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        delay = self._keepalive_seconds * self._rng.uniform(1 - KEEPALIVE_SPREAD, 1)
        self._ping_timer = asyncio.get_running_loop().call_later(delay, self._ping)

    def _ping(self) -> None:
        self.send(PING)
        if self._pong_timer is None:
            self._pong_timer = asyncio.get_running_loop().call_later(self._pong_timeout, self._pong_missed)
        self._schedule_ping()

    def _pong_missed(self) -> None:
        self._pong_timer = None
        if self._answers_pings:
            log.warning("no keep-alive pong within %.0f s: closing the connection", self._pong_timeout)
            self._finish("keep-alive timed out")

    def _finish(self, reason: str) -> None:
        self._cancel_timers()
        if not self.closed.done():
            self.closed.set_result(reason)
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timers(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None


async def open_stream(
    target: Target,
    on_message: MessageHandler,
    *,
    ssl_context: ssl.SSLContext | None,
    local_host: str | None = None,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    pong_timeout: float = PONG_TIMEOUT_SECONDS,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> StreamConnection:
    """Connect to a TCP or TLS target; raise OSError, ssl.SSLError or TimeoutError."""
    loop = asyncio.get_running_loop()
    use_tls = target.transport == "tls"
    local = (local_host, 0) if local_host and local_host not in ("0.0.0.0", "::") else None
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: StreamConnection(on_message, keepalive_seconds=keepalive_seconds, pong_timeout=pong_timeout),
            target.host,
            target.port,
            ssl=ssl_context if use_tls else None,
            server_hostname=target.server_name if use_tls else None,
            local_addr=local,
        ),
        timeout,
    )
    return protocol

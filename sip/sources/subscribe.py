"""asyncio UDP adapter that drives a `DialogSubscriber`.

The adapter owns the socket and the one timer; every decision is the subscriber's.
It hands dialog-info documents and subscription state changes to two callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from sip.subscription import (
    DialogSubscriber,
    DocumentReceived,
    Effect,
    MessageDropped,
    SendMessage,
    StateChanged,
    SubscriberConfig,
)

log = logging.getLogger("ringboard.sip.subscribe")

DocumentHandler = Callable[[DocumentReceived], None]
StateHandler = Callable[[StateChanged], None]

# Drop notices are logged once per this many, so a flood of junk cannot fill the log.
DROP_LOG_EVERY = 100


class DialogSubscriptionSource(asyncio.DatagramProtocol):
    """Subscribe to the dialog state of extensions over UDP and report what arrives."""

    def __init__(
        self,
        *,
        pbx_host: str,
        pbx_port: int,
        domain: str,
        extensions: list[str],
        on_document: DocumentHandler,
        on_state: StateHandler,
        local_host: str = "127.0.0.1",
        local_port: int = 0,
        user: str = "ringboard",
        expires: int = 600,
    ) -> None:
        self._settings = dict(pbx_host=pbx_host, pbx_port=pbx_port, domain=domain, user=user, expires=expires)
        self._extensions = list(extensions)
        self._local = (local_host, local_port)
        self._on_document = on_document
        self._on_state = on_state
        self._transport: asyncio.DatagramTransport | None = None
        self._subscriber: DialogSubscriber | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._dropped = 0

    @property
    def local_address(self) -> tuple[str, int]:
        """The address the agent's SIP socket is bound to."""
        if self._transport is None:
            raise RuntimeError("the subscription source is not started")
        return self._transport.get_extra_info("sockname")[:2]

    @property
    def dropped(self) -> int:
        """The number of datagrams dropped as invalid or unmatched."""
        return self._dropped

    def states(self) -> dict[str, str]:
        """Return each extension's subscription state."""
        if self._subscriber is None:
            return {extension: "pending" for extension in self._extensions}
        return {extension: str(state) for extension, state in self._subscriber.states().items()}

    async def start(self) -> None:
        """Bind the socket and send the first SUBSCRIBEs."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=self._local)
        host, port = self.local_address
        if host in ("0.0.0.0", "::"):
            host = _outgoing_address(self._settings["pbx_host"], self._settings["pbx_port"])
        config = SubscriberConfig(local_host=host, local_port=port, **self._settings)
        self._subscriber = DialogSubscriber(config, self._extensions)
        log.info(
            "subscribing to extensions %s at %s:%s from %s:%s",
            ", ".join(self._extensions), config.pbx_host, config.pbx_port, host, port,
        )
        self._run(self._subscriber.start(time.monotonic()))

    async def stop(self) -> None:
        """Unsubscribe, give the datagrams a moment to leave, and close the socket."""
        if self._subscriber is not None and self._transport is not None:
            self._run(self._subscriber.stop(time.monotonic()))
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # asyncio.DatagramProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._subscriber is None:
            return
        self._run(self._subscriber.receive(data, addr[:2], time.monotonic()))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors such as "port unreachable" surface here; the transaction timer
        # decides whether the subscription failed.
        log.warning("SIP socket error: %s", exc)

    # Effects -------------------------------------------------------------------------

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            self._apply(effect)
        self._rearm()

    def _apply(self, effect: Effect) -> None:
        if isinstance(effect, SendMessage):
            if self._transport is not None:
                self._transport.sendto(effect.data, effect.address)
        elif isinstance(effect, DocumentReceived):
            self._on_document(effect)
        elif isinstance(effect, StateChanged):
            self._log_state(effect)
            self._on_state(effect)
        elif isinstance(effect, MessageDropped):
            self._dropped += 1
            if self._dropped % DROP_LOG_EVERY == 1:
                log.warning(
                    "dropped a SIP message from %s:%s (%s); %d dropped so far",
                    effect.address[0], effect.address[1], effect.reason, self._dropped,
                )

    def _log_state(self, change: StateChanged) -> None:
        if change.state == "failing":
            log.warning(
                "subscription for extension %s is failing: %s%s",
                change.extension, change.reason, f" (SIP {change.status})" if change.status else "",
            )
        else:
            log.info("subscription for extension %s is %s", change.extension, change.state)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._subscriber is None or self._transport is None:
            return
        deadline = self._subscriber.next_deadline()
        if deadline is None:
            return
        delay = max(0.0, deadline - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._subscriber is not None:
            self._run(self._subscriber.on_timer(time.monotonic()))


def _outgoing_address(pbx_host: str, pbx_port: int) -> str:
    """Return the local address the system routes to the PBX from, for Via and Contact.

    Connecting a UDP socket picks a route without sending anything.
    """
    family = socket.AF_INET6 if ":" in pbx_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((pbx_host, pbx_port))
        return probe.getsockname()[0]

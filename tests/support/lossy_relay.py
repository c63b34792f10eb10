"""A UDP relay on 127.0.0.1 that drops a share of datagrams, between the agent and the PBX.

The agent sends to the relay's front socket, and the relay forwards from its back socket
to the PBX. What the PBX sends to the back socket goes to the agent. Each datagram is
dropped with probability `loss`, in both directions, from a seeded random generator.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class RelayCounts:
    """Datagrams forwarded and dropped per direction."""

    to_pbx: int = 0
    to_agent: int = 0
    dropped_to_pbx: int = 0
    dropped_to_agent: int = 0


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)


class LossyRelay:
    """Forward datagrams between one agent and the PBX, dropping `loss` of them."""

    def __init__(self, pbx: tuple[str, int], loss: float, seed: int = 1) -> None:
        self.pbx = pbx
        self.loss = loss
        self.counts = RelayCounts()
        self._rng = random.Random(seed)
        self._agent: tuple[str, int] | None = None
        self._front = _Socket(self._from_agent)
        self._back = _Socket(self._from_pbx)

    async def start(self) -> tuple[str, int]:
        """Bind both sockets on 127.0.0.1 and return the address the agent sends to."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._front, local_addr=("127.0.0.1", 0))
        await loop.create_datagram_endpoint(lambda: self._back, local_addr=("127.0.0.1", 0))
        assert self._front.transport is not None
        host, port = self._front.transport.get_extra_info("sockname")[:2]
        return host, port

    def close(self) -> None:
        for side in (self._front, self._back):
            if side.transport is not None:
                side.transport.close()

    def _from_agent(self, data: bytes, addr: tuple[str, int]) -> None:
        self._agent = addr
        if self._rng.random() < self.loss:
            self.counts.dropped_to_pbx += 1
            return
        self.counts.to_pbx += 1
        assert self._back.transport is not None
        self._back.transport.sendto(data, self.pbx)

    def _from_pbx(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._agent is None:
            return
        if self._rng.random() < self.loss:
            self.counts.dropped_to_agent += 1
            return
        self.counts.to_agent += 1
        assert self._front.transport is not None
        self._front.transport.sendto(data, self._agent)

"""Non-INVITE transactions of RFC 3261 §17, as timers without I/O.

The agent sends SUBSCRIBE and REGISTER and receives NOTIFY, all non-INVITE requests.
`ClientTransaction` decides when a request is sent again (timer E) and when it has
timed out (timer F). `ServerTransactions` remembers the response to each received
request (by branch and method), so that a retransmission gets the same response and is
not processed twice (timer J).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# RFC 3261 §17.1.1.1: T1 is the round-trip estimate and T2 the cap on the retransmit
# interval of non-INVITE requests. T4 is how long a message may stay in the network.
T1 = 0.5
T2 = 4.0
T4 = 5.0

# RFC 3261 §17.1.2.2 and §17.2.2: timer F (client) and timer J (server) last 64*T1.
TIMER_F_FACTOR = 64

# At most this many responses are remembered. A busy PBX sends a few NOTIFYs a second,
# about a hundred within timer J, so the cap only bounds a flood of branches.
MAX_SERVER_TRANSACTIONS = 4096


class ClientState(StrEnum):
    """States of a non-INVITE client transaction (RFC 3261 Figure 6)."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(slots=True)
class ClientTransaction:
    """One outgoing non-INVITE request and its retransmission timers.

    Over UDP the request is sent again at T1, 2*T1, … up to T2 (timer E) until a
    response arrives, and a provisional response moves the interval to T2. Over TCP and
    TLS nothing is retransmitted (RFC 3261 §17.1.2.2). Without a final response by timer
    F the transaction has timed out.
    """

    branch: str
    method: str
    data: bytes
    started: float
    reliable: bool = False
    t1: float = T1
    state: ClientState = ClientState.TRYING
    interval: float = field(init=False)
    next_retransmit: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.interval = self.t1
        self.next_retransmit = None if self.reliable else self.started + self.t1

    @property
    def timeout_at(self) -> float:
        """When timer F fires."""
        return self.started + TIMER_F_FACTOR * self.t1

    @property
    def done(self) -> bool:
        """Whether a final response arrived or the transaction timed out."""
        return self.state in (ClientState.COMPLETED, ClientState.TERMINATED)

    def deadline(self) -> float | None:
        """Return the next clock reading at which `on_timer` has work, or None when done."""
        if self.done:
            return None
        if self.next_retransmit is None:
            return self.timeout_at
        return min(self.next_retransmit, self.timeout_at)

    def on_timer(self, now: float) -> bytes | None:
        """Return the request to send again when timer E fired; mark a timeout on timer F.

        After a timeout `state` is TERMINATED and the caller reports the failure.
        """
        if self.done:
            return None
        if now >= self.timeout_at:
            self.state = ClientState.TERMINATED
            return None
        if self.next_retransmit is not None and now >= self.next_retransmit:
            # Timer E doubles up to T2 while trying, and stays at T2 once proceeding.
            if self.state == ClientState.TRYING:
                self.interval = min(self.interval * 2, T2)
            self.next_retransmit = now + self.interval
            return self.data
        return None

    def on_response(self, status: int, now: float) -> bool:
        """Take in a response; return True when it is the final one to act on.

        A response to a transaction that is already done is a retransmission and is
        ignored (RFC 3261 §17.1.2.2, timer K absorbs them).
        """
        if self.done:
            return False
        if status < 200:
            self.state = ClientState.PROCEEDING
            if self.next_retransmit is not None:
                self.interval = T2
                self.next_retransmit = now + T2
            return False
        self.state = ClientState.COMPLETED
        self.next_retransmit = None
        return True


@dataclass(slots=True)
class _Answered:
    response: bytes
    forget_at: float


class ServerTransactions:
    """Responses already sent to received non-INVITE requests, by branch and method.

    RFC 3261 §17.2.2: a retransmitted request gets the last response again and is not
    passed on. Over UDP a transaction is kept for timer J (64*T1); over TCP and TLS a
    request is never retransmitted, so nothing is kept.
    """

    def __init__(self, t1: float = T1) -> None:
        self._t1 = t1
        self._answered: dict[tuple[str, str], _Answered] = {}
        self.evicted = 0

    def lookup(self, branch: str | None, method: str) -> bytes | None:
        """Return the response sent to an earlier copy of this request, if any."""
        if not branch:
            return None
        entry = self._answered.get((branch, method))
        return entry.response if entry is not None else None

    def remember(self, branch: str | None, method: str, response: bytes, now: float, *, reliable: bool) -> None:
        """Store the final response sent to a request received over UDP."""
        if not branch or reliable:
            return
        if len(self._answered) >= MAX_SERVER_TRANSACTIONS:
            oldest = min(self._answered, key=lambda key: self._answered[key].forget_at)
            del self._answered[oldest]
            self.evicted += 1
        self._answered[(branch, method)] = _Answered(response, now + TIMER_F_FACTOR * self._t1)

    def deadline(self) -> float | None:
        """Return when the oldest stored response may be forgotten."""
        return min((entry.forget_at for entry in self._answered.values()), default=None)

    def expire(self, now: float) -> None:
        """Forget the responses whose timer J has fired."""
        for key in [key for key, entry in self._answered.items() if entry.forget_at <= now]:
            del self._answered[key]

    def __len__(self) -> int:
        return len(self._answered)

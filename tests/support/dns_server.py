"""An authoritative DNS server on 127.0.0.1 for tests, serving a zone given as text.

It resolves only the names of its zone (NXDOMAIN for anything else) and forwards nothing,
so a test that points the agent's resolver at it never queries another server.
"""

from __future__ import annotations

import threading
from types import TracebackType

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import DNSHandler, DNSServer


class ZoneResolver:
    """Reply with every record of the zone whose name and type match the query."""

    def __init__(self, zone: str) -> None:
        self.records = RR.fromZone(zone)
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = request.q.qname
        qtype = QTYPE[request.q.qtype]
        self.queries.append((str(name).rstrip("."), qtype))
        matches = [record for record in self.records if record.rname == name]
        for record in matches:
            if QTYPE[record.rtype] == qtype:
                reply.add_answer(record)
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _QuietLogger:
    def log_recv(self, *args: object) -> None: ...
    def log_send(self, *args: object) -> None: ...
    def log_request(self, *args: object) -> None: ...
    def log_reply(self, *args: object) -> None: ...
    def log_truncated(self, *args: object) -> None: ...
    def log_error(self, *args: object) -> None: ...
    def log_data(self, *args: object) -> None: ...


class TestDnsServer:
    """A UDP DNS server on 127.0.0.1 on a free port, stopped on exit."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, zone: str) -> None:
        self.resolver = ZoneResolver(zone)
        self._server = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=_QuietLogger())
        # A short poll interval makes shutdown quick; dnslib's own thread polls every 0.5 s.
        self._thread = threading.Thread(
            target=self._server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server.server_address[:2]
        return host, port

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self.resolver.queries

    def __enter__(self) -> TestDnsServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.server.shutdown()
        self._server.server.server_close()
        self._thread.join()

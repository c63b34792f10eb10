"""The subscription adapter on real sockets: TCP framing, reconnects, keep-alives, TLS,
and RFC 3263 discovery with failover, against notifiers and a DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent.lab.certs import make_certificates
from sip.sources.subscribe import DialogSubscriptionSource, SubscribeSettings
from sip.subscription import DocumentReceived, StateChanged
from sip.sources.transport import tls_context
from tests.support.dns_server import TestDnsServer
from tests.support.fake_pbx import FakePbx
from tests.support.stream_pbx import StreamPbx

pytestmark = pytest.mark.timeout(30)

DOMAIN = "pbx.local"
BODY = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:201@pbx.local"/>'


class Recorder:
    """The adapter's two callbacks, kept for the test to read."""

    def __init__(self) -> None:
        self.documents: list[DocumentReceived] = []
        self.changes: list[StateChanged] = []

    def history(self, extension: str = "201") -> list[tuple[str, str | None]]:
        return [(str(change.state), change.reason) for change in self.changes if change.extension == extension]

    def state(self, extension: str = "201") -> tuple[str, str | None] | None:
        found = [change for change in self.changes if change.extension == extension]
        return (str(found[-1].state), found[-1].reason) if found else None


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def source(recorder: Recorder, **settings: Any) -> DialogSubscriptionSource:
    values: dict[str, Any] = dict(
        server="127.0.0.1", domain=DOMAIN, extensions=("201",), local_host="127.0.0.1", retry_max=0.5
    )
    values.update(settings)
    return DialogSubscriptionSource(
        SubscribeSettings(**values), on_document=recorder.documents.append, on_state=recorder.changes.append
    )


@pytest.fixture
async def stream_pbx() -> AsyncIterator[StreamPbx]:
    pbx = StreamPbx()
    await pbx.start()
    yield pbx
    await pbx.close()


def closed_tcp_port() -> int:
    """Return a port on 127.0.0.1 with nothing listening, so a connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----- TCP framing and reconnection -----


async def test_tcp_notify_framed_across_segments(stream_pbx: StreamPbx) -> None:
    recorder = Recorder()
    agent = source(recorder, port=stream_pbx.port, transport="tcp")
    await agent.start()
    try:
        await stream_pbx.wait_subscribed(["201"])
        await eventually(lambda: recorder.state() == ("active", None))
        cseq = stream_pbx.send_notify("201", BODY, in_pieces=True)
        await eventually(lambda: any(document.body == BODY for document in recorder.documents))
        await eventually(lambda: stream_pbx.subscriptions["201"].answered.get(cseq) == 200)
        assert stream_pbx.connection_count == 1
    finally:
        await agent.stop()


async def test_tcp_reconnects_after_connection_drop(stream_pbx: StreamPbx) -> None:
    recorder = Recorder()
    agent = source(recorder, port=stream_pbx.port, transport="tcp")
    await agent.start()
    try:
        await stream_pbx.wait_subscribed(["201"])
        first_call_id = stream_pbx.subscriptions["201"].call_id
        stream_pbx.drop_connections()
        # The agent reconnects at once, so the failing state may already be over.
        await eventually(lambda: ("failing", "transport") in recorder.history())
        await stream_pbx.wait_subscribed(["201"])
        await eventually(lambda: recorder.state() == ("active", None))
        assert stream_pbx.connection_count == 2
        assert stream_pbx.subscriptions["201"].call_id != first_call_id
    finally:
        await agent.stop()


async def test_tcp_reconnects_when_pbx_returns(stream_pbx: StreamPbx) -> None:
    recorder = Recorder()
    agent = source(recorder, port=stream_pbx.port, transport="tcp")
    await agent.start()
    try:
        await stream_pbx.wait_subscribed(["201"])
        await stream_pbx.stop_listening()
        await eventually(lambda: recorder.state() == ("failing", "transport"))
        await asyncio.sleep(1.0)  # several refused attempts, each after the back-off
        await stream_pbx.start()
        returned = asyncio.get_running_loop().time()
        await stream_pbx.wait_subscribed(["201"], timeout=3.0)
        # The back-off never exceeds retry_max (0.5 s), so the agent is back within it.
        assert asyncio.get_running_loop().time() - returned < 2 * 0.5
    finally:
        await agent.stop()


async def test_keepalive_without_pong_closes_connection() -> None:
    pbx = StreamPbx()
    await pbx.start()
    recorder = Recorder()
    agent = source(recorder, port=pbx.port, transport="tcp", keepalive_seconds=0.2, pong_timeout=0.3)
    await agent.start()
    try:
        await pbx.wait_subscribed(["201"])
        await eventually(lambda: pbx.pings >= 2)
        assert pbx.connection_count == 1  # pongs came, so the connection stays

        pbx.answer_pings = False
        await eventually(lambda: pbx.connection_count >= 2, timeout=5.0)
        assert ("failing", "transport") in recorder.history()
    finally:
        await agent.stop()
        await pbx.close()


# ----- TLS -----


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    return make_certificates(tmp_path_factory.mktemp("tls"), DOMAIN)


async def tls_pbx(certificates) -> StreamPbx:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.certificate, certificates.key)
    pbx = StreamPbx(context)
    await pbx.start()
    return pbx


async def test_tls_verified_with_ca_file(certificates) -> None:
    pbx = await tls_pbx(certificates)
    recorder = Recorder()
    agent = source(recorder, port=pbx.port, transport="tls", ca_file=str(certificates.ca_file))
    await agent.start()
    try:
        await pbx.wait_subscribed(["201"])
        await eventually(lambda: recorder.state() == ("active", None))
    finally:
        await agent.stop()
        await pbx.close()


async def test_tls_unknown_ca_reported(certificates) -> None:
    pbx = await tls_pbx(certificates)
    recorder = Recorder()
    agent = source(recorder, port=pbx.port, transport="tls")  # the system trust store
    await agent.start()
    try:
        await eventually(lambda: recorder.state() == ("failing", "tls"))
        assert pbx.subscribe_count == 0
    finally:
        await agent.stop()
        await pbx.close()


def test_tls_context_verifies_and_needs_tls_1_2(certificates) -> None:
    context = tls_context(str(certificates.ca_file))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


# ----- RFC 3263 discovery and failover -----


async def test_srv_failover_to_second_target(stream_pbx: StreamPbx) -> None:
    dead = closed_tcp_port()
    zone = f"""
_sip._tcp.pbx.test. 60 IN SRV 10 0 {dead} pbx1.pbx.test.
_sip._tcp.pbx.test. 60 IN SRV 20 0 {stream_pbx.port} pbx2.pbx.test.
pbx1.pbx.test. 60 IN A 127.0.0.1
pbx2.pbx.test. 60 IN A 127.0.0.1
"""
    with TestDnsServer(zone) as dns:
        recorder = Recorder()
        agent = source(recorder, server="pbx.test", transport="tcp", dns_servers=(dns.address,))
        await agent.start()
        try:
            await stream_pbx.wait_subscribed(["201"])
            await eventually(lambda: recorder.state() == ("active", None))
            assert agent.target is not None and agent.target.port == stream_pbx.port
        finally:
            await agent.stop()
    assert ("_sip._tcp.pbx.test", "SRV") in dns.queries


async def test_naptr_chooses_transport(stream_pbx: StreamPbx) -> None:
    zone = f"""
pbx.test. 60 IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.pbx.test.
pbx.test. 60 IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.pbx.test.
_sip._tcp.pbx.test. 60 IN SRV 10 0 {stream_pbx.port} pbx1.pbx.test.
pbx1.pbx.test. 60 IN A 127.0.0.1
"""
    with TestDnsServer(zone) as dns:
        recorder = Recorder()
        agent = source(recorder, server="pbx.test", transport="auto", dns_servers=(dns.address,))
        await agent.start()
        try:
            await stream_pbx.wait_subscribed(["201"])
            assert agent.target is not None and agent.target.transport == "tcp"
        finally:
            await agent.stop()
    assert dns.queries[0] == ("pbx.test", "NAPTR")


async def test_udp_failover_after_transaction_timeout() -> None:
    # The first target swallows every datagram; the second is a working notifier.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    pbx = FakePbx()
    _, port = await pbx.start()
    zone = f"""
_sip._udp.pbx.test. 60 IN SRV 10 0 {silent.getsockname()[1]} pbx1.pbx.test.
_sip._udp.pbx.test. 60 IN SRV 20 0 {port} pbx2.pbx.test.
pbx1.pbx.test. 60 IN A 127.0.0.1
pbx2.pbx.test. 60 IN A 127.0.0.1
"""
    with TestDnsServer(zone) as dns:
        recorder = Recorder()
        # T1 of 20 ms makes timer F fire after 1.28 s instead of 32 s.
        agent = source(recorder, server="pbx.test", transport="udp", dns_servers=(dns.address,), t1=0.02)
        await agent.start()
        try:
            await eventually(lambda: recorder.state() == ("failing", "timeout"), timeout=5.0)
            await pbx.wait_subscribed(["201"], timeout=5.0)
            await eventually(lambda: recorder.state() == ("active", None))
        finally:
            await agent.stop()
            pbx.close()
            silent.close()


async def test_unknown_name_reported_as_dns_failure() -> None:
    with TestDnsServer("other.test. 60 IN A 127.0.0.1") as dns:
        recorder = Recorder()
        agent = source(recorder, server="pbx.test", transport="tcp", dns_servers=(dns.address,))
        await agent.start()
        try:
            await eventually(lambda: recorder.state() == ("failing", "dns"))
        finally:
            await agent.stop()
        assert {name for name, _ in dns.queries} <= {"_sip._tcp.pbx.test", "pbx.test"}

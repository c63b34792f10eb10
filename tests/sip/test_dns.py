"""RFC 3263 server location: SRV ordering, NAPTR selection, and lookups against a DNS
server the test runs on 127.0.0.1, the only server the resolver queries."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sip.dns import NaptrRecord, SrvRecord, Target, naptr_services, order_srv
from sip.sources.locator import ServerLocator, ServerNotFound
from tests.support.dns_server import TestDnsServer

pytestmark = pytest.mark.timeout(30)


def test_srv_ordered_by_priority_then_weight():
    records = [
        SrvRecord(20, 0, 5060, "backup.test."),
        SrvRecord(10, 90, 5060, "heavy.test."),
        SrvRecord(10, 10, 5060, "light.test."),
    ]
    firsts = Counter(order_srv(records, random.Random(seed))[0].target for seed in range(2000))
    assert set(firsts) == {"heavy.test.", "light.test."}
    assert 0.85 < firsts["heavy.test."] / 2000 < 0.95
    assert all(order_srv(records, random.Random(seed))[-1].target == "backup.test." for seed in range(50))


def test_srv_dot_target_dropped():
    assert order_srv([SrvRecord(10, 0, 0, ".")], random.Random(1)) == []


def test_zero_weight_records_still_ordered():
    records = [SrvRecord(10, 0, 5060, "a.test."), SrvRecord(10, 0, 5061, "b.test.")]
    assert {record.target for record in order_srv(records, random.Random(3))} == {"a.test.", "b.test."}


def test_naptr_filters_and_orders():
    records = [
        NaptrRecord(90, 50, "s", "SIP+D2U", "_sip._udp.pbx.test."),
        NaptrRecord(50, 50, "s", "SIPS+D2T", "_sips._tcp.pbx.test."),
        NaptrRecord(50, 40, "s", "SIP+D2T", "_sip._tcp.pbx.test."),
        NaptrRecord(10, 10, "u", "E2U+sip", "!^.*$!sip:x@y!"),
        NaptrRecord(20, 10, "s", "SIP+D2S", "_sip._sctp.pbx.test."),
    ]
    assert naptr_services(records, ("udp", "tcp", "tls")) == [
        ("tcp", "_sip._tcp.pbx.test."),
        ("tls", "_sips._tcp.pbx.test."),
        ("udp", "_sip._udp.pbx.test."),
    ]
    assert naptr_services(records, ("udp",)) == [("udp", "_sip._udp.pbx.test.")]


ZONE = """
pbx.test. 60 IN NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.pbx.test.
pbx.test. 60 IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.pbx.test.
_sips._tcp.pbx.test. 60 IN SRV 10 0 5061 a.pbx.test.
_sip._udp.pbx.test. 60 IN SRV 10 0 5080 b.pbx.test.
_sip._udp.pbx.test. 60 IN SRV 20 0 5090 c.pbx.test.
a.pbx.test. 60 IN A 127.0.0.11
b.pbx.test. 60 IN A 127.0.0.12
c.pbx.test. 60 IN A 127.0.0.13
plain.test. 60 IN A 127.0.0.20
"""


@pytest.fixture
def dns():
    with TestDnsServer(ZONE) as server:
        yield server


async def test_naptr_then_srv_then_a(dns):
    targets = await ServerLocator([dns.address]).locate("pbx.test")
    assert targets == [
        Target("tls", "127.0.0.11", 5061, "pbx.test"),
        Target("udp", "127.0.0.12", 5080, "pbx.test"),
        Target("udp", "127.0.0.13", 5090, "pbx.test"),
    ]


async def test_configured_transport_skips_naptr(dns):
    targets = await ServerLocator([dns.address]).locate("pbx.test", transport="udp")
    assert [target.port for target in targets] == [5080, 5090]
    assert ("pbx.test", "NAPTR") not in dns.queries


async def test_explicit_port_skips_srv(dns):
    targets = await ServerLocator([dns.address]).locate("plain.test", port=5070, transport="tcp")
    assert targets == [Target("tcp", "127.0.0.20", 5070, "plain.test")]
    assert all(rdtype in ("A", "AAAA") for _, rdtype in dns.queries)


async def test_no_srv_uses_address_and_default_port(dns):
    targets = await ServerLocator([dns.address]).locate("plain.test", transport="tls")
    assert targets == [Target("tls", "127.0.0.20", 5061, "plain.test")]


async def test_ip_literal_needs_no_query(dns):
    targets = await ServerLocator([dns.address]).locate("127.0.0.5", transport="tcp")
    assert targets == [Target("tcp", "127.0.0.5", 5060, "127.0.0.5")]
    assert dns.queries == []


async def test_unknown_name_raises(dns):
    with pytest.raises(ServerNotFound, match="missing.test"):
        await ServerLocator([dns.address]).locate("missing.test", transport="udp")

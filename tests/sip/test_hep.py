"""HEP v3: the decoder on real bytes and broken ones, and the UDP/TCP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.hep import (
    MAX_HEP_PACKET_BYTES,
    MAX_PAYLOAD_BYTES,
    HepError,
    HepStreamFramer,
    decode_hep,
    encode_hep,
)
from sip.message import Response, parse_message
from sip.sources.hep import HepReceiver
from tests.sip.corpus import fixture_path, sections
from tests.support.sipflows import T0

LOOPBACK = "127.0.0.1"


def case27_packet() -> bytes:
    text = fixture_path("27-").read_text(encoding="utf-8")
    return bytes.fromhex(text.split("full packet hex:")[1].split()[0])


def invite_bytes() -> bytes:
    return [part.message_bytes() for part in sections("23-") if part.title.startswith("msg ")][0]


def one_mb_invite() -> bytes:
    head = invite_bytes().split(b"\r\n\r\n")[0]
    filler = b"X-Filler: " + b"a" * (1024 * 1024) + b"\r\n"
    return head.replace(b"Content-Length: 193", b"Content-Length: 0") + b"\r\n" + filler + b"\r\n"


# Decoder ----------------------------------------------------------------------------------


def test_case27_packet_fields():
    packet = decode_hep(case27_packet())

    assert packet.family == 2
    assert packet.protocol == 17
    assert packet.source == ("192.0.2.250", 5060)
    assert packet.destination == ("192.0.2.251", 5060)
    assert packet.timestamp == datetime(2023, 11, 14, 22, 13, 20, 120564, tzinfo=timezone.utc)
    assert packet.is_sip
    assert packet.capture_id == 0
    assert packet.auth_key == b""
    assert packet.correlation_id is None


def test_case27_payload_is_options_answer():
    message = parse_message(decode_hep(case27_packet()).payload)

    assert isinstance(message, Response)
    assert message.status == 200
    assert message.cseq == (215834489, "OPTIONS")
    # The HEP addresses, not the Via, say who sent the message to whom.
    assert message.top_via.host == "192.0.2.111"


@pytest.mark.parametrize(("source", "destination"), [
    (("192.0.2.1", 5060), ("192.0.2.2", 5070)),
    (("2001:db8::1", 5060), ("2001:db8::2", 5061)),
])
@pytest.mark.parametrize("compress", [False, True])
def test_encode_decode_round_trip(source, destination, compress):
    moment = datetime(2026, 12, 4, 9, 0, 0, 123456, tzinfo=timezone.utc)
    data = encode_hep(invite_bytes(), source, destination, moment, capture_id=2001,
                      auth_key=b"secret", correlation_id="call-1", compress=compress)
    packet = decode_hep(data, auth_key=b"secret")

    assert (packet.source, packet.destination, packet.timestamp) == (source, destination, moment)
    assert packet.payload == invite_bytes()
    assert packet.capture_id == 2001
    assert packet.correlation_id == "call-1"
    assert packet.family == (2 if ":" not in source[0] else 10)


def test_auth_key_checked_when_configured():
    data = encode_hep(b"x", ("192.0.2.1", 1), ("192.0.2.2", 2), T0, auth_key=b"right")

    assert decode_hep(data).auth_key == b"right"
    with pytest.raises(HepError, match="auth key"):
        decode_hep(data, auth_key=b"wrong")
    with pytest.raises(HepError, match="auth key"):
        decode_hep(encode_hep(b"x", ("192.0.2.1", 1), ("192.0.2.2", 2), T0), auth_key=b"right")


@pytest.mark.parametrize(("data", "reason"), [
    (b"HEP", "shorter than"),
    (b"HEP2\x00\x06", "invalid magic"),
    (b"\x02\x10\x02\x11" + bytes(20), "HEP version 2 is not supported"),
    (b"HEP3\x00\x09\x00", "invalid length field 9"),
    (b"HEP3\x00\x0c\x00\x00\x00\x0f\x00\x05", "below its 6-byte header"),
    (b"HEP3\x00\x0c\x00\x00\x00\x0f\x00\x09", "runs 3 bytes past"),
    (b"HEP3\x00\x0d\x00\x00\x00\x01\x00\x07\x02", "no payload chunk"),
    (b"HEP3\x00\x0b\x00\x00\x00\x0f\x00", "truncated chunk header"),
])
def test_invalid_packets_rejected_with_reason(data, reason):
    with pytest.raises(HepError, match=reason):
        decode_hep(data)


def test_truncated_case27_rejected_at_every_length():
    data = case27_packet()
    for cut in range(len(data)):
        with pytest.raises(HepError):
            decode_hep(data[:cut])


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_packets_raise_only_hep_error(noise):
    for data in (noise, b"HEP3" + struct.pack(">H", len(noise) + 6) + noise, case27_packet()[:60] + noise):
        try:
            decode_hep(data)
        except HepError:
            pass


def test_one_megabyte_message_rejected_by_payload_limit():
    big = one_mb_invite()
    assert len(big) > MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match=f"limit of {MAX_HEP_PACKET_BYTES}"):
        encode_hep(big, ("192.0.2.1", 1), ("192.0.2.2", 2), T0)

    compressed = encode_hep(big, ("192.0.2.1", 1), ("192.0.2.2", 2), T0, compress=True)
    assert len(compressed) < MAX_HEP_PACKET_BYTES
    with pytest.raises(HepError, match=f"limit of {MAX_PAYLOAD_BYTES}"):
        decode_hep(compressed)


def test_broken_compressed_payload_rejected():
    data = encode_hep(b"x" * 100, ("192.0.2.1", 1), ("192.0.2.2", 2), T0, compress=True)
    broken = data[:-10] + bytes(10)
    with pytest.raises(HepError, match="inflate"):
        decode_hep(broken)


def test_stream_framer_splits_and_joins():
    one = encode_hep(b"first", ("192.0.2.1", 1), ("192.0.2.2", 2), T0)
    two = encode_hep(b"second", ("192.0.2.1", 1), ("192.0.2.2", 2), T0)
    framer = HepStreamFramer()
    stream = one + two
    packets = [packet for index in range(len(stream)) for packet in framer.feed(stream[index:index + 1])]

    assert packets == [one, two]
    with pytest.raises(HepError, match="invalid magic"):
        framer.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HepError, match="already failed"):
        framer.feed(one)


# Receiver ---------------------------------------------------------------------------------


@pytest.fixture
async def receiver():
    received = []
    hep = HepReceiver(lambda message, packet: received.append((message, packet)), host=LOOPBACK, port=0)
    await hep.start()
    yield hep, received
    await hep.stop()


async def wait_for(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_receiver_udp_counts_and_drops(receiver):
    hep, received = receiver
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(case27_packet(), hep.udp_address)
        sender.sendto(b"HEP3 garbage", hep.udp_address)
        sender.sendto(encode_hep(b"not sip at all", ("192.0.2.1", 1), ("192.0.2.2", 2), T0), hep.udp_address)
        sender.sendto(encode_hep(b"x", ("192.0.2.1", 1), ("192.0.2.2", 2), T0, protocol_type=5), hep.udp_address)
        sender.sendto(encode_hep(one_mb_invite(), ("192.0.2.1", 1), ("192.0.2.2", 2), T0, compress=True), hep.udp_address)
        sender.sendto(encode_hep(invite_bytes(), ("192.0.2.1", 1), ("192.0.2.2", 2), T0), hep.udp_address)
        await wait_for(lambda: hep.counters.packets == 6)

    assert [message.cseq[1] for message, _ in received] == ["OPTIONS", "INVITE"]
    assert received[1][1].source == ("192.0.2.1", 1)
    assert hep.counters.invalid_packets == 2
    assert hep.counters.invalid_sip == 1
    assert hep.counters.not_sip == 1


async def test_receiver_tcp_stream_and_bad_connection(receiver):
    hep, received = receiver
    host, port = hep.tcp_address
    stream = case27_packet() + encode_hep(invite_bytes(), ("192.0.2.1", 1), ("192.0.2.2", 2), T0)
    _, writer = await asyncio.open_connection(host, port)
    for start in range(0, len(stream), 50):
        writer.write(stream[start:start + 50])
        await writer.drain()
    await wait_for(lambda: len(received) == 2)

    reader, bad = await asyncio.open_connection(host, port)
    bad.write(b"GET / HTTP/1.1\r\n\r\n" * 10)
    await bad.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert hep.counters.invalid_packets == 1
    writer.close()
    bad.close()


async def test_receiver_fuzzed_packets_never_stop_it(receiver):
    hep, received = receiver
    good = case27_packet()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index in range(len(good)):
            sender.sendto(good[:index], hep.udp_address)
            # Loopback UDP drops datagrams when the receive buffer fills: send in batches.
            await wait_for(lambda: hep.counters.packets == index + 1)
        sender.sendto(good, hep.udp_address)
        await wait_for(lambda: hep.counters.packets == len(good) + 1)

    assert hep.counters.invalid_packets == len(good)
    assert len(received) == 1


def test_receiver_needs_a_transport():
    with pytest.raises(ValueError, match="UDP, TCP or both"):
        HepReceiver(lambda message, packet: None, udp=False, tcp=False)


def test_gzip_payload_decoded():
    data = encode_hep(invite_bytes(), ("192.0.2.1", 1), ("192.0.2.2", 2), T0, compress=True)
    assert gzip.decompress(data[data.index(b"\x1f\x8b"):]) == invite_bytes()
    assert decode_hep(data).payload == invite_bytes()

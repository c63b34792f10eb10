"""Capture files and the packet decoder: framing, tunnels, reassembly and broken input."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.message import Request, Response
from sip.model import EventKind, Outcome
from sip.packet import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    MAX_OUT_OF_ORDER_BYTES,
    PacketDecoder,
)
from sip.pcap import MAX_FRAME_BYTES, CaptureError, CaptureReader, is_capture_file, read_capture_file
from tests.sip.corpus import section, sections
from tests.support.captures import (
    ethernet,
    ipv4,
    ipv4_fragments,
    ipv6,
    ipv6_fragments,
    linux_sll,
    linux_sll2,
    pcap_file,
    pcapng_file,
    tcp,
    udp,
    websocket_frame,
)
from tests.support.sipflows import T0, at, engine

PHONE, PBX = "192.0.2.100", "192.0.2.101"


def case_bytes(prefix: str) -> list[bytes]:
    return [part.message_bytes() for part in sections(prefix) if part.title.startswith("msg ")]


def decode_all(decoder: PacketDecoder, frames, linktype=LINKTYPE_ETHERNET):
    found = []
    for index, frame in enumerate(frames):
        found.extend(decoder.decode(frame, linktype, at(index)))
    return found


# Reading files ---------------------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_round_trip(big_endian, nanoseconds):
    moment = T0 + timedelta(microseconds=123456)
    data = pcap_file([(moment, b"frame-1"), (moment, b"frame-2")], nanoseconds=nanoseconds, big_endian=big_endian)
    frames = CaptureReader().feed(data)

    assert [frame.data for frame in frames] == [b"frame-1", b"frame-2"]
    assert frames[0].timestamp == moment
    assert frames[0].linktype == LINKTYPE_ETHERNET
    assert [frame.number for frame in frames] == [1, 2]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("tsresol", [None, 9, 0x80 | 20])
def test_pcapng_round_trip(big_endian, tsresol):
    moment = T0 + timedelta(microseconds=250000)
    data = pcapng_file([(moment, b"abc"), (moment, b"defgh")], big_endian=big_endian, tsresol=tsresol, linktype=113)
    frames = CaptureReader().feed(data)

    assert [frame.data for frame in frames] == [b"abc", b"defgh"]
    assert frames[0].linktype == LINKTYPE_LINUX_SLL
    assert abs(frames[0].timestamp - moment) < timedelta(microseconds=2)


def test_reader_accepts_any_chunking():
    data = pcapng_file([(T0, bytes(range(200)))] * 5)
    reader = CaptureReader()
    frames = [frame for start in range(0, len(data), 7) for frame in reader.feed(data[start:start + 7])]

    assert len(frames) == 5
    assert not reader.truncated


def test_truncated_file_keeps_complete_frames(tmp_path):
    data = pcap_file([(T0, b"x" * 100)] * 3)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])

    assert len(list(read_capture_file(path))) == 2
    assert is_capture_file(path)


def test_unknown_format_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("INVITE sip:201@pbx SIP/2.0\n")

    assert not is_capture_file(path)
    with pytest.raises(CaptureError, match="neither pcap nor pcapng"):
        list(read_capture_file(path))


def test_oversized_record_rejected():
    data = bytearray(pcap_file([(T0, b"abc")]))
    data[24 + 8:24 + 12] = (MAX_FRAME_BYTES + 1).to_bytes(4, "little")
    with pytest.raises(CaptureError, match="above the limit"):
        CaptureReader().feed(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=2))
def test_fuzzed_captures_never_crash(noise, kind):
    base = [pcap_file, pcapng_file, lambda frames: pcap_file(frames, nanoseconds=True)][kind]([(T0, b"\x00" * 40)])
    for data in (noise, base[:4] + noise, base[: len(noise) % len(base)], base + noise):
        reader = CaptureReader()
        try:
            reader.feed(data)
        except CaptureError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276, 999]))
def test_fuzzed_frames_never_crash(frame, linktype):
    decoder = PacketDecoder()
    decoder.decode(frame, linktype, T0)
    decoder.decode(ethernet(ipv4(PHONE, PBX, 17, udp(5060, 5060, frame))), LINKTYPE_ETHERNET, T0)
    decoder.decode(ethernet(ipv4(PHONE, PBX, 6, tcp(5060, 5060, 1, frame))), LINKTYPE_ETHERNET, T0)
    decoder.decode(ethernet(ipv4(PHONE, PBX, 6, tcp(80, 5060, 1, b"GET / HTTP/1.1\r\n\r\n" + frame))), LINKTYPE_ETHERNET, T0)


def test_truncated_frames_never_crash():
    full = ethernet(ipv4(PHONE, PBX, 17, udp(5060, 5060, case_bytes("23-")[0])))
    decoder = PacketDecoder()
    for cut in range(len(full)):
        assert decoder.decode(full[:cut], LINKTYPE_ETHERNET, T0) == []
    assert decoder.stats.undecodable > 0


# Link layers and tunnels -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrap", "linktype"),
    [
        (lambda packet: ethernet(packet), LINKTYPE_ETHERNET),
        (lambda packet: ethernet(packet, vlans=[100, 200]), LINKTYPE_ETHERNET),
        (linux_sll, LINKTYPE_LINUX_SLL),
        (linux_sll2, LINKTYPE_LINUX_SLL2),
        (lambda packet: packet, LINKTYPE_RAW),
        (lambda packet: b"\x02\x00\x00\x00" + packet, 0),
        (lambda packet: ipv4("198.51.100.1", "198.51.100.2", 4, packet), LINKTYPE_RAW),
    ],
    ids=["ethernet", "vlan", "sll", "sll2", "raw", "null", "ipip"],
)
def test_udp_sip_through_link_layers(wrap, linktype):
    invite = case_bytes("23-")[0]
    frame = wrap(ipv4(PHONE, PBX, 17, udp(5062, 5060, invite)))
    found = PacketDecoder().decode(frame, linktype, T0)

    assert len(found) == 1
    assert isinstance(found[0].message, Request)
    assert found[0].source == (PHONE, 5062)
    assert found[0].destination == (PBX, 5060)
    assert found[0].transport == "udp"


def test_gre_erspan_mirror():
    invite = case_bytes("23-")[0]
    inner = ethernet(ipv4(PHONE, PBX, 17, udp(5060, 5060, invite)))
    gre = b"\x10\x00\x88\xbe" + b"\x00\x00\x00\x01" + b"\x00" * 8 + inner
    frame = ethernet(ipv4("198.51.100.1", "198.51.100.2", 47, gre))

    assert len(PacketDecoder().decode(frame, LINKTYPE_ETHERNET, T0)) == 1


def test_ports_filter_skips_other_traffic():
    frame = ethernet(ipv4(PHONE, PBX, 17, udp(5062, 5060, case_bytes("23-")[0])))
    assert PacketDecoder(ports={5070}).decode(frame, LINKTYPE_ETHERNET, T0) == []
    assert len(PacketDecoder(ports={5060}).decode(frame, LINKTYPE_ETHERNET, T0)) == 1


def test_rtp_and_keepalives_ignored():
    decoder = PacketDecoder()
    frames = [
        ethernet(ipv4(PHONE, PBX, 17, udp(4000, 4002, b"\x80\x00" + bytes(170)))),
        ethernet(ipv4(PHONE, PBX, 17, udp(5060, 5060, b"\r\n\r\n"))),
    ]
    assert decode_all(decoder, frames) == []


# Reassembly ------------------------------------------------------------------------------


def test_ipv4_fragments_reassembled_out_of_order():
    invite = case_bytes("23-")[0]
    fragments = ipv4_fragments(PHONE, PBX, 17, udp(5060, 5060, invite), size=200)
    random.Random(3).shuffle(fragments)
    found = decode_all(PacketDecoder(), [ethernet(fragment) for fragment in fragments])

    assert len(found) == 1
    assert found[0].message.call_id == "158936656982201062716@192.0.2.100"


def test_ipv6_fragments_reassembled():
    invite = case_bytes("20-")[0]
    fragments = ipv6_fragments("2001:db8::1", "2001:db8::2", 17, udp(5060, 5060, invite), size=256)
    found = decode_all(PacketDecoder(), [ethernet(fragment) for fragment in fragments])

    assert len(found) == 1
    assert found[0].source == ("2001:db8::1", 5060)


def test_stray_fragments_expire():
    decoder = PacketDecoder()
    fragment = ipv4_fragments(PHONE, PBX, 17, udp(5060, 5060, b"x" * 400), size=200)[0]
    decoder.decode(ethernet(fragment), LINKTYPE_ETHERNET, T0)
    decoder.expire(T0 + timedelta(seconds=60))

    assert decoder.stats.fragments_dropped == 1


def tcp_segments(stream: bytes, size: int, seq: int = 1000) -> list[tuple[int, bytes]]:
    return [(seq + start, stream[start:start + size]) for start in range(0, len(stream), size)]


def test_case22_tcp_segments_with_loss_order_and_retransmission():
    stream = b"".join(section("22-", title).message_bytes() for title in ("msg A", "msg B", "msg C"))
    segments = tcp_segments(stream, 248)
    segments[2], segments[3] = segments[3], segments[2]
    segments.insert(5, segments[4])
    frames = [ethernet(ipv4("192.0.2.1", "192.0.2.131", 6, tcp(6060, 6060, 999, flags=0x02)))]
    frames += [ethernet(ipv4("192.0.2.1", "192.0.2.131", 6, tcp(6060, 6060, seq, data))) for seq, data in segments]
    found = decode_all(PacketDecoder(), frames)

    assert [item.message.call_id for item in found] == [
        "85b939c9-0000-4f54-8042-a2338185f4cb", "17c0b3b3-0000-42ac-9018-6156179021c0", "0ba96366592e8180",
    ]
    assert all(item.transport == "tcp" for item in found)


def test_tcp_capture_started_mid_stream_resynchronises():
    stream = b"".join(case_bytes("23-"))
    segments = tcp_segments(stream, 100)[3:]
    frames = [ethernet(ipv4(PHONE, PBX, 6, tcp(5060, 5060, seq, data))) for seq, data in segments]
    found = decode_all(PacketDecoder(), frames)

    assert found
    assert isinstance(found[-1].message, Response)
    assert found[-1].message.cseq == (1, "BYE")


def test_tcp_gap_larger_than_buffer_skipped():
    stream = b"".join(case_bytes("23-")) * 200
    segments = tcp_segments(stream, 1000)
    lost = segments.pop(2)
    frames = [ethernet(ipv4(PHONE, PBX, 6, tcp(5060, 5060, seq, data))) for seq, data in segments]
    found = decode_all(PacketDecoder(), frames)

    assert len(stream) > MAX_OUT_OF_ORDER_BYTES + len(lost[1])
    assert len(found) > 1000


def test_sip_over_websocket():
    client, server = ("198.51.100.7", 50000), ("192.0.2.101", 8443)
    invite, trying = case_bytes("23-")[:2]
    upgrade = b"GET / HTTP/1.1\r\nHost: pbx\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
    accept = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    half = len(invite) // 2
    to_server = (
        upgrade
        + websocket_frame(invite[:half], final=False, mask=b"\x01\x02\x03\x04")
        + websocket_frame(b"", opcode=9, mask=b"\x05\x06\x07\x08")
        + websocket_frame(invite[half:], opcode=0, mask=b"\x0a\x0b\x0c\x0d")
    )
    to_client = accept + websocket_frame(trying, opcode=2)
    frames = [
        ethernet(ipv4(client[0], server[0], 6, tcp(client[1], server[1], seq, data)))
        for seq, data in tcp_segments(to_server, 90)
    ] + [
        ethernet(ipv4(server[0], client[0], 6, tcp(server[1], client[1], seq, data)))
        for seq, data in tcp_segments(to_client, 90, seq=5000)
    ]
    found = decode_all(PacketDecoder(), frames)

    assert [item.transport for item in found] == ["ws", "ws"]
    assert isinstance(found[0].message, Request)
    assert found[1].message.status == 100


# From file to calls --------------------------------------------------------------------------


def test_pcap_file_to_call_events(tmp_path):
    messages = case_bytes("23-")
    frames = [
        (T0 + timedelta(seconds=index), ethernet(ipv6("2001:db8::100", "2001:db8::101", 17, udp(5060, 5060, data))))
        for index, data in enumerate(messages)
    ]
    path = tmp_path / "call.pcapng"
    path.write_bytes(pcapng_file(frames))

    decoder, calls = PacketDecoder(), engine(["201"])
    events = []
    for frame in read_capture_file(path):
        for item in decoder.decode(frame.data, frame.linktype, frame.timestamp):
            events.extend(calls.observe(item.message, item.source, item.destination, item.timestamp))

    assert [event.kind for event in events] == [EventKind.RINGING, EventKind.CONNECTED, EventKind.ENDED]
    assert events[-1].call.outcome == Outcome.ANSWERED
    assert events[-1].call.ended_at == T0 + timedelta(seconds=5)

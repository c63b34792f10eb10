"""The agent with `[sip] sources = ["subscribe", "hep"]`: raw SIP mirrored as HEP
gives the caller's display name and a certain outcome, merged with dialog-info."""

import asyncio
import dataclasses
import json
import socket
from datetime import datetime, timezone

import websockets

from agent.raw_config import RawSettings
from agent.runner import AgentRunner
from sip.hep import encode_hep
from sip.message import build_request
from tests.agent.test_pipeline import agent_config
from tests.support.pairing import paired_device
from tests.support.fake_pbx import FakePbx

PBX = ("127.0.0.10", 5060)
PHONE = ("127.0.0.11", 5062)
CALLER = ("127.0.0.12", 5064)


def invite() -> bytes:
    return build_request("INVITE", "sip:201@pbx.local", [
        ("Via", f"SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bKhep1"),
        ("From", '"Max Muster" <sip:+41441234567@pbx.local>;tag=caller1'),
        ("To", "<sip:201@pbx.local>"),
        ("Call-ID", "hep-call-1"),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:+41441234567@{CALLER[0]}:{CALLER[1]}>"),
    ])


def response(status: int, reason: str) -> bytes:
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bKhep1",
        'From: "Max Muster" <sip:+41441234567@pbx.local>;tag=caller1',
        "To: <sip:201@pbx.local>;tag=phone1",
        "Call-ID: hep-call-1",
        "CSeq: 1 INVITE",
        f"Contact: <sip:201@{PHONE[0]}:{PHONE[1]}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bye() -> bytes:
    return build_request("BYE", f"sip:201@{PHONE[0]}:{PHONE[1]}", [
        ("Via", f"SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bKhep2"),
        ("From", '"Max Muster" <sip:+41441234567@pbx.local>;tag=caller1'),
        ("To", "<sip:201@pbx.local>;tag=phone1"),
        ("Call-ID", "hep-call-1"),
        ("CSeq", "2 BYE"),
    ])


async def test_hep_call_reaches_page(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = agent_config(tmp_path, address, extensions=("201",))
    config = dataclasses.replace(config, raw=RawSettings(sources=("subscribe", "hep"), hep_host="127.0.0.1", hep_port=0, hep_transports=("udp",)))
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        await server.wait_subscribed(["201"])
        hep_address = runner.service.hep.udp_address
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        device = await paired_device(url, tmp_path, extensions=("201",))
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as page:
            await _next(page, "snapshot")
            for payload, source, destination in (
                (invite(), CALLER, PHONE),
                (response(180, "Ringing"), PHONE, CALLER),
                (response(200, "OK"), PHONE, CALLER),
                (bye(), CALLER, PHONE),
            ):
                sender.sendto(encode_hep(payload, source, destination, datetime.now(timezone.utc)), hep_address)
                await asyncio.sleep(0.05)
            events = [await _next(page, "call") for _ in range(3)]
        sender.close()

        assert [event["event"] for event in events] == ["ringing", "connected", "ended"]
        ended = events[-1]["call"]
        assert ended["remote"]["name"] == "Max Muster"
        assert ended["outcome"] == "answered"
        assert ended["confidence"] == "certain"
    finally:
        await runner.stop()
        server.close()


async def _next(socket_, kind, timeout=5.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket_.recv(), timeout))
        if message["type"] == kind:
            return message

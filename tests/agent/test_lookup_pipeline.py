"""Caller lookup in the agent: a ringing call is followed by its cards."""

import asyncio
import dataclasses
import json

import websockets

from agent.lookup.settings import lab_settings
from agent.runner import AgentRunner
from tests.agent.test_pipeline import agent_config
from tests.support.fake_pbx import FakePbx, kamailio_document
from tests.support.pairing import paired_device


async def test_ringing_call_gets_demo_card(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201",)), lookup=lab_settings())
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        device = await paired_device(url, tmp_path, extensions=("201",))
        await server.wait_subscribed(["201"])
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            await _next(socket, "snapshot")
            body = kamailio_document("201", server.next_version("201"), [("d1", "c1", "early")])
            server.send_notify("201", body)
            ringing = await _next(socket, "call")
            cards = await _next(socket, "crm")
            while cards["pending"]:
                cards = await _next(socket, "crm")

        assert cards["call_id"] == ringing["call"]["id"]
        assert cards["cards"][0]["name"] == "Max Muster"
        assert cards["cards"][0]["company"] == "Muster AG"
        assert cards["cards"][0]["match"]["code"] == "e164"
        assert runner.history.cards_for([ringing["call"]["id"]])[0]["cards"][0]["name"] == "Max Muster"
    finally:
        await runner.stop()
        server.close()


async def test_withheld_caller_skips_lookup(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201",)), lookup=lab_settings())
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        device = await paired_device(url, tmp_path, extensions=("201",))
        await server.wait_subscribed(["201"])
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            await _next(socket, "snapshot")
            body = kamailio_document(
                "201", server.next_version("201"), [("d1", "c1", "early")], caller="anonymous"
            ).replace(b"pbx.local</identity>", b"anonymous.invalid</identity>", 1)
            server.send_notify("201", body)
            ringing = await _next(socket, "call")
            cards = await _next(socket, "crm")

        assert ringing["call"]["remote"]["withheld"] is True
        assert cards["skipped"] == "withheld"
        assert cards["cards"] == []
    finally:
        await runner.stop()
        server.close()


async def _next(socket, kind, timeout=5.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == kind:
            return message

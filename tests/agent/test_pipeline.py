"""The agent end to end against a scripted notifier: NOTIFY in, WebSocket frames out."""

import asyncio
import json
import logging

import httpx
import pytest
import websockets

from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.runner import AgentRunner
from tests.support.fake_pbx import FakePbx, kamailio_document
from tests.support.pairing import paired_device

CALL_ID = "1-9320@127.0.0.1"


def agent_config(tmp_path, pbx_address, extensions=("201", "202")):
    host, port = pbx_address
    return Config(
        agent=AgentSettings(data_dir=tmp_path),
        http=HttpSettings(port=0),
        sip=SipSettings(
            server=host, port=port, domain="pbx.local", extensions=extensions,
            pbx="kamailio", listen_host="127.0.0.1", listen_port=0,
        ),
    )


async def next_message(socket, kind="call", timeout=5.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == kind:
            return message


@pytest.fixture
async def pbx():
    server = FakePbx()
    address = await server.start()
    yield server, address
    server.close()


async def test_call_flows_to_websocket(tmp_path, pbx, caplog):
    server, address = pbx
    runner = AgentRunner(agent_config(tmp_path, address))
    url = await runner.start()
    try:
        device = await paired_device(url, tmp_path)
        await server.wait_subscribed(["201", "202"])
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            snapshot = await next_message(socket, "snapshot")
            assert snapshot["version"] == 1
            assert snapshot["active"] == []

            server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d1", CALL_ID, "early")]))
            ringing = await next_message(socket)
            assert ringing["event"] == "ringing"
            assert ringing["call"]["state"] == "ringing"
            assert ringing["call"]["direction"] == "inbound"
            assert ringing["call"]["remote"]["e164"] == "+41441234567"
            assert ringing["call"]["remote"]["display"] == "044 123 45 67"

            caplog.set_level(logging.WARNING)
            bad = server.send_notify("201", b"<dialog-info version='3'")
            server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d1", CALL_ID, "confirmed")]))
            connected = await next_message(socket)
            assert connected["event"] == "connected"
            assert connected["seq"] > ringing["seq"]
            assert server.subscriptions["201"].answered[bad] == 200
            assert any("extension 201" in record.message and "skipped" in record.message for record in caplog.records)

            server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d1", CALL_ID, "terminated")]))
            ended = await next_message(socket)
            assert ended["event"] == "ended"
            assert ended["call"]["outcome"] == "answered"
            assert ended["call"]["duration"] is not None

        resume_url = url.replace("http", "ws") + f"api/events?since={ringing['seq'] - 1}"
        async with websockets.connect(resume_url, additional_headers=device.header) as socket:
            resumed = await next_message(socket, "snapshot")
            assert [call["id"] for call in resumed["history"]] == [ended["call"]["id"]]
            assert resumed["active"] == []

        async with httpx.AsyncClient() as client:
            health = await client.get(url + "healthz")
            page = await client.get(url + "api/history?limit=10", headers=device.header)
            metrics = await client.get(url + "metrics")
        assert health.status_code == 200
        assert 'ringboard_dialog_documents_total{result="rejected"} 1' in metrics.text
        assert 'ringboard_subscriptions{state="active"} 2' in metrics.text
        assert 'ringboard_call_events_total{kind="ended"} 1' in metrics.text
        assert {item["state"] for item in health.json()["subscriptions"]} == {"active"}
        assert page.json()["calls"][0]["outcome"] == "answered"
    finally:
        await runner.stop()


async def test_missed_call_and_restart_keep_numbering(tmp_path, pbx):
    server, address = pbx
    runner = AgentRunner(agent_config(tmp_path, address))
    url = await runner.start()
    try:
        device = await paired_device(url, tmp_path)
        await server.wait_subscribed(["201", "202"])
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            await next_message(socket, "snapshot")
            server.send_notify("202", kamailio_document("202", server.next_version("202"), [("d2", "c2", "early")]))
            await next_message(socket)
            server.send_notify("202", kamailio_document("202", server.next_version("202"), [("d2", "c2", "terminated")]))
            missed = await next_message(socket)
        assert missed["call"]["outcome"] == "missed"
    finally:
        await runner.stop()

    server.subscriptions.clear()
    again = AgentRunner(agent_config(tmp_path, address))
    url = await again.start()
    try:
        await server.wait_subscribed(["201", "202"])
        server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d3", "c3", "early")]))
        async with websockets.connect(url.replace("http", "ws") + "api/events", additional_headers=device.header) as socket:
            snapshot = await next_message(socket, "snapshot")
            if not snapshot["active"]:
                ringing = await next_message(socket)
                assert ringing["seq"] > missed["seq"]
            assert snapshot["history"][0]["id"] == missed["call"]["id"]
    finally:
        await again.stop()


async def test_rejected_subscription_reported_unhealthy(tmp_path):
    server = FakePbx(reject_with=403)
    address = await server.start()
    runner = AgentRunner(agent_config(tmp_path, address, extensions=("201",)))
    url = await runner.start()
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                health = await client.get(url + "healthz")
                if health.status_code == 503 and health.json()["subscriptions"][0]["state"] == "failing":
                    break
                await asyncio.sleep(0.05)
        item = health.json()["subscriptions"][0]
        assert health.status_code == 503
        assert item["reason"] == {"code": "rejected", "status": 403}
    finally:
        await runner.stop()
        server.close()


async def test_foreign_origin_websocket_refused(tmp_path, pbx):
    server, address = pbx
    runner = AgentRunner(agent_config(tmp_path, address))
    url = await runner.start()
    try:
        device = await paired_device(url, tmp_path)
        with pytest.raises(websockets.exceptions.InvalidStatus):
            events = url.replace("http", "ws") + "api/events"
            async with websockets.connect(events, origin="http://evil.example", additional_headers=device.header):
                pass
    finally:
        await runner.stop()

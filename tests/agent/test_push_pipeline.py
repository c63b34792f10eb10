"""Web Push through the whole agent: a paired device subscribes over the API, and a
ringing call of its extension reaches the push service, then its end closes it."""

import asyncio
import dataclasses

import httpx

from agent.runner import AgentRunner
from tests.agent.test_pipeline import agent_config
from tests.support.fake_pbx import FakePbx, kamailio_document
from tests.support.pairing import paired_device
from tests.support.push_service import LocalPushService


async def test_ringing_call_pushed_to_subscribed_device(tmp_path):
    push_service = LocalPushService()
    push_service.start()
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(
        agent_config(tmp_path, address, extensions=("201", "202")), push_hosts=("127.0.0.1",), push_allow_http=True
    )
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        await server.wait_subscribed(["201", "202"])
        device = await paired_device(url, tmp_path, extensions=("201",))
        subscription = push_service.new_subscription()
        async with httpx.AsyncClient(base_url=url, headers={**device.header, "Origin": url.rstrip("/")}) as client:
            key = await client.get("api/push/key")
            push_service.expected_key = key.json()["public_key"]
            created = await client.post("api/push/subscriptions", json=subscription.to_json())
        assert created.status_code in (200, 201), created.text

        server.send_notify("202", kamailio_document("202", server.next_version("202"), [("d0", "c0", "early")]))
        server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d1", "c1", "early")]))
        await asyncio.sleep(0.5)
        server.send_notify("201", kamailio_document("201", server.next_version("201"), [("d1", "c1", "confirmed")]))
        pushes = await asyncio.to_thread(push_service.wait_for, subscription, 2, 10.0)

        assert push_service.errors == []
        ringing, follow_up = pushes[0].payload, pushes[-1].payload
        assert ringing["action"] == "ring"
        assert ringing["call"]["extension"] == "201"
        assert ringing["call"]["remote"]["display"] == "044 123 45 67"
        assert follow_up["action"] == "close"
        assert follow_up["call"]["id"] == ringing["call"]["id"]
        assert {push.payload["call"]["extension"] for push in pushes} == {"201"}
    finally:
        await runner.stop()
        server.close()
        push_service.stop()

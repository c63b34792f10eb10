"""Benchmark 5: a ringing NOTIFY to the request at a local push service, per subscription count.

It runs only when the agent has push code (agent/push/ or agent/push.py) and serves
`/api/push/key`; otherwise its row states why it did not run. Each paired device
subscribes with an endpoint on a push service this benchmark runs on 127.0.0.1, which
returns 201 for every request and records when it arrived. A subscription's keys are a
fresh P-256 key pair and auth secret, as a browser makes them. The payload is not
decrypted here: the push tests check it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.fake_pbx import FakePbx, kamailio_document

from . import common
from .common import AgentProcess, Figure, agent_config, checked, free_port, percentile
from .pairing import ClientPlan, pair_clients

EXTENSION = "2000"
SUBSCRIPTION_COUNTS = (1, 10, 100)
CALLS_PER_COUNT = 5

# How long one ringing call may take to reach every subscription before it counts as lost.
DELIVERY_TIMEOUT = 10.0

# Configuration that lets the agent send to a push service on 127.0.0.1 over plain HTTP,
# added only once ringboard.example.toml documents a [push] table.
# NOTE: written before the agent read push settings; match it to ringboard.example.toml.
PUSH_CONFIG = '[push]\nallow_http = true\nhosts = ["127.0.0.1"]\n'


class PushNotServed(Exception):
    """The agent has push code but does not serve the push API."""


def push_code_exists() -> bool:
    root = common.agent_root / "agent"
    return (root / "push").is_dir() or (root / "push.py").is_file()


def push_config() -> str:
    """Return PUSH_CONFIG when the agent has push settings, else nothing."""
    example = common.agent_root / "ringboard.example.toml"
    has_table = example.is_file() and "[push]" in example.read_text(encoding="utf-8")
    return PUSH_CONFIG if has_table else ""


class LocalPushService:
    """An HTTP server on 127.0.0.1 that accepts every push and records its arrival."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def endpoint(self, index: int) -> str:
        return f"http://127.0.0.1:{self.port}/push/{index}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                self.arrivals.append((lines[0].split(" ")[1], arrived))
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def browser_keys() -> dict[str, str]:
    """Return a subscription's keys as `PushSubscription.toJSON()` gives them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return {"p256dh": encode(public), "auth": encode(os.urandom(16))}


def api_request(base_url: str, method: str, path: str, cookie: str | None, body: object | None = None) -> dict:
    """Call the agent's API as the page does; raise RuntimeError with the error code on failure."""
    headers = {"Content-Type": "application/json", "Origin": base_url}
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: HTTP {error.code} {error.read()[:300].decode(errors='replace')}") from None
    return json.loads(text) if text else {}


async def push_latency() -> list[Figure]:
    """Time ringing NOTIFY → push request for each subscription count."""
    if not push_code_exists():
        return [Figure("push", "ringing to push service", "not built yet", "", "the agent has no push code")]
    figures: list[Figure] = []
    for count in SUBSCRIPTION_COUNTS:
        try:
            figures += await _push_run(count)
        except PushNotServed as error:
            return [Figure("push", "ringing to push service", "push code present, API not served yet", "", str(error))]
    return figures


async def _push_run(count: int) -> list[Figure]:
    # NOTE: written before the agent served the push API, so the part after the key
    # request has not yet run against a real agent.
    pbx = FakePbx()
    pbx_address = await pbx.start()
    service = LocalPushService()
    await service.start()
    last_times: list[float] = []
    first_times: list[float] = []
    lost = 0
    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as folder:
        work = Path(folder)
        http_port = free_port()
        config = agent_config(work, http_port, pbx_address, [EXTENSION], push_config())
        agent = AgentProcess(config, http_port)
        try:
            await agent.start()
            await pbx.wait_subscribed([EXTENSION], timeout=30)
            plan = [ClientPlan(f"push{index // 10:03d}", (EXTENSION,)) for index in range(count)]
            pairing = pair_clients(config, work / "var", agent.base_url, plan)
            try:
                api_request(agent.base_url, "GET", "/api/push/key", pairing.cookies[0])
            except RuntimeError as error:
                raise PushNotServed(str(error)) from None
            for index, cookie in enumerate(pairing.cookies):
                body = {"endpoint": service.endpoint(index), "expirationTime": None, "keys": browser_keys()}
                api_request(agent.base_url, "POST", "/api/push/subscriptions", cookie, body)

            for call in range(CALLS_PER_COUNT):
                service.arrivals.clear()
                call_id = f"push-{count}-{call}"
                body = kamailio_document(EXTENSION, pbx.next_version(EXTENSION), [(call_id, call_id, "early")])
                cseq = pbx.send_notify(EXTENSION, body)
                sent_at = pbx.notify_sent_at[(EXTENSION, cseq)]
                deadline = time.perf_counter() + DELIVERY_TIMEOUT
                while len({path for path, _ in service.arrivals}) < count and time.perf_counter() < deadline:
                    await asyncio.sleep(0.005)
                first_arrival = {}
                for path, arrived in service.arrivals:
                    first_arrival.setdefault(path, arrived)
                lost += count - len(first_arrival)
                if first_arrival:
                    last_times.append((max(first_arrival.values()) - sent_at) * 1000)
                    first_times.append((min(first_arrival.values()) - sent_at) * 1000)
                body = kamailio_document(EXTENSION, pbx.next_version(EXTENSION), [(call_id, call_id, "terminated")])
                pbx.send_notify(EXTENSION, body)
                await asyncio.sleep(1.0)  # The ended call's pushes go out before the next ring.
        finally:
            await agent.stop()
            await service.stop()
            pbx.close()

    setup = f"{count} subscriptions ({pairing.note}), push service on 127.0.0.1 answering 201; {CALLS_PER_COUNT} calls"
    first = round(percentile(first_times, 0.5), 1)
    last = round(percentile(last_times, 0.5), 1)
    return [
        Figure("push", f"ringing to first push, {count} subscriptions, p50", first, "ms", setup),
        checked(Figure("push", f"ringing to last push, {count} subscriptions, p50", last, "ms", setup), "< 50 ms", 50),
        Figure("push", f"pushes lost, {count} subscriptions", lost, f"of {count * CALLS_PER_COUNT}", setup),
    ]

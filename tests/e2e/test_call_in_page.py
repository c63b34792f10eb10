"""End to end on real parts: Kamailio and SIPp place calls, the agent observes them,
and the page in Debian's Chromium shows them."""

import asyncio
import os
import time

import pytest
from playwright.async_api import async_playwright, expect

from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.lab import Lab
from agent.runner import AgentRunner
from tests.support.pairing import paired_device

pytestmark = [pytest.mark.lab, pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Starting Python in the page takes 2-3 s on two cores; give it room on a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000


@pytest.fixture
def lab(tmp_path):
    with Lab(tmp_path / "lab") as running:
        yield running


async def test_calls_ring_connect_and_end_in_page(lab, tmp_path):
    host, port = lab.sip_address
    config = Config(
        agent=AgentSettings(data_dir=tmp_path / "var"),
        http=HttpSettings(port=0),
        sip=SipSettings(
            server=host, port=port, domain=lab.domain, extensions=("201", "202", "203"),
            pbx="kamailio", listen_host="127.0.0.1", listen_port=0,
        ),
    )
    runner = AgentRunner(config)
    url = await runner.start()
    try:
        await _wait_subscribed(runner)
        device = await paired_device(url, config.agent.data_dir, extensions=("201", "202", "203"))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context()
            await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
            page = await context.new_page()
            await page.goto(url)
            await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)

            answered = await asyncio.to_thread(
                lab.call, to="201", caller="+41441234567", display="Max Muster", answer_after=4.0, talk=3.0,
            )
            active = page.locator("#active-calls [data-call-id]")
            history = page.locator("#call-history [data-call-id]")

            await expect(active.and_(page.locator("[data-state=ringing]"))).to_have_count(1, timeout=10_000)
            await expect(active.first).to_contain_text("044 123 45 67")
            await expect(active.and_(page.locator("[data-state=connected]"))).to_have_count(1, timeout=10_000)
            await expect(history.and_(page.locator("[data-outcome=answered]"))).to_have_count(1, timeout=15_000)
            await expect(active).to_have_count(0)
            assert await asyncio.to_thread(answered.wait, 30) == 0

            missed = await asyncio.to_thread(
                lab.call, to="201", caller="+41441234567", display="Max Muster", answer_after=None, cancel_after=3.0,
            )
            await expect(active.and_(page.locator("[data-state=ringing]"))).to_have_count(1, timeout=10_000)
            await expect(history.and_(page.locator("[data-outcome=missed]"))).to_have_count(1, timeout=15_000)
            await expect(history.first).to_have_attribute("data-outcome", "missed")
            assert await asyncio.to_thread(missed.wait, 30) == 0

            await browser.close()
    finally:
        await runner.stop()


async def _wait_subscribed(runner, timeout=10.0):
    deadline = time.monotonic() + timeout
    while runner.service.health()["status"] != "ok":
        if time.monotonic() > deadline:
            raise AssertionError(f"subscriptions not active: {runner.service.health()}")
        await asyncio.sleep(0.1)

"""The page in Chromium against the real agent: cards, links, settings in two tabs, done, reload.

Calls come from a scripted PBX (FakePbx); the demo address book (`lab_settings`) gives
the cards. One browser serves every step of a test, so the module stays quick.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

pytest.importorskip("playwright")
from playwright.async_api import async_playwright, expect  # noqa: E402

from agent.lookup.settings import lab_settings  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from tests.agent.test_pipeline import agent_config  # noqa: E402
from tests.support.fake_pbx import FakePbx, kamailio_document  # noqa: E402
from tests.support.pairing import paired_device  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Starting Python in the page takes 2-3 s on two cores; the margin is for a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000


@pytest.fixture
async def agent(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201",)), lookup=lab_settings())
    runner = AgentRunner(config)
    url = await runner.start()
    await server.wait_subscribed(["201"])
    device = await paired_device(url, tmp_path, "anna", ("201",))
    yield runner, url, server, device
    await runner.stop()
    server.close()


def send(server, call_id, state, caller="+41441234567"):
    body = kamailio_document("201", server.next_version("201"), [("d1", call_id, state)], caller=caller)
    server.send_notify("201", body)


async def open_page(context, url):
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
    return page


async def test_cards_done_and_reload(agent):
    runner, url, server, device = agent
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="en-US")
        await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
        page = await open_page(context, url)

        send(server, "c-ring", "early")
        row = page.locator("#active-list .call[data-state=ringing]")
        await expect(row.locator(".call__name")).to_have_text("Max Muster", timeout=10_000)
        company = row.locator("a.card__company").first
        await expect(company).to_have_text("Muster AG")
        await expect(company).to_have_attribute("target", "_blank")
        await expect(company).to_have_attribute("rel", "noopener noreferrer")
        await expect(row.locator(".card__match").first).to_contain_text("same number")
        await expect(page.locator("#announcer")).to_contain_text("on extension 201")

        send(server, "c-ring", "terminated")
        missed = page.locator("#history-list .call[data-kind=incoming-missed]")
        await expect(missed).to_have_count(1, timeout=10_000)
        await expect(missed.locator(".card__company").first).to_have_text("Muster AG")
        await missed.locator("button.call__done").click()
        await expect(missed).to_have_attribute("data-done", "true", timeout=5_000)

        await page.reload()
        await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
        await expect(page.locator("#history-list .call[data-done=true] .card__company").first).to_have_text("Muster AG")
        await browser.close()


async def test_settings_apply_in_second_tab(agent):
    runner, url, server, device = agent
    send(server, "c-old", "early")
    send(server, "c-old", "terminated")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="en-US")
        await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
        first = await open_page(context, url)
        second = await open_page(context, url)
        await expect(second.locator("#history-list .call")).to_have_count(1)

        await first.locator("#settings-button").click()
        await first.locator("#settings-language").select_option("de")
        await first.locator("#settings-show-history").select_option("false")
        await first.locator("#settings-save").click()

        for page in (first, second):
            await expect(page.locator("#active-calls .panel__title")).to_contain_text("Aktive Anrufe", timeout=5_000)
            await expect(page.locator("#call-history")).to_be_hidden()
            assert await page.evaluate("document.documentElement.lang") == "de"
        await browser.close()


async def test_history_filter_and_search(agent):
    runner, url, server, device = agent
    send(server, "c-missed", "early")
    send(server, "c-missed", "terminated")
    send(server, "c-talk", "early", caller="+41449998877")
    send(server, "c-talk", "confirmed", caller="+41449998877")
    send(server, "c-talk", "terminated", caller="+41449998877")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="en-US")
        await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
        page = await open_page(context, url)
        rows = page.locator("#history-list .call")
        await expect(rows).to_have_count(2)
        await expect(page.locator("#history-list .call[data-kind=incoming-answered]")).to_have_count(1)

        await page.locator("#history-filter").select_option("missed")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-kind", "incoming-missed")

        await page.locator("#history-filter").select_option("all")
        await expect(rows).to_have_count(2)
        await page.locator("#history-search").fill("muster ag")
        await expect(rows).to_have_count(1)
        await page.locator("#history-search").fill("999 88")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-kind", "incoming-answered")
        await browser.close()

"""The in-page alert and the notification settings in Chromium against the real agent.

Two tabs of one browser show a ringing call's alert; only the tab that holds the sound
lock plays the ring, and both close the alert when the call is answered. Headless
Chromium has no push service, so the settings report that notifications with the page
closed are unavailable, and the test notification finds no subscription.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from playwright.async_api import async_playwright, expect  # noqa: E402

from tests.webapp.test_page_agent import CHROMIUM, CHROMIUM_ARGS, agent, open_page, send  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

# Headless Chromium keeps Web Audio suspended until a user gesture without this flag.
ALERT_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


async def test_alert_in_two_tabs_one_sound(agent):
    runner, url, server, device = agent
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ALERT_ARGS)
        context = await browser.new_context(locale="en-US")
        await context.grant_permissions(["notifications"], origin=url.rstrip("/"))
        await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
        first = await open_page(context, url)
        second = await open_page(context, url)
        for page in (first, second):
            await expect(page.locator("html[data-sound-leader]")).to_have_count(1)

        send(server, "c-alert", "early")
        for page in (first, second):
            alert = page.locator("#call-alert")
            await expect(alert).to_be_visible(timeout=10_000)
            await expect(alert.locator(".call-alert__item")).to_contain_text("Max Muster")
        # The agent gives the call its own id, which the alert and the sound report.
        call_id = await first.locator("#call-alert .call-alert__item").get_attribute("data-alert-call")

        played = [await page.evaluate("document.documentElement.dataset.soundPlayed ?? null") for page in (first, second)]
        leaders = [await page.evaluate("document.documentElement.dataset.soundLeader") for page in (first, second)]
        assert sorted(leaders) == ["false", "true"]
        assert played.count(call_id) == 1
        assert played[leaders.index("true")] == call_id

        send(server, "c-alert", "confirmed")
        for page in (first, second):
            await expect(page.locator("#call-alert")).to_be_hidden(timeout=10_000)
        await browser.close()


async def test_settings_permission_and_test_notification(agent):
    runner, url, server, device = agent
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="en-US")
        await context.grant_permissions(["notifications"], origin=url.rstrip("/"))
        await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
        page = await open_page(context, url)

        await page.locator("#settings-button").click()
        permission = page.locator("#notify-permission")
        await expect(permission).to_have_attribute("data-permission", "granted")
        await expect(permission).to_have_text("This browser may show notifications from Ringboard.")
        await expect(page.locator("#notify-request")).to_be_hidden()
        await expect(page.locator("#notify-help")).to_be_hidden()
        push = page.locator("#notify-push")
        await expect(push).to_have_attribute("data-push", "unavailable", timeout=10_000)
        await expect(push).to_contain_text("not available in this browser")

        await page.locator("#notify-test").click()
        result = page.locator("#notify-test-result")
        await expect(result).to_have_attribute("data-result", re.compile("no_subscription|sent|failed"), timeout=10_000)
        await expect(result).to_be_visible()
        await browser.close()

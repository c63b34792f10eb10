"""The page in Chromium against the real agent: call-type icons, languages, catch-up, CRM actions.

Calls come from a scripted PBX (FakePbx) with Kamailio-style dialog documents; the demo
address book (`lab_settings`) gives the cards. One Chromium serves the whole module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import pytest_asyncio

pytest.importorskip("playwright")
from playwright.async_api import Browser, async_playwright, expect  # noqa: E402

from agent.lookup.settings import LookupSettings, lab_settings  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from tests.agent.test_pipeline import agent_config  # noqa: E402
from tests.crm.conftest import crm_settings  # noqa: E402
from tests.support.crm_servers import crm_server  # noqa: E402
from tests.support.fake_pbx import DOMAIN, FakePbx  # noqa: E402
from tests.support.pairing import FAST_PIN_HASHER, PairedDevice, paired_device  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Starting Python in the page takes 2-3 s on two cores; the margin is for a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000
EVENT_TIMEOUT_MS = 10_000

LOCALES_DIR = Path(__file__).resolve().parents[2] / "webapp" / "ui" / "ringboard_ui" / "locales"
LANGUAGES = ("en", "de", "fr", "it")

MAX_MUSTER = "+41441234567"
HUBSPOT_CALLER = "+41445550123"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def agent(tmp_path):
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201", "202")), lookup=lab_settings())
    runner = AgentRunner(config, FAST_PIN_HASHER)
    url = await runner.start()
    try:
        await server.wait_subscribed(["201", "202"])
        device = await paired_device(url, tmp_path, "anna", ("201", "202"))
        holder = {"runner": runner}
        yield holder, url, server, device
    finally:
        # The reconnect test swaps in a restarted agent, which is the one to stop.
        await holder["runner"].stop()
        server.close()


def dialog_document(extension: str, version: int, call_id: str, state: str, remote: str, direction: str) -> bytes:
    """Build a Kamailio-style full document with one dialog seen from `direction` (RFC 4235)."""
    return (
        '<?xml version="1.0"?>\n'
        f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" '
        f'entity="sip:{extension}@{DOMAIN}">\n'
        f'  <dialog id="d-{call_id}" call-id="{call_id}" direction="{direction}">\n'
        f"    <state>{state}</state>\n"
        f"    <remote>\n      <identity>sip:{remote}@{DOMAIN}</identity>\n"
        f'      <target uri="sip:{remote}@{DOMAIN}"/>\n    </remote>\n'
        f"    <local>\n      <identity>sip:{extension}@{DOMAIN}</identity>\n"
        f'      <target uri="sip:{extension}@{DOMAIN}"/>\n    </local>\n'
        "  </dialog>\n"
        "</dialog-info>\n"
    ).encode()


def send(server: FakePbx, extension: str, call_id: str, state: str, remote: str = MAX_MUSTER, direction: str = "recipient") -> None:
    document = dialog_document(extension, server.next_version(extension), call_id, state, remote, direction)
    server.send_notify(extension, document)


def play(server: FakePbx, extension: str, call_id: str, states: tuple[str, ...], **party: str) -> None:
    for state in states:
        send(server, extension, call_id, state, **party)


async def open_page(browser: Browser, url: str, device: PairedDevice, locale: str = "en-US"):
    context = await browser.new_context(locale=locale)
    await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
    return context, page


async def test_icons_per_call_type(agent, browser):
    _, url, server, device = agent
    answered, missed = ("early", "confirmed", "terminated"), ("early", "terminated")
    play(server, "201", "c-in-answered", answered)
    play(server, "201", "c-in-missed", missed)
    play(server, "201", "c-out-answered", answered, remote="+41445550123", direction="initiator")
    play(server, "201", "c-out-unanswered", missed, remote="+41445550124", direction="initiator")
    play(server, "201", "c-internal", answered, remote="203")

    # Ring group: both members ring with one Call-ID, 202 answers, 201 stops ringing.
    send(server, "201", "c-group", "early", remote="+41446681800")
    send(server, "202", "c-group", "early", remote="+41446681800")
    send(server, "202", "c-group", "confirmed", remote="+41446681800")
    send(server, "201", "c-group", "terminated", remote="+41446681800")
    send(server, "202", "c-group", "terminated", remote="+41446681800")

    context, page = await open_page(browser, url, device)
    rows = page.locator("#history-list .call")
    await expect(rows).to_have_count(7, timeout=EVENT_TIMEOUT_MS)
    expected = {
        "incoming-answered": 2,  # c-in-answered, and 202's side of c-group
        "incoming-missed": 1,
        "outgoing-answered": 1,
        "outgoing-unanswered": 1,
        "answered-elsewhere": 1,
        "internal": 1,
    }
    for kind, count in expected.items():
        typed = page.locator(f"#history-list .call[data-kind={kind}]")
        await expect(typed).to_have_count(count)
        await expect(typed.locator(f".call__icon.icon--{kind}")).to_have_count(count)
        await expect(typed.first.locator(".call__icon")).to_have_attribute("role", "img")

    await expect(page.locator("#history-list .call[data-kind=outgoing-answered]")).to_have_attribute("data-direction", "outbound")
    await expect(page.locator("#history-list .call[data-kind=internal]")).to_have_attribute("data-direction", "internal")
    elsewhere = page.locator("#history-list .call[data-kind=answered-elsewhere]")
    await expect(elsewhere).to_have_attribute("data-outcome", "answered_elsewhere")
    await expect(elsewhere.locator(".call__icon")).to_have_attribute("aria-label", re.compile(r"\S"))
    await context.close()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_language_renders(agent, browser, language):
    _, url, server, device = agent
    play(server, "201", "c-lang", ("early", "terminated"))
    catalogue = json.loads((LOCALES_DIR / f"{language}.json").read_text(encoding="utf-8"))
    english = json.loads((LOCALES_DIR / "en.json").read_text(encoding="utf-8"))

    context, page = await open_page(browser, url, device, locale=language)
    await expect(page.locator("#history-list .call")).to_have_count(1, timeout=EVENT_TIMEOUT_MS)
    assert await page.evaluate("document.documentElement.lang") == language
    for key in ("section.active", "section.history"):
        header = page.locator(f"[data-i18n='{key}']")
        await expect(header).to_have_text(catalogue[key])
        if language != "en":
            assert catalogue[key] != english[key], f"{language} {key} is the English text"

    text = await page.evaluate("document.body.innerText")
    leaked = [key for key in english if key in text]
    assert leaked == [], f"catalogue keys shown as text in {language}: {leaked}"
    await context.close()


async def test_reconnect_catches_up(agent, browser):
    holder, url, server, device = agent
    runner = holder["runner"]
    play(server, "201", "c-before", ("early", "terminated"))
    context, page = await open_page(browser, url, device)
    rows = page.locator("#history-list .call")
    await expect(rows).to_have_count(1, timeout=EVENT_TIMEOUT_MS)

    # Close the page's reconnect attempts until the call is placed, so that the call
    # can reach the page only as catch-up after the reconnect.
    blocking = True

    async def route_events(socket):
        if blocking:
            await socket.close()
        else:
            socket.connect_to_server()

    await page.route_web_socket(re.compile(r"/api/events"), route_events)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    await runner.stop()
    await expect(page.locator("#status")).not_to_have_attribute("data-connection", "online", timeout=EVENT_TIMEOUT_MS)

    config = runner.config
    restarted = AgentRunner(dataclasses.replace(config, http=dataclasses.replace(config.http, port=port)), FAST_PIN_HASHER)
    subscribes = server.subscribe_count
    await restarted.start()
    holder["runner"] = restarted
    try:
        while server.subscribe_count < subscribes + 2:
            await asyncio.sleep(0.02)
        play(server, "201", "c-while-away", ("early", "terminated"), remote="+49301234567")
        while len(restarted.history.recent_calls(5)) < 2:
            await asyncio.sleep(0.05)
        await expect(page.locator("#status")).not_to_have_attribute("data-connection", "online")
        assert await rows.count() == 1

        blocking = False
        await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
        await expect(rows).to_have_count(2, timeout=EVENT_TIMEOUT_MS)
        await expect(page.locator("#history-list .call .call__name").first).to_have_text("Jonas Weber")
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
    finally:
        await context.close()


async def test_crm_action_shows_link(browser, tmp_path):
    with crm_server("hubspot") as crm:
        server = FakePbx()
        address = await server.start()
        hubspot = crm_settings("hubspot", crm.url, tmp_path, name="hubspot")
        lookup = LookupSettings(rules=lab_settings().rules, connectors=(hubspot,))
        config = dataclasses.replace(agent_config(tmp_path / "var", address, extensions=("201",)), lookup=lookup)
        runner = AgentRunner(config, FAST_PIN_HASHER)
        url = await runner.start()
        try:
            await server.wait_subscribed(["201"])
            device = await paired_device(url, tmp_path / "var", "anna", ("201",))
            play(server, "201", "c-hub", ("early", "confirmed", "terminated"), remote=HUBSPOT_CALLER)
            context, page = await open_page(browser, url, device)
            row = page.locator("#history-list .call[data-call-id]").first
            button = row.locator("button.card__action[data-action-id=create_task]").first
            await expect(button).to_be_visible(timeout=EVENT_TIMEOUT_MS)
            await button.click()

            result = row.locator(".card__result--ok")
            await expect(result).to_be_visible(timeout=EVENT_TIMEOUT_MS)
            link = result.locator("a.card__result-link")
            await expect(link).to_have_attribute("href", re.compile(r"^https?://"))
            await expect(row.locator(".card__result--failed")).to_have_count(0)
            assert len(crm.state.calls("POST", "/crm/v3/objects/tasks")) == 1
            await context.close()
        finally:
            await runner.stop()
            server.close()

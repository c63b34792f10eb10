"""The page in Chromium against the real agent: a 360 px screen, the keyboard, colour contrast.

Calls come from a scripted PBX (FakePbx), and the demo address book (`lab_settings`)
gives the cards. One agent with one ringing call and two ended calls serves the module, and
one Chromium opens a fresh page for each test.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import pytest_asyncio

pytest.importorskip("playwright")
from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

from agent.lookup.settings import lab_settings  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from tests.agent.test_pipeline import agent_config  # noqa: E402
from tests.support.fake_pbx import FakePbx, kamailio_document  # noqa: E402
from tests.support.pairing import FAST_PIN_HASHER, PairedDevice, paired_device  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

# Starting Python in the page takes a few seconds (an estimate), and the margin is for a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000
EVENT_TIMEOUT_MS = 10_000

MAX_MUSTER = "+41441234567"  # in the demo address book: cards with a company link
OTHER_CALLER = "+41449998877"

RINGING = "#active-list .call[data-state=ringing]"
MISSED = "#history-list .call[data-outcome=missed]"

# WCAG 2.1: large text is at least 24 px, or at least 18.66 px (14 pt) and bold.
CONTRAST_SCRIPT = """
(selectors) => {
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const parts = m[1].split(/[\\s,\\/]+/).filter(Boolean).map((p) => p.endsWith('%') ? parseFloat(p) / 100 : parseFloat(p));
    return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const luminance = (c) => {
    const channel = (v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  };
  const background = (element) => {
    // Layers up the tree until the first opaque one, blended from the bottom up.
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour.a > 0) {
        layers.push(colour);
        if (colour.a >= 1) break;
      }
    }
    let result = {r: 255, g: 255, b: 255, a: 1};
    if (layers.length && layers[layers.length - 1].a >= 1) result = layers.pop();
    while (layers.length) result = over(layers.pop(), result);
    return result;
  };
  const results = [];
  for (const selector of selectors) {
    const element = document.querySelector(selector);
    if (!element) { results.push({selector, missing: true}); continue; }
    const style = getComputedStyle(element);
    let opacity = 1;
    for (let node = element; node; node = node.parentElement) opacity *= parseFloat(getComputedStyle(node).opacity);
    const back = background(element);
    const text = parse(style.color);
    const front = over({...text, a: text.a * opacity}, back);
    const [light, dark] = [luminance(front), luminance(back)].sort((x, y) => y - x);
    const size = parseFloat(style.fontSize);
    const bold = parseInt(style.fontWeight, 10) >= 700;
    results.push({
      selector,
      text: element.innerText.trim().slice(0, 40),
      color: style.color,
      background: `rgb(${Math.round(back.r)}, ${Math.round(back.g)}, ${Math.round(back.b)})`,
      ratio: (light + 0.05) / (dark + 0.05),
      large: size >= 24 || (size >= 18.66 && bold),
    });
  }
  return results;
}
"""

# The main texts of the board. Each one must be on the page with the module's calls.
CONTRAST_SELECTORS = (
    ".topbar__title",
    "#active-title [data-i18n='section.active']",
    "#active-count",
    "#open-count",
    "#history-title [data-i18n='section.history']",
    "#status",
    f"{RINGING} .call__name",
    f"{RINGING} .call__number",
    f"{RINGING} .call__extension",
    f"{RINGING} .call__time",
    f"{RINGING} .call__state",
    f"{RINGING} .card__name",
    f"{RINGING} a.card__company",
    f"{RINGING} .card__match",
    f"{MISSED} .call__name",
    f"{MISSED} .call__number",
    f"{MISSED} .call__extension",
    f"{MISSED} .call__time",
    f"{MISSED} .call__outcome",
    f"{MISSED} .card__match",
    f"{MISSED} button.call__done",
    "#history-list .call[data-outcome=answered] .call__outcome",
    "#history-list .call[data-outcome=answered] .call__duration",
    "#history-filter",
    "#history-search",
)

FOCUSED_SCRIPT = """
() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const outlined = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  return {
    id: element.id,
    tag: element.tagName.toLowerCase(),
    classes: element.className,
    inActive: !!element.closest('#active-list'),
    visible: outlined || style.boxShadow !== 'none',
  };
}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


def send(server: FakePbx, call_id: str, state: str, caller: str = MAX_MUSTER) -> None:
    body = kamailio_document("201", server.next_version("201"), [(f"d-{call_id}", call_id, state)], caller=caller)
    server.send_notify("201", body)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent(tmp_path_factory):
    """The agent with a missed call, an answered call and a ringing call on extension 201."""
    tmp_path = tmp_path_factory.mktemp("access")
    server = FakePbx()
    address = await server.start()
    config = dataclasses.replace(agent_config(tmp_path, address, extensions=("201",)), lookup=lab_settings())
    runner = AgentRunner(config, FAST_PIN_HASHER)
    url = await runner.start()
    try:
        await server.wait_subscribed(["201"])
        device = await paired_device(url, tmp_path, "anna", ("201",))
        for state in ("early", "terminated"):
            send(server, "c-missed", state)
        for state in ("early", "confirmed", "terminated"):
            send(server, "c-answered", state, caller=OTHER_CALLER)
        send(server, "c-ring", "early")
        yield url, device
    finally:
        await runner.stop()
        server.close()


async def open_board(browser: Browser, url: str, device: PairedDevice, **options):
    """Open the page and wait until it shows the module's three calls and the ringing call's cards."""
    context = await browser.new_context(locale="en-US", **options)
    await context.add_cookies([{"name": device.cookie_name, "value": device.token, "url": url}])
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
    await expect(page.locator(f"{RINGING} a.card__company").first).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    await expect(page.locator("#history-list .call")).to_have_count(2, timeout=EVENT_TIMEOUT_MS)
    await expect(page.locator(f"{MISSED} .card__match").first).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    return context, page


async def inside_width(page: Page, selector: str, width: int) -> None:
    locator = page.locator(selector).first
    await expect(locator).to_be_visible()
    box = await locator.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0, f"{selector} starts left of the viewport: {box}"
    assert box["x"] + box["width"] <= width + 0.5, f"{selector} ends right of the {width} px viewport: {box}"


async def test_narrow_screen_no_sideways_scroll(agent, browser):
    url, device = agent
    context, page = await open_board(browser, url, device, viewport={"width": 360, "height": 740})
    try:
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        assert await page.evaluate("document.body.scrollWidth") <= 360
        await expect(page.locator(f"{RINGING} .call__name")).to_have_text("Max Muster")
        await expect(page.locator(f"{RINGING} .call__state")).to_have_text("Ringing")
        for part in (".call__name", ".call__number", ".call__state", "a.card__company", ".card__match"):
            await inside_width(page, f"{RINGING} {part}", 360)
        for part in (".call__name", ".call__outcome", "button.call__done"):
            await inside_width(page, f"{MISSED} {part}", 360)
        for control in ("#status", "#settings-button", "#history-filter", "#history-search"):
            await inside_width(page, control, 360)

        # The settings panel also fits.
        await page.locator("#settings-button").click()
        await expect(page.locator("#settings")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await inside_width(page, "#settings-language", 360)
        await inside_width(page, "#settings-close", 360)
    finally:
        await context.close()


async def tab_until(page: Page, target, limit: int = 40) -> list[dict]:
    """Press Tab until `target(focused)` is true, and return every element focused on the way."""
    seen = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_SCRIPT)
        if focused is None:
            continue
        seen.append(focused)
        if target(focused):
            return seen
    raise AssertionError(f"Tab did not reach the expected element in {limit} presses; focused elements: {seen}")


async def test_keyboard_focus_reaches_controls(agent, browser):
    url, device = agent
    context, page = await open_board(browser, url, device)
    try:
        # From the start of the page: a click on the title sets where Tab starts.
        await page.locator(".topbar__title").click()
        seen = await tab_until(page, lambda f: f["id"] == "history-search")
        order = [f["id"] or f["classes"] for f in seen]
        assert "settings-button" in order, order
        assert "history-filter" in order, order
        assert order.index("settings-button") < order.index("history-filter") < order.index("history-search")
        links = [f for f in seen if f["inActive"] and f["tag"] in ("a", "button")]
        assert links, f"no card link or action of the ringing call reached: {order}"
        assert any("card__company" in f["classes"] for f in links), order
        invisible = [f["id"] or f["classes"] for f in seen if not f["visible"]]
        assert invisible == [], f"focus not visible on {invisible}"
        # Online, the status button only reports, so it is disabled and Tab skips it by design.
        await expect(page.locator("#status")).to_be_disabled()

        # The gear opens the settings with Enter, and the close button closes them from the keyboard.
        await page.locator(".topbar__title").click()
        await tab_until(page, lambda f: f["id"] == "settings-button")
        await page.keyboard.press("Enter")
        await expect(page.locator("#settings")).to_be_visible()
        await expect(page.locator("#settings-button")).to_have_attribute("aria-expanded", "true")
        seen = await tab_until(page, lambda f: f["id"] == "settings-close")
        invisible = [f["id"] or f["classes"] for f in seen if not f["visible"]]
        assert invisible == [], f"focus not visible in the settings on {invisible}"
        await page.keyboard.press("Enter")
        await expect(page.locator("#settings")).to_be_hidden()
        await expect(page.locator("#settings-button")).to_have_attribute("aria-expanded", "false")

        # The gear closes them again, and so does Escape, which gives the focus back to the gear.
        await page.locator("#settings-button").click()
        await expect(page.locator("#settings")).to_be_visible()
        await page.locator("#settings-button").click()
        await expect(page.locator("#settings")).to_be_hidden()
        await page.locator("#settings-button").click()
        await expect(page.locator("#settings")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.locator("#settings")).to_be_hidden()
        await expect(page.locator("#settings-button")).to_be_focused()

        # Escape closes them too and gives the focus back to the gear.
        await page.locator("#settings-button").click()
        await expect(page.locator("#settings")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.locator("#settings")).to_be_hidden()
        await expect(page.locator("#settings-button")).to_be_focused()

        # Offline, the status button is the first Tab stop, and Enter on it reconnects at once.
        sockets = []
        blocking = True

        async def route_events(socket):
            if blocking and sockets:
                await socket.close()
            else:
                sockets.append(socket)
                socket.connect_to_server()

        await page.route_web_socket(re.compile(r"/api/events"), route_events)
        await page.reload()
        await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
        await sockets[0].close()
        status = page.locator("#status[data-connection=offline]")
        await expect(status).to_be_enabled(timeout=EVENT_TIMEOUT_MS)
        await page.locator(".topbar__title").click()
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_SCRIPT)
        assert focused is not None and focused["id"] == "status", focused
        assert focused["visible"], "focus not visible on the status button"
        blocking = False
        await page.keyboard.press("Enter")
        await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    finally:
        await context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_text_contrast_meets_aa(agent, browser, scheme):
    url, device = agent
    context, page = await open_board(browser, url, device, color_scheme=scheme)
    try:
        await page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
        assert await page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
        results = await page.evaluate(CONTRAST_SCRIPT, list(CONTRAST_SELECTORS))
        missing = [r["selector"] for r in results if r.get("missing")]
        assert missing == [], f"not on the page: {missing}"
        failing = [
            f"{r['selector']} {r['text']!r}: {r['ratio']:.2f} ({r['color']} on {r['background']})"
            for r in results
            if r["ratio"] < (3.0 if r["large"] else 4.5)
        ]
        assert failing == [], f"{scheme} scheme below WCAG AA:\n" + "\n".join(failing)
    finally:
        await context.close()

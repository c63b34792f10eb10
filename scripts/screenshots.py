"""Take the README's screenshots of the page in English and German against the lab.

Starts the lab (Kamailio and SIPp phones on 127.0.0.1) and the agent as `ringboard run`
does without a configuration, pairs a receptionist's browser (Chromium through
Playwright), places an answered and a missed call, then lets Max Muster's call ring on
201 and saves docs/screenshot-en.png and docs/screenshot-de.png while it rings.
Everything it starts stops before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import Config  # noqa: E402
from agent.lab import Lab  # noqa: E402
from agent.lab.agent_config import lab_agent_config  # noqa: E402
from agent.lab.processes import free_port  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEWPORT = {"width": 1200, "height": 800}

# Output file suffix and browser locale of each screenshot.
LOCALES = (("en", "en-GB"), ("de", "de-CH"))

RECEPTIONIST = "reception"
RINGING_CALLER = "+41441234567"  # Max Muster of Muster AG in the demo address book.

# Starting Python in the page takes 2-3 s on two cores; the margin is for a loaded machine.
PAGE_LIVE_TIMEOUT_MS = 30_000
CALL_TIMEOUT_SECONDS = 20.0
# The ringing call stays up this long, enough for both screenshots.
RING_SECONDS = 30.0


def lab_config(lab: Lab, data_dir: Path, hep_port: int) -> Config:
    """Return the agent's configuration for the lab, as `ringboard run` builds it, on a free HTTP port."""
    return lab_agent_config(lab, data_dir, hep_port, http_port=0)


def add_receptionist(runner: AgentRunner) -> str:
    """Add the receptionist, who sees every extension, and return a PIN to pair with."""
    _, pin = runner.users.add_user(RECEPTIONIST, [], "receptionist")
    return pin


async def pair_context(browser: Browser, url: str, pin: str, locale: str) -> BrowserContext:
    """Open a browser context with `locale` and pair it with `pin` over `POST /api/pair`."""
    context = await browser.new_context(locale=locale, viewport=VIEWPORT)
    response = await context.request.post(url + "api/pair", data={"pin": pin})
    if not response.ok:
        raise RuntimeError(f"pairing failed: HTTP {response.status} {await response.text()}")
    return context


async def open_page(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=PAGE_LIVE_TIMEOUT_MS)
    return page


async def place_and_wait(lab: Lab, **plan: object) -> None:
    """Place one lab call and wait until it has ended."""
    handle = lab.call(**plan)  # type: ignore[arg-type]
    code = await asyncio.to_thread(handle.wait, CALL_TIMEOUT_SECONDS)
    if code != 0:
        raise RuntimeError(f"lab call {plan} failed with exit code {code}: {handle.error_log()}")


async def take_screenshots(lab: Lab, runner: AgentRunner, url: str, out_dir: Path) -> list[Path]:
    pin = add_receptionist(runner)
    saved: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Only the first context pairs, because each pairing uses up the PIN. The
            # second gets the same device cookie.
            first = await pair_context(browser, url, pin, LOCALES[0][1])
            cookies = await first.cookies()

            await place_and_wait(lab, to="202", caller="+41446681800", answer_after=1.0, talk=2.0)
            await place_and_wait(lab, to="201", caller="+49301234567", answer_after=None, cancel_after=2.0)
            ringing = lab.call(to="201", caller=RINGING_CALLER, answer_after=None, cancel_after=RING_SECONDS)
            try:
                for index, (suffix, locale) in enumerate(LOCALES):
                    if index == 0:
                        context = first
                    else:
                        context = await browser.new_context(locale=locale, viewport=VIEWPORT)
                        await context.add_cookies(cookies)
                    page = await open_page(context, url)
                    row = page.locator("#active-list .call[data-state=ringing]")
                    await expect(row.locator(".card__company").first).to_have_text("Muster AG", timeout=10_000)
                    await expect(page.locator("#history-list .call")).to_have_count(2, timeout=10_000)
                    path = out_dir / f"screenshot-{suffix}.png"
                    await page.screenshot(path=str(path), full_page=True)
                    saved.append(path)
                    await context.close()
            finally:
                ringing.stop()
        finally:
            await browser.close()
    return saved


async def run(out_dir: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="ringboard-screenshots-") as work:
        data_dir = Path(work)
        hep_port = free_port()
        lab = Lab(data_dir / "lab", hep_address=("127.0.0.1", hep_port))
        lab.start()
        try:
            runner = AgentRunner(lab_config(lab, data_dir, hep_port))
            url = await runner.start()
            try:
                return await take_screenshots(lab, runner, url, out_dir)
            finally:
                await runner.stop()
        finally:
            lab.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Save screenshots of the page with the lab's calls, in English and German.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for screenshot-en.png and screenshot-de.png (default: docs)")
    args = parser.parse_args()
    for path in asyncio.run(run(args.out)):
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

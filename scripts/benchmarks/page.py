"""Benchmark 4: the page in headless Chromium, from navigation to a live UI.

The agent runs as `ringboard run` against the fake PBX, and Playwright drives Debian's
Chromium (never a downloaded browser). Each round opens the page three ways:

- cold: a new browser profile, so nothing is cached (the device cookie is set, as in a
  browser that was paired before its cache was cleared);
- reload: the same tab reloaded, with Pyodide in the HTTP cache;
- warm: a new browser process on the same profile (warm HTTP cache, new renderer).

Times are the page's own (`performance.now()`, from navigation start): "shell painted"
is first-contentful-paint, "UI live" is when both html[data-ringboard=live] and the
status element's data-connection=online are set, recorded by a MutationObserver that
Playwright adds before the page's scripts run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from tests.support.fake_pbx import FakePbx

from .common import AgentProcess, Figure, agent_config, checked, free_port
from .pairing import ClientPlan, pair_clients

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
EXTENSION = "2000"

# Python starts in 2-3 s here; a loaded machine gets a wide margin before a round fails.
LIVE_TIMEOUT_MS = 60_000

RECORD_START_UP = """
window.__ringboardTimes = {};
new MutationObserver(() => {
  const times = window.__ringboardTimes;
  const status = document.getElementById("status");
  if (times.online === undefined && status && status.dataset.connection === "online") {
    times.online = performance.now();
  }
  if (times.live === undefined && document.documentElement.dataset.ringboard === "live") {
    times.live = performance.now();
  }
}).observe(document, { subtree: true, childList: true, attributes: true });
"""

READ_TIMES = """() => {
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const pyodide = performance.getEntriesByName("ringboard:pyodide")[0];
  const times = window.__ringboardTimes;
  return {
    paint: paint ? paint.startTime : null,
    pyodide: pyodide ? pyodide.startTime : null,
    live: times.live,
    online: times.online,
  };
}"""

UI_LIVE = "() => window.__ringboardTimes.live !== undefined && window.__ringboardTimes.online !== undefined"


async def page_start(rounds: int) -> list[Figure]:
    """Open the page cold, reloaded and warm `rounds` times; return the median times."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        return [Figure("page", "not run", "Playwright is not installed", "", "pip install -e '.[test]'")]
    if not Path(CHROMIUM).is_file():
        return [Figure("page", "not run", f"no Chromium at {CHROMIUM}", "", "scripts/setup installs Debian's chromium")]

    pbx = FakePbx()
    pbx_address = await pbx.start()
    times: dict[str, list[dict[str, float]]] = {"cold": [], "reload": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as folder:
        work = Path(folder)
        http_port = free_port()
        config = agent_config(work, http_port, pbx_address, [EXTENSION])
        agent = AgentProcess(config, http_port)
        try:
            await agent.start()
            await pbx.wait_subscribed([EXTENSION], timeout=30)
            pairing = pair_clients(config, work / "var", agent.base_url, [ClientPlan("browser", (EXTENSION,))] * rounds)
            url = agent.base_url + "/"
            async with async_playwright() as playwright:
                for index in range(rounds):
                    profile = work / f"profile-{index}"
                    cookie = pairing.cookies[index]

                    async def launch():
                        context = await playwright.chromium.launch_persistent_context(
                            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                        )
                        if cookie:
                            name, _, value = cookie.partition("=")
                            await context.add_cookies([{"name": name, "value": value, "url": url}])
                        await context.add_init_script(RECORD_START_UP)
                        return context

                    context = await launch()
                    version = context.browser.version if context.browser else "unknown"
                    page = context.pages[0] if context.pages else await context.new_page()
                    await page.goto(url)
                    times["cold"].append(await _wait_live(page))
                    await page.reload()
                    times["reload"].append(await _wait_live(page))
                    await context.close()

                    context = await launch()
                    page = context.pages[0] if context.pages else await context.new_page()
                    await page.goto(url)
                    times["warm"].append(await _wait_live(page))
                    await context.close()
        finally:
            await agent.stop()
            pbx.close()

    setup = f"Chromium {version} headless, agent on 127.0.0.1, {pairing.note}; median of {rounds} rounds"
    figures = []
    for scenario, label in (("cold", "cold (new profile)"), ("reload", "reload"), ("warm", "new browser, same profile")):
        paint = statistics.median(entry["paint"] for entry in times[scenario])
        live = statistics.median(entry["live_or_online"] for entry in times[scenario])
        figures.append(checked(Figure("page", f"shell painted, {label}", round(paint), "ms", setup), "< 100 ms", 100))
        # boot.js sets the ringboard:pyodide mark when loadPyodide returns.
        pyodide = [entry["pyodide"] for entry in times[scenario] if entry["pyodide"] is not None]
        if pyodide:
            figures.append(Figure("page", f"Pyodide started, {label}", round(statistics.median(pyodide)), "ms", setup))
        live_figure = Figure("page", f"UI live, {label}", round(live), "ms", setup)
        if scenario == "cold":
            figures.append(checked(live_figure, "< 3 s", 3000))
        else:
            figures.append(checked(live_figure, "< 1 s (warm)", 1000))
    return figures


async def _wait_live(page) -> dict[str, float]:
    await page.wait_for_function(UI_LIVE, timeout=LIVE_TIMEOUT_MS)
    times = await page.evaluate(READ_TIMES)
    times["live_or_online"] = max(times["live"], times["online"])
    return times

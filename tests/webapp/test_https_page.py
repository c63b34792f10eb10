"""The real agent over HTTPS, with a certificate from `ringboard tls init`, in Debian's Chromium.

The test CA is trusted the way an office would trust it on Linux: imported into the NSS
database under the browser's $HOME with certutil (libnss3-tools). No flag makes Chromium
ignore certificate errors. The page pairs through its PIN form, registers the service
worker, shows a live call of the user's extension and not of another's, and goes back to
the PIN form when the device is revoked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.async_api import async_playwright, expect  # noqa: E402

from agent.app import PYODIDE_DIR  # noqa: E402
from agent.cli import main  # noqa: E402
from agent.config import AgentSettings, Config, HttpSettings, SipSettings  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from agent.tls import TlsFiles  # noqa: E402
from agent.users import UserStore  # noqa: E402
from tests.support.fake_pbx import FakePbx, kamailio_document  # noqa: E402
from tests.support.pairing import add_user  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("RINGBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Starting Python in the page takes 2-3 s on two cores; give it room on a loaded machine.
UI_LIVE_TIMEOUT_MS = 30_000
STEP_TIMEOUT_MS = 10_000


def trust_ca(home: Path, ca: Path) -> None:
    """Create the NSS database Chromium reads under `home` and trust `ca` for web sites in it."""
    database = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", database, "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        ["certutil", "-A", "-d", database, "-t", "C,,", "-n", "Ringboard test CA", "-i", str(ca)],
        check=True, capture_output=True,
    )


async def test_https_page_pairs_and_shows_call(tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")
    if shutil.which("certutil") is None:
        pytest.skip("certutil not found; install Debian's libnss3-tools")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip(f"Pyodide is not unpacked at {PYODIDE_DIR}; run scripts/setup")

    data_dir = tmp_path / "var"
    config_file = tmp_path / "ringboard.toml"
    config_file.write_text(f'[agent]\ndata_dir = "{data_dir}"\n[sip]\nserver = "127.0.0.1"\nextensions = ["201", "202"]\n')
    assert main(["tls", "init", "--config", str(config_file)]) == 0
    files = TlsFiles(data_dir / "tls")
    home = tmp_path / "home"
    trust_ca(home, files.ca_cert)

    pbx = FakePbx()
    pbx_host, pbx_port = await pbx.start()
    config = Config(
        agent=AgentSettings(data_dir=data_dir),
        http=HttpSettings(port=0, certificate=files.server_cert, key=files.server_key),
        sip=SipSettings(
            server=pbx_host, port=pbx_port, domain="pbx.local", extensions=("201", "202"), pbx="kamailio",
            listen_host="127.0.0.1", listen_port=0,
        ),
    )
    runner = AgentRunner(config)
    url = (await runner.start()).replace("127.0.0.1", "localhost")
    pin = add_user(data_dir, "anna", ("201",))
    wrong_pin = pin[:3] + f"{(int(pin[3:]) + 1) % 10**6:06d}"
    try:
        await pbx.wait_subscribed(["201", "202"])
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)}
            )
            context = await browser.new_context(locale="en-US")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(url)

            form = page.locator("#pairing")
            await expect(form).to_be_visible(timeout=UI_LIVE_TIMEOUT_MS)
            assert await page.evaluate("window.isSecureContext") is True

            await page.locator("#pairing-pin").fill(wrong_pin)
            await page.locator("#pairing-submit").click()
            await expect(page.locator("#pairing-error")).to_have_text("This PIN is not valid.", timeout=STEP_TIMEOUT_MS)

            await page.locator("#pairing-pin").fill(f"{pin[:3]} {pin[3:6]} {pin[6:]}")
            await page.locator("#pairing-submit").click()
            await expect(page.locator("[data-connection=online]")).to_be_visible(timeout=STEP_TIMEOUT_MS)
            await expect(form).to_be_hidden()

            scope = await page.evaluate(
                "navigator.serviceWorker.ready.then((registration) => registration.active.scriptURL)"
            )
            assert scope == url + "sw.js"
            cookies = await context.cookies()
            assert [(cookie["name"], cookie["secure"], cookie["httpOnly"]) for cookie in cookies] == [
                ("__Host-ringboard_device", True, True)
            ]
            assert await page.evaluate("document.cookie") == ""

            # 202's call comes first: once 201's row shows, 202's event was handled and kept out.
            pbx.send_notify("202", kamailio_document("202", pbx.next_version("202"), [("d2", "call-202", "early")]))
            pbx.send_notify("201", kamailio_document("201", pbx.next_version("201"), [("d1", "call-201", "early")]))
            rows = page.locator("#active-calls [data-call-id]")
            await expect(rows).to_have_count(1, timeout=STEP_TIMEOUT_MS)
            await expect(rows.first).to_contain_text("044 123 45 67")
            await expect(rows.first).to_contain_text("Ext. 201")
            assert "202" not in await page.locator("#active-calls").inner_text()

            # Revoked from another connection, as `ringboard devices revoke` does.
            store = UserStore.in_data_dir(data_dir)
            try:
                [device] = store.devices()
                store.revoke_device(device.id)
            finally:
                store.close()
            await expect(form).to_be_visible(timeout=STEP_TIMEOUT_MS)
            await expect(rows).to_have_count(0)
            await expect(page.locator("#status")).to_have_attribute("data-connection", "unpaired")

            assert errors == []
            await browser.close()
    finally:
        await runner.stop()
        pbx.close()

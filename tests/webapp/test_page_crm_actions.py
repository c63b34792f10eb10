"""Every CRM's card actions clicked in Chromium against the real agent and a contract server.

For each CRM type one agent runs with one `[[connectors]]` entry aimed at that type's
contract server on 127.0.0.1; FakePbx rings extension 201 from a caller the server stores
(or, for "create contact", from one it does not). The test clicks the action button twice
in a row (a double-click), waits for the success line with its link, then clicks the
button again after the page disabled it: the contract server must have received exactly
one request of the action's method and path. "Open" actions are links only; the test
checks their href and never follows it. One Chromium serves the whole module, and each
CRM gets one agent and one page.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("playwright")
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect  # noqa: E402

from agent.lookup.settings import LookupSettings, lab_settings  # noqa: E402
from agent.runner import AgentRunner  # noqa: E402
from tests.agent.test_pipeline import agent_config  # noqa: E402
from tests.crm.conftest import crm_settings  # noqa: E402
from tests.support import crm_servers  # noqa: E402
from tests.support.crm_servers import CrmServer, crm_server, make_tls  # noqa: E402
from tests.support.fake_pbx import FakePbx  # noqa: E402
from tests.support.pairing import FAST_PIN_HASHER, PairedDevice, paired_device  # noqa: E402
from tests.webapp.test_page_views import CHROMIUM, CHROMIUM_ARGS, EVENT_TIMEOUT_MS, open_page, play  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

# Anna Muster: every contract server stores her number in some written form.
KNOWN_CALLER = "+41445550123"
# A valid Zurich number no contract server stores.
UNKNOWN_CALLER = "+41445559876"

# How long the test waits after the repeated click for a second request that must not come.
SETTLE_SECONDS = 0.5

# A synced connector (bexio, Graph) copies its contacts at start, and a ring before that finds no card.
SYNC_TIMEOUT = 10.0

ODATA = "/api/data/v9.2"


@dataclass(frozen=True)
class Case:
    """One action of one CRM: its id, the caller, and the request it must send once."""

    kind: str
    action: str
    caller: str = KNOWN_CALLER
    method: str = "POST"
    path: str = ""

    def __str__(self) -> str:
        return f"{self.kind}-{self.action}"


CASES = (
    Case("hubspot", "log_call", path="/crm/v3/objects/calls"),
    Case("hubspot", "create_task", path="/crm/v3/objects/tasks"),
    Case("hubspot", "create_contact", UNKNOWN_CALLER, path="/crm/v3/objects/contacts"),
    Case("pipedrive", "log_call", path="/v1/activities"),
    Case("pipedrive", "create_task", path="/v1/activities"),
    Case("pipedrive", "create_contact", UNKNOWN_CALLER, path="/v1/persons"),
    Case("odoo", "log_call", path="/json/2/res.partner/message_post"),
    Case("odoo", "create_task", path="/json/2/res.partner/activity_schedule"),
    Case("odoo", "create_contact", UNKNOWN_CALLER, path="/json/2/res.partner/create"),
    Case("dataverse", "log_call", path=f"{ODATA}/phonecalls"),
    Case("dataverse", "create_task", path=f"{ODATA}/phonecalls"),
    Case("zendesk", "create_ticket", path="/api/v2/tickets.json"),
    Case("zammad", "create_ticket", path="/api/v1/tickets"),
    # Links only: checked for an http(s) href, never followed.
    Case("bexio", "open", method=""),
    # Graph offers no action on its cards; the case checks the card has no button.
    Case("graph", "none", method=""),
)

# The contract server each connector type talks to.
SERVER_OF = {"graph": "microsoft", "dataverse": "microsoft"}

call_ids = itertools.count(1)


@dataclass
class CrmPage:
    """One CRM's running setup: contract server, PBX, agent and a paired page."""

    kind: str
    crm: CrmServer
    pbx: FakePbx
    page: Page


def connector_keys(kind: str, crm: CrmServer, tls: crm_servers.TlsFiles | None) -> dict[str, Any]:
    """Return the `[[connectors]]` keys besides type, url and secret that `kind` needs."""
    if kind == "zendesk":
        return {"email": crm_servers.ZENDESK_EMAIL}
    if kind == "odoo":
        return {"database": crm_servers.ODOO_DATABASE}
    if kind in ("graph", "dataverse"):
        assert tls is not None
        keys: dict[str, Any] = {"authority_url": crm.url, "tenant": crm_servers.MS_TENANT,
                                "client_id": crm_servers.MS_CLIENT_ID, "ca_file": str(tls.ca)}
        if kind == "graph":
            keys["user"] = crm_servers.GRAPH_USER
        return keys
    return {}


async def wait_for_sync(kind: str, crm: CrmServer) -> None:
    """Wait until a synced connector fetched its contacts, so the ring finds a card."""
    last_path = {"bexio": "/2.0/contact_relation", "graph": "/contacts/delta"}.get(kind)
    if last_path is None:
        return
    deadline = time.monotonic() + SYNC_TIMEOUT
    while not any(last_path in request.path for request in crm.state.requests):
        assert time.monotonic() < deadline, f"{kind} did not sync within {SYNC_TIMEOUT:g} s"
        await asyncio.sleep(0.05)
    # The copy is written to the local index after the last page arrived.
    # NOTE: half a second for that write is an estimate, not a signal from the agent.
    await asyncio.sleep(0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}; install Debian's chromium or set RINGBOARD_CHROMIUM")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


class CrmPages:
    """The running setup of one CRM at a time, kept for that CRM's consecutive tests.

    CASES are grouped by CRM, so each CRM gets one contract server, agent and page. The
    previous CRM's setup ends when the next one starts.
    """

    def __init__(self, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.browser = browser
        self.tmp_path_factory = tmp_path_factory
        self.current: CrmPage | None = None
        self.stack = contextlib.AsyncExitStack()

    async def get(self, kind: str) -> CrmPage:
        if self.current is not None and self.current.kind == kind:
            return self.current
        await self.close()
        self.current = await self.stack.enter_async_context(self.start(kind))
        return self.current

    async def close(self) -> None:
        self.current = None
        await self.stack.aclose()
        self.stack = contextlib.AsyncExitStack()

    @contextlib.asynccontextmanager
    async def start(self, kind: str) -> AsyncIterator[CrmPage]:
        folder = self.tmp_path_factory.mktemp(kind)
        server_kind = SERVER_OF.get(kind, kind)
        tls = make_tls(folder) if server_kind == "microsoft" else None
        with crm_server(server_kind, tls=tls) as crm:
            settings = crm_settings(kind, crm.url, folder, name=kind, **connector_keys(kind, crm, tls))
            lookup = LookupSettings(rules=lab_settings().rules, connectors=(settings,))
            pbx = FakePbx()
            address = await pbx.start()
            config = dataclasses.replace(agent_config(folder / "var", address, extensions=("201",)), lookup=lookup)
            runner = AgentRunner(config, FAST_PIN_HASHER)
            url = await runner.start()
            context: BrowserContext | None = None
            try:
                await pbx.wait_subscribed(["201"])
                device: PairedDevice = await paired_device(url, folder / "var", "anna", ("201",))
                await wait_for_sync(kind, crm)
                context, page = await open_page(self.browser, url, device)
                yield CrmPage(kind, crm, pbx, page)
            finally:
                if context is not None:
                    await context.close()
                await runner.stop()
                pbx.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def crm_pages(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CrmPages]:
    pages = CrmPages(browser, tmp_path_factory)
    try:
        yield pages
    finally:
        await pages.close()


def sent(crm: CrmServer, since: int, method: str, path: str) -> list[crm_servers.Recorded]:
    """Return the requests of exactly `method` and `path` received after the first `since`."""
    return [r for r in crm.state.requests[since:] if r.method == method and r.path == path]


async def ring(setup: CrmPage, caller: str):  # type: ignore[no-untyped-def]
    """Ring extension 201 from `caller` and return the row of the new call in the active list.

    FakePbx sends full dialog documents, so the new call ends the extension's previous one.
    """
    rows = setup.page.locator(".call[data-call-id]")
    known = await rows.evaluate_all("rows => rows.map(row => row.dataset.callId)")
    play(setup.pbx, "201", f"c-{setup.kind}-{next(call_ids)}", ("early",), remote=caller)
    unseen = "".join(f":not([data-call-id='{call_id}'])" for call_id in known)
    row = setup.page.locator(f"#active-list .call[data-call-id]{unseen}")
    await expect(row).to_have_count(1, timeout=EVENT_TIMEOUT_MS)
    await expect(row).not_to_have_attribute("aria-busy", "true", timeout=EVENT_TIMEOUT_MS)
    return row


def case_param(case: Case) -> Any:
    return pytest.param(case, id=str(case))


@pytest.mark.parametrize("case", [case_param(case) for case in CASES])
async def test_crm_action_runs_once(case: Case, crm_pages: CrmPages) -> None:
    kind = case.kind
    crm_page = await crm_pages.get(kind)
    row = await ring(crm_page, case.caller)
    card = row.locator(f"li.card[data-connector={kind}]")

    if case.action == "none":
        await expect(card.first).to_be_visible(timeout=EVENT_TIMEOUT_MS)
        await expect(row.locator("button.card__action")).to_have_count(0)
        return
    if case.action == "open":
        await expect(card.first).to_be_visible(timeout=EVENT_TIMEOUT_MS)
        link = card.first.locator("a.card__open")
        # A card is rendered whole, so its link is there as soon as the card is.
        await expect(link).to_be_visible(timeout=1000)
        await expect(link).to_have_attribute("href", re.compile(r"^https?://"))
        await expect(row.locator("button.card__action")).to_have_count(0)
        return

    if case.caller == UNKNOWN_CALLER:
        await expect(row.locator(".cards__none")).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    button = row.locator(f"button.card__action[data-connector={kind}][data-action-id={case.action}]").first
    await expect(button).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    before = len(crm_page.crm.state.requests)

    await button.dblclick()
    result = row.locator(".card__result--ok")
    await expect(result).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    await expect(result.locator("a.card__result-link")).to_have_attribute("href", re.compile(r"^https?://"))
    await expect(row.locator(".card__result--failed")).to_have_count(0)
    await expect(button).to_be_disabled()

    # A click that gets past the disabled state (a re-render race, a stale tab) must not run it again.
    await button.evaluate("button => { button.disabled = false; button.click(); }")
    await asyncio.sleep(SETTLE_SECONDS)
    await expect(row.locator(".card__result--failed")).to_have_count(0)

    assert len(sent(crm_page.crm, before, case.method, case.path)) == 1, [
        (r.method, r.path) for r in crm_page.crm.state.requests[before:]
    ]

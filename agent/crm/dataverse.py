"""Dynamics 365 (Dataverse): contacts and accounts searched at ring time; phone calls logged.

Web API v9.2 (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-data-web-api
and https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/phonecall),
signed in with the app's client credentials for the scope `{url}/.default`:

- `GET /api/data/v9.2/contacts` and `/accounts` with `$filter=contains(telephone1,'...') or ...`:
  Dataverse matches the stored text, so the filter names the caller's common written
  forms in every phone column, and each hit is verified here. Both run at once.
- `POST /api/data/v9.2/phonecalls` (204 with the new record's `OData-EntityId`), then
  `PATCH` its state to Completed for a logged call; a call-back task stays open.

Card contact ids are entity paths, `contacts(<guid>)` or `accounts(<guid>)`, which the
actions bind to as they are.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.crm import errors
from agent.crm.base import (
    ACTION_BUDGET,
    CREATE_TASK,
    LOG_CALL,
    ActionOutcome,
    ActionRequest,
    CrmConnector,
    crm_action,
    time_left,
    verify_path,
)
from agent.crm.entra import EntraAuth
from agent.crm.graph import graph_message
from agent.crm.http import CrmHttp, Vendor, expect
from agent.crm.ratelimit import RateLimiter
from agent.crm.tokenfile import token_path
from agent.lookup.connector import Card, ConnectorError
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import DataverseSettings

API = "/api/data/v9.2"

# Dataverse's service protection limit: 6,000 requests per user in a 5-minute window.
REQUEST_LIMIT = (6000, 300.0)

MAX_RESULTS = 10

# Written forms of the caller's number in the $filter; each adds one contains() per column.
MAX_SEARCH_FORMS = 5

CONTACT_PHONES = ("telephone1", "telephone2", "mobilephone")
ACCOUNT_PHONES = ("telephone1", "telephone2", "telephone3")

ODATA_HEADERS = {
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"',
}

ENTITY_PATH = re.compile(r"^(contacts|accounts)\(([0-9a-fA-F-]{36})\)$")
CREATED_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")

# Phone call states (statecode 1 = Completed, statuscode 2 = Made).
COMPLETED = {"statecode": 1, "statuscode": 2}

# activityparty participation types: 1 sender, 2 recipient.
SENDER, RECIPIENT = 1, 2

# A call-back task is due this long after the call ended.
TASK_DUE = timedelta(hours=1)


class DataverseConnector(CrmConnector):
    """Dynamics 365 contacts and accounts, searched by phone at ring time."""

    crm = "Dynamics 365"
    card_actions = (crm_action(LOG_CALL), crm_action(CREATE_TASK))

    def __init__(self, settings: DataverseSettings, data_dir: Path, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.dataverse = settings
        vendor = Vendor(settings.name, settings.label, self.crm, settings.client_secret.source, "crm.renew.entra")
        self.auth = EntraAuth(settings, f"{settings.url}/.default", vendor, token_path(data_dir, settings.name))
        self._http = CrmHttp(
            vendor,
            settings.url,
            self.auth,
            limiters=(RateLimiter(*REQUEST_LIMIT),),
            message_of=graph_message,
            verify=verify_path(settings.ca_file),
            headers=ODATA_HEADERS,
        )
        self._warm_up: asyncio.Task[str] | None = None

    @property
    def http(self) -> CrmHttp:
        return self._http

    async def start(self) -> None:
        """Sign in ahead of the first call, so its lookup does not wait for a token."""
        self._warm_up = asyncio.create_task(self._sign_in(), name=f"sign-in-{self.name}")

    async def stop(self) -> None:
        if self._warm_up is not None:
            self._warm_up.cancel()
            await asyncio.gather(self._warm_up, return_exceptions=True)
        await super().stop()
        self.auth.close()

    async def _sign_in(self) -> str:
        try:
            return await self.auth.token()
        except ConnectorError as error:
            # The health view shows it; the first lookup signs in again and reports it too.
            self._last_error = error
            return ""

    def record_url(self, entity: str, record_id: str) -> str:
        """Return the link to a record in the Dynamics web interface."""
        app = f"appid={quote(self.dataverse.app_id)}&" if self.dataverse.app_id else ""
        return f"{self.dataverse.url}/main.aspx?{app}pagetype=entityrecord&etn={entity}&id={record_id}"

    # Lookup ------------------------------------------------------------------------

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search contacts and accounts by the caller's written forms at once; verify each hit."""
        deadline = time.monotonic() + self.timeout
        forms = list(number.search_forms())[:MAX_SEARCH_FORMS]
        contacts, accounts = await asyncio.gather(
            self._query(
                "contacts",
                "contactid,fullname,emailaddress1,_parentcustomerid_value," + ",".join(CONTACT_PHONES),
                phone_filter(CONTACT_PHONES, forms),
                deadline,
                expand="parentcustomerid_account($select=accountid,name)",
            ),
            self._query("accounts", "accountid,name," + ",".join(ACCOUNT_PHONES), phone_filter(ACCOUNT_PHONES, forms), deadline),
        )
        cards = [card for row in contacts if (card := self._contact_card(row, number)) is not None]
        cards += [card for row in accounts if (card := self._account_card(row, number)) is not None]
        return cards

    async def _query(
        self, entity_set: str, select: str, phone_clause: str, deadline: float, expand: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"$select": select, "$filter": phone_clause, "$top": str(MAX_RESULTS)}
        if expand:
            params["$expand"] = expand
        response = await self.http.get(f"{API}/{entity_set}", params=params, budget=time_left(deadline))
        rows = response.data.get("value") if isinstance(response.data, dict) else None
        expect(isinstance(rows, list), self.http.vendor, f"{entity_set} query without a value list")
        return [row for row in rows if isinstance(row, dict)]

    def _contact_card(self, row: dict[str, Any], number: CallerNumber) -> Card | None:
        match = number.best_match([text for key in CONTACT_PHONES if isinstance(text := row.get(key), str) and text])
        contact_id = row.get("contactid")
        if match is None or not isinstance(contact_id, str):
            return None
        account = row.get("parentcustomerid_account") if isinstance(row.get("parentcustomerid_account"), dict) else {}
        company = account.get("name") or row.get("_parentcustomerid_value@OData.Community.Display.V1.FormattedValue")
        account_id = account.get("accountid")
        return self.card(
            match,
            contact_id=f"contacts({contact_id})",
            name=row.get("fullname") if isinstance(row.get("fullname"), str) else None,
            company=company if isinstance(company, str) else None,
            url=self.record_url("contact", contact_id),
            company_url=self.record_url("account", account_id) if isinstance(account_id, str) else None,
        )

    def _account_card(self, row: dict[str, Any], number: CallerNumber) -> Card | None:
        match = number.best_match([text for key in ACCOUNT_PHONES if isinstance(text := row.get(key), str) and text])
        account_id = row.get("accountid")
        if match is None or not isinstance(account_id, str):
            return None
        return self.card(
            match,
            contact_id=f"accounts({account_id})",
            company=row.get("name") if isinstance(row.get("name"), str) else None,
            url=self.record_url("account", account_id),
        )

    # Actions -----------------------------------------------------------------------

    async def do_log_call(self, request: ActionRequest) -> ActionOutcome:
        """Create a completed phone call regarding the contact or account."""
        return await self._phone_call(request, completed=True)

    async def do_create_task(self, request: ActionRequest) -> ActionOutcome:
        """Create an open phone call (a call-back) regarding the contact or account, due in an hour."""
        return await self._phone_call(request, completed=False)

    async def _phone_call(self, request: ActionRequest, *, completed: bool) -> ActionOutcome:
        deadline = time.monotonic() + ACTION_BUDGET
        found = ENTITY_PATH.match(request.contact_id or "")
        if found is None:
            raise self.error(errors.NO_CONTACT, f"{request.contact_id!r} is not a contacts(...) or accounts(...) path")
        entity = found.group(1)[:-1]
        call = request.call
        outgoing = call.direction == "outbound"
        body: dict[str, Any] = {
            "subject": call.subject(self.language) if completed else call.task_subject(self.language),
            "description": call.body(self.language, request.note()),
            "phonenumber": call.number or "",
            "directioncode": outgoing,
            f"regardingobjectid_{entity}@odata.bind": f"/{request.contact_id}",
            "phonecall_activity_parties": [
                {f"partyid_{entity}@odata.bind": f"/{request.contact_id}", "participationtypemask": RECIPIENT if outgoing else SENDER}
            ],
        }
        if completed:
            body["actualdurationminutes"] = (call.duration_seconds + 59) // 60
            body["actualstart"] = _iso(call.start)
            if call.ended_at:
                body["actualend"] = _iso(call.ended_at)
        else:
            body["scheduledend"] = _iso((call.ended_at or datetime.now(timezone.utc)) + TASK_DUE)

        response = await self.http.post(f"{API}/phonecalls", json_body=body, budget=time_left(deadline))
        created = CREATED_ID.search(response.headers.get("OData-EntityId", ""))
        expect(created is not None, self.http.vendor, "created phone call without an OData-EntityId")
        activity_id = created.group(1)
        if completed:
            await self.http.request(
                "PATCH", f"{API}/phonecalls({activity_id})", json_body=COMPLETED, budget=time_left(deadline), retry=False
            )
        return ActionOutcome(url=self.record_url("phonecall", activity_id), record_id=activity_id)


def phone_filter(columns: tuple[str, ...], forms: list[str]) -> str:
    """Return `contains(column,'form') or ...` for every column and written form."""
    clauses = [f"contains({column},'{_literal(form)}')" for column in columns for form in forms]
    return " or ".join(clauses)


def _literal(text: str) -> str:
    """Escape an OData string literal: a quote is doubled."""
    return text.replace("'", "''")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

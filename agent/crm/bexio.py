"""bexio: contacts copied into the local address book and searched there; cards link to bexio.

bexio's contact search matches stored text only (`like`), so a number written
"044 555 01 23" is not found by "+41445550123". The connector copies every contact
instead (API 2.0, personal access token as Bearer; http://docs.bexio.com/):

- `GET /2.0/contact?limit=2000&offset=...`: every contact, page by page;
- `GET /2.0/contact_relation?limit=2000&offset=...`: which person belongs to which company.

Each sync is a full copy, which also removes deleted contacts; an office's few thousand
contacts are a handful of requests.
"""

from __future__ import annotations

import time
from typing import Any

from agent.crm.base import OPEN, OPEN_LINK, ACTION_BUDGET, ActionOutcome, ActionRequest, crm_action, time_left, verify_path
from agent.crm.http import CrmHttp, StaticAuth, Vendor, expect
from agent.crm.ratelimit import RateLimiter
from agent.crm.sync import SYNC_BUDGET, SyncedCrmConnector, SyncResult
from agent.lookup.addressbook import AddressBook, StoredContact
from agent.lookup.connector import Card
from agent.lookup.contact import Contact, ContactPhone
from agent.lookup.numbers import Match
from agent.lookup.settings import BexioSettings

# bexio's largest page (its `limit` maximum).
PAGE_SIZE = 2000

# bexio limits requests per company and minute without publishing the number; a sync
# sends a few requests, so this only keeps a runaway loop polite.
# NOTE: assumed limit, not a documented one.
REQUEST_LIMIT = (60, 60.0)

# contact_type_id values: 1 is a company, 2 a person.
COMPANY = 1

PHONE_FIELDS = (("phone_fixed", "work"), ("phone_fixed_second", "work"), ("phone_mobile", "cell"))


class BexioConnector(SyncedCrmConnector):
    """bexio contacts, synced into the local index."""

    crm = "bexio"
    card_actions = (crm_action(OPEN, OPEN_LINK),)

    def __init__(self, settings: BexioSettings, book: AddressBook, *, timeout: float) -> None:
        super().__init__(settings, book, timeout=timeout, sync_minutes=settings.sync_minutes)
        self.web_url = settings.web_url
        self._http = CrmHttp(
            Vendor(settings.name, settings.label, self.crm, settings.token.source, "crm.renew.bexio"),
            settings.url,
            StaticAuth({"Authorization": f"Bearer {settings.token.secret.value}"}),
            limiters=(RateLimiter(*REQUEST_LIMIT),),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )

    @property
    def http(self) -> CrmHttp:
        return self._http

    def contact_link(self, contact_id: str | int) -> str:
        """Return the link to a contact in bexio's web interface."""
        return f"{self.web_url}/index.php/kontakt/show/id/{contact_id}"

    # Sync --------------------------------------------------------------------------

    async def pull(self) -> SyncResult:
        """Copy every contact and the person-to-company relations."""
        deadline = time.monotonic() + SYNC_BUDGET
        rows = await self._list("/2.0/contact", deadline)
        relations = await self._list("/2.0/contact_relation", deadline)

        companies = {row["id"]: row for row in rows if row.get("contact_type_id") == COMPANY}
        company_of = {
            relation["contact_sub_id"]: relation["contact_id"]
            for relation in relations
            if relation.get("contact_sub_id") is not None and relation.get("contact_id") in companies
        }
        contacts = [self._contact(row, companies.get(company_of.get(row["id"]))) for row in rows]
        result = self.book.import_contacts(self.source, contacts, replace=True)
        self.save_token(None)
        return SyncResult(full=True, updated=result.added + result.updated, removed=result.removed)

    async def _list(self, path: str, deadline: float) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self.http.get(
                path, params={"limit": PAGE_SIZE, "offset": offset, "order_by": "id"}, budget=time_left(deadline)
            )
            expect(isinstance(response.data, list), self.http.vendor, f"{path} without a list")
            page = [row for row in response.data if isinstance(row, dict) and row.get("id") is not None]
            rows += page
            if len(response.data) < PAGE_SIZE:
                return rows
            offset += PAGE_SIZE

    def _contact(self, row: dict[str, Any], company: dict[str, Any] | None) -> Contact:
        is_company = row.get("contact_type_id") == COMPANY
        name_1, name_2 = _text(row.get("name_1")), _text(row.get("name_2"))
        phones = tuple(ContactPhone(text, kind) for key, kind in PHONE_FIELDS if (text := _text(row.get(key))))
        if is_company:
            display = " ".join(part for part in (name_1, name_2) if part) or "?"
            org, company_link = display, None
        else:
            display = " ".join(part for part in (name_2, name_1) if part) or "?"
            org = _text(company.get("name_1")) if company else None
            company_link = self.contact_link(company["id"]) if company else None
        return Contact(
            uid=str(row["id"]),
            display_name=display,
            given_name=None if is_company else name_2,
            family_name=None if is_company else name_1,
            org=org,
            emails=tuple(mail for key in ("mail", "mail_second") if (mail := _text(row.get(key)))),
            phones=phones,
            url=company_link,
            is_company=is_company,
        )

    # Cards and actions -------------------------------------------------------------

    def contact_card(self, stored: StoredContact, match: Match) -> Card:
        contact = stored.contact
        return self.card(
            match,
            contact_id=contact.uid,
            name=None if contact.is_company else contact.display_name,
            company=contact.org,
            url=self.contact_link(contact.uid),
            company_url=contact.url,
        )

    async def do_open(self, request: ActionRequest) -> ActionOutcome:
        """Return the contact's link; opening it needs no request to bexio."""
        return ActionOutcome(url=self.contact_link(request.contact_id or ""))


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _message(data: Any) -> str | None:
    return data.get("message") if isinstance(data, dict) else None

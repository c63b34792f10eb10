"""Microsoft 365: a mailbox's Outlook contacts copied by delta query and searched locally.

Graph cannot filter contacts by phone number, so the connector keeps a copy
(https://learn.microsoft.com/en-us/graph/api/contact-delta). The first round lists
every contact page by page (`@odata.nextLink`) and ends with an `@odata.deltaLink`. The
next sync requests that link and receives only the changes, with removed contacts
marked `@removed`. An expired delta link returns 410 Gone, and the connector then
copies everything again. Sign-in is the app's client credentials (application permission Contacts.Read).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.crm import errors
from agent.crm.base import time_left, verify_path
from agent.crm.entra import EntraAuth
from agent.crm.http import CrmHttp, Vendor, expect
from agent.crm.ratelimit import RateLimiter
from agent.crm.sync import SYNC_BUDGET, SyncedCrmConnector, SyncResult
from agent.crm.tokenfile import token_path
from agent.lookup.addressbook import AddressBook, StoredContact
from agent.lookup.connector import Card, ConnectorError
from agent.lookup.contact import Contact, ContactPhone
from agent.lookup.numbers import Match
from agent.lookup.settings import GraphSettings

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

SELECT = "displayName,givenName,surname,companyName,businessPhones,homePhones,mobilePhone,emailAddresses"

# Contacts per delta page (Prefer: odata.maxpagesize).
PAGE_SIZE = 200

# Graph's Outlook limit is 10,000 requests per 10 minutes per app and mailbox.
REQUEST_LIMIT = (10_000, 600.0)

# A delta round follows at most this many pages, so a server that keeps sending next
# links cannot hold a sync forever.
MAX_PAGES = 10_000


class GraphConnector(SyncedCrmConnector):
    """Outlook contacts of one mailbox, synced into the local index."""

    crm = "Microsoft 365"

    def __init__(self, settings: GraphSettings, book: AddressBook, data_dir: Path, *, timeout: float) -> None:
        super().__init__(settings, book, timeout=timeout, sync_minutes=settings.sync_minutes)
        self.graph_settings = settings
        vendor = Vendor(settings.name, settings.label, self.crm, settings.client_secret.source, "crm.renew.entra")
        self.auth = EntraAuth(settings, GRAPH_SCOPE, vendor, token_path(data_dir, settings.name))
        self._http = CrmHttp(
            vendor,
            settings.url,
            self.auth,
            limiters=(RateLimiter(*REQUEST_LIMIT),),
            message_of=graph_message,
            verify=verify_path(settings.ca_file),
        )

    @property
    def http(self) -> CrmHttp:
        return self._http

    async def stop(self) -> None:
        await super().stop()
        self.auth.close()

    def delta_path(self) -> str:
        """Return the first delta request of the configured mailbox and folder."""
        user = quote(self.graph_settings.user, safe="@")
        if self.graph_settings.folder:
            return f"/v1.0/users/{user}/contactFolders/{quote(self.graph_settings.folder, safe='')}/contacts/delta"
        return f"/v1.0/users/{user}/contacts/delta"

    async def pull(self) -> SyncResult:
        """Run one delta round; a rejected delta link starts a full copy."""
        token = self.book.sync_state(self.source).sync_token
        try:
            return await self._round(token)
        except ConnectorError as error:
            if token is None or error.params.get("status") != 410:
                raise
        return await self._round(None)

    async def _round(self, delta_link: str | None) -> SyncResult:
        deadline = time.monotonic() + SYNC_BUDGET
        full = delta_link is None
        url = delta_link or self.delta_path()
        params: dict[str, Any] | None = None if delta_link else {"$select": SELECT}
        seen: set[str] = set()
        updated = removed = 0

        for _ in range(MAX_PAGES):
            response = await self.http.get(
                url,
                params=params,
                headers={"Prefer": f"odata.maxpagesize={PAGE_SIZE}"},
                budget=time_left(deadline),
            )
            data = response.data if isinstance(response.data, dict) else {}
            items = data.get("value")
            expect(isinstance(items, list), self.http.vendor, "delta page without a value list")
            changed: list[Contact] = []
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    continue
                if "@removed" in item:
                    removed += self.book.remove(self.source, uid=item["id"])
                    continue
                seen.add(item["id"])
                changed.append(graph_contact(item))
            if changed:
                self.book.import_contacts(self.source, changed)
                updated += len(changed)

            if isinstance(data.get("@odata.nextLink"), str):
                url, params = data["@odata.nextLink"], None
                continue
            link = data.get("@odata.deltaLink")
            expect(isinstance(link, str), self.http.vendor, "last delta page without a deltaLink")
            if full:
                for stored in self.book.contacts(self.source):
                    if stored.contact.uid not in seen:
                        removed += self.book.remove(self.source, uid=stored.contact.uid)
            self.save_token(link)
            return SyncResult(full=full, updated=updated, removed=removed)
        raise self.error(errors.INVALID_RESPONSE, f"delta round longer than {MAX_PAGES} pages")

    def contact_card(self, stored: StoredContact, match: Match) -> Card:
        # NOTE: Outlook contacts have no documented web link, so the cards have none.
        contact = stored.contact
        return self.card(match, contact_id=contact.uid, name=contact.display_name, company=contact.org)


def graph_contact(item: dict[str, Any]) -> Contact:
    """Turn a Graph contact resource into an address book contact."""
    phones = [ContactPhone(text, "work") for text in item.get("businessPhones") or [] if isinstance(text, str) and text]
    phones += [ContactPhone(text, "home") for text in item.get("homePhones") or [] if isinstance(text, str) and text]
    if isinstance(item.get("mobilePhone"), str) and item["mobilePhone"]:
        phones.append(ContactPhone(item["mobilePhone"], "cell"))
    emails = tuple(
        entry["address"]
        for entry in item.get("emailAddresses") or []
        if isinstance(entry, dict) and isinstance(entry.get("address"), str)
    )
    given, family = _text(item.get("givenName")), _text(item.get("surname"))
    company = _text(item.get("companyName"))
    display = _text(item.get("displayName")) or " ".join(p for p in (given, family) if p) or company or "?"
    return Contact(
        uid=item["id"],
        display_name=display,
        given_name=given,
        family_name=family,
        org=company,
        emails=emails,
        phones=tuple(phones),
    )


def graph_message(data: Any) -> str | None:
    """Return the message of a Graph or Dataverse error object ({"error": {"code", "message"}})."""
    error = data.get("error") if isinstance(data, dict) else None
    return error.get("message") if isinstance(error, dict) else None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None

"""CardDAV (RFC 6352): copy an address book into the local index, then search it locally.

CardDAV servers match TEL values only as literal text (`1234567` does not find
`044 123 45 67` on Radicale), so ring-time queries to the server cannot work. The
connector syncs instead:

1. Find the address book: the configured URL, or, when that is not an address book,
   the first one under the user's `addressbook-home-set` (RFC 6352 section 7.1).
2. With a sync token, request the changes since it (`sync-collection` REPORT, RFC 6578).
   Without one, the same REPORT with an empty token lists every card.
3. A server without `sync-token` support is listed with PROPFIND (href and ETag of every
   card) and compared with the local copy; an unchanged `getctag` skips the listing.
4. Fetch new and changed cards with `addressbook-multiget` in batches, and delete the
   local copies of removed ones.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, urljoin, urlsplit
from xml.etree.ElementTree import Element

import httpx
from defusedxml.ElementTree import fromstring

from agent.lookup.addressbook import AddressBook, AddressBookConnector, StoredContact, SyncState
from agent.lookup.connector import Card, ConnectorError, ConnectorHealth, ErrorCode
from agent.lookup.numbers import Match
from agent.lookup.settings import CardDavSettings
from agent.lookup.vcard import VCardError, read_vcards

log = logging.getLogger("ringboard.lookup.carddav")

DAV = "{DAV:}"
CARDDAV = "{urn:ietf:params:xml:ns:carddav}"
CALENDARSERVER = "{http://calendarserver.org/ns/}"

# Cards fetched per addressbook-multiget request: large enough that a few thousand
# contacts take a few dozen requests, small enough for any server's request size limit.
MULTIGET_BATCH = 100

# One sync request may take this long. A full listing of a large address book is slower
# than a ring-time lookup, but it runs in the background.
SYNC_REQUEST_TIMEOUT = 30.0

# A failed sync is retried after this many seconds (or the sync interval, if shorter).
RETRY_SECONDS = 60.0

# A server response larger than this is rejected, so a broken server cannot fill memory.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

PROPFIND_COLLECTION = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:cs="http://calendarserver.org/ns/">
  <d:prop><d:resourcetype/><d:sync-token/><cs:getctag/><d:current-user-principal/></d:prop>
</d:propfind>"""

PROPFIND_HOME_SET = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
  <d:prop><card:addressbook-home-set/></d:prop>
</d:propfind>"""

PROPFIND_MEMBERS = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:">
  <d:prop><d:resourcetype/><d:getetag/></d:prop>
</d:propfind>"""

SYNC_COLLECTION = """<?xml version="1.0" encoding="utf-8"?>
<d:sync-collection xmlns:d="DAV:">
  <d:sync-token>{token}</d:sync-token>
  <d:sync-level>1</d:sync-level>
  <d:prop><d:getetag/></d:prop>
</d:sync-collection>"""

MULTIGET = """<?xml version="1.0" encoding="utf-8"?>
<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
  <d:prop><d:getetag/><card:address-data/></d:prop>
{hrefs}
</card:addressbook-multiget>"""


class SyncTokenRejected(Exception):
    """The server no longer accepts the stored sync token; a full sync is needed."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Counts of the cards one sync updated and removed."""

    full: bool
    updated: int
    removed: int


@dataclass(frozen=True, slots=True)
class _Collection:
    url: str
    sync_token: str | None
    ctag: str | None


class CardDavConnector(AddressBookConnector):
    """A CardDAV address book, synced periodically and searched in the local index."""

    def __init__(self, settings: CardDavSettings, book: AddressBook, *, use_sync_collection: bool = True) -> None:
        super().__init__(settings.name, settings.label, book, logo=settings.logo)
        self.settings = settings
        # Tests turn this off to exercise the PROPFIND listing against a server that has tokens.
        self.use_sync_collection = use_sync_collection
        auth = None
        if settings.username is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.value if settings.password else "")
        self._client = httpx.AsyncClient(
            auth=auth,
            timeout=httpx.Timeout(SYNC_REQUEST_TIMEOUT),
            headers={"User-Agent": "Ringboard"},
            follow_redirects=True,
        )
        self._collection_url: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_error: ConnectorError | None = None

    async def start(self) -> None:
        """Start syncing now and then every `sync_minutes`."""
        self._task = asyncio.create_task(self._sync_forever(), name=f"carddav-sync-{self.name}")

    async def stop(self) -> None:
        """Stop syncing and close the HTTP connections."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.aclose()

    async def health(self) -> ConnectorHealth:
        """Return the local copy's size, the last good sync and the last sync error."""
        state = self.book.sync_state(self.source)
        error = self._last_error
        return ConnectorHealth(
            ok=error is None,
            code=error.code if error else None,
            params=error.params if error else {},
            contacts=self.book.count(self.source),
            synced_at=state.synced_at,
        )

    def contact_card(self, stored: StoredContact, match: Match, url: str | None = None) -> Card:
        """Build a card, with a link to the contact when `contact_url` is configured."""
        template = self.settings.contact_url
        link = template.replace("{uid}", quote(stored.contact.uid, safe="")) if template else None
        return super().contact_card(stored, match, link)

    # Syncing -----------------------------------------------------------------------

    async def sync(self) -> SyncResult:
        """Bring the local copy up to date with the server; raise ConnectorError on failure."""
        try:
            result = await self._sync()
        except ConnectorError as error:
            self._last_error = error
            previous = self.book.sync_state(self.source)
            self.book.save_sync_state(
                self.source, SyncState(previous.sync_token, previous.ctag, previous.synced_at, error.code)
            )
            raise
        self._last_error = None
        return result

    async def _sync_forever(self) -> None:
        interval = self.settings.sync_minutes * 60.0
        while True:
            try:
                result = await self.sync()
            except ConnectorError as error:
                log.warning(
                    "connector %s: sync of %s failed (%s): %s", self.name, self.settings.url, error.code, error.detail
                )
                await asyncio.sleep(min(RETRY_SECONDS, interval))
                continue
            except Exception:
                log.exception("connector %s: sync of %s raised an unexpected error", self.name, self.settings.url)
                await asyncio.sleep(min(RETRY_SECONDS, interval))
                continue
            if result.updated or result.removed:
                log.info(
                    "connector %s: synced %s (%s): %d cards updated, %d removed",
                    self.name,
                    self.settings.url,
                    "full" if result.full else "changes",
                    result.updated,
                    result.removed,
                )
            await asyncio.sleep(interval)

    async def _sync(self) -> SyncResult:
        collection = await self._find_collection()
        state = self.book.sync_state(self.source)

        if self.use_sync_collection and collection.sync_token is not None:
            try:
                return await self._sync_changes(collection, state)
            except SyncTokenRejected:
                log.info("connector %s: the server rejected the sync token; syncing everything", self.name)
                return await self._sync_changes(collection, SyncState())
        return await self._sync_listing(collection, state)

    async def _sync_changes(self, collection: _Collection, state: SyncState) -> SyncResult:
        """Sync with a `sync-collection` REPORT; an empty token lists every card."""
        full = not state.sync_token
        body = SYNC_COLLECTION.format(token=_xml_text(state.sync_token or ""))
        response = await self._request("REPORT", collection.url, body, depth=None, sync_report=True)
        root = _parse_xml(response)

        changed: dict[str, str | None] = {}
        removed: list[str] = []
        for item in root.findall(f"{DAV}response"):
            href = _href(item)
            if href is None or _same_path(href, collection.url):
                continue
            status = item.findtext(f"{DAV}status") or ""
            if " 404 " in f"{status} ":
                removed.append(href)
                continue
            changed[href] = _etag(item)
        token = root.findtext(f"{DAV}sync-token") or collection.sync_token

        known = self.book.etags(self.source)
        to_fetch = [href for href, etag in changed.items() if etag is None or known.get(href) != etag]
        updated = await self._fetch(collection.url, to_fetch)
        if full:
            removed += [href for href in known if href not in changed]
        removed_count = sum(self.book.remove(self.source, href=href) for href in removed)
        self._save_state(token, collection.ctag)
        return SyncResult(full=full, updated=updated, removed=removed_count)

    async def _sync_listing(self, collection: _Collection, state: SyncState) -> SyncResult:
        """Sync by listing every card's ETag with PROPFIND and comparing with the local copy."""
        if collection.ctag is not None and collection.ctag == state.ctag and state.synced_at is not None:
            self._save_state(None, collection.ctag)
            return SyncResult(full=True, updated=0, removed=0)

        response = await self._request("PROPFIND", collection.url, PROPFIND_MEMBERS, depth="1")
        root = _parse_xml(response)
        listed: dict[str, str | None] = {}
        for item in root.findall(f"{DAV}response"):
            href = _href(item)
            if href is None or _same_path(href, collection.url) or item.find(f".//{DAV}collection") is not None:
                continue
            listed[href] = _etag(item)

        known = self.book.etags(self.source)
        to_fetch = [href for href, etag in listed.items() if etag is None or known.get(href) != etag]
        updated = await self._fetch(collection.url, to_fetch)
        removed = sum(self.book.remove(self.source, href=href) for href in known if href not in listed)
        self._save_state(None, collection.ctag)
        return SyncResult(full=True, updated=updated, removed=removed)

    async def _fetch(self, collection_url: str, hrefs: list[str]) -> int:
        """Fetch cards with addressbook-multiget and store them; return how many were stored."""
        stored = 0
        for start in range(0, len(hrefs), MULTIGET_BATCH):
            batch = hrefs[start : start + MULTIGET_BATCH]
            body = MULTIGET.format(hrefs="\n".join(f"  <d:href>{_xml_text(href)}</d:href>" for href in batch))
            root = _parse_xml(await self._request("REPORT", collection_url, body, depth="1"))
            for item in root.findall(f"{DAV}response"):
                href = _href(item)
                data = item.findtext(f".//{CARDDAV}address-data")
                if href is None or not data:
                    continue
                try:
                    contacts = read_vcards(data)
                except VCardError as error:
                    log.warning("connector %s: card %s skipped: %s", self.name, href, error)
                    continue
                if contacts:
                    self.book.upsert(self.source, contacts[0], href=href, etag=_etag(item))
                    stored += 1
        return stored

    def _save_state(self, token: str | None, ctag: str | None) -> None:
        self.book.save_sync_state(self.source, SyncState(token, ctag, datetime.now(timezone.utc), None))

    # Discovery ---------------------------------------------------------------------

    async def _find_collection(self) -> _Collection:
        """Return the address book's URL and its current sync token and ctag."""
        url = self._collection_url or self.settings.url
        properties = await self._collection_properties(url)
        if properties.find(f".//{DAV}resourcetype/{CARDDAV}addressbook") is None:
            url = await self._discover(url, properties)
            properties = await self._collection_properties(url)
        self._collection_url = url
        return _Collection(
            url=url,
            sync_token=properties.findtext(f".//{DAV}sync-token") or None,
            ctag=properties.findtext(f".//{CALENDARSERVER}getctag") or None,
        )

    async def _collection_properties(self, url: str) -> Element:
        root = _parse_xml(await self._request("PROPFIND", url, PROPFIND_COLLECTION, depth="0"))
        response = root.find(f"{DAV}response")
        if response is None:
            raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"PROPFIND {url} returned no properties")
        return response

    async def _discover(self, url: str, properties: Element) -> str:
        """Find the first address book of the user, from the principal's addressbook-home-set."""
        principal = properties.findtext(f".//{DAV}current-user-principal/{DAV}href")
        if not principal:
            raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"{url} is not an address book and names no principal")
        principal_url = urljoin(url, principal)
        root = _parse_xml(await self._request("PROPFIND", principal_url, PROPFIND_HOME_SET, depth="0"))
        home = root.findtext(f".//{CARDDAV}addressbook-home-set/{DAV}href")
        if not home:
            raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"principal {principal_url} has no addressbook-home-set")

        home_url = urljoin(url, home)
        root = _parse_xml(await self._request("PROPFIND", home_url, PROPFIND_MEMBERS, depth="1"))
        for item in root.findall(f"{DAV}response"):
            href = _href(item)
            if href and item.find(f".//{DAV}resourcetype/{CARDDAV}addressbook") is not None:
                found = urljoin(url, href)
                log.info("connector %s: using address book %s", self.name, found)
                return found
        raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"no address book found under {home_url}")

    async def _request(
        self, method: str, url: str, body: str, *, depth: str | None, sync_report: bool = False
    ) -> bytes:
        """Send one WebDAV request and return the multistatus body; raise ConnectorError on failure."""
        headers = {"Content-Type": "application/xml; charset=utf-8"}
        if depth is not None:
            headers["Depth"] = depth
        try:
            response = await self._client.request(method, url, content=body.encode("utf-8"), headers=headers)
        except httpx.TimeoutException as error:
            raise ConnectorError(ErrorCode.TIMEOUT, f"{method} {url}: {type(error).__name__}") from error
        except httpx.TransportError as error:
            raise ConnectorError(ErrorCode.UNREACHABLE, f"{method} {url}: {error}") from error

        status = response.status_code
        # RFC 6578 rejects a stale token with the DAV:valid-sync-token precondition (403 on
        # Radicale 3.9). Some servers send 409 or 400 with it.
        if sync_report and status in (400, 403, 409) and b"valid-sync-token" in response.content:
            raise SyncTokenRejected()
        if status in (401, 403):
            raise ConnectorError(ErrorCode.AUTH_FAILED, f"{method} {url}: HTTP {status}", status=status)
        if status != 207:
            raise ConnectorError(ErrorCode.HTTP_ERROR, f"{method} {url}: HTTP {status}", status=status)
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise ConnectorError(
                ErrorCode.INVALID_RESPONSE, f"{method} {url}: response larger than {MAX_RESPONSE_BYTES} bytes"
            )
        return response.content


def _parse_xml(body: bytes) -> Element:
    try:
        return fromstring(body)
    except Exception as error:  # defusedxml raises ParseError and its own DefusedXmlException types
        raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"the server's XML cannot be read: {error}") from error


def _href(item: Element) -> str | None:
    text = item.findtext(f"{DAV}href")
    return text.strip() if text else None


def _etag(item: Element) -> str | None:
    text = item.findtext(f".//{DAV}getetag")
    return text.strip() if text else None


def _same_path(href: str, url: str) -> bool:
    return urlsplit(href).path.rstrip("/") == urlsplit(url).path.rstrip("/")


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

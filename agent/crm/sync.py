"""Synced CRM connectors: a copy of the CRM's contacts in the local address book, searched there.

Used where the CRM cannot search phone numbers usefully (bexio matches literal text,
Microsoft Graph cannot filter contacts by phone at all). A background task syncs now
and then every `sync_minutes`; a failed sync is retried after a minute and logged once
per error with a count.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.crm.base import CrmConnector
from agent.crm.failures import RepeatLog
from agent.lookup.addressbook import AddressBook, StoredContact, SyncState
from agent.lookup.connector import Card, ConnectorError, ConnectorHealth
from agent.lookup.numbers import CallerNumber, Match
from agent.lookup.settings import CrmSettings

log = logging.getLogger("ringboard.crm.sync")

# A failed sync is tried again after this many seconds (or the sync interval, if shorter).
RETRY_SECONDS = 60.0

# One sync may take this long in all; a full copy of a large CRM takes a few dozen requests.
SYNC_BUDGET = 300.0


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Counts of one sync: contacts stored and removed, and whether it copied everything."""

    full: bool
    updated: int
    removed: int


class SyncedCrmConnector(CrmConnector):
    """A CRM copied into the local address book (source = connector name) and searched there."""

    kind = "synced"

    def __init__(self, settings: CrmSettings, book: AddressBook, *, timeout: float, sync_minutes: int) -> None:
        super().__init__(settings, timeout=timeout)
        self.book = book
        self.source = settings.name
        self.sync_minutes = sync_minutes
        self._task: asyncio.Task[None] | None = None
        self._failures = RepeatLog(log)

    @abc.abstractmethod
    async def pull(self) -> SyncResult:
        """Copy the CRM's changes into the address book; raise ConnectorError on failure."""

    @abc.abstractmethod
    def contact_card(self, stored: StoredContact, match: Match) -> Card:
        """Build the card of a stored contact."""

    async def start(self) -> None:
        """Start syncing now and then every `sync_minutes`."""
        self._task = asyncio.create_task(self._sync_forever(), name=f"crm-sync-{self.name}")

    async def stop(self) -> None:
        """Stop syncing and close the HTTP connections."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await super().stop()

    async def search(self, number: CallerNumber) -> list[Card]:
        """Return cards of the local copy's contacts whose numbers match."""
        return [self.contact_card(stored, match) for stored, match in self.book.find(number, [self.source])]

    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Search the local copy; a failed sync does not fail lookups of the copy."""
        return await self.search(number)

    async def health(self) -> ConnectorHealth:
        """Return the copy's size, the last good sync and the last sync's error."""
        state = self.book.sync_state(self.source)
        error = self._last_error
        return ConnectorHealth(
            ok=error is None,
            code=error.code if error else None,
            params=error.params if error else {},
            contacts=self.book.count(self.source),
            synced_at=state.synced_at,
        )

    async def sync(self) -> SyncResult:
        """Sync once, recording the outcome in the sync state; raise ConnectorError on failure."""
        try:
            result = await self.pull()
        except ConnectorError as error:
            self._last_error = error
            previous = self.book.sync_state(self.source)
            self.book.save_sync_state(
                self.source, SyncState(previous.sync_token, previous.ctag, previous.synced_at, error.code)
            )
            raise
        self._last_error = None
        self._failures.recovered(self.name)
        return result

    def save_token(self, token: str | None) -> None:
        """Record a successful sync and the token of the next incremental one."""
        self.book.save_sync_state(self.source, SyncState(token, None, datetime.now(timezone.utc), None))

    async def _sync_forever(self) -> None:
        interval = self.sync_minutes * 60.0
        while True:
            try:
                result = await self.sync()
            except ConnectorError as error:
                self._failures.failed(
                    f"{self.name}:{error.code}", "connector %s: sync failed (%s): %s", self.name, error.code, error.detail
                )
                await asyncio.sleep(min(RETRY_SECONDS, interval))
                continue
            except Exception:
                log.exception("connector %s: sync raised an unexpected error", self.name)
                await asyncio.sleep(min(RETRY_SECONDS, interval))
                continue
            if result.updated or result.removed:
                log.info(
                    "connector %s: synced (%s): %d contacts stored, %d removed",
                    self.name, "full" if result.full else "changes", result.updated, result.removed,
                )
            await asyncio.sleep(interval)

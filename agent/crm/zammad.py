"""Zammad: users searched by phone at ring time; phone tickets created from cards.

API (https://docs.zammad.org/en/latest/api-intro.html, .../api/user.html and
.../api/ticket/index.html), access token as `Authorization: Token token=<token>`:

- `GET /api/v1/users/search?query=...&limit=10&expand=true`: Zammad matches the query
  in the stored text, so the caller's common written forms are searched at once. Every
  hit is verified here. `expand` adds the organisation's name.
- `POST /api/v1/tickets`: a ticket of the card's user with a phone article.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.crm import errors
from agent.crm.base import (
    ACTION_BUDGET,
    CREATE_TICKET,
    ActionOutcome,
    ActionRequest,
    CrmConnector,
    crm_action,
    time_left,
    verify_path,
    written_forms,
)
from agent.crm.http import CrmHttp, StaticAuth, Vendor, expect
from agent.lookup.connector import Card
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import ZammadSettings

MAX_RESULTS = 10

# Ticket states an action may ask for; automatic logging files a logged call as closed.
TICKET_STATES = ("new", "open", "closed")


class ZammadConnector(CrmConnector):
    """Zammad users, searched by phone at ring time."""

    crm = "Zammad"
    card_actions = (crm_action(CREATE_TICKET),)

    def __init__(self, settings: ZammadSettings, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.zammad = settings
        self._http = CrmHttp(
            Vendor(settings.name, settings.label, self.crm, settings.token.source, "crm.renew.zammad"),
            settings.url,
            StaticAuth({"Authorization": f"Token token={settings.token.secret.value}"}),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )

    @property
    def http(self) -> CrmHttp:
        return self._http

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search users by the caller's written forms at once; verify each hit."""
        deadline = time.monotonic() + self.timeout
        answers = await asyncio.gather(*(self._search(form, deadline) for form in written_forms(number)))

        cards: dict[str, Card] = {}
        for users in answers:
            for user in users:
                card = self._card(user, number)
                if card is not None and card.contact_id not in cards:
                    cards[card.contact_id or ""] = card
        return list(cards.values())

    async def _search(self, query: str, deadline: float) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/api/v1/users/search",
            params={"query": query, "limit": MAX_RESULTS, "expand": "true"},
            budget=time_left(deadline),
        )
        expect(isinstance(response.data, list), self.http.vendor, "user search without a list")
        return [user for user in response.data if isinstance(user, dict)]

    def _card(self, user: dict[str, Any], number: CallerNumber) -> Card | None:
        match = number.best_match([text for key in ("phone", "mobile") if isinstance(text := user.get(key), str) and text])
        if match is None or user.get("id") is None:
            return None
        name = " ".join(part for part in (user.get("firstname"), user.get("lastname")) if isinstance(part, str) and part)
        org_id = user.get("organization_id")
        company = user.get("organization")
        return self.card(
            match,
            contact_id=str(user["id"]),
            name=name or user.get("email") or None,
            company=company if isinstance(company, str) else None,
            url=f"{self.zammad.url}/#user/profile/{user['id']}",
            company_url=f"{self.zammad.url}/#organization/profile/{org_id}" if org_id else None,
        )

    def auto_action(self, mode: str) -> tuple[str, dict[str, Any]] | None:
        """File a logged call as a closed ticket and a call-back as a new one."""
        if mode == "log":
            return CREATE_TICKET, {"state": "closed"}
        if mode == "task":
            return CREATE_TICKET, {"state": "new"}
        return None

    async def do_create_ticket(self, request: ActionRequest) -> ActionOutcome:
        """Create a ticket of the card's user with the call as an internal phone article."""
        deadline = time.monotonic() + ACTION_BUDGET
        if not (request.contact_id or "").isdigit():
            raise self.error(errors.NO_CONTACT, f"{request.contact_id!r} is not a Zammad user id")
        state = request.params.get("state", "new")
        if state not in TICKET_STATES:
            raise self.error(errors.REJECTED, f"ticket state {state!r} is not one of {TICKET_STATES}", status=None, message=None)
        call = request.call
        subject = call.subject(self.language)
        ticket = {
            "title": subject,
            "group": self.zammad.group,
            "customer_id": int(request.contact_id or 0),
            "state": state,
            "article": {"subject": subject, "body": call.body(self.language, request.note()), "type": "phone", "internal": True},
        }
        response = await self.http.post("/api/v1/tickets", json_body=ticket, budget=time_left(deadline))
        ticket_id = response.data.get("id") if isinstance(response.data, dict) else None
        expect(ticket_id is not None, self.http.vendor, "created ticket without an id")
        return ActionOutcome(url=f"{self.zammad.url}/#ticket/zoom/{ticket_id}", record_id=str(ticket_id))


def _message(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    return data.get("error_human") or data.get("error")

"""Zendesk Support: users searched by phone at ring time; tickets created from cards.

API (https://developer.zendesk.com/documentation/voice/talk-partner-edition/retrieving-the-zendesk-user-id-of-a-caller/,
https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ and
https://developer.zendesk.com/api-reference/introduction/rate-limits), API token as Basic
auth `{email}/token:{token}`:

- `GET /api/v2/users/search.json?query=phone:*<digits>&include=organizations`: Zendesk
  tells telephony integrations to send digits only, after a leading `*` that matches
  any written form before them. The query therefore has the caller's national
  significant number.
- `POST /api/v2/tickets.json`: a ticket requested by the card's user, with the call as a
  private comment.
"""

from __future__ import annotations

import base64
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
)
from agent.crm.http import CrmHttp, StaticAuth, Vendor, expect
from agent.crm.ratelimit import RateLimiter
from agent.lookup.connector import Card
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import ZendeskSettings

# Zendesk's account-wide limit on the smallest plan (Team): 200 requests per minute.
REQUEST_LIMIT = (200, 60.0)

MAX_RESULTS = 10

# Ticket statuses an action may ask for; automatic logging files a logged call as solved.
TICKET_STATUSES = ("new", "open", "pending", "solved")


class ZendeskConnector(CrmConnector):
    """Zendesk users, searched by phone at ring time."""

    crm = "Zendesk"
    card_actions = (crm_action(CREATE_TICKET),)

    def __init__(self, settings: ZendeskSettings, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.base = settings.url
        credentials = base64.b64encode(f"{settings.email}/token:{settings.token.secret.value}".encode()).decode()
        self._http = CrmHttp(
            Vendor(settings.name, settings.label, self.crm, settings.token.source, "crm.renew.zendesk"),
            settings.url,
            StaticAuth({"Authorization": f"Basic {credentials}"}),
            limiters=(RateLimiter(*REQUEST_LIMIT),),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )

    @property
    def http(self) -> CrmHttp:
        return self._http

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search users whose phone ends with the caller's national number; verify each hit."""
        assert number.number is not None
        response = await self.http.get(
            "/api/v2/users/search.json",
            params={"query": f"phone:*{number.number.national}", "include": "organizations", "per_page": MAX_RESULTS},
            budget=self.timeout,
        )
        data = response.data if isinstance(response.data, dict) else {}
        users = data.get("users")
        expect(isinstance(users, list), self.http.vendor, "user search without a users list")
        organizations = {
            org.get("id"): org.get("name")
            for org in data.get("organizations") or []
            if isinstance(org, dict)
        }

        cards: list[Card] = []
        for user in users[:MAX_RESULTS]:
            if not isinstance(user, dict) or user.get("id") is None:
                continue
            match = number.best_match([user["phone"]] if isinstance(user.get("phone"), str) else [])
            if match is None:
                continue
            org_id = user.get("organization_id")
            company = organizations.get(org_id)
            cards.append(
                self.card(
                    match,
                    contact_id=str(user["id"]),
                    name=user.get("name") if isinstance(user.get("name"), str) else None,
                    company=company if isinstance(company, str) else None,
                    url=f"{self.base}/agent/users/{user['id']}",
                    company_url=f"{self.base}/agent/organizations/{org_id}" if org_id else None,
                )
            )
        return cards

    def auto_action(self, mode: str) -> tuple[str, dict[str, Any]] | None:
        """File a logged call as a solved ticket and a call-back as an open one."""
        if mode == "log":
            return CREATE_TICKET, {"status": "solved"}
        if mode == "task":
            return CREATE_TICKET, {"status": "open"}
        return None

    async def do_create_ticket(self, request: ActionRequest) -> ActionOutcome:
        """Create a ticket requested by the card's user, with the call as a private comment."""
        deadline = time.monotonic() + ACTION_BUDGET
        if not (request.contact_id or "").isdigit():
            raise self.error(errors.NO_CONTACT, f"{request.contact_id!r} is not a Zendesk user id")
        status = request.params.get("status", "new")
        if status not in TICKET_STATUSES:
            raise self.error(errors.REJECTED, f"ticket status {status!r} is not one of {TICKET_STATUSES}", status=None, message=None)
        call = request.call
        ticket = {
            "subject": call.subject(self.language),
            "comment": {"body": call.body(self.language, request.note()), "public": False},
            "requester_id": int(request.contact_id or 0),
            "status": status,
        }
        # NOTE: Zendesk may refuse a solved ticket without an assignee; automatic logging
        # relies on the API user becoming the assignee, as an agent creating a ticket does.
        response = await self.http.post("/api/v2/tickets.json", json_body={"ticket": ticket}, budget=time_left(deadline))
        created = response.data.get("ticket") if isinstance(response.data, dict) else None
        ticket_id = created.get("id") if isinstance(created, dict) else None
        expect(ticket_id is not None, self.http.vendor, "created ticket without an id")
        return ActionOutcome(url=f"{self.base}/agent/tickets/{ticket_id}", record_id=str(ticket_id))


def _message(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        return error.get("message") or error.get("title")
    return data.get("description") or error

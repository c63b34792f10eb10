"""Pipedrive: persons searched at ring time; call activities, tasks and persons created.

API (https://developers.pipedrive.com/docs/api/v1/Persons and
https://developers.pipedrive.com/docs/api/v1/Activities), API token in the `x-api-token`
header (https://pipedrive.readme.io/docs/core-api-concepts-authentication):

- `GET /v1/persons/search?term=...&fields=phone`: the term may appear anywhere in a
  stored number, as written. The search runs with the caller's national significant
  number and its national format, and every hit is verified here.
- `GET /v1/users/me`: the company's domain for record links.
- `POST /v1/activities` (type "call", done or to do) and `POST /v1/persons`: the actions.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import phonenumbers

from agent.crm import errors
from agent.crm.base import (
    ACTION_BUDGET,
    CREATE_CONTACT,
    CREATE_TASK,
    LOG_CALL,
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
from agent.lookup.numbers import CallerNumber, Match
from agent.lookup.settings import PipedriveSettings

# Pipedrive's documented limits: the Search API allows 10 requests per 2 s per token,
# and API-token requests burst at 20 per 2 s on the lowest plan (higher plans allow more).
SEARCH_LIMIT = (10, 2.0)
GENERAL_LIMIT = (20, 2.0)

MAX_RESULTS = 10


class PipedriveConnector(CrmConnector):
    """Pipedrive persons, searched by phone at ring time."""

    crm = "Pipedrive"
    card_actions = (crm_action(LOG_CALL), crm_action(CREATE_TASK))
    number_actions = (crm_action(CREATE_CONTACT),)

    def __init__(self, settings: PipedriveSettings, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.general = RateLimiter(*GENERAL_LIMIT)
        self.search_limit = RateLimiter(*SEARCH_LIMIT)
        self._http = CrmHttp(
            Vendor(settings.name, settings.label, self.crm, settings.token.source, "crm.renew.pipedrive"),
            settings.url,
            StaticAuth({"x-api-token": settings.token.secret.value}),
            limiters=(self.general,),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )
        self._web_url = settings.web_url

    @property
    def http(self) -> CrmHttp:
        return self._http

    # Lookup ------------------------------------------------------------------------

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search persons by the caller's number in two written forms; verify each hit."""
        deadline = time.monotonic() + self.timeout
        await self._load_web_url(deadline)
        answers = await asyncio.gather(*(self._search_term(term, deadline) for term in search_terms(number)))

        cards: dict[str, Card] = {}
        for items in answers:
            for item in items:
                card = self._card(item, number)
                if card is not None and card.contact_id not in cards:
                    cards[card.contact_id or ""] = card
        return list(cards.values())

    async def _search_term(self, term: str, deadline: float) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/v1/persons/search",
            params={"term": term, "fields": "phone", "exact_match": "false", "limit": MAX_RESULTS},
            budget=time_left(deadline),
            limiters=(self.general, self.search_limit),
        )
        data = response.data if isinstance(response.data, dict) else {}
        expect(data.get("success") is True, self.http.vendor, "persons search without success")
        items = (data.get("data") or {}).get("items") if isinstance(data.get("data"), dict) else []
        return [entry["item"] for entry in items or [] if isinstance(entry, dict) and isinstance(entry.get("item"), dict)]

    def _card(self, item: dict[str, Any], number: CallerNumber) -> Card | None:
        phones = [phone for phone in item.get("phones") or [] if isinstance(phone, str)]
        match: Match | None = number.best_match(phones)
        if match is None or item.get("id") is None:
            return None
        person_id = str(item["id"])
        organization = item.get("organization") if isinstance(item.get("organization"), dict) else {}
        org_id = organization.get("id")
        return self.card(
            match,
            contact_id=person_id,
            name=item.get("name") if isinstance(item.get("name"), str) else None,
            company=organization.get("name") if isinstance(organization.get("name"), str) else None,
            url=self._link(f"person/{person_id}"),
            company_url=self._link(f"organization/{org_id}") if org_id is not None else None,
        )

    async def _load_web_url(self, deadline: float) -> None:
        """Read the company's domain once (GET /v1/users/me), unless `web_url` sets it."""
        if self._web_url is not None:
            return
        response = await self.http.get("/v1/users/me", budget=time_left(deadline))
        data = response.data.get("data") if isinstance(response.data, dict) else None
        domain = data.get("company_domain") if isinstance(data, dict) else None
        expect(isinstance(domain, str) and domain.isascii() and domain.replace("-", "").isalnum(),
               self.http.vendor, "current user without a company_domain")
        self._web_url = f"https://{domain}.pipedrive.com"

    def _link(self, path: str) -> str | None:
        return f"{self._web_url}/{path}" if self._web_url else None

    # Actions -----------------------------------------------------------------------

    async def do_log_call(self, request: ActionRequest) -> ActionOutcome:
        """Add a done call activity to the person."""
        return await self._activity(request, done=True)

    async def do_create_task(self, request: ActionRequest) -> ActionOutcome:
        """Add a call activity to do today (a call-back) to the person."""
        return await self._activity(request, done=False)

    async def _activity(self, request: ActionRequest, *, done: bool) -> ActionOutcome:
        deadline = time.monotonic() + ACTION_BUDGET
        await self._load_web_url(deadline)
        call = request.call
        person_id = _numeric_id(request.contact_id, self)
        due = call.start if done else datetime.now(timezone.utc)
        minutes = (call.duration_seconds + 59) // 60
        body: dict[str, Any] = {
            "subject": call.subject(self.language) if done else call.task_subject(self.language),
            "type": "call",
            "done": 1 if done else 0,
            "person_id": person_id,
            "due_date": due.strftime("%Y-%m-%d"),
            "due_time": due.strftime("%H:%M"),
            "note": call.body(self.language, request.note()).replace("\n", "<br>"),
        }
        if done:
            body["duration"] = f"{minutes // 60:02d}:{minutes % 60:02d}"
        response = await self.http.post("/v1/activities", json_body=body, budget=time_left(deadline))
        return ActionOutcome(url=self._link(f"person/{person_id}"), record_id=_data_id(response.data))

    async def do_create_contact(self, request: ActionRequest) -> ActionOutcome:
        """Add a person with the caller's number, named as the page sent or after the number."""
        deadline = time.monotonic() + ACTION_BUDGET
        await self._load_web_url(deadline)
        call = request.call
        name = request.params.get("name") or call.name or call.display or call.number
        body = {"name": str(name), "phone": [{"value": call.number, "primary": True, "label": "work"}]}
        response = await self.http.post("/v1/persons", json_body=body, budget=time_left(deadline))
        person_id = _data_id(response.data)
        expect(person_id is not None, self.http.vendor, "created person without an id")
        return ActionOutcome(url=self._link(f"person/{person_id}"), record_id=person_id, contact_id=person_id)


def search_terms(number: CallerNumber) -> list[str]:
    """Return the terms searched: the national significant number and the national format."""
    assert number.number is not None
    national = phonenumbers.format_number(phonenumbers.parse(number.e164), phonenumbers.PhoneNumberFormat.NATIONAL)
    terms = [number.number.national or "", national]
    return [term for index, term in enumerate(terms) if len(term) >= 2 and term not in terms[:index]]


def _numeric_id(contact_id: str | None, connector: CrmConnector) -> int:
    if contact_id is None or not contact_id.isdigit():
        raise connector.error(errors.NO_CONTACT, f"{contact_id!r} is not a Pipedrive person id")
    return int(contact_id)


def _data_id(data: Any) -> str | None:
    inner = data.get("data") if isinstance(data, dict) else None
    value = inner.get("id") if isinstance(inner, dict) else None
    return str(value) if value is not None else None


def _message(data: Any) -> str | None:
    return data.get("error") if isinstance(data, dict) else None

"""HubSpot: contacts searched at ring time with CRM search; calls, tasks and contacts created.

API (https://developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm and
https://developers.hubspot.com/docs/api/crm/calls), private app token as Bearer:

- `POST /crm/v3/objects/contacts/search`: filter groups are ORed, so one request asks for
  the caller's national number in HubSpot's normalised copies of `phone` and
  `mobilephone` (`hs_searchable_calculated_*`, digits without country code) and for the
  caller's common written forms in `phone` and `mobilephone` themselves.
- `POST /crm/v3/objects/companies/batch/read`: names of the contacts' primary companies.
- `GET /account-info/v3/details`: the portal id and UI domain the record links need.
- `POST /crm/v3/objects/calls`, `/tasks`, `/contacts`: the actions.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

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
from agent.crm.calls import CallSummary
from agent.crm.http import CrmHttp, StaticAuth, Vendor, expect
from agent.crm.ratelimit import RateLimiter
from agent.lookup.connector import Card
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import HubSpotSettings

# HubSpot's documented limits for private apps: 100 requests per 10 s on the lowest
# tier (higher tiers allow more), and CRM search 4 requests per second per token
# (the changelog; the API reference gives 5 per account, so the lower one is kept).
GENERAL_LIMIT = (100, 10.0)
SEARCH_LIMIT = (4, 1.0)

# A caller's number is stored with few contacts; more results than this are not read.
MAX_RESULTS = 10

# Written forms searched in `phone` and `mobilephone` (the IN operator takes a list).
MAX_SEARCH_FORMS = 5

CONTACT_PROPERTIES = ["firstname", "lastname", "email", "phone", "mobilephone", "company", "associatedcompanyid"]

# Association types of HubSpot-defined associations: call to contact (194), task to
# contact (204).
CALL_TO_CONTACT = 194
TASK_TO_CONTACT = 204

# CRM object type ids in record links: contact 0-1, company 0-2.
CONTACT_TYPE = "0-1"
COMPANY_TYPE = "0-2"

DEFAULT_UI_DOMAIN = "app.hubspot.com"

# Labels of HubSpot's default call outcomes (GET /calling/v1/dispositions lists the
# account's outcomes with their ids).
CONNECTED = "Connected"
NO_ANSWER = "No answer"
BUSY = "Busy"


class HubSpotConnector(CrmConnector):
    """HubSpot contacts, searched by phone at ring time."""

    crm = "HubSpot"
    card_actions = (crm_action(LOG_CALL), crm_action(CREATE_TASK))
    number_actions = (crm_action(CREATE_CONTACT),)

    def __init__(self, settings: HubSpotSettings, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        vendor = Vendor(settings.name, settings.label, self.crm, settings.token.source, "crm.renew.hubspot")
        self.general = RateLimiter(*GENERAL_LIMIT)
        self.search_limit = RateLimiter(*SEARCH_LIMIT)
        self._http = CrmHttp(
            vendor,
            settings.url,
            StaticAuth({"Authorization": f"Bearer {settings.token.secret.value}"}),
            limiters=(self.general,),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )
        self._portal: tuple[str, str] | None = None
        self._dispositions: dict[str, str] | None = None

    @property
    def http(self) -> CrmHttp:
        return self._http

    # Lookup ------------------------------------------------------------------------

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search contacts by the caller's number, verify each hit and add its company."""
        deadline = time.monotonic() + self.timeout
        await self._load_portal(deadline)
        response = await self.http.post(
            "/crm/v3/objects/contacts/search",
            json_body=search_body(number),
            budget=time_left(deadline),
            limiters=(self.general, self.search_limit),
        )
        results = response.data.get("results") if isinstance(response.data, dict) else None
        expect(isinstance(results, list), self.http.vendor, "contacts search without a results list")

        matched: list[tuple[dict[str, Any], Any]] = []
        for result in results[:MAX_RESULTS]:
            properties = result.get("properties") if isinstance(result, dict) else None
            if not isinstance(properties, dict) or not result.get("id"):
                continue
            stored = [text for key in ("phone", "mobilephone") if isinstance(text := properties.get(key), str) and text]
            match = number.best_match(stored)
            if match is not None:
                matched.append((result, match))
        if not matched:
            return []

        companies = await self._company_names(
            {str(p["associatedcompanyid"]) for r, _ in matched if (p := r["properties"]).get("associatedcompanyid")},
            deadline,
        )
        return [self._card(result, match, companies) for result, match in matched]

    def _card(self, result: dict[str, Any], match: Any, companies: dict[str, str]) -> Card:
        properties = result["properties"]
        contact_id = str(result["id"])
        name = " ".join(p for p in (properties.get("firstname"), properties.get("lastname")) if isinstance(p, str) and p)
        company_id = str(properties.get("associatedcompanyid") or "") or None
        company = companies.get(company_id or "") or properties.get("company") or None
        return self.card(
            match,
            contact_id=contact_id,
            name=name or properties.get("email") or None,
            company=company if isinstance(company, str) else None,
            url=self.record_url(CONTACT_TYPE, contact_id),
            company_url=self.record_url(COMPANY_TYPE, company_id) if company_id else None,
        )

    async def _company_names(self, ids: set[str], deadline: float) -> dict[str, str]:
        if not ids:
            return {}
        response = await self.http.post(
            "/crm/v3/objects/companies/batch/read",
            json_body={"properties": ["name"], "inputs": [{"id": company_id} for company_id in sorted(ids)]},
            budget=time_left(deadline),
        )
        results = response.data.get("results", []) if isinstance(response.data, dict) else []
        names: dict[str, str] = {}
        for result in results if isinstance(results, list) else []:
            properties = result.get("properties") if isinstance(result, dict) else None
            if isinstance(properties, dict) and isinstance(properties.get("name"), str):
                names[str(result.get("id"))] = properties["name"]
        return names

    async def _load_portal(self, deadline: float) -> None:
        """Read the portal id and UI domain once; record links need them."""
        if self._portal is not None:
            return
        response = await self.http.get("/account-info/v3/details", budget=time_left(deadline))
        data = response.data if isinstance(response.data, dict) else {}
        portal = data.get("portalId")
        expect(isinstance(portal, int), self.http.vendor, "account details without a portalId")
        domain = data.get("uiDomain") if isinstance(data.get("uiDomain"), str) else DEFAULT_UI_DOMAIN
        self._portal = (str(portal), domain or DEFAULT_UI_DOMAIN)

    def record_url(self, object_type: str, record_id: str | None) -> str | None:
        """Return the link to a record in HubSpot's web interface, once the portal is known."""
        if self._portal is None or record_id is None:
            return None
        portal, domain = self._portal
        return f"https://{domain}/contacts/{portal}/record/{object_type}/{record_id}"

    # Actions -----------------------------------------------------------------------

    async def do_log_call(self, request: ActionRequest) -> ActionOutcome:
        """Create a call engagement on the contact's timeline."""
        deadline = time.monotonic() + ACTION_BUDGET
        await self._load_portal(deadline)
        call = request.call
        properties = {
            "hs_timestamp": _iso(call.start),
            "hs_call_title": call.subject(self.language),
            "hs_call_body": call.body(self.language, request.note()),
            "hs_call_direction": "OUTBOUND" if call.direction == "outbound" else "INBOUND",
            "hs_call_duration": str(call.duration_seconds * 1000),
            "hs_call_status": _call_status(call),
        }
        if call.number:
            properties["hs_call_to_number" if call.direction == "outbound" else "hs_call_from_number"] = call.number
        disposition = await self._disposition(call, deadline)
        if disposition:
            properties["hs_call_disposition"] = disposition
        response = await self.http.post(
            "/crm/v3/objects/calls",
            json_body={"properties": properties, "associations": [_association(request.contact_id, CALL_TO_CONTACT)]},
            budget=time_left(deadline),
        )
        return ActionOutcome(url=self.record_url(CONTACT_TYPE, request.contact_id), record_id=_id(response.data))

    async def do_create_task(self, request: ActionRequest) -> ActionOutcome:
        """Create a call-back task for the contact, due now."""
        deadline = time.monotonic() + ACTION_BUDGET
        await self._load_portal(deadline)
        call = request.call
        properties = {
            "hs_timestamp": _iso(datetime.now(timezone.utc)),
            "hs_task_subject": call.task_subject(self.language),
            "hs_task_body": call.body(self.language, request.note()),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH" if not call.connected else "MEDIUM",
            "hs_task_type": "CALL",
        }
        response = await self.http.post(
            "/crm/v3/objects/tasks",
            json_body={"properties": properties, "associations": [_association(request.contact_id, TASK_TO_CONTACT)]},
            budget=time_left(deadline),
        )
        return ActionOutcome(url=self.record_url(CONTACT_TYPE, request.contact_id), record_id=_id(response.data))

    async def do_create_contact(self, request: ActionRequest) -> ActionOutcome:
        """Create a contact with the caller's number (and the name the page sent, if any)."""
        deadline = time.monotonic() + ACTION_BUDGET
        await self._load_portal(deadline)
        properties = {"phone": request.call.number or ""}
        first, last = _split_name(request.params.get("name") or request.call.name)
        if first:
            properties["firstname"] = first
        if last:
            properties["lastname"] = last
        response = await self.http.post(
            "/crm/v3/objects/contacts", json_body={"properties": properties}, budget=time_left(deadline)
        )
        contact_id = _id(response.data)
        expect(contact_id is not None, self.http.vendor, "created contact without an id")
        return ActionOutcome(url=self.record_url(CONTACT_TYPE, contact_id), record_id=contact_id, contact_id=contact_id)

    async def _disposition(self, call: CallSummary, deadline: float) -> str | None:
        """Return the id of the account's call outcome that fits the call, if it has one."""
        if self._dispositions is None:
            response = await self.http.get("/calling/v1/dispositions", budget=time_left(deadline))
            items = response.data if isinstance(response.data, list) else []
            self._dispositions = {
                str(item["label"]): str(item["id"])
                for item in items
                if isinstance(item, dict) and item.get("label") and item.get("id")
            }
        if call.connected:
            label = CONNECTED
        elif call.outcome == "busy":
            label = BUSY
        else:
            label = NO_ANSWER
        return self._dispositions.get(label)


def search_body(number: CallerNumber) -> dict[str, Any]:
    """Return the contacts search: national number in the normalised copies, written forms in the fields."""
    assert number.number is not None
    national = number.number.national or ""
    forms = list(number.search_forms())[:MAX_SEARCH_FORMS]
    groups = [
        {"filters": [{"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": national}]},
        {"filters": [{"propertyName": "hs_searchable_calculated_mobile_number", "operator": "EQ", "value": national}]},
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
    ]
    return {"filterGroups": groups, "properties": CONTACT_PROPERTIES, "limit": MAX_RESULTS}


def _association(contact_id: str | None, type_id: int) -> dict[str, Any]:
    return {"to": {"id": contact_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def _call_status(call: CallSummary) -> str:
    if call.connected:
        return "COMPLETED"
    if call.outcome == "busy":
        return "BUSY"
    if call.outcome == "failed":
        return "FAILED"
    return "NO_ANSWER"


def _split_name(name: Any) -> tuple[str | None, str | None]:
    if not isinstance(name, str) or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, last.strip() or None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _id(data: Any) -> str | None:
    value = data.get("id") if isinstance(data, dict) else None
    return str(value) if value not in (None, "") else None


def _message(data: Any) -> str | None:
    return data.get("message") if isinstance(data, dict) else None

"""Odoo: res.partner searched at ring time; chatter notes, call activities and contacts created.

Two transports (https://www.odoo.com/documentation/19.0/developer/reference/external_api.html):

- JSON-2 (Odoo 19+, the default): `POST /json/2/<model>/<method>` with
  `Authorization: bearer <API key>` and the method's parameters as a JSON object;
  errors come as 4xx/5xx with `{"name", "message", ...}`.
- JSON-RPC (older servers, deprecated in 19): `POST /jsonrpc`, signed in once with
  `common.login(db, login, key)`, then `object.execute_kw(db, uid, key, model, method,
  args, kwargs)`; errors come as HTTP 200 with an `error` member.

The search reads `fields_get` once and uses the fields the database has. Where present,
these are `phone_sanitized` (E.164, from the phone_validation module) and
`phone_mobile_search` (digits anywhere in phone or mobile). Otherwise it compares the
caller's written forms with `ilike` on `phone` and `mobile` (Odoo 19 removed `mobile`).
Every hit is verified here.
"""

from __future__ import annotations

import html
import itertools
import time
from datetime import datetime, timezone
from typing import Any

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
    written_forms,
)
from agent.crm.http import CrmHttp, StaticAuth, Vendor, expect
from agent.lookup.connector import Card
from agent.lookup.numbers import CallerNumber
from agent.lookup.settings import OdooSettings

PARTNER = "res.partner"
MAX_RESULTS = 10

# The activity type Odoo's mail module defines for calls.
CALL_ACTIVITY = "mail.mail_activity_data_call"

# Odoo's exception for a wrong login or API key.
ACCESS_DENIED = "odoo.exceptions.AccessDenied"


class OdooConnector(CrmConnector):
    """Odoo contacts (res.partner), searched by phone at ring time."""

    crm = "Odoo"
    card_actions = (crm_action(LOG_CALL), crm_action(CREATE_TASK))
    number_actions = (crm_action(CREATE_CONTACT),)

    def __init__(self, settings: OdooSettings, *, timeout: float) -> None:
        super().__init__(settings, timeout=timeout)
        self.odoo = settings
        headers = {"Authorization": f"bearer {settings.api_key.secret.value}"} if settings.protocol == "json2" else {}
        if settings.database and settings.protocol == "json2":
            headers["X-Odoo-Database"] = settings.database
        self._http = CrmHttp(
            Vendor(settings.name, settings.label, self.crm, settings.api_key.source, "crm.renew.odoo"),
            settings.url,
            StaticAuth(headers),
            message_of=_message,
            verify=verify_path(settings.ca_file),
        )
        self._fields: set[str] | None = None
        self._uid: int | None = None
        self._request_ids = itertools.count(1)

    @property
    def http(self) -> CrmHttp:
        return self._http

    def partner_url(self, partner_id: int | str) -> str:
        """Return the link to a contact: Odoo 17.2+ URLs for JSON-2 servers, /web# URLs for older ones."""
        if self.odoo.protocol == "json2":
            return f"{self.odoo.url}/odoo/contacts/{partner_id}"
        return f"{self.odoo.url}/web#id={partner_id}&model={PARTNER}&view_type=form"

    # Transport ---------------------------------------------------------------------

    async def call(self, model: str, method: str, budget: float, ids: list[int] | None = None, **kwargs: Any) -> Any:
        """Call a model method over the configured transport and return its result."""
        if self.odoo.protocol == "json2":
            body = {"ids": ids, **kwargs} if ids is not None else kwargs
            response = await self.http.post(f"/json/2/{model}/{method}", json_body=body, budget=budget, retry=False)
            return response.data

        deadline = time.monotonic() + budget
        uid = await self._login(deadline)
        args = [ids] if ids is not None else []
        return await self._rpc(
            "object",
            "execute_kw",
            [self.odoo.database, uid, self.odoo.api_key.secret.value, model, method, args, kwargs],
            deadline,
        )

    async def _login(self, deadline: float) -> int:
        if self._uid is None:
            uid = await self._rpc(
                "common", "login", [self.odoo.database, self.odoo.login, self.odoo.api_key.secret.value], deadline
            )
            if not isinstance(uid, int) or isinstance(uid, bool):
                raise self.error(
                    errors.AUTH_FAILED, "JSON-RPC login returned no user id", source=self.odoo.api_key.source, renew="crm.renew.odoo"
                )
            self._uid = uid
        return self._uid

    async def _rpc(self, service: str, method: str, args: list[Any], deadline: float) -> Any:
        body = {"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}, "id": next(self._request_ids)}
        response = await self.http.post("/jsonrpc", json_body=body, budget=time_left(deadline), retry=False)
        data = response.data if isinstance(response.data, dict) else {}
        error = data.get("error")
        if isinstance(error, dict):
            details = error.get("data") if isinstance(error.get("data"), dict) else {}
            message = errors.short_message(details.get("message") or error.get("message"))
            detail = f"JSON-RPC {service}.{method}: {details.get('name') or error.get('message')}: {message}"
            if details.get("name") == ACCESS_DENIED:
                self._uid = None
                raise self.error(errors.AUTH_FAILED, detail, source=self.odoo.api_key.source, renew="crm.renew.odoo")
            raise self.error(errors.REJECTED, detail, status=None, message=message)
        expect("result" in data, self.http.vendor, "JSON-RPC answer without a result")
        return data["result"]

    # Lookup ------------------------------------------------------------------------

    async def search(self, number: CallerNumber) -> list[Card]:
        """Search partners by the caller's number with the fields this database has; verify each hit."""
        deadline = time.monotonic() + self.timeout
        fields = await self._partner_fields(deadline)
        phone_fields = [field for field in ("phone", "mobile") if field in fields]
        read = ["name", "is_company", "parent_id", *phone_fields]
        rows = await self.call(
            PARTNER, "search_read", time_left(deadline),
            domain=partner_domain(number, fields), fields=read, limit=MAX_RESULTS,
        )
        expect(isinstance(rows, list), self.http.vendor, "search_read without a list")

        cards: list[Card] = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("id"), int):
                continue
            match = number.best_match([text for key in phone_fields if isinstance(text := row.get(key), str) and text])
            if match is None:
                continue
            parent = row.get("parent_id")
            parent_id, parent_name = (parent[0], parent[1]) if isinstance(parent, list) and len(parent) == 2 else (None, None)
            is_company = bool(row.get("is_company"))
            cards.append(
                self.card(
                    match,
                    contact_id=str(row["id"]),
                    name=None if is_company else row.get("name"),
                    company=row.get("name") if is_company else parent_name,
                    url=self.partner_url(row["id"]),
                    company_url=self.partner_url(parent_id) if parent_id else None,
                )
            )
        return cards

    async def _partner_fields(self, deadline: float) -> set[str]:
        """Read which fields res.partner has, once."""
        if self._fields is None:
            described = await self.call(PARTNER, "fields_get", time_left(deadline), attributes=["type"])
            expect(isinstance(described, dict), self.http.vendor, "fields_get without an object")
            self._fields = set(described)
        return self._fields

    # Actions -----------------------------------------------------------------------

    async def do_log_call(self, request: ActionRequest) -> ActionOutcome:
        """Post a note about the call in the contact's chatter."""
        partner_id = _partner_id(request.contact_id, self)
        body = _html(request.call.body(self.language, request.note()))
        message = await self.call(
            PARTNER, "message_post", ACTION_BUDGET, ids=[partner_id],
            body=body, message_type="comment", subtype_xmlid="mail.mt_note",
        )
        return ActionOutcome(url=self.partner_url(partner_id), record_id=_first_id(message))

    async def do_create_task(self, request: ActionRequest) -> ActionOutcome:
        """Schedule a call activity (a call-back) on the contact, due today."""
        partner_id = _partner_id(request.contact_id, self)
        call = request.call
        activity = await self.call(
            PARTNER, "activity_schedule", ACTION_BUDGET, ids=[partner_id],
            act_type_xmlid=CALL_ACTIVITY,
            summary=call.task_subject(self.language),
            note=_html(call.body(self.language, request.note())),
            date_deadline=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        )
        return ActionOutcome(url=self.partner_url(partner_id), record_id=_first_id(activity))

    async def do_create_contact(self, request: ActionRequest) -> ActionOutcome:
        """Create a contact with the caller's number, named as the page sent or after the number."""
        call = request.call
        name = request.params.get("name") or call.name or call.display or call.number
        created = await self.call(PARTNER, "create", ACTION_BUDGET, vals_list=[{"name": str(name), "phone": call.number}])
        partner_id = _first_id(created)
        expect(partner_id is not None, self.http.vendor, "create without an id")
        return ActionOutcome(url=self.partner_url(partner_id or ""), record_id=partner_id, contact_id=partner_id)


def partner_domain(number: CallerNumber, fields: set[str]) -> list[Any]:
    """Return the search domain: normalised fields where the database has them, else ilike on the written forms."""
    assert number.number is not None
    clauses: list[list[Any]] = []
    if "phone_sanitized" in fields:
        clauses.append(["phone_sanitized", "=", number.e164])
    if "phone_mobile_search" in fields:
        clauses.append(["phone_mobile_search", "ilike", number.number.national or number.e164[1:]])
    if not clauses:
        forms = written_forms(number)
        clauses = [[field, "ilike", form] for field in ("phone", "mobile") if field in fields for form in forms]
    return ["|"] * (len(clauses) - 1) + clauses


def _partner_id(contact_id: str | None, connector: CrmConnector) -> int:
    if contact_id is None or not contact_id.isdigit():
        raise connector.error(errors.NO_CONTACT, f"{contact_id!r} is not an Odoo partner id")
    return int(contact_id)


def _first_id(value: Any) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _html(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.split("\n"))


def _message(data: Any) -> str | None:
    return data.get("message") if isinstance(data, dict) else None

"""Contract servers of the CRM APIs on 127.0.0.1, for the connector tests and browser tests.

Each server is a small Starlette app that answers the requests a vendor documents, in
the vendor's shapes: the paths, query syntax and auth header, the error bodies, and the
rate-limit replies. Every app's docstring names the documentation it follows. The data
are invented people with numbers in the forms offices really store.

A server records every request (`state.requests`) and can fail on purpose: set
`state.fail` to one of FAILURES (optionally for `state.fail_count` requests only, and
only on paths starting with `state.fail_path`). `start_server(...)` runs an app in a
uvicorn thread on a free port and `CrmServer.stop()` ends it; `crm_server(kind)` does
both as a context manager, so a browser test can start the same servers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import phonenumbers
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

LOOPBACK = "127.0.0.1"

# Servers start within a second here; a slow CI machine gets ten.
START_TIMEOUT = 10.0

# How a server fails on purpose when `state.fail` is set.
EXPIRED_TOKEN = "expired_token"
RATE_LIMIT = "rate_limit"
SERVER_ERROR = "server_error"
MALFORMED = "malformed"
SLOW = "slow"
FAILURES = (EXPIRED_TOKEN, RATE_LIMIT, SERVER_ERROR, MALFORMED, SLOW)

# The wait a rate-limited reply asks for by default, in seconds: short, so an action's retry is quick.
RETRY_AFTER = 1

HUBSPOT_TOKEN = "pat-eu1-0a1b2c3d-contract"
PIPEDRIVE_TOKEN = "659c9fddb16335e48cc67114694b52074e812e03"
BEXIO_TOKEN = "bexio-pat-contract"
ZENDESK_EMAIL = "agent@beispiel.example"
ZENDESK_TOKEN = "zendesk-api-token-contract"
ZAMMAD_TOKEN = "zammad-access-token-contract"
ODOO_KEY = "6578616d706c65206a736f6e20617069206b6579"
ODOO_DATABASE = "beispiel"
ODOO_LOGIN = "ringboard@beispiel.example"
ODOO_UID = 7
MS_TENANT = "beispiel.onmicrosoft.com"
MS_CLIENT_ID = "2f1e7a6c-9b5d-4c3e-8a1f-0d2c4b6e8a10"
MS_CLIENT_SECRET = "contract-client-secret"
GRAPH_USER = "office@beispiel.example"


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class ContractState:
    """What a server recorded and how it should fail next."""

    requests: list[Recorded] = field(default_factory=list)
    fail: str | None = None
    # Fail this many requests, then answer normally again; None fails every request.
    fail_count: int | None = None
    fail_path: str = "/"
    # How long a SLOW reply waits, in seconds.
    delay: float = 3.0
    # The wait a RATE_LIMIT reply asks for, in seconds.
    retry_after: int = RETRY_AFTER
    data: dict[str, Any] = field(default_factory=dict)

    def calls(self, method: str, path: str) -> list[Recorded]:
        """Return the recorded requests of one method and path (prefix match)."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path)]

    def take_failure(self, path: str) -> str | None:
        """Return the failure to answer `path` with now, counting it."""
        if self.fail is None or not path.startswith(self.fail_path):
            return None
        if self.fail_count is not None:
            if self.fail_count <= 0:
                return None
            self.fail_count -= 1
        return self.fail


@dataclass
class CrmServer:
    """A running contract server."""

    url: str
    state: ContractState
    stop: Callable[[], None]


# Running servers ---------------------------------------------------------------------


def start_server(app: Starlette, state: ContractState, *, tls: TlsFiles | None = None) -> CrmServer:
    """Run `app` with uvicorn in a thread on a free 127.0.0.1 port; return its URL and stopper."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(tls.certificate) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"crm-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"contract server on port {port} did not start within {START_TIMEOUT} s")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        # uvicorn waits for open keep-alive connections; a client left open must not hold it.
        server.force_exit = True
        thread.join(timeout=5)
        sock.close()

    scheme = "https" if tls else "http"
    return CrmServer(url=f"{scheme}://{LOOPBACK}:{port}", state=state, stop=stop)


@contextmanager
def crm_server(kind: str, *, tls: TlsFiles | None = None) -> Iterator[CrmServer]:
    """Start the contract server of `kind` (a key of APPS) for the length of the block."""
    state = ContractState()
    holder: dict[str, str] = {}
    app = APPS[kind](state, lambda: holder["url"])
    server = start_server(app, state, tls=tls)
    holder["url"] = server.url
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a certificate for 127.0.0.1 signed by it, as PEM files."""

    ca: Path
    certificate: Path
    key: Path


def make_tls(folder: Path) -> TlsFiles:
    """Create a CA and a server certificate for 127.0.0.1 in `folder` (Microsoft sign-in needs https)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ringboard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# Shared request handling ---------------------------------------------------------------


async def record(request: Request, state: ContractState) -> Recorded:
    """Read and record a request; the body is parsed as JSON or a form where it is one."""
    raw = await request.body()
    body: Any = None
    if raw:
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        elif "form" in content_type:
            body = {key: values[-1] for key, values in parse_qs(raw.decode()).items()}
        else:
            body = raw.decode("utf-8", "replace")
    recorded = Recorded(
        request.method, request.url.path, dict(request.query_params), {k.lower(): v for k, v in request.headers.items()}, body
    )
    state.requests.append(recorded)
    return recorded


async def apply_failure(state: ContractState, path: str, answers: dict[str, Callable[[], Response]]) -> Response | None:
    """Answer with the failure the test asked for, in the vendor's shape; None when there is none."""
    failure = state.take_failure(path)
    if failure is None:
        return None
    if failure == SLOW:
        await asyncio.sleep(state.delay)
        return None
    if failure == MALFORMED:
        return Response(b'{"results": [{"id": "1", "properties": ', media_type="application/json")
    return answers[failure]()


def digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def nsn(text: str, region: str = "CH") -> str:
    """Return the national significant number of a stored number, or "" when it does not parse."""
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return ""


def e164(text: str, region: str = "CH") -> str | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# HubSpot -----------------------------------------------------------------------------


def hubspot_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """HubSpot CRM v3, as documented at
    https://developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm (search:
    filterGroups ORed, filters ANDed, EQ and IN, at most 5 groups and 6 filters per group
    here), https://developers.hubspot.com/docs/api/crm/calls (calls need hs_timestamp),
    https://developers.hubspot.com/docs/api-reference/latest/account/account-information/get-account-details
    and https://developers.hubspot.com/docs/api-reference/legacy/crm/activities/engagements/get-calling-v1-dispositions.
    Errors are {"status": "error", "message", "correlationId", "category"}; a rate-limited
    request gets 429 with errorType RATE_LIMIT and Retry-After.
    """
    ids = itertools.count(90001)
    contacts = {
        "51234": {"firstname": "Anna", "lastname": "Muster", "email": "anna.muster@beispiel.example",
                  "phone": "+41 44 555 01 23", "mobilephone": None, "company": "Beispiel AG", "associatedcompanyid": "90817"},
        "51235": {"firstname": "Beat", "lastname": "Nachbar", "email": "beat@nachbar.example",
                  "phone": "044 555 01 24", "mobilephone": None, "company": "Nachbar GmbH", "associatedcompanyid": None},
        "51236": {"firstname": "Luca", "lastname": "Bernasconi", "email": "luca@bernasconi.example",
                  "phone": None, "mobilephone": "079 555 00 11", "company": None, "associatedcompanyid": None},
    }
    companies = {"90817": {"name": "Beispiel AG", "domain": "beispiel.example"}}
    state.data.update(contacts=contacts, companies=companies, calls={}, tasks={}, unindexed=set())

    def error(status: int, message: str, category: str) -> JSONResponse:
        body = {"status": "error", "message": message, "correlationId": secrets.token_hex(8), "category": category}
        return JSONResponse(body, status_code=status)

    failures = {
        EXPIRED_TOKEN: lambda: error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", "INVALID_AUTHENTICATION"),
        RATE_LIMIT: lambda: JSONResponse(
            {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
             "correlationId": secrets.token_hex(8), "policyName": "SECONDLY", "groupName": "publicapi:private-app"},
            status_code=429, headers={"Retry-After": str(state.retry_after)},
        ),
        SERVER_ERROR: lambda: error(500, "internal error", "INTERNAL_ERROR"),
    }

    def searchable(properties: dict[str, Any], name: str) -> Any:
        if name == "hs_searchable_calculated_phone_number":
            return nsn(properties.get("phone") or "") or None
        if name == "hs_searchable_calculated_mobile_number":
            return nsn(properties.get("mobilephone") or "") or None
        return properties.get(name)

    def matches(properties: dict[str, Any], rule: dict[str, Any]) -> bool:
        value = searchable(properties, rule.get("propertyName", ""))
        if rule.get("operator") == "EQ":
            return value is not None and str(value).lower() == str(rule.get("value", "")).lower()
        if rule.get("operator") == "IN":
            return value is not None and str(value).lower() in [str(v).lower() for v in rule.get("values", [])]
        return False

    async def endpoint(request: Request) -> Response:
        recorded = await record(request, state)
        if request.headers.get("authorization") != f"Bearer {HUBSPOT_TOKEN}":
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        path, body = recorded.path, recorded.body if isinstance(recorded.body, dict) else {}

        if path == "/account-info/v3/details":
            return JSONResponse({"portalId": 4711, "accountType": "STANDARD", "timeZone": "Europe/Zurich",
                                 "companyCurrency": "CHF", "additionalCurrencies": [], "utcOffset": "+01:00",
                                 "utcOffsetMilliseconds": 3600000, "uiDomain": "app-eu1.hubspot.com",
                                 "dataHostingLocation": "eu1"})
        if path == "/calling/v1/dispositions":
            return JSONResponse([
                {"id": "f240bbac-87c9-4f6e-bf70-924b57d47db7", "label": "Connected"},
                {"id": "73a0d17f-1163-4015-bdd5-ec830791da20", "label": "No answer"},
                {"id": "9d9162e7-6cf3-4944-bf63-4dff82258764", "label": "Busy"},
            ])
        if path == "/crm/v3/objects/contacts/search":
            groups = body.get("filterGroups", [])
            if len(groups) > 5 or any(len(g.get("filters", [])) > 6 for g in groups):
                return error(400, "Too many filter groups or filters", "VALIDATION_ERROR")
            wanted = body.get("properties") or ["firstname", "lastname", "email"]
            found = [
                {"id": cid, "properties": {"hs_object_id": cid, **{k: p.get(k) for k in wanted}},
                 "createdAt": "2025-03-02T09:14:00.000Z", "updatedAt": "2026-11-20T16:02:11.120Z", "archived": False}
                for cid, p in contacts.items()
                if cid not in state.data["unindexed"]
                and any(all(matches(p, rule) for rule in g.get("filters", [])) for g in groups)
            ][: int(body.get("limit") or 10)]
            return JSONResponse({"total": len(found), "results": found})
        if path == "/crm/v3/objects/companies/batch/read":
            results = [{"id": i["id"], "properties": {"name": companies[i["id"]]["name"], "hs_object_id": i["id"]},
                        "createdAt": "2025-01-01T00:00:00.000Z", "updatedAt": "2025-01-01T00:00:00.000Z", "archived": False}
                       for i in body.get("inputs", []) if i.get("id") in companies]
            return JSONResponse({"status": "COMPLETE", "results": results, "startedAt": now_iso(), "completedAt": now_iso()})
        if path in ("/crm/v3/objects/calls", "/crm/v3/objects/tasks", "/crm/v3/objects/contacts") and request.method == "POST":
            properties = body.get("properties") or {}
            if path != "/crm/v3/objects/contacts" and "hs_timestamp" not in properties:
                return error(400, "Property values were not valid: hs_timestamp is required", "VALIDATION_ERROR")
            record_id = str(next(ids))
            store = {"/crm/v3/objects/calls": "calls", "/crm/v3/objects/tasks": "tasks"}.get(path)
            if store:
                state.data[store][record_id] = body
            else:
                contacts[record_id] = {"firstname": None, "lastname": None, "email": None, "mobilephone": None,
                                       "company": None, "associatedcompanyid": None, **properties}
                # HubSpot's search shows new records only after a delay.
                state.data["unindexed"].add(record_id)
            return JSONResponse({"id": record_id, "properties": properties, "createdAt": now_iso(),
                                 "updatedAt": now_iso(), "archived": False}, status_code=201)
        return error(404, f"no route for {request.method} {path}", "OBJECT_NOT_FOUND")

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


# Pipedrive ---------------------------------------------------------------------------


def pipedrive_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """Pipedrive API v1, as documented at https://developers.pipedrive.com/docs/api/v1/Persons
    (persons/search: term of at least 2 characters, anywhere in the field unless exact_match),
    https://developers.pipedrive.com/docs/api/v1/Activities and
    https://pipedrive.readme.io/docs/core-api-concepts-authentication (API token in the
    x-api-token header, or the api_token query parameter). Errors are {"success": false,
    "error", "errorCode", "error_info"}; https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting
    answers 429 with x-ratelimit-* headers.
    """
    ids = itertools.count(301)
    persons = {
        17: {"name": "Anna Muster", "phones": ["044 555 01 23"], "emails": ["anna.muster@beispiel.example"],
             "organization": {"id": 5, "name": "Beispiel AG", "address": None}},
        # Found by the national-format term, but a longer, different number: verification drops it.
        18: {"name": "Beat Nachbar", "phones": ["044 555 01 234"], "emails": [], "organization": None},
        # Found by both terms, so it must come back once.
        19: {"name": "Anna Muster (Handy)", "phones": ["445550123", "044 555 01 23"], "emails": [], "organization": None},
    }
    state.data.update(persons=persons, activities={})

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"success": False, "error": message, "errorCode": status,
                             "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API."},
                            status_code=status, headers=headers or None)

    failures = {
        EXPIRED_TOKEN: lambda: error(401, "unauthorized access"),
        RATE_LIMIT: lambda: error(429, "Request over limit", **{"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
                                                                "x-ratelimit-reset": str(state.retry_after)}),
        SERVER_ERROR: lambda: error(500, "Internal server error"),
    }

    async def endpoint(request: Request) -> Response:
        recorded = await record(request, state)
        token = request.headers.get("x-api-token") or request.query_params.get("api_token")
        if token != PIPEDRIVE_TOKEN:
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        path, query, body = recorded.path, recorded.query, recorded.body if isinstance(recorded.body, dict) else {}

        if path == "/v1/users/me":
            return JSONResponse({"success": True, "data": {"id": 1, "name": "Ringboard", "company_id": 77,
                                                           "company_name": "Beispiel AG", "company_domain": "beispiel"}})
        if path == "/v1/persons/search":
            term = query.get("term", "")
            if len(term) < 2:
                return error(400, "Search term must be at least 2 characters long")
            items = [
                {"result_score": 1.0, "item": {"id": pid, "type": "person", **p, "visible_to": 3, "owner": {"id": 1},
                                              "custom_fields": [], "notes": []}}
                for pid, p in persons.items()
                if any(term.lower() in phone.lower() for phone in p["phones"])
            ][: int(query.get("limit", 10))]
            return JSONResponse({"success": True, "data": {"items": items},
                                 "additional_data": {"pagination": {"start": 0, "limit": 10, "more_items_in_collection": False}}})
        if path == "/v1/activities" and request.method == "POST":
            if not body.get("subject") or not body.get("type"):
                return error(400, "Subject and type are required")
            activity_id = next(ids)
            state.data["activities"][activity_id] = body
            return JSONResponse({"success": True, "data": {"id": activity_id, **body}}, status_code=201)
        if path == "/v1/persons" and request.method == "POST":
            if not body.get("name"):
                return error(400, "Name must be given")
            person_id = next(ids)
            persons[person_id] = {"name": body["name"], "phones": [p["value"] for p in body.get("phone", [])],
                                  "emails": [], "organization": None}
            return JSONResponse({"success": True, "data": {"id": person_id, "name": body["name"]}}, status_code=201)
        return error(404, "Unknown method")

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


# bexio -------------------------------------------------------------------------------


def bexio_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """bexio API 2.0, as documented at http://docs.bexio.com/ (GET /2.0/contact and
    /2.0/contact_relation with limit (at most 2000), offset and order_by; personal access
    token as Bearer; contact_type_id 1 company, 2 person). A 429 carries RateLimit-* headers.
    NOTE: the error body {"error_code", "message"} is assumed; bexio's reference shows none.
    """
    contacts = [
        {"id": 7, "nr": "000007", "contact_type_id": 1, "name_1": "Beispiel AG", "name_2": None,
         "phone_fixed": "+41 (0)44 555 01 00", "phone_fixed_second": "", "phone_mobile": "", "mail": "info@beispiel.example",
         "mail_second": "", "updated_at": "2026-11-20 16:02:11"},
        {"id": 14, "nr": "000014", "contact_type_id": 2, "name_1": "Muster", "name_2": "Anna",
         "phone_fixed": "044 555 01 23", "phone_fixed_second": "", "phone_mobile": "", "mail": "anna.muster@beispiel.example",
         "mail_second": "", "updated_at": "2026-11-20 16:02:11"},
        {"id": 15, "nr": "000015", "contact_type_id": 2, "name_1": "Bernasconi", "name_2": "Luca",
         "phone_fixed": "", "phone_fixed_second": "", "phone_mobile": "079'555'00'11", "mail": "",
         "mail_second": "", "updated_at": "2026-11-20 16:02:11"},
    ]
    relations = [{"id": 3, "contact_id": 7, "contact_sub_id": 14, "description": "", "updated_at": "2026-11-20 16:02:11"}]
    state.data.update(contacts=contacts, relations=relations)

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error_code": status, "message": message}, status_code=status, headers=headers or None)

    failures = {
        EXPIRED_TOKEN: lambda: error(401, "The access token is invalid or expired"),
        RATE_LIMIT: lambda: error(429, "Too many requests", **{"RateLimit-Limit": "60", "RateLimit-Remaining": "0",
                                                               "RateLimit-Reset": str(state.retry_after)}),
        SERVER_ERROR: lambda: error(500, "Internal server error"),
    }

    async def endpoint(request: Request) -> Response:
        recorded = await record(request, state)
        if request.headers.get("authorization") != f"Bearer {BEXIO_TOKEN}":
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        limit, offset = int(recorded.query.get("limit", 500)), int(recorded.query.get("offset", 0))
        if limit > 2000:
            return error(400, "limit must not exceed 2000")
        rows = {"/2.0/contact": contacts, "/2.0/contact_relation": relations}.get(recorded.path)
        if rows is None:
            return error(404, "Not found")
        return JSONResponse(sorted(rows, key=lambda row: row["id"])[offset : offset + limit])

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET"])])


# Microsoft: Entra ID sign-in, Graph contacts delta and Dataverse ---------------------------


def microsoft_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """Microsoft Entra ID, Graph and Dataverse on one https server:

    - Sign-in: OpenID configuration and the client-credential token request of
      https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
      (a wrong secret answers 401 invalid_client, AADSTS7000215).
    - Graph: https://learn.microsoft.com/en-us/graph/api/contact-delta (pages with
      @odata.nextLink, then @odata.deltaLink; changes with @removed; 410 for an unknown
      delta token) and https://learn.microsoft.com/graph/errors ({"error": {"code", "message"}}).
    - Dataverse: https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-data-web-api
      ($select, $filter with contains(), $expand, $top), create with 204 and OData-EntityId
      (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/create-entity-web-api)
      and the 429 of https://learn.microsoft.com/power-apps/developer/data-platform/api-limits.
    """
    graph_contacts = {
        "AAMkAGI2ANNA=": {"displayName": "Anna Muster", "givenName": "Anna", "surname": "Muster",
                          "companyName": "Beispiel AG", "businessPhones": ["+41 44 555 01 23"], "homePhones": [],
                          "mobilePhone": None, "emailAddresses": [{"name": "Anna Muster", "address": "anna.muster@beispiel.example"}]},
        "AAMkAGI2LUCA=": {"displayName": "Luca Bernasconi", "givenName": "Luca", "surname": "Bernasconi",
                          "companyName": None, "businessPhones": [], "homePhones": [], "mobilePhone": "079 555 00 11",
                          "emailAddresses": []},
        "AAMkAGI2HANS=": {"displayName": "Hans Bern", "givenName": "Hans", "surname": "Bern", "companyName": "Bern AG",
                          "businessPhones": ["031 555 01 77"], "homePhones": [], "mobilePhone": None, "emailAddresses": []},
    }
    contacts = {
        "0b8f2c6e-1d2a-4e5f-9a7b-3c4d5e6f7a81": {"fullname": "Anna Muster", "telephone1": "+41 44 555 01 23",
                                                 "telephone2": None, "mobilephone": None, "emailaddress1": "anna.muster@beispiel.example",
                                                 "account": "5e1a9b20-7c3d-4f8e-8a6b-1c2d3e4f5a60"},
        "1c9f3d7f-2e3b-4f60-8b8c-4d5e6f708192": {"fullname": "Beat Nachbar", "telephone1": "044 555 01 24",
                                                 "telephone2": None, "mobilephone": None, "emailaddress1": None, "account": None},
    }
    accounts = {"5e1a9b20-7c3d-4f8e-8a6b-1c2d3e4f5a60": {"name": "Beispiel AG", "telephone1": "044 555 01 00",
                                                         "telephone2": None, "telephone3": None}}
    state.data.update(graph_contacts=graph_contacts, graph_log=[], contacts=contacts, accounts=accounts,
                      phonecalls={}, tokens={}, token_requests=0)
    # The change log of Graph contacts: (sequence, contact id, removed); a delta token is a position in it.
    sequence = itertools.count(1)
    state.data["graph_log"] = [(next(sequence), cid, False) for cid in graph_contacts]
    state.data["graph_sequence"] = sequence

    def graph_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": now_iso(), "request-id": secrets.token_hex(8)}}}
        return JSONResponse(body, status_code=status, headers=headers or None)

    failures = {
        EXPIRED_TOKEN: lambda: graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
        RATE_LIMIT: lambda: graph_error(429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                                        **{"Retry-After": str(state.retry_after)}),
        SERVER_ERROR: lambda: graph_error(500, "UnknownError", "An unexpected error occurred."),
    }

    async def openid(request: Request) -> Response:
        await record(request, state)
        tenant = request.path_params["tenant"]
        base = f"{base_url()}/{tenant}"
        return JSONResponse({
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        })

    async def token(request: Request) -> Response:
        recorded = await record(request, state)
        form = recorded.body if isinstance(recorded.body, dict) else {}
        state.data["token_requests"] += 1
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != MS_CLIENT_ID:
            return JSONResponse({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found."}, status_code=400)
        if form.get("client_secret") != MS_CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_codes": [7000215],
                                 "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID."},
                                status_code=401)
        access = secrets.token_urlsafe(24)
        state.data["tokens"][access] = form.get("scope", "")
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access})

    async def api(request: Request) -> Response:
        recorded = await record(request, state)
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in state.data["tokens"]:
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        path = recorded.path
        if "/contacts/delta" in path:
            return graph_delta(request, recorded)
        if path.startswith("/api/data/v9.2/"):
            if request.headers.get("odata-version") != "4.0":
                return graph_error(400, "0x80060888", "OData-Version 4.0 is required")
            return dataverse(request, recorded)
        return graph_error(404, "ResourceNotFound", f"no route {path}")

    def graph_delta(request: Request, recorded: Recorded) -> Response:
        log = state.data["graph_log"]
        query = recorded.query
        page_size = 2
        prefer = request.headers.get("prefer", "")
        if "odata.maxpagesize=" in prefer:
            page_size = min(page_size, int(prefer.split("odata.maxpagesize=")[1].split(",")[0]))
        if "$deltatoken" in query:
            token = query["$deltatoken"]
            newest = log[-1][0] if log else 0
            if not token.isdigit() or int(token) > newest or int(token) < state.data.get("oldest_delta", 0):
                return graph_error(410, "SyncStateNotFound", "The sync state generation is not found.")
            start_after = int(token)
            changes = [entry for entry in log if entry[0] > start_after]
            latest = {}
            for entry in changes:
                latest[entry[1]] = entry
            entries = list(latest.values())
            skip = 0
        else:
            skip = int(query.get("$skiptoken", 0))
            entries = [(0, cid, False) for cid in graph_contacts]
            start_after = 0
        page = entries[skip : skip + page_size]
        value = []
        for _, cid, removed in page:
            if removed or cid not in graph_contacts:
                value.append({"id": cid, "@removed": {"reason": "deleted"}})
            else:
                value.append({"@odata.etag": 'W/"EQAAABYAAAA"', "id": cid, **graph_contacts[cid]})
        body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(contact)", "value": value}
        link = f"{base_url()}{recorded.path}"
        if "$deltatoken" not in query and skip + page_size < len(entries):
            body["@odata.nextLink"] = f"{link}?$skiptoken={skip + page_size}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={log[-1][0] if log else 0}"
        return JSONResponse(body)

    def dataverse(request: Request, recorded: Recorded) -> Response:
        path, query = recorded.path[len("/api/data/v9.2/"):], recorded.query
        if request.method == "GET" and path in ("contacts", "accounts"):
            wanted = re.findall(r"contains\((\w+),'((?:[^']|'')*)'\)", query.get("$filter", ""))
            rows = contacts if path == "contacts" else accounts
            found = []
            for rid, row in rows.items():
                if any((row.get(column) or "").find(value.replace("''", "'")) >= 0 for column, value in wanted):
                    out = {"@odata.etag": 'W/"5512345"', f"{path[:-1]}id": rid,
                           **{k: v for k, v in row.items() if k != "account"}}
                    if path == "contacts":
                        account = row.get("account")
                        out["_parentcustomerid_value"] = account
                        out["parentcustomerid_account"] = (
                            {"accountid": account, "name": accounts[account]["name"]} if account else None
                        )
                        if account:
                            out["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"] = accounts[account]["name"]
                    found.append(out)
            top = int(query.get("$top", 5000))
            return JSONResponse({"@odata.context": f"{base_url()}/api/data/v9.2/$metadata#{path}", "value": found[:top]})
        if request.method == "POST" and path == "phonecalls":
            body = recorded.body if isinstance(recorded.body, dict) else {}
            if not body.get("subject"):
                return graph_error(400, "0x80040203", "subject is required")
            activity = str(uuid.uuid4())
            state.data["phonecalls"][activity] = {**body, "statecode": 0}
            return Response(status_code=204, headers={"OData-EntityId": f"{base_url()}/api/data/v9.2/phonecalls({activity})",
                                                      "OData-Version": "4.0"})
        found = re.fullmatch(r"phonecalls\(([0-9a-f-]{36})\)", path)
        if request.method == "PATCH" and found and found.group(1) in state.data["phonecalls"]:
            state.data["phonecalls"][found.group(1)].update(recorded.body or {})
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        return graph_error(404, "0x80060888", f"Resource not found for the segment '{path}'.")

    return Starlette(routes=[
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{path:path}", api, methods=["GET", "POST", "PATCH"]),
    ])


def graph_change(state: ContractState, contact_id: str, contact: dict[str, Any] | None) -> None:
    """Change (or with None, delete) a Graph contact and record it in the delta log."""
    if contact is None:
        state.data["graph_contacts"].pop(contact_id, None)
    else:
        state.data["graph_contacts"][contact_id] = contact
    state.data["graph_log"].append((next(state.data["graph_sequence"]), contact_id, contact is None))


# Odoo --------------------------------------------------------------------------------


def odoo_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """Odoo's external APIs, as documented at
    https://www.odoo.com/documentation/19.0/developer/reference/external_api.html:
    JSON-2 (`POST /json/2/<model>/<method>`, `Authorization: bearer <key>`, named
    parameters, errors as 4xx/5xx {"name", "message", "arguments", "context", "debug"})
    and JSON-RPC (`POST /jsonrpc`, services common.login and object.execute_kw; errors as
    HTTP 200 with an "error" member). res.partner has phone_sanitized and
    phone_mobile_search unless `state.data["sanitized"]` is False (an older database).
    """
    ids = itertools.count(300)
    partners = {
        42: {"name": "Anna Muster", "is_company": False, "phone": "+41 44 555 01 23", "mobile": False,
             "email": "anna.muster@beispiel.example", "parent_id": [7, "Beispiel AG"]},
        7: {"name": "Beispiel AG", "is_company": True, "phone": "044 555 01 00", "mobile": False, "email": False, "parent_id": False},
        43: {"name": "Beat Nachbar", "is_company": False, "phone": "044 555 01 24", "mobile": False, "email": False, "parent_id": False},
    }
    state.data.update(partners=partners, messages=[], activities=[], sanitized=True)

    def fields() -> dict[str, Any]:
        described = {name: {"type": "char"} for name in ("name", "phone", "mobile", "email")}
        described.update(is_company={"type": "boolean"}, parent_id={"type": "many2one"})
        if state.data["sanitized"]:
            described.update(phone_sanitized={"type": "char"}, phone_mobile_search={"type": "char"})
        return described

    def value(partner: dict[str, Any], name: str) -> Any:
        if name == "phone_sanitized":
            return e164(partner.get("mobile") or "") or e164(partner.get("phone") or "") or False
        if name == "phone_mobile_search":
            return " ".join(digits(partner.get(k) or "") for k in ("phone", "mobile"))
        return partner.get(name)

    def evaluate(domain: list[Any], partner: dict[str, Any]) -> bool:
        def parse(position: int) -> tuple[bool, int]:
            item = domain[position]
            if item == "|":
                left, position = parse(position + 1)
                right, position = parse(position)
                return left or right, position
            if item == "&":
                left, position = parse(position + 1)
                right, position = parse(position)
                return left and right, position
            field_name, operator, wanted = item
            stored = value(partner, field_name)
            if operator == "=":
                return stored == wanted, position + 1
            if operator == "ilike":
                text = stored if isinstance(stored, str) else ""
                if field_name == "phone_mobile_search":
                    wanted = digits(wanted)
                return wanted.lower() in text.lower(), position + 1
            raise ValueError(f"unsupported operator {operator}")

        if not domain:
            return True
        result, position = parse(0)
        while position < len(domain):
            more, position = parse(position)
            result = result and more
        return result

    def run(model: str, method: str, ids_: list[int] | None, kwargs: dict[str, Any]) -> Any:
        if model != "res.partner":
            raise LookupError(f"Model {model} does not exist")
        if method == "fields_get":
            return fields()
        if method == "search_read":
            if not state.data["sanitized"] and any(
                isinstance(clause, list) and clause[0] in ("phone_sanitized", "phone_mobile_search")
                for clause in kwargs.get("domain", [])
            ):
                raise ValueError("Invalid field res.partner.phone_sanitized in leaf")
            wanted = kwargs.get("fields") or ["name"]
            rows = [{"id": pid, **{f: p.get(f, False) for f in wanted}} for pid, p in partners.items()
                    if evaluate(kwargs.get("domain", []), p)]
            return rows[: kwargs.get("limit") or None]
        if method == "message_post":
            message_id = next(ids)
            state.data["messages"].append({"id": message_id, "res_id": ids_[0], **kwargs})
            return message_id
        if method == "activity_schedule":
            activity_id = next(ids)
            state.data["activities"].append({"id": activity_id, "res_id": ids_[0], **kwargs})
            return [activity_id]
        if method == "create":
            created = []
            for vals in kwargs.get("vals_list", []):
                partner_id = next(ids)
                partners[partner_id] = {"name": vals.get("name"), "is_company": False, "phone": vals.get("phone") or False,
                                        "mobile": False, "email": False, "parent_id": False}
                created.append(partner_id)
            return created
        raise AttributeError(f"The method '{method}' does not exist on the model '{model}'")

    def json2_error(status: int, name: str, message: str) -> JSONResponse:
        return JSONResponse({"name": name, "message": message, "arguments": [message, status], "context": {},
                             "debug": f"Traceback (most recent call last):\n{name}: {message}\n"}, status_code=status)

    failures = {
        EXPIRED_TOKEN: lambda: json2_error(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey"),
        RATE_LIMIT: lambda: JSONResponse({"name": "werkzeug.exceptions.TooManyRequests", "message": "Too Many Requests",
                                          "arguments": [], "context": {}, "debug": ""}, status_code=429,
                                         headers={"Retry-After": str(state.retry_after)}),
        SERVER_ERROR: lambda: json2_error(500, "builtins.RuntimeError", "Internal Server Error"),
    }

    async def json2(request: Request) -> Response:
        recorded = await record(request, state)
        if request.headers.get("authorization", "").lower() != f"bearer {ODOO_KEY}":
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        body = dict(recorded.body) if isinstance(recorded.body, dict) else {}
        ids_ = body.pop("ids", None)
        body.pop("context", None)
        try:
            return JSONResponse(run(request.path_params["model"], request.path_params["method"], ids_, body))
        except (LookupError, AttributeError, ValueError) as error:
            return json2_error(422, f"builtins.{type(error).__name__}", str(error))

    async def jsonrpc(request: Request) -> Response:
        recorded = await record(request, state)
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        payload = recorded.body if isinstance(recorded.body, dict) else {}
        params = payload.get("params", {})
        service, method, args = params.get("service"), params.get("method"), params.get("args", [])

        def error(name: str, message: str) -> JSONResponse:
            return JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "error": {
                "code": 200, "message": "Odoo Server Error",
                "data": {"name": name, "debug": "", "message": message, "arguments": [message], "context": {}}}})

        if service == "common" and method == "login":
            ok = args[:3] == [ODOO_DATABASE, ODOO_LOGIN, ODOO_KEY]
            return JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": ODOO_UID if ok else False})
        if service == "object" and method == "execute_kw":
            database, uid, key, model, model_method, positional, named = (args + [None] * 7)[:7]
            if database != ODOO_DATABASE or uid != ODOO_UID or key != ODOO_KEY:
                return error("odoo.exceptions.AccessDenied", "Access Denied")
            try:
                result = run(model, model_method, positional[0] if positional else None, named or {})
            except (LookupError, AttributeError, ValueError) as failure:
                return error(f"builtins.{type(failure).__name__}", str(failure))
            return JSONResponse({"jsonrpc": "2.0", "id": payload.get("id"), "result": result})
        return error("builtins.KeyError", f"unknown service {service}.{method}")

    return Starlette(routes=[
        Route("/json/2/{model}/{method}", json2, methods=["POST"]),
        Route("/jsonrpc", jsonrpc, methods=["POST"]),
    ])


# Zendesk -----------------------------------------------------------------------------


def zendesk_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """Zendesk Support, as documented at
    https://developer.zendesk.com/documentation/voice/talk-partner-edition/retrieving-the-zendesk-user-id-of-a-caller/
    (phone:*<digits> matches any stored form ending in those digits),
    https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ (create ticket,
    201 with {"ticket": ...}) and https://developer.zendesk.com/api-reference/introduction/rate-limits
    (429 with Retry-After). API token as Basic auth `{email}/token:{token}`; a rejected one
    gets 401 {"error": "Couldn't authenticate you"}.
    """
    ids = itertools.count(5001)
    users = {
        36001: {"name": "Anna Muster", "email": "anna.muster@beispiel.example", "phone": "+41 44 555 01 23",
                "organization_id": 9001, "role": "end-user"},
        36002: {"name": "Beat Nachbar", "email": "beat@nachbar.example", "phone": "+41 44 555 01 24",
                "organization_id": None, "role": "end-user"},
        36003: {"name": "Fremd Person", "email": "fremd@example.de", "phone": "+49 30 44555 0123",
                "organization_id": None, "role": "end-user"},
    }
    organizations = {9001: {"id": 9001, "name": "Beispiel AG"}}
    state.data.update(users=users, tickets={})
    expected = "Basic " + base64.b64encode(f"{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}".encode()).decode()

    failures = {
        EXPIRED_TOKEN: lambda: JSONResponse({"error": "Couldn't authenticate you"}, status_code=401),
        RATE_LIMIT: lambda: PlainTextResponse("Number of allowed API requests per minute exceeded", status_code=429,
                                              headers={"Retry-After": str(state.retry_after), "X-Rate-Limit": "200",
                                                       "X-Rate-Limit-Remaining": "0"}),
        SERVER_ERROR: lambda: JSONResponse({"error": "InternalError", "description": "Something went wrong"}, status_code=500),
    }

    async def endpoint(request: Request) -> Response:
        recorded = await record(request, state)
        if request.headers.get("authorization") != expected:
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        if recorded.path == "/api/v2/users/search.json":
            query = recorded.query.get("query", "")
            found = re.fullmatch(r"phone:\*(\d+)", query)
            wanted = found.group(1) if found else None
            hits = [{"id": uid, "url": f"{base_url()}/api/v2/users/{uid}.json", **u, "created_at": "2025-03-02T09:14:00Z"}
                    for uid, u in users.items() if wanted and digits(u["phone"]).endswith(wanted)]
            body: dict[str, Any] = {"users": hits, "next_page": None, "previous_page": None, "count": len(hits)}
            if "organizations" in recorded.query.get("include", ""):
                body["organizations"] = [organizations[u["organization_id"]] for u in hits if u["organization_id"] in organizations]
            return JSONResponse(body)
        if recorded.path == "/api/v2/tickets.json" and request.method == "POST":
            ticket = (recorded.body or {}).get("ticket") or {}
            if ticket.get("requester_id") not in users:
                return JSONResponse({"error": "RecordInvalid", "description": "Record validation errors",
                                     "details": {"requester": [{"description": "Requester: is invalid"}]}}, status_code=422)
            ticket_id = next(ids)
            state.data["tickets"][ticket_id] = ticket
            return JSONResponse({"ticket": {"id": ticket_id, "url": f"{base_url()}/api/v2/tickets/{ticket_id}.json", **ticket}},
                                status_code=201)
        return JSONResponse({"error": "InvalidEndpoint", "description": "Not found"}, status_code=404)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


# Zammad ------------------------------------------------------------------------------


def zammad_app(state: ContractState, base_url: Callable[[], str]) -> Starlette:
    """Zammad REST API, as documented at https://docs.zammad.org/en/latest/api-intro.html
    (`Authorization: Token token=...`), https://docs.zammad.org/en/latest/api/user.html
    (users/search?query=&limit=; the query matches stored text, and expand=true adds the
    organisation's name) and https://docs.zammad.org/en/latest/api/ticket/index.html
    (create: title, group, customer_id, article). Errors are {"error", "error_human"}, as
    Zammad's controllers render them.
    NOTE: the texts of the 401 and 429 errors are assumed; the API docs show none.
    """
    ids = itertools.count(31)
    users = {
        12: {"login": "anna.muster@beispiel.example", "firstname": "Anna", "lastname": "Muster",
             "email": "anna.muster@beispiel.example", "phone": "+41 44 555 01 23", "mobile": "", "organization_id": 3},
        13: {"login": "beat@nachbar.example", "firstname": "Beat", "lastname": "Nachbar", "email": "beat@nachbar.example",
             "phone": "", "mobile": "044 555 01 23 (privat: 044 555 01 24)", "organization_id": None},
    }
    organizations = {3: "Beispiel AG"}
    groups = {"Users": 1, "Support": 2}
    state.data.update(users=users, tickets={})

    def error(status: int, message: str, **headers: str) -> JSONResponse:
        return JSONResponse({"error": message, "error_human": message}, status_code=status, headers=headers or None)

    failures = {
        EXPIRED_TOKEN: lambda: error(401, "Invalid token!"),
        RATE_LIMIT: lambda: error(429, "Too many requests", **{"Retry-After": str(state.retry_after)}),
        SERVER_ERROR: lambda: error(500, "An internal error occurred."),
    }

    async def endpoint(request: Request) -> Response:
        recorded = await record(request, state)
        if request.headers.get("authorization") != f"Token token={ZAMMAD_TOKEN}":
            return failures[EXPIRED_TOKEN]()
        failed = await apply_failure(state, recorded.path, failures)
        if failed is not None:
            return failed
        if recorded.path == "/api/v1/users/search":
            query = recorded.query.get("query", "").lower()
            expand = recorded.query.get("expand") == "true"
            hits = []
            for uid, user in users.items():
                if query and any(query in (user.get(k) or "").lower() for k in ("phone", "mobile", "firstname", "lastname", "email")):
                    hit = {"id": uid, **user, "active": True, "vip": False, "created_at": "2025-03-02T09:14:00.000Z"}
                    if expand and user["organization_id"]:
                        hit["organization"] = organizations[user["organization_id"]]
                    hits.append(hit)
            return JSONResponse(hits[: int(recorded.query.get("limit", 10))])
        if recorded.path == "/api/v1/tickets" and request.method == "POST":
            ticket = recorded.body if isinstance(recorded.body, dict) else {}
            if ticket.get("group") not in groups:
                return error(422, f"No lookup value found for 'group': {ticket.get('group')!r}")
            if ticket.get("customer_id") not in users:
                return error(422, f"No lookup value found for 'customer': {ticket.get('customer_id')!r}")
            ticket_id = next(ids)
            state.data["tickets"][ticket_id] = ticket
            return JSONResponse({"id": ticket_id, "number": f"{31000 + ticket_id}", "title": ticket.get("title"),
                                 "group_id": groups[ticket["group"]], "customer_id": ticket["customer_id"],
                                 "created_at": now_iso()}, status_code=201)
        return error(404, "No route matches")

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


APPS: dict[str, Callable[[ContractState, Callable[[], str]], Starlette]] = {
    "hubspot": hubspot_app,
    "pipedrive": pipedrive_app,
    "bexio": bexio_app,
    "microsoft": microsoft_app,
    "odoo": odoo_app,
    "zendesk": zendesk_app,
    "zammad": zammad_app,
}

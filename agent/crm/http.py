"""The HTTP client every CRM connector uses: auth, rate limits, back-off and error codes.

One `CrmHttp` per connector. Each request gets a time budget: a ring-time lookup has
the lookup timeout, an action or sync has longer. Within the budget the client waits
for the connector's rate limits and honours a 429 response's Retry-After, backing off
exponentially when it names no wait. After a 401 it signs in again once where the auth
can refresh. Every failure becomes a ConnectorError with a `crm.*` code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from agent.crm import errors
from agent.crm.ratelimit import RateLimited, RateLimiter, retry_after
from agent.lookup.connector import ConnectorError

log = logging.getLogger("ringboard.crm.http")

# A CRM response larger than this is not a page of contacts, so reading stops there. A
# bexio page of 2,000 contacts is about 2 MB.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

# The httpx timeout of one request attempt is at most this, whatever its budget.
MAX_ATTEMPT_SECONDS = 30.0

# Requests are tried at most this often (429 replies, and 502-504 for GET requests).
MAX_ATTEMPTS = 4

# Exponential back-off when a 429 or 503 reply names no wait: 1 s, 2 s, 4 s...
BACKOFF_BASE = 1.0

# Statuses after which a GET request is tried again: the server or a proxy was busy.
RETRY_GET_STATUSES = (502, 503, 504)

# The limit of CRMs that document none (self-hosted Odoo and Zammad): far above what a
# call notifier sends, it mainly carries a 429 reply's wait to the following requests.
UNDOCUMENTED_LIMIT = (600, 60.0)


class Auth(Protocol):
    """The signing of a connector's requests."""

    async def headers(self) -> dict[str, str]:
        """Return the headers that authenticate a request."""

    async def invalidate(self, rejected: Mapping[str, str]) -> bool:
        """Drop the token of the `rejected` headers; return True when signing in again may help."""


class StaticAuth:
    """Fixed headers, such as a bearer token from the configuration; a rejection is final."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    async def headers(self) -> dict[str, str]:
        return dict(self._headers)

    async def invalidate(self, rejected: Mapping[str, str]) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class CrmResponse:
    """A successful response: status, headers and the parsed JSON body (None when empty)."""

    status: int
    headers: httpx.Headers
    data: Any


@dataclass(frozen=True, slots=True)
class Vendor:
    """The connector facts that error messages name: its label, the CRM and its secret's source."""

    name: str
    label: str
    crm: str
    # Where the rejected secret was read from: a file path or "$VARIABLE".
    source: str | None = None
    # A text code saying where in the CRM an administrator creates a new token.
    renew: str | None = None


class CrmHttp:
    """Sends a connector's requests to its CRM within a time budget."""

    def __init__(
        self,
        vendor: Vendor,
        base_url: str,
        auth: Auth,
        *,
        limiters: Sequence[RateLimiter] = (),
        message_of: Callable[[Any], str | None] = lambda data: None,
        verify: ssl.SSLContext | bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.limiters = tuple(limiters) or (RateLimiter(*UNDOCUMENTED_LIMIT),)
        self.message_of = message_of
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": "Ringboard", "Accept": "application/json", **(headers or {})},
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def get(self, url: str, *, budget: float, **options: Any) -> CrmResponse:
        """Send a GET request (tried again after 429 and 502-504 within the budget)."""
        return await self.request("GET", url, budget=budget, **options)

    async def post(self, url: str, *, budget: float, **options: Any) -> CrmResponse:
        """Send a POST request (tried again only after 429, which the server did not process)."""
        return await self.request("POST", url, budget=budget, **options)

    async def request(
        self,
        method: str,
        url: str,
        *,
        budget: float,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        limiters: Sequence[RateLimiter] | None = None,
        retry: bool = True,
    ) -> CrmResponse:
        """Send one request, waiting and retrying within `budget` seconds; raise ConnectorError."""
        target = self._url(url)
        path = urlsplit(target).path
        deadline = time.monotonic() + budget
        signed_in_again = False

        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._take_turn(limiters if limiters is not None else self.limiters, deadline)
            signed = await self.auth.headers()
            response, body = await self._send(method, target, path, params, json_body, {**signed, **(headers or {})}, deadline)
            status = response.status_code

            if 200 <= status < 300:
                return CrmResponse(status, response.headers, self._parse(body, method, path))

            data = _json_or_none(body)
            message = errors.short_message(self.message_of(data)) or errors.short_message(
                body[:400].decode("utf-8", "replace") if data is None else None
            )
            detail = f"{method} {path}: HTTP {status}" + (f": {message}" if message else "")

            if status == 401 and not signed_in_again and await self.auth.invalidate(signed):
                signed_in_again = True
                log.info("connector %s: %s rejected the token; signing in again", self.vendor.name, path)
                continue

            wait = self._retry_wait(status, method, response.headers, attempt)
            if wait is not None:
                for limiter in self.limiters:
                    limiter.block(wait)
                if retry and attempt < MAX_ATTEMPTS and time.monotonic() + wait < deadline:
                    log.info(
                        "connector %s: %s %s returned HTTP %d; retrying in %.1f s",
                        self.vendor.name, method, path, status, wait,
                    )
                    await asyncio.sleep(wait)
                    continue
                if status == 429:
                    raise self._error(errors.RATE_LIMITED, detail, seconds=max(1, math.ceil(wait)))

            raise self._status_error(status, detail, message)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # Steps -------------------------------------------------------------------------

    def _url(self, url: str) -> str:
        """Join a path to the base URL; an absolute URL (a next-page link) must share its origin."""
        if not url.startswith(("http://", "https://")):
            return self.base_url + url
        base, given = urlsplit(self.base_url), urlsplit(url)
        if (given.scheme, given.netloc) != (base.scheme, base.netloc):
            raise self._error(errors.INVALID_RESPONSE, f"the server sent a link to another host: {given.netloc}")
        return url

    async def _take_turn(self, limiters: Sequence[RateLimiter], deadline: float) -> None:
        for limiter in limiters:
            try:
                await limiter.acquire(max(0.0, deadline - time.monotonic()))
            except RateLimited as limited:
                raise self._error(
                    errors.RATE_LIMITED,
                    f"the client-side rate limit allows the next request in {limited.seconds:.1f} s",
                    seconds=max(1, math.ceil(limited.seconds)),
                ) from None

    async def _send(
        self,
        method: str,
        target: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        deadline: float,
    ) -> tuple[httpx.Response, bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._error(errors.TIMEOUT, f"{method} {path}: no time left", seconds=0)
        timeout = httpx.Timeout(min(remaining, MAX_ATTEMPT_SECONDS))
        try:
            request = self._client.build_request(
                method, target, params=params, json=json_body, headers=headers, timeout=timeout
            )
            response = await self._client.send(request, stream=True)
            try:
                body = await _read_limited(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise self._error(
                errors.TIMEOUT, f"{method} {path}: {type(error).__name__}", seconds=round(remaining, 1)
            ) from error
        except httpx.TransportError as error:
            host = urlsplit(target).hostname or ""
            raise self._error(errors.UNREACHABLE, f"{method} {path}: {error}", host=host) from error
        except _TooLarge:
            raise self._error(
                errors.INVALID_RESPONSE, f"{method} {path}: the response is larger than {MAX_RESPONSE_BYTES} bytes"
            ) from None
        return response, body

    def _parse(self, body: bytes, method: str, path: str) -> Any:
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise self._error(errors.INVALID_RESPONSE, f"{method} {path}: the response is not JSON: {error}") from error

    def _retry_wait(self, status: int, method: str, headers: httpx.Headers, attempt: int) -> float | None:
        """Return how long to wait before trying again, or None when the status is final."""
        if status == 429 or (method == "GET" and status in RETRY_GET_STATUSES):
            named = retry_after(headers)
            return named if named is not None else BACKOFF_BASE * 2 ** (attempt - 1)
        return None

    def _status_error(self, status: int, detail: str, message: str | None) -> ConnectorError:
        if status == 401:
            return self._error(
                errors.AUTH_FAILED, detail, source=self.vendor.source, renew=self.vendor.renew
            )
        if status == 403:
            return self._error(errors.FORBIDDEN, detail, message=message)
        if status == 404:
            return self._error(errors.NOT_FOUND, detail, message=message)
        if status >= 500:
            return self._error(errors.SERVER_ERROR, detail, status=status)
        return self._error(errors.REJECTED, detail, status=status, message=message)

    def _error(self, code: str, detail: str, **params: Any) -> ConnectorError:
        return errors.crm_error(code, detail, label=self.vendor.label, crm=self.vendor.crm, **params)


class _TooLarge(Exception):
    pass


async def _read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise _TooLarge()
    return bytes(body)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def expect(condition: bool, vendor: Vendor, what: str) -> None:
    """Raise crm.invalid_response naming `what` when a response does not have the expected shape."""
    if not condition:
        raise errors.crm_error(
            errors.INVALID_RESPONSE, f"unexpected response: {what}", label=vendor.label, crm=vendor.crm
        )


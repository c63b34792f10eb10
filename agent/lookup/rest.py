"""A generic REST lookup: the JSON contract of peoplefone CONNECTOR, or a GET URL template.

POST mode sends `{"inputs": {"phoneNumber": "41441234567"}}` (E.164 digits without "+")
with a token header, and reads a JSON list of contacts:

    [{"name": "Alexa Holiday", "company": "White Cross Co", "contactUri": "https://...",
      "companyUri": "https://...", "id": "42", "crmName": "Sugar CRM", "crmLogo": "https://...",
      "crmActions": ["CallFlow"], "customData": {"Title1": "Data1"}}]

Older services of that contract use capitalised keys ("Name", "ContactUri"), so keys are
read case-insensitively. GET mode fills `{e164}`, `{digits}`, `{national}` or `{nsn}` into
the configured URL and reads the same list.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import phonenumbers

from agent.lookup.connector import (
    Action,
    Card,
    Connector,
    ConnectorError,
    ConnectorHealth,
    Detail,
    ErrorCode,
)
from agent.lookup.numbers import CallerNumber, Match, MatchReason
from agent.lookup.settings import RestSettings

log = logging.getLogger("ringboard.lookup.rest")

# A response larger than this is not a list of a few contacts, so reading stops there.
MAX_RESPONSE_BYTES = 1024 * 1024

# Only this many contacts of one response are read, because the page shows five cards at most.
MAX_RESULTS = 20

# Keys of a contact that may carry the stored number, so the match can be verified here.
NUMBER_KEYS = ("phonenumber", "phone", "number")


class RestConnector(Connector):
    """A company's own lookup service over HTTP."""

    kind = "live"

    def __init__(self, settings: RestSettings, *, timeout: float) -> None:
        self.name = settings.name
        self.label = settings.label
        self.logo = settings.logo
        self.settings = settings
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": "Ringboard", "Accept": "application/json"},
        )
        self._last_error: ConnectorError | None = None

    async def stop(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def lookup(self, number: CallerNumber) -> list[Card]:
        """Send the caller's number to the service and turn the contacts it returns into cards."""
        try:
            items = await self._request(number)
        except ConnectorError as error:
            self._last_error = error
            raise
        self._last_error = None
        cards = [card for item in items[:MAX_RESULTS] if (card := self._card(item, number)) is not None]
        return cards

    async def health(self) -> ConnectorHealth:
        """Return the outcome of the last lookup; the contract has no separate health request."""
        if self._last_error is None:
            return ConnectorHealth(ok=True)
        return ConnectorHealth(ok=False, code=self._last_error.code, params=self._last_error.params)

    # Steps -------------------------------------------------------------------------

    async def _request(self, number: CallerNumber) -> list[Any]:
        """Send the request and return the parsed JSON list; raise ConnectorError on failure."""
        headers = {}
        if self.settings.token is not None:
            headers[self.settings.token_header] = self.settings.token.value

        if self.settings.method == "post":
            request = self._client.build_request(
                "POST", self.settings.url, json={"inputs": {"phoneNumber": number.e164[1:]}}, headers=headers
            )
        else:
            request = self._client.build_request("GET", fill_url(self.settings.url, number), headers=headers)

        try:
            response = await self._client.send(request, stream=True)
            try:
                body = await _read_limited(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise ConnectorError(ErrorCode.TIMEOUT, f"{type(error).__name__} from {self.settings.url}") from error
        except httpx.TransportError as error:
            raise ConnectorError(ErrorCode.UNREACHABLE, f"{self.settings.url}: {error}") from error

        status = response.status_code
        if status in (401, 403):
            raise ConnectorError(ErrorCode.AUTH_FAILED, f"HTTP {status} from {self.settings.url}", status=status)
        if status == 204:
            return []
        if not 200 <= status < 300:
            raise ConnectorError(ErrorCode.HTTP_ERROR, f"HTTP {status} from {self.settings.url}", status=status)

        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"the response is not JSON: {error}") from error
        if not isinstance(data, list):
            raise ConnectorError(
                ErrorCode.INVALID_RESPONSE, f"the response is a JSON {type(data).__name__}, not a list"
            )
        return data

    def _card(self, item: Any, number: CallerNumber) -> Card | None:
        """Turn one contact of the response into a card, or None when it cannot be shown."""
        if not isinstance(item, dict):
            return None
        fields = {str(key).lower(): value for key, value in item.items()}
        name = _string(fields.get("name"))
        company = _string(fields.get("company"))
        if not name and not company:
            return None

        match = self._match(fields, number)
        if match is None:
            return None

        custom = fields.get("customdata")
        details = tuple(
            Detail(str(key), _string(value) or "")
            for key, value in (custom.items() if isinstance(custom, dict) else [])
            if _string(value)
        )
        actions = fields.get("crmactions")
        action_tuple = tuple(
            Action(id=str(action), label=str(action))
            for action in (actions if isinstance(actions, list) else [])
            if isinstance(action, (str, int)) and str(action)
        )
        # NOTE: `crmLogo` is a URL on the CRM's host; cards only carry logos the agent
        # serves (the connector's `logo` setting), so it is not used.
        contact_id = fields.get("id")
        return self.card(
            match,
            contact_id=str(contact_id) if contact_id not in (None, "") else None,
            name=name,
            company=company,
            url=_string(fields.get("contacturi")),
            company_url=_string(fields.get("companyuri")),
            details=details,
            actions=action_tuple,
            label=_string(fields.get("crmname")) or self.label,
        )

    def _match(self, fields: dict[str, Any], number: CallerNumber) -> Match | None:
        """Verify the contact's own number when the response has one, else trust the service."""
        stored = [text for key in NUMBER_KEYS if (text := _string(fields.get(key)))]
        if not stored:
            return Match(MatchReason.CONNECTOR, number.display, "")
        match = number.best_match(stored)
        if match is None:
            log.debug("connector %s: contact %s does not match %s; dropped", self.name, fields.get("id"), number.e164)
        return match


def fill_url(template: str, number: CallerNumber) -> str:
    """Fill the GET URL template with the caller's number, URL-encoded."""
    assert number.number is not None
    national = phonenumbers.format_number(phonenumbers.parse(number.e164), phonenumbers.PhoneNumberFormat.NATIONAL)
    values = {
        "e164": number.e164,
        "digits": number.e164[1:],
        "national": national,
        "nsn": number.number.national or "",
    }
    return template.format_map({key: quote(value, safe="") for key, value in values.items()})


async def _read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise ConnectorError(ErrorCode.INVALID_RESPONSE, f"the response is larger than {MAX_RESPONSE_BYTES} bytes")
    return bytes(body)


def _string(value: Any) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None

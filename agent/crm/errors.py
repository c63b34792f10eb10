"""Error codes of CRM lookups and actions, sent to the page with parameters it translates.

Every code's parameters include `label` (the connector's label) and `crm` (the vendor's
name). `agent/crm_texts.json` has the English, German, French and Italian texts.
"""

from __future__ import annotations

from typing import Any

from agent.lookup.connector import ConnectorError

AUTH_FAILED = "crm.auth_failed"
FORBIDDEN = "crm.forbidden"
NOT_FOUND = "crm.not_found"
REJECTED = "crm.rejected"
RATE_LIMITED = "crm.rate_limited"
SERVER_ERROR = "crm.server_error"
TIMEOUT = "crm.timeout"
UNREACHABLE = "crm.unreachable"
INVALID_RESPONSE = "crm.invalid_response"

# Action errors that come from the agent rather than a CRM.
UNKNOWN_CONNECTOR = "action.unknown_connector"
UNKNOWN_ACTION = "action.unknown_action"
NO_CONTACT = "action.no_contact"
NO_NUMBER = "action.no_number"
ACTION_FAILED = "action.failed"

# An action's result when the contact already existed, so nothing was created.
CONTACT_EXISTS = "crm.contact_exists"

# A vendor's own error text is passed on (it helps an administrator), cut to this length.
MAX_MESSAGE = 300


def crm_error(code: str, detail: str, *, label: str, crm: str, **params: Any) -> ConnectorError:
    """Build a ConnectorError with the parameters every CRM code has; parameters that are None are left out."""
    present = {key: value for key, value in params.items() if value is not None}
    return ConnectorError(code, detail, label=label, crm=crm, **present)


def short_message(text: object) -> str | None:
    """Return a vendor's error text on one line and cut to MAX_MESSAGE characters, or None."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    return text[:MAX_MESSAGE] or None

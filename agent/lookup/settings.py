"""The `[lookup]` table and the `[[connectors]]` array of the configuration, checked key by key.

Errors are `agent.config.ConfigError`s that name the key and the fix. Secrets are read
from a file or an environment variable named in the configuration, never written in
it, and are wrapped in `Secret` so no repr or log line shows them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError
from agent.lookup.numbers import (
    DEFAULT_MATCH_DIGITS,
    MAX_MATCH_DIGITS,
    MIN_MATCH_DIGITS,
    DirectDialBlock,
    NumberRules,
    direct_dial_block,
)

DEFAULT_TIMEOUT = 1.5
DEFAULT_CACHE_SECONDS = 300
DEFAULT_SYNC_MINUTES = 15

# Connector names appear in URLs (`/api/calls/{id}/actions/{connector}/{action}`) and logs.
CONNECTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

# Direct-dial extensions longer than this are not office extensions.
MAX_EXTENSION_DIGITS = 6

CRM_TYPES = ("hubspot", "pipedrive", "bexio", "graph", "dataverse", "odoo", "zendesk", "zammad")
CONNECTOR_TYPES = ("addressbook", "carddav", "ldap", "rest", *CRM_TYPES)
DEFAULT_LABELS = {
    "addressbook": "Address book",
    "carddav": "CardDAV",
    "ldap": "Directory",
    "rest": "CRM",
    "hubspot": "HubSpot",
    "pipedrive": "Pipedrive",
    "bexio": "bexio",
    "graph": "Microsoft 365",
    "dataverse": "Dynamics 365",
    "odoo": "Odoo",
    "zendesk": "Zendesk",
    "zammad": "Zammad",
}
COMMON_KEYS = {"type", "name", "label", "logo"}

# The vendors' own API hosts. Each is only the default of the `url` key, so tests and
# proxies can point a connector elsewhere. Per-tenant services (Dataverse, Odoo, Zendesk,
# Zammad) have no default: their `url` is required.
DEFAULT_URLS = {
    "hubspot": "https://api.hubapi.com",
    "pipedrive": "https://api.pipedrive.com",
    "bexio": "https://api.bexio.com",
    "graph": "https://graph.microsoft.com",
}
DEFAULT_AUTHORITY_URL = "https://login.microsoftonline.com"
DEFAULT_BEXIO_WEB_URL = "https://office.bexio.com"
DEFAULT_ZAMMAD_GROUP = "Users"

# Call types that automatic logging distinguishes, and what it does for each.
AUTO_LOG_CALL_TYPES = ("answered", "missed", "outgoing")
AUTO_LOG_MODES = ("off", "log", "task")

# Languages of the call notes the agent writes into CRMs.
NOTE_LANGUAGES = ("en", "de", "fr", "it")

CRM_COMMON_KEYS = {"url", "auto_log", "language", "ca_file"}
MICROSOFT_KEYS = {"authority_url", "tenant", "client_id", "client_secret_file", "client_secret_env"}
TYPE_KEYS = {
    "addressbook": {"demo"},
    "carddav": {"url", "username", "password_file", "password_env", "sync_minutes", "contact_url"},
    "ldap": {
        "url",
        "start_tls",
        "bind_dn",
        "password_file",
        "password_env",
        "base_dn",
        "filter",
        "phone_attributes",
        "name_attributes",
        "company_attributes",
        "digit_wildcards",
        "contact_url",
    },
    "rest": {"url", "method", "token_header", "token_file", "token_env"},
    "hubspot": CRM_COMMON_KEYS | {"token_file", "token_env"},
    "pipedrive": CRM_COMMON_KEYS | {"token_file", "token_env", "web_url"},
    "bexio": CRM_COMMON_KEYS | {"token_file", "token_env", "web_url", "sync_minutes"},
    "graph": CRM_COMMON_KEYS | MICROSOFT_KEYS | {"user", "folder", "sync_minutes"},
    "dataverse": CRM_COMMON_KEYS | MICROSOFT_KEYS | {"app_id"},
    "odoo": CRM_COMMON_KEYS | {"protocol", "database", "login", "api_key_file", "api_key_env"},
    "zendesk": CRM_COMMON_KEYS | {"email", "token_file", "token_env"},
    "zammad": CRM_COMMON_KEYS | {"token_file", "token_env", "group"},
}
URL_PLACEHOLDERS = ("{e164}", "{digits}", "{national}", "{nsn}")

# LDAP attributes read by default: inetOrgPerson's phone attributes, and the name and
# company attributes of OpenLDAP (cn, o) and Active Directory (displayName, company).
DEFAULT_PHONE_ATTRIBUTES = ("telephoneNumber", "mobile", "homePhone")
DEFAULT_NAME_ATTRIBUTES = ("displayName", "cn")
DEFAULT_COMPANY_ATTRIBUTES = ("company", "o")


class Secret:
    """A password or token; its repr and str never show the value."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSettings:
    """Keys every `[[connectors]]` entry has."""

    type: str
    name: str
    label: str
    # A path served by the agent for the card's logo, such as "/logos/crm.svg".
    logo: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressBookSettings(ConnectorSettings):
    """`type = "addressbook"`: the local address book; `demo` fills it with the lab's callers."""

    demo: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CardDavSettings(ConnectorSettings):
    """`type = "carddav"`: an address book collection synced into the local index."""

    url: str
    username: str | None = None
    password: Secret | None = None
    sync_minutes: int = DEFAULT_SYNC_MINUTES
    # A link to the contact in the server's web interface, with {uid} for the vCard UID.
    contact_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapSettings(ConnectorSettings):
    """`type = "ldap"`: an LDAP directory or Active Directory, searched at ring time."""

    url: str
    base_dn: str
    start_tls: bool = False
    bind_dn: str | None = None
    password: Secret | None = None
    filter: str = "(objectClass=*)"
    phone_attributes: tuple[str, ...] = DEFAULT_PHONE_ATTRIBUTES
    name_attributes: tuple[str, ...] = DEFAULT_NAME_ATTRIBUTES
    company_attributes: tuple[str, ...] = DEFAULT_COMPANY_ATTRIBUTES
    # Search the trailing digits with "*" between every digit, for directories whose
    # phone attributes keep spaces in comparisons (Active Directory); slower.
    digit_wildcards: bool = False
    # A link to the entry, with {dn} for its DN.
    contact_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestSettings(ConnectorSettings):
    """`type = "rest"`: a lookup service speaking the peoplefone CONNECTOR JSON contract."""

    url: str
    method: str = "post"
    token_header: str = "X-Execution-Token"
    token: Secret | None = None


@dataclass(frozen=True, slots=True)
class AutoLog:
    """`auto_log`: what the agent writes into the CRM when a call ends, per call type."""

    answered: str = "off"
    missed: str = "off"
    outgoing: str = "off"

    def mode(self, call_type: str) -> str:
        """Return "off", "log" or "task" for "answered", "missed" or "outgoing"."""
        return str(getattr(self, call_type, "off"))


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret and where it was read from (a file path or "$VARIABLE"), for error messages."""

    secret: Secret
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CrmSettings(ConnectorSettings):
    """Keys every CRM connector has: its API's base URL, automatic logging and note language."""

    url: str
    auto_log: AutoLog = field(default_factory=AutoLog)
    language: str = "en"
    # A PEM file of CA certificates for a server with a private CA; None uses the system store.
    ca_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSpotSettings(CrmSettings):
    """`type = "hubspot"`: CRM search on the phone properties with a private app token."""

    token: Credential


@dataclass(frozen=True, slots=True, kw_only=True)
class PipedriveSettings(CrmSettings):
    """`type = "pipedrive"`: person search with an API token."""

    token: Credential
    # The company's web address for links; None reads it from the API (GET /v1/users/me).
    web_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BexioSettings(CrmSettings):
    """`type = "bexio"`: contacts synced into the local index with a personal access token."""

    token: Credential
    web_url: str = DEFAULT_BEXIO_WEB_URL
    sync_minutes: int = DEFAULT_SYNC_MINUTES


@dataclass(frozen=True, slots=True, kw_only=True)
class MicrosoftSettings(CrmSettings):
    """Client-credential sign-in at Microsoft Entra ID, shared by Graph and Dataverse."""

    tenant: str
    client_id: str
    client_secret: Credential
    authority_url: str = DEFAULT_AUTHORITY_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphSettings(MicrosoftSettings):
    """`type = "graph"`: a mailbox's Outlook contacts synced by delta query."""

    # The mailbox: a user principal name or object id.
    user: str
    # A contact folder id; None syncs the mailbox's default contacts folder.
    folder: str | None = None
    sync_minutes: int = DEFAULT_SYNC_MINUTES


@dataclass(frozen=True, slots=True, kw_only=True)
class DataverseSettings(MicrosoftSettings):
    """`type = "dataverse"`: Dynamics 365 contacts and accounts searched at ring time."""

    # The model-driven app to open records in; None lets Dynamics choose.
    app_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OdooSettings(CrmSettings):
    """`type = "odoo"`: res.partner searched over JSON-2 (Odoo 19+) or JSON-RPC (older)."""

    api_key: Credential
    protocol: str = "json2"
    database: str | None = None
    # The user the API key belongs to; JSON-RPC signs in with it.
    login: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ZendeskSettings(CrmSettings):
    """`type = "zendesk"`: users searched by phone, tickets created with an API token."""

    email: str
    token: Credential


@dataclass(frozen=True, slots=True, kw_only=True)
class ZammadSettings(CrmSettings):
    """`type = "zammad"`: users searched by phone, tickets created with an access token."""

    token: Credential
    group: str = DEFAULT_ZAMMAD_GROUP


@dataclass(frozen=True, slots=True)
class LookupSettings:
    """The lookup configuration: number rules, timing and the connectors in ranking order."""

    rules: NumberRules = field(default_factory=NumberRules)
    timeout: float = DEFAULT_TIMEOUT
    cache_seconds: int = DEFAULT_CACHE_SECONDS
    connectors: tuple[ConnectorSettings, ...] = (
        AddressBookSettings(type="addressbook", name="contacts", label="Address book"),
    )


def parse_lookup_settings(raw: dict[str, Any]) -> LookupSettings:
    """Check `[lookup]` and `[[connectors]]` of a parsed configuration document.

    `raw` is the whole document: the default region comes from `[numbers]`.
    """
    numbers = raw.get("numbers", {})
    region = str(numbers.get("default_region", "CH")).strip().upper() if isinstance(numbers, dict) else "CH"

    lookup = raw.get("lookup", {})
    if not isinstance(lookup, dict):
        raise ConfigError("[lookup] must be a table, e.g. a line [lookup] followed by its keys")
    _reject_unknown(
        lookup, "[lookup]", {"fallback_regions", "match_digits", "cache_seconds", "timeout", "main_numbers"}
    )

    rules = NumberRules(
        default_region=region,
        fallback_regions=_regions(lookup),
        match_digits=_integer(
            lookup, "match_digits", "[lookup] match_digits", DEFAULT_MATCH_DIGITS, MIN_MATCH_DIGITS, MAX_MATCH_DIGITS
        ),
        main_numbers=_main_numbers(lookup, region),
    )
    timeout = _number(lookup, "timeout", "[lookup] timeout", DEFAULT_TIMEOUT, 0.1, 30.0)
    cache_seconds = _integer(lookup, "cache_seconds", "[lookup] cache_seconds", DEFAULT_CACHE_SECONDS, 0, 86400)

    entries = raw.get("connectors")
    if entries is None:
        return LookupSettings(rules=rules, timeout=timeout, cache_seconds=cache_seconds)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError("[[connectors]] must be an array of tables: one [[connectors]] line per connector")

    connectors: list[ConnectorSettings] = []
    for index, entry in enumerate(entries, start=1):
        connector = _connector(entry, index)
        if any(other.name == connector.name for other in connectors):
            raise ConfigError(f'[[connectors]] name "{connector.name}" is used twice: give each connector its own name')
        connectors.append(connector)
    return LookupSettings(rules=rules, timeout=timeout, cache_seconds=cache_seconds, connectors=tuple(connectors))


def lab_settings() -> LookupSettings:
    """Return the lab's lookup: the demo address book, with Muster AG's direct-dial block."""
    block = direct_dial_block("+41 44 123 45 00", "+41 44 123 45", (2, 2), "CH")
    return LookupSettings(
        rules=NumberRules(default_region="CH", fallback_regions=("DE", "AT"), main_numbers=(block,)),
        connectors=(AddressBookSettings(type="addressbook", name="contacts", label="Demo contacts", demo=True),),
    )


# Sections ----------------------------------------------------------------------------


def _regions(lookup: dict[str, Any]) -> tuple[str, ...]:
    value = lookup.get("fallback_regions", [])
    example = 'fallback_regions = ["DE", "AT", "FR", "IT"]'
    if not isinstance(value, list):
        raise ConfigError(f"[lookup] fallback_regions must be a list of country codes, e.g. {example}")
    regions: list[str] = []
    for item in value:
        region = str(item).strip().upper() if isinstance(item, str) else ""
        if len(region) != 2 or not region.isalpha():
            raise ConfigError(f"[lookup] fallback_regions: {item!r} is not a two-letter country code, e.g. {example}")
        if region not in regions:
            regions.append(region)
    return tuple(regions)


def _main_numbers(lookup: dict[str, Any], region: str) -> tuple[DirectDialBlock, ...]:
    value = lookup.get("main_numbers", [])
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise ConfigError(
            "[[lookup.main_numbers]] must be an array of tables, e.g. [[lookup.main_numbers]] with"
            ' number = "+41 44 123 45 00" and extension_digits = 2'
        )
    blocks: list[DirectDialBlock] = []
    for index, entry in enumerate(value, start=1):
        where = f"[[lookup.main_numbers]] #{index}"
        _reject_unknown(entry, where, {"number", "direct_dial", "extension_digits"})
        number = entry.get("number")
        if not isinstance(number, str) or not number.strip():
            raise ConfigError(
                f'{where} number is missing: set the company\'s main number, e.g. number = "+41 44 123 45 00"'
            )
        low, high = _extension_digits(entry, where)
        prefix = entry.get("direct_dial")
        if prefix is None:
            if low != high:
                raise ConfigError(
                    f"{where} direct_dial is missing: with a range of extension_digits, set the digits every"
                    ' direct dial starts with, e.g. direct_dial = "+49 30 1234567"'
                )
            prefix = _strip_last_digits(number, low)
        if not isinstance(prefix, str):
            raise ConfigError(f'{where} direct_dial must be a string in quotes, e.g. "+41 44 123 45"')
        try:
            blocks.append(direct_dial_block(number, prefix, (low, high), region))
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
    return tuple(blocks)


def _extension_digits(entry: dict[str, Any], where: str) -> tuple[int, int]:
    value = entry.get("extension_digits")
    fix = "use a whole number such as 2, or a range such as [1, 4]"
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        low, high = value
    else:
        raise ConfigError(f"{where} extension_digits is missing or invalid: {fix}")
    if not 1 <= low <= high <= MAX_EXTENSION_DIGITS:
        raise ConfigError(
            f"{where} extension_digits = {value!r} is out of range: use 1 to {MAX_EXTENSION_DIGITS} digits"
        )
    return low, high


def _strip_last_digits(number: str, count: int) -> str:
    """Return `number` without its last `count` digits (the main number's extension part)."""
    kept = list(number.rstrip())
    removed = 0
    while kept and removed < count:
        if kept.pop().isdigit():
            removed += 1
    return "".join(kept)


def _connector(entry: dict[str, Any], index: int) -> ConnectorSettings:
    kind = entry.get("type")
    if kind not in CONNECTOR_TYPES:
        raise ConfigError(
            f"[[connectors]] #{index} type = {kind!r} is invalid: use one of {', '.join(CONNECTOR_TYPES)}"
        )
    name = entry.get("name", kind)
    if not isinstance(name, str) or not CONNECTOR_NAME.match(name):
        raise ConfigError(
            f"[[connectors]] #{index} name = {name!r} is invalid: use up to 32 lower-case letters, digits, - or _,"
            ' e.g. name = "crm"'
        )
    where = f'[[connectors]] "{name}"'
    _reject_unknown(entry, where, COMMON_KEYS | TYPE_KEYS[kind])
    label = _string(entry, "label", where, DEFAULT_LABELS[kind]) or DEFAULT_LABELS[kind]
    logo = _string(entry, "logo", where, None)
    if logo is not None and (not logo.startswith("/") or logo.startswith("//")):
        raise ConfigError(f'{where} logo = "{logo}" must be a path served by the agent, e.g. "/logos/crm.svg"')
    common = {"type": kind, "name": name, "label": label, "logo": logo}

    if kind == "addressbook":
        return AddressBookSettings(**common, demo=_boolean(entry, "demo", where, False))

    if kind in CRM_TYPES:
        return _crm_connector(entry, where, common)

    if kind == "carddav":
        return CardDavSettings(
            **common,
            url=_url(
                entry,
                where,
                ("http", "https"),
                "https://cloud.example.com/remote.php/dav/addressbooks/users/ringboard/contacts/",
            ),
            username=_string(entry, "username", where, None),
            password=_secret(entry, where, "password"),
            sync_minutes=_integer(entry, "sync_minutes", f"{where} sync_minutes", DEFAULT_SYNC_MINUTES, 1, 1440),
            contact_url=_template(entry, "contact_url", where, ("{uid}",)),
        )

    if kind == "ldap":
        base_dn = _string(entry, "base_dn", where, None)
        if not base_dn:
            raise ConfigError(
                f'{where} base_dn is missing: set the subtree to search, e.g. base_dn = "dc=example,dc=com"'
            )
        search_filter = _string(entry, "filter", where, "(objectClass=*)") or "(objectClass=*)"
        if not (search_filter.startswith("(") and search_filter.endswith(")")):
            raise ConfigError(
                f'{where} filter = "{search_filter}" must be an LDAP filter in parentheses, e.g. "(objectClass=person)"'
            )
        return LdapSettings(
            **common,
            url=_url(entry, where, ("ldap", "ldaps"), "ldaps://dc1.example.com"),
            base_dn=base_dn,
            start_tls=_boolean(entry, "start_tls", where, False),
            bind_dn=_string(entry, "bind_dn", where, None),
            password=_secret(entry, where, "password"),
            filter=search_filter,
            phone_attributes=_attributes(entry, "phone_attributes", where, DEFAULT_PHONE_ATTRIBUTES),
            name_attributes=_attributes(entry, "name_attributes", where, DEFAULT_NAME_ATTRIBUTES),
            company_attributes=_attributes(entry, "company_attributes", where, DEFAULT_COMPANY_ATTRIBUTES),
            digit_wildcards=_boolean(entry, "digit_wildcards", where, False),
            contact_url=_template(entry, "contact_url", where, ("{dn}",)),
        )

    method = (_string(entry, "method", where, "post") or "post").lower()
    if method not in ("post", "get"):
        raise ConfigError(f'{where} method = "{method}" is invalid: use "post" (JSON body) or "get" (URL template)')
    url = _url(entry, where, ("http", "https"), "https://crm.example.com/services/Lookup")
    if method == "get" and not any(placeholder in url for placeholder in URL_PLACEHOLDERS):
        raise ConfigError(
            f'{where} url has no placeholder for the number: with method = "get" use one of'
            f' {", ".join(URL_PLACEHOLDERS)}, e.g. "https://crm.example.com/lookup?number={{e164}}"'
        )
    token_header = _string(entry, "token_header", where, "X-Execution-Token") or "X-Execution-Token"
    if not re.fullmatch(r"[A-Za-z0-9-]+", token_header):
        raise ConfigError(
            f'{where} token_header = "{token_header}" is not an HTTP header name, e.g. "X-Execution-Token"'
        )
    return RestSettings(
        **common, url=url, method=method, token_header=token_header, token=_secret(entry, where, "token")
    )


# CRM connectors ----------------------------------------------------------------------


def _crm_connector(entry: dict[str, Any], where: str, common: dict[str, Any]) -> CrmSettings:
    """Check the keys of a CRM connector; `common` has its type, name, label and logo."""
    kind = common["type"]
    crm: dict[str, Any] = {
        **common,
        "url": _base_url(entry, where, "url", DEFAULT_URLS.get(kind), f"https://{kind}.example.com"),
        "auto_log": _auto_log(entry, where),
        "language": _choice(entry, "language", where, "en", NOTE_LANGUAGES),
        "ca_file": _ca_file(entry, where),
    }

    if kind == "hubspot":
        return HubSpotSettings(**crm, token=_credential(entry, where, "token", "a private app access token"))
    if kind == "pipedrive":
        return PipedriveSettings(
            **crm,
            token=_credential(entry, where, "token", "an API token"),
            web_url=_base_url(entry, where, "web_url", None, "https://example.pipedrive.com", required=False),
        )
    if kind == "bexio":
        return BexioSettings(
            **crm,
            token=_credential(entry, where, "token", "a personal access token"),
            web_url=_base_url(entry, where, "web_url", DEFAULT_BEXIO_WEB_URL, DEFAULT_BEXIO_WEB_URL) or "",
            sync_minutes=_integer(entry, "sync_minutes", f"{where} sync_minutes", DEFAULT_SYNC_MINUTES, 1, 1440),
        )
    if kind in ("graph", "dataverse"):
        microsoft = {
            **crm,
            "tenant": _required(entry, "tenant", where, "the directory (tenant) id or domain, e.g. \"contoso.onmicrosoft.com\""),
            "client_id": _required(entry, "client_id", where, "the application (client) id of the app registration"),
            "client_secret": _credential(entry, where, "client_secret", "the app registration's client secret"),
            "authority_url": _base_url(
                entry, where, "authority_url", DEFAULT_AUTHORITY_URL, DEFAULT_AUTHORITY_URL
            )
            or DEFAULT_AUTHORITY_URL,
        }
        if kind == "graph":
            return GraphSettings(
                **microsoft,
                user=_required(entry, "user", where, "the mailbox whose contacts are synced, e.g. \"office@example.com\""),
                folder=_string(entry, "folder", where, None) or None,
                sync_minutes=_integer(entry, "sync_minutes", f"{where} sync_minutes", DEFAULT_SYNC_MINUTES, 1, 1440),
            )
        return DataverseSettings(**microsoft, app_id=_string(entry, "app_id", where, None) or None)
    if kind == "odoo":
        protocol = _choice(entry, "protocol", where, "json2", ("json2", "jsonrpc"))
        database = _string(entry, "database", where, None) or None
        login = _string(entry, "login", where, None) or None
        if protocol == "jsonrpc" and (database is None or login is None):
            raise ConfigError(
                f'{where}: protocol = "jsonrpc" signs in with a user, so set database and login,'
                ' e.g. database = "mycompany" and login = "ringboard@example.com"'
            )
        return OdooSettings(
            **crm,
            api_key=_credential(entry, where, "api_key", "an API key of the Odoo user"),
            protocol=protocol,
            database=database,
            login=login,
        )
    if kind == "zendesk":
        return ZendeskSettings(
            **crm,
            email=_required(entry, "email", where, "the e-mail address of the agent the API token belongs to"),
            token=_credential(entry, where, "token", "an API token"),
        )
    return ZammadSettings(
        **crm,
        token=_credential(entry, where, "token", "an access token"),
        group=_string(entry, "group", where, DEFAULT_ZAMMAD_GROUP) or DEFAULT_ZAMMAD_GROUP,
    )


def _auto_log(entry: dict[str, Any], where: str) -> AutoLog:
    value = entry.get("auto_log", {})
    example = 'auto_log = { answered = "log", missed = "task", outgoing = "off" }'
    if not isinstance(value, dict):
        raise ConfigError(f"{where} auto_log must be a table, e.g. {example}")
    modes: dict[str, str] = {}
    for call_type, mode in value.items():
        if call_type not in AUTO_LOG_CALL_TYPES:
            raise ConfigError(
                f"{where} auto_log.{call_type} is not a call type; use {', '.join(AUTO_LOG_CALL_TYPES)}, e.g. {example}"
            )
        if mode not in AUTO_LOG_MODES:
            raise ConfigError(
                f"{where} auto_log.{call_type} = {mode!r} is invalid: use one of {', '.join(AUTO_LOG_MODES)}"
            )
        modes[call_type] = mode
    return AutoLog(**modes)


def _credential(entry: dict[str, Any], where: str, kind: str, what: str) -> Credential:
    """Read a required secret from `<kind>_file` or `<kind>_env`, remembering its source."""
    secret = _secret(entry, where, kind)
    if secret is None:
        raise ConfigError(
            f'{where} {kind}_file or {kind}_env is missing: store {what} in a file and set'
            f' {kind}_file = "/etc/ringboard/{kind}", or name an environment variable with {kind}_env'
        )
    if f"{kind}_file" in entry:
        return Credential(secret, str(entry[f"{kind}_file"]).strip())
    return Credential(secret, "$" + str(entry[f"{kind}_env"]).strip())


def _base_url(
    entry: dict[str, Any], where: str, key: str, default: str | None, example: str, *, required: bool = True
) -> str | None:
    value = _string(entry, key, where, default)
    if not value:
        if not required:
            return None
        raise ConfigError(f'{where} {key} is missing: set the address of the server, e.g. {key} = "{example}"')
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f'{where} {key} = "{value}" is invalid: use a URL starting with https://, e.g. "{example}"')
    if parts.username or parts.password:
        raise ConfigError(f"{where} {key} must not contain a user name or password: use the secret keys")
    return value.rstrip("/")


def _required(entry: dict[str, Any], key: str, where: str, what: str) -> str:
    value = _string(entry, key, where, None)
    if not value:
        raise ConfigError(f"{where} {key} is missing: set {what}")
    return value


def _choice(entry: dict[str, Any], key: str, where: str, default: str, choices: tuple[str, ...]) -> str:
    value = _string(entry, key, where, default) or default
    if value not in choices:
        raise ConfigError(f'{where} {key} = "{value}" is invalid: use one of {", ".join(choices)}')
    return value


def _ca_file(entry: dict[str, Any], where: str) -> str | None:
    value = _string(entry, "ca_file", where, None)
    if not value:
        return None
    if not Path(value).is_file():
        raise ConfigError(f'{where} ca_file = "{value}" is not a readable file of PEM certificates')
    return value


# Value checks ------------------------------------------------------------------------


def _reject_unknown(raw: dict[str, Any], where: str, known: set[str]) -> None:
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where} {key} is not a known setting; known ones here: {', '.join(sorted(known))}")


def _string(raw: dict[str, Any], key: str, where: str, default: str | None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} {key} must be a string in quotes, got {value!r}")
    return value.strip()


def _boolean(raw: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where} {key} must be true or false, got {value!r}")
    return value


def _integer(raw: dict[str, Any], key: str, label: str, default: int, minimum: int, maximum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label} must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{label} = {value} is out of range: use {minimum} to {maximum}")
    return value


def _number(raw: dict[str, Any], key: str, label: str, default: float, minimum: float, maximum: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{label} must be a number of seconds, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{label} = {value} is out of range: use {minimum:g} to {maximum:g} seconds")
    return float(value)


def _url(raw: dict[str, Any], where: str, schemes: tuple[str, ...], example: str) -> str:
    value = _string(raw, "url", where, None)
    if not value:
        raise ConfigError(f'{where} url is missing: set it, e.g. url = "{example}"')
    parts = urlsplit(value)
    if parts.scheme.lower() not in schemes or not parts.hostname:
        starts = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ConfigError(f'{where} url = "{value}" is invalid: use a URL starting with {starts}, e.g. "{example}"')
    if parts.username or parts.password:
        raise ConfigError(f"{where} url must not contain a user name or password: use the username and password keys")
    return value


def _template(raw: dict[str, Any], key: str, where: str, placeholders: tuple[str, ...]) -> str | None:
    value = _string(raw, key, where, None)
    if not value:
        return None
    if urlsplit(value).scheme.lower() not in ("http", "https"):
        raise ConfigError(f'{where} {key} = "{value}" must be an http or https URL')
    if not any(placeholder in value for placeholder in placeholders):
        raise ConfigError(f'{where} {key} = "{value}" has no placeholder: use {" or ".join(placeholders)}')
    return value


def _attributes(raw: dict[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return default
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", item) for item in value)
    ):
        raise ConfigError(f'{where} {key} must list LDAP attribute names, e.g. {key} = ["{default[0]}"]')
    return tuple(value)


def _secret(raw: dict[str, Any], where: str, kind: str) -> Secret | None:
    """Read a password or token from `<kind>_file` or `<kind>_env`; None when neither is set."""
    file_key, env_key = f"{kind}_file", f"{kind}_env"
    if file_key in raw and env_key in raw:
        raise ConfigError(f"{where} sets both {file_key} and {env_key}: keep one")

    if file_key in raw:
        path_text = _string(raw, file_key, where, None) or ""
        try:
            value = Path(path_text).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f'{where} {file_key} = "{path_text}" cannot be read: {error.strerror}') from None
        if not value:
            raise ConfigError(f'{where} {file_key} = "{path_text}" is empty: write the {kind} into it')
        return Secret(value)

    if env_key in raw:
        variable = _string(raw, env_key, where, None) or ""
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ConfigError(f"{where} {env_key}: the environment variable {variable} is not set or empty")
        return Secret(value)
    return None

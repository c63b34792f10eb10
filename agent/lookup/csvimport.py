"""Contacts from CSV files: Google Contacts and Outlook exports, or any columns with a mapping.

Google's export has "Phone 1 - Label"/"Phone 1 - Value" pairs (older exports: "Phone 1 -
Type") and separates several values in one cell with " ::: ". Outlook's export has one
column per phone kind ("Business Phone", "Mobile Phone"...). Other files need an explicit
mapping from column titles to contact fields.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable

from agent.lookup.contact import Contact, ContactPhone, derived_uid, display_name_of

# Contact fields a column can be mapped to; the phone fields set the phone's kind.
PHONE_FIELDS = {
    "phone": "work",
    "work_phone": "work",
    "mobile": "mobile",
    "home_phone": "home",
    "other_phone": None,
    "fax": "fax",
}
TEXT_FIELDS = ("name", "given_name", "family_name", "org", "title", "email", "url", "note", "uid")
MAPPABLE_FIELDS = (*TEXT_FIELDS, *PHONE_FIELDS)

GOOGLE_VALUE_SEPARATOR = " ::: "

# Outlook's English export: phone columns and their kinds.
OUTLOOK_PHONES = {
    "Business Phone": "work",
    "Business Phone 2": "work",
    "Company Main Phone": "main",
    "Primary Phone": None,
    "Mobile Phone": "mobile",
    "Car Phone": "mobile",
    "Home Phone": "home",
    "Home Phone 2": "home",
    "Other Phone": None,
    "Assistant's Phone": "work",
    "Callback": None,
    "Business Fax": "fax",
    "Home Fax": "fax",
    "Other Fax": "fax",
    "Pager": "pager",
}

# CSV files larger than this are not address books; reading them whole would only fill memory.
MAX_CSV_BYTES = 50 * 1024 * 1024


class CsvError(ValueError):
    """The CSV file cannot be read as contacts; the message names what to change."""


def parse_mapping(text: str) -> dict[str, str]:
    """Parse a mapping such as "Name=name, Firma=org, Telefon=phone" into {column: field}."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        column, separator, field_name = part.partition("=")
        field_name = field_name.strip().lower()
        if not separator or not column.strip():
            raise CsvError(f'mapping entry "{part.strip()}" must be COLUMN=FIELD, e.g. "Firma=org"')
        if field_name not in MAPPABLE_FIELDS:
            raise CsvError(f'mapping field "{field_name}" is unknown; use one of {", ".join(MAPPABLE_FIELDS)}')
        mapping[column.strip()] = field_name
    if not mapping:
        raise CsvError('the mapping is empty; give COLUMN=FIELD pairs, e.g. "Name=name,Telefon=phone"')
    return mapping


def read_csv(data: bytes, mapping: dict[str, str] | None = None) -> list[Contact]:
    """Read contacts from CSV bytes (UTF-8, with or without BOM, or Windows-1252)."""
    if len(data) > MAX_CSV_BYTES:
        raise CsvError(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB")
    text = _decode(data)
    rows = list(csv.DictReader(io.StringIO(text), dialect=_dialect(text)))
    columns = set(rows[0].keys()) if rows else set()

    reader: Callable[[dict[str, str]], Contact | None]
    if mapping:
        missing = [column for column in mapping if column not in columns]
        if rows and missing:
            raise CsvError(f"mapped columns not found in the file: {', '.join(missing)}")
        reader = functools.partial(_mapped_contact, mapping=mapping)
    elif any(column.startswith("Phone 1 - ") for column in columns):
        reader = _google_contact
    elif "Business Phone" in columns or "Mobile Phone" in columns:
        reader = _outlook_contact
    elif rows:
        raise CsvError(
            "the columns are neither a Google nor an Outlook export;"
            ' give a mapping such as --mapping "Name=name,Telefon=phone"'
        )
    else:
        return []
    return [contact for row in rows if (contact := reader(_clean_row(row))) is not None]


def _google_contact(row: dict[str, str]) -> Contact | None:
    given = row.get("First Name") or row.get("Given Name")
    family = row.get("Last Name") or row.get("Family Name")
    org = row.get("Organization Name") or row.get("Organization 1 - Name")
    title = row.get("Organization Title") or row.get("Organization 1 - Title")

    phones: list[ContactPhone] = []
    emails: list[str] = []
    for index in range(1, 100):
        value = row.get(f"Phone {index} - Value")
        if value is None:
            break
        label = row.get(f"Phone {index} - Label") or row.get(f"Phone {index} - Type") or ""
        kind = _label_kind(label)
        phones += [ContactPhone(number, kind) for number in _split_google(value)]
    for index in range(1, 100):
        value = row.get(f"E-mail {index} - Value")
        if value is None:
            break
        emails += _split_google(value)

    return _contact(
        name=row.get("Name") or _join_name(given, row.get("Middle Name"), family),
        given=given,
        family=family,
        org=org,
        title=title,
        phones=phones,
        emails=emails,
        url=row.get("Website 1 - Value"),
        note=row.get("Notes"),
        uid=None,
    )


def _outlook_contact(row: dict[str, str]) -> Contact | None:
    given = row.get("First Name")
    family = row.get("Last Name")
    phones = [ContactPhone(row[column], kind) for column, kind in OUTLOOK_PHONES.items() if row.get(column)]
    emails = [row[column] for column in ("E-mail Address", "E-mail 2 Address", "E-mail 3 Address") if row.get(column)]
    return _contact(
        name=_join_name(given, row.get("Middle Name"), family),
        given=given,
        family=family,
        org=row.get("Company"),
        title=row.get("Job Title"),
        phones=phones,
        emails=emails,
        url=row.get("Web Page"),
        note=row.get("Notes"),
        uid=None,
    )


def _mapped_contact(row: dict[str, str], mapping: dict[str, str]) -> Contact | None:
    values: dict[str, str] = {}
    phones: list[ContactPhone] = []
    emails: list[str] = []
    for column, field_name in mapping.items():
        value = row.get(column)
        if not value:
            continue
        if field_name in PHONE_FIELDS:
            phones.append(ContactPhone(value, PHONE_FIELDS[field_name]))
        elif field_name == "email":
            emails.append(value)
        else:
            values.setdefault(field_name, value)
    return _contact(
        name=values.get("name"),
        given=values.get("given_name"),
        family=values.get("family_name"),
        org=values.get("org"),
        title=values.get("title"),
        phones=phones,
        emails=emails,
        url=values.get("url"),
        note=values.get("note"),
        uid=values.get("uid"),
    )


def _contact(
    *,
    name: str | None,
    given: str | None,
    family: str | None,
    org: str | None,
    title: str | None,
    phones: list[ContactPhone],
    emails: list[str],
    url: str | None,
    note: str | None,
    uid: str | None,
) -> Contact | None:
    """Build a contact from one row, or None for an empty row; empty cells become None."""
    name, given, family, org, title, url, note, uid = (
        value or None for value in (name, given, family, org, title, url, note, uid)
    )
    phone_tuple = tuple(phones)
    if not (name or given or family or org or phones or emails):
        return None
    display = name or display_name_of(given, family, org, phone_tuple, tuple(emails))
    return Contact(
        uid=uid or derived_uid(display, org, *(phone.number for phone in phones)),
        display_name=display,
        given_name=given,
        family_name=family,
        org=org,
        title=title,
        emails=tuple(emails),
        phones=phone_tuple,
        url=url,
        note=note,
        is_company=not (name or given or family) and bool(org),
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Outlook on Windows writes its CSV export in the ANSI code page.
        return data.decode("cp1252", errors="replace")


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """Return the file's dialect; spreadsheets in German-speaking regions write ";"."""
    sample = text[:8192]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _clean_row(row: dict[str | None, str | list[str] | None]) -> dict[str, str]:
    return {key.strip(): value.strip() for key, value in row.items() if isinstance(key, str) and isinstance(value, str)}


def _split_google(value: str) -> list[str]:
    return [part.strip() for part in value.split(GOOGLE_VALUE_SEPARATOR.strip()) if part.strip()]


def _label_kind(label: str) -> str | None:
    """Map a Google phone label ("Mobile", "* Work", "Work Fax") to a phone kind."""
    words = set(re.findall(r"[a-z]+", label.lower()))
    if "fax" in words:
        return "fax"
    for word, kind in (("mobile", "mobile"), ("cell", "mobile"), ("work", "work"), ("home", "home"), ("main", "main")):
        if word in words:
            return kind
    return None


def _join_name(*parts: str | None) -> str | None:
    return " ".join(part for part in parts if part) or None

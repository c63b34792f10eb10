"""A contact as the address book stores it, whatever format or server it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContactPhone:
    """One stored phone number: the text as written and its kind (work, home, mobile, fax...)."""

    number: str
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """A person or a company with its phone numbers."""

    uid: str
    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    org: str | None = None
    title: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[ContactPhone, ...] = ()
    url: str | None = None
    note: str | None = None
    # The card describes a company (vCard 4 KIND:org, Apple's X-ABShowAs:COMPANY).
    is_company: bool = False
    # The vCard text as imported or synced; export writes it unchanged, so no property is lost.
    vcard: str | None = None


def derived_uid(*parts: str | None) -> str:
    """Return a stable UID for a record that has none, so importing it twice updates it."""
    text = "\x1f".join(part or "" for part in parts)
    return "ringboard-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def display_name_of(
    given: str | None, family: str | None, org: str | None, phones: tuple[ContactPhone, ...], emails: tuple[str, ...]
) -> str:
    """Return the name to show for a record without a formatted name."""
    name = " ".join(part for part in (given, family) if part)
    if name:
        return name
    if org:
        return org
    if emails:
        return emails[0]
    if phones:
        return phones[0].number
    return "?"

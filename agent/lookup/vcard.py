"""vCard 3.0 (RFC 2426) and 4.0 (RFC 6350) reading and writing, on vobject."""

from __future__ import annotations

import logging

import vobject

from agent.lookup.contact import Contact, ContactPhone, derived_uid, display_name_of

log = logging.getLogger("ringboard.lookup.vcard")

# vCard TYPE values of TEL, mapped to the kinds the address book stores.
PHONE_KINDS = {
    "cell": "mobile",
    "mobile": "mobile",
    "iphone": "mobile",
    "fax": "fax",
    "pager": "pager",
    "work": "work",
    "home": "home",
    "main": "main",
}
KIND_TYPES = {"mobile": "CELL", "fax": "FAX", "pager": "PAGER", "work": "WORK", "home": "HOME", "main": "MAIN"}


class VCardError(ValueError):
    """The text is not a vCard file."""


def read_vcards(text: str) -> list[Contact]:
    """Parse every vCard in `text`; cards that cannot be read are skipped and counted in the log."""
    if "BEGIN:VCARD" not in text.upper():
        raise VCardError("no BEGIN:VCARD line found")

    contacts: list[Contact] = []
    skipped = 0
    try:
        for component in vobject.readComponents(text, ignoreUnreadable=True):
            if component.name.upper() != "VCARD":
                continue
            contact = _contact(component)
            if contact is None:
                skipped += 1
            else:
                contacts.append(contact)
    except vobject.base.ParseError as error:
        raise VCardError(f"vCard syntax error: {error}") from error
    if skipped:
        log.warning("skipped %d vCards without a name, organisation, phone or e-mail", skipped)
    return contacts


def write_vcards(contacts: list[Contact]) -> str:
    """Return one vCard file with every contact: its stored vCard, or a new vCard 3.0."""
    cards: list[str] = []
    for contact in contacts:
        text = contact.vcard or _build_vcard(contact)
        cards.append(text.replace("\r\n", "\n").strip("\n").replace("\n", "\r\n") + "\r\n")
    return "".join(cards)


def _contact(component: vobject.base.Component) -> Contact | None:
    """Turn one parsed vCard into a contact, or None when it has nothing to show."""
    given = family = None
    if "n" in component.contents:
        name = component.n.value
        given = _join(getattr(name, "given", None)) or None
        family = _join(getattr(name, "family", None)) or None

    org = None
    if "org" in component.contents:
        value = component.org.value
        org = (value[0] if isinstance(value, list) and value else str(value)).strip() or None

    phones = tuple(
        ContactPhone(number=str(line.value).strip(), kind=_phone_kind(line.params.get("TYPE", [])))
        for line in component.contents.get("tel", [])
        if str(line.value).strip()
    )
    emails = tuple(str(line.value).strip() for line in component.contents.get("email", []) if str(line.value).strip())
    formatted = _first(component, "fn")
    if not (formatted or given or family or org or phones or emails):
        return None

    kind = (_first(component, "kind") or "").lower()
    shown_as = (_first(component, "x-abshowas") or "").upper()
    uid = _first(component, "uid") or derived_uid(formatted, org, *(phone.number for phone in phones))
    return Contact(
        uid=uid,
        display_name=formatted or display_name_of(given, family, org, phones, emails),
        given_name=given,
        family_name=family,
        org=org,
        title=_first(component, "title"),
        emails=emails,
        phones=phones,
        url=_first(component, "url"),
        note=_first(component, "note"),
        is_company=kind == "org" or shown_as == "COMPANY",
        vcard=_serialise(component),
    )


def _build_vcard(contact: Contact) -> str:
    card = vobject.vCard()
    card.add("version").value = "3.0"
    card.add("uid").value = contact.uid
    card.add("fn").value = contact.display_name
    card.add("n").value = vobject.vcard.Name(family=contact.family_name or "", given=contact.given_name or "")
    if contact.org:
        card.add("org").value = [contact.org]
    if contact.is_company:
        card.add("x-abshowas").value = "COMPANY"
    if contact.title:
        card.add("title").value = contact.title
    for phone in contact.phones:
        line = card.add("tel")
        line.value = phone.number
        if phone.kind in KIND_TYPES:
            line.type_param = KIND_TYPES[phone.kind]
    for email in contact.emails:
        card.add("email").value = email
    if contact.url:
        card.add("url").value = contact.url
    if contact.note:
        card.add("note").value = contact.note
    return card.serialize()


def _serialise(component: vobject.base.Component) -> str | None:
    try:
        return component.serialize()
    except Exception as error:  # vobject raises several types for cards it cannot write back
        log.debug("vCard %s kept without its original text: %s", _first(component, "uid"), error)
        return None


def _phone_kind(types: list[str]) -> str | None:
    for value in types:
        for item in value.split(","):
            kind = PHONE_KINDS.get(item.strip().strip('"').lower())
            if kind:
                return kind
    return None


def _first(component: vobject.base.Component, name: str) -> str | None:
    lines = component.contents.get(name)
    if not lines:
        return None
    value = lines[0].value
    if isinstance(value, list):
        value = " ".join(str(item) for item in value)
    text = str(value).strip()
    return text or None


def _join(value: str | list[str] | None) -> str:
    if isinstance(value, list):
        return " ".join(item for item in value if item)
    return value or ""

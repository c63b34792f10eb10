"""The local address book: vCard and CSV import/export round trips, indexed lookup, name search."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.lookup.addressbook import AddressBook, AddressBookConnector, load_demo
from agent.lookup.contact import Contact, ContactPhone
from agent.lookup.csvimport import CsvError, parse_mapping, read_csv
from agent.lookup.numbers import MatchReason, NumberRules, parse_caller
from agent.lookup.vcard import VCardError, read_vcards, write_vcards

RULES = NumberRules("CH", ("DE", "AT"), 8)

VCARD_3 = (
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "UID:max-3\r\n"
    "FN:Max Muster\r\n"
    "N:Muster;Max;;;\r\n"
    "ORG:Muster AG;Einkauf\r\n"
    "TITLE:Leiter Einkauf\r\n"
    "TEL;TYPE=WORK,VOICE:044 123 45 67\r\n"
    "TEL;TYPE=CELL:+41 79 555 00 11\r\n"
    "item1.TEL:+41 (0)44 123 45 00\r\n"
    "EMAIL;TYPE=INTERNET:max.muster@muster.example\r\n"
    "NOTE:Ruft meist vormittags an\\, bitte\r\n"
    "  zurückrufen\r\n"
    "URL:https://muster.example/\r\n"
    "END:VCARD\r\n"
    "BEGIN:VCARD\r\n"
    "VERSION:3.0\r\n"
    "FN:Anna Keller\r\n"
    "N:Keller;Anna;;;\r\n"
    "TEL;TYPE=HOME:044 668 18 00\r\n"
    "END:VCARD\r\n"
)

VCARD_4 = (
    "BEGIN:VCARD\r\n"
    "VERSION:4.0\r\n"
    "UID:urn:uuid:0d7f3c1a-8e2b-4f61-a0c4-2b9e5d6f7a02\r\n"
    "KIND:org\r\n"
    "FN:Weber Logistik GmbH\r\n"
    "ORG:Weber Logistik GmbH\r\n"
    'TEL;VALUE=uri;TYPE="work,voice";PREF=1:tel:+49-30-1234567\r\n'
    "TEL;VALUE=uri;TYPE=fax:tel:+49-30-1234568\r\n"
    "END:VCARD\r\n"
)

GOOGLE_CSV = (
    "First Name,Middle Name,Last Name,Organization Name,Organization Title,Notes,"
    "E-mail 1 - Label,E-mail 1 - Value,Phone 1 - Label,Phone 1 - Value,Phone 2 - Label,Phone 2 - Value\n"
    "Max,,Muster,Muster AG,Einkauf,,* Work,max.muster@muster.example,Work,044 123 45 67 ::: +41 44 123 45 68,"
    "Mobile,+41 79 555 00 11\n"
    "Lena,,Gruber,Gruber Steuerberatung,,,,,Work,0043 1 5123456,,\n"
    ",,,Keller Treuhand,,,,,Main,044 668 18 00,,\n"
)

GOOGLE_OLD_CSV = (
    "Name,Given Name,Additional Name,Family Name,Organization 1 - Name,Organization 1 - Title,"
    "Phone 1 - Type,Phone 1 - Value\n"
    "Jonas Weber,Jonas,,Weber,Weber Logistik GmbH,,* Mobile,+49 172 1234567\n"
)

OUTLOOK_CSV = (
    '"First Name","Middle Name","Last Name","Title","Company","Job Title","Business Phone","Business Phone 2",'
    '"Home Phone","Mobile Phone","Business Fax","E-mail Address","Web Page","Notes"\n'
    '"Jürg","","Müller","","Müller Söhne AG","Inhaber","044 123 45 67","","","079 555 00 11","044 123 45 69",'
    '"juerg@mueller.example","https://mueller.example/",""\n'
)

MAPPED_CSV = (
    "Name;Firma;Telefon;Handy\nLuca Bernasconi;Bernasconi Bau SA;;079/555'00'11\nClaire Dubois;;022 555 12 34;\n"
)


def fields(contact: Contact) -> tuple:
    """The contact without its stored vCard text, for round-trip comparisons."""
    return (
        contact.uid,
        contact.display_name,
        contact.given_name,
        contact.family_name,
        contact.org,
        contact.title,
        contact.emails,
        contact.phones,
        contact.url,
        contact.note,
        contact.is_company,
    )


@pytest.fixture
def book(tmp_path: Path) -> AddressBook:
    address_book = AddressBook(tmp_path / "contacts.db", RULES)
    yield address_book
    address_book.close()


def round_trip(book: AddressBook, contacts: list[Contact]) -> list[Contact]:
    """Import, export as vCard, import the export into a second source; return what that holds."""
    book.import_contacts("first", contacts)
    exported = write_vcards([stored.contact for stored in book.contacts("first")])
    book.import_contacts("second", read_vcards(exported))
    return [stored.contact for stored in book.contacts("second")]


def test_vcard3_read() -> None:
    max_card, anna = read_vcards(VCARD_3)
    assert max_card.uid == "max-3"
    assert (max_card.given_name, max_card.family_name, max_card.org) == ("Max", "Muster", "Muster AG")
    assert max_card.phones == (
        ContactPhone("044 123 45 67", "work"),
        ContactPhone("+41 79 555 00 11", "mobile"),
        ContactPhone("+41 (0)44 123 45 00", None),
    )
    assert max_card.note == "Ruft meist vormittags an, bitte zurückrufen"
    assert anna.uid.startswith("ringboard-")
    assert read_vcards(VCARD_3)[1].uid == anna.uid


def test_vcard3_round_trip(book: AddressBook) -> None:
    original = sorted(read_vcards(VCARD_3), key=lambda contact: contact.display_name)
    assert [fields(contact) for contact in round_trip(book, original)] == [fields(contact) for contact in original]


def test_vcard4_round_trip(book: AddressBook) -> None:
    original = read_vcards(VCARD_4)
    assert original[0].is_company
    assert original[0].phones == (ContactPhone("tel:+49-30-1234567", "work"), ContactPhone("tel:+49-30-1234568", "fax"))
    copied = round_trip(book, original)
    assert [fields(contact) for contact in copied] == [fields(contact) for contact in original]
    assert "VERSION:4.0" in write_vcards(copied)


def test_google_csv_round_trip(book: AddressBook) -> None:
    contacts = read_csv(GOOGLE_CSV.encode())
    by_name = {contact.display_name: contact for contact in contacts}
    assert set(by_name) == {"Max Muster", "Lena Gruber", "Keller Treuhand"}
    assert by_name["Max Muster"].phones == (
        ContactPhone("044 123 45 67", "work"),
        ContactPhone("+41 44 123 45 68", "work"),
        ContactPhone("+41 79 555 00 11", "mobile"),
    )
    assert by_name["Max Muster"].emails == ("max.muster@muster.example",)
    assert by_name["Keller Treuhand"].is_company
    copied = {contact.display_name: contact for contact in round_trip(book, contacts)}
    assert {name: fields(contact) for name, contact in copied.items()} == {
        name: fields(contact) for name, contact in by_name.items()
    }


def test_google_old_csv() -> None:
    (contact,) = read_csv(GOOGLE_OLD_CSV.encode())
    assert contact.display_name == "Jonas Weber"
    assert contact.phones == (ContactPhone("+49 172 1234567", "mobile"),)


def test_outlook_csv_round_trip(book: AddressBook) -> None:
    contacts = read_csv(OUTLOOK_CSV.encode("cp1252"))
    (contact,) = contacts
    assert contact.display_name == "Jürg Müller"
    assert contact.org == "Müller Söhne AG"
    assert contact.phones == (
        ContactPhone("044 123 45 67", "work"),
        ContactPhone("079 555 00 11", "mobile"),
        ContactPhone("044 123 45 69", "fax"),
    )
    assert [fields(copy) for copy in round_trip(book, contacts)] == [fields(contact)]


def test_outlook_csv_utf8_bom() -> None:
    (contact,) = read_csv(b"\xef\xbb\xbf" + OUTLOOK_CSV.encode("utf-8"))
    assert contact.display_name == "Jürg Müller"


def test_mapped_csv_with_semicolons() -> None:
    mapping = parse_mapping("Name=name, Firma=org, Telefon=phone, Handy=mobile")
    luca, claire = read_csv(MAPPED_CSV.encode(), mapping)
    assert (luca.display_name, luca.org, luca.phones) == (
        "Luca Bernasconi",
        "Bernasconi Bau SA",
        (ContactPhone("079/555'00'11", "mobile"),),
    )
    assert claire.phones == (ContactPhone("022 555 12 34", "work"),)


@pytest.mark.parametrize(
    ("data", "mapping", "message"),
    [
        (b"Vorname,Telefon\nMax,044\n", None, "neither a Google nor an Outlook export"),
        (MAPPED_CSV.encode(), {"Mobile": "mobile"}, "mapped columns not found in the file: Mobile"),
    ],
)
def test_csv_errors(data: bytes, mapping: dict[str, str] | None, message: str) -> None:
    with pytest.raises(CsvError) as error:
        read_csv(data, mapping)
    assert message in str(error.value)


def test_mapping_errors() -> None:
    with pytest.raises(CsvError, match='mapping field "phon" is unknown'):
        parse_mapping("Telefon=phon")
    with pytest.raises(CsvError, match="must be COLUMN=FIELD"):
        parse_mapping("Telefon")


def test_not_a_vcard() -> None:
    with pytest.raises(VCardError):
        read_vcards("Name,Phone\n")


def test_import_twice_updates(book: AddressBook) -> None:
    first = book.import_contacts("contacts", read_vcards(VCARD_3))
    second = book.import_contacts("contacts", read_vcards(VCARD_3))
    assert (first.added, first.updated) == (2, 0)
    assert (second.added, second.updated) == (0, 2)
    assert book.count("contacts") == 2


def test_replace_removes_missing(book: AddressBook) -> None:
    book.import_contacts("contacts", read_vcards(VCARD_3))
    result = book.import_contacts("contacts", read_vcards(VCARD_3)[:1], replace=True)
    assert result.removed == 1
    assert [stored.contact.display_name for stored in book.contacts("contacts")] == ["Max Muster"]


def test_lookup_by_every_index(book: AddressBook) -> None:
    book.import_contacts(
        "contacts",
        [
            Contact(uid="a", display_name="Exact", phones=(ContactPhone("044 123 45 67"),)),
            Contact(uid="b", display_name="Tail Only", phones=(ContactPhone("+41 4 123 45 67"),)),
            Contact(uid="c", display_name="Other", phones=(ContactPhone("044 123 45 68"),)),
        ],
    )
    found = book.find(parse_caller("+41441234567", RULES), ["contacts"])
    assert [(stored.contact.display_name, match.reason) for stored, match in found] == [
        ("Exact", MatchReason.E164),
        ("Tail Only", MatchReason.LAST_DIGITS),
    ]


def test_lookup_query_uses_indexes(book: AddressBook) -> None:
    plan = book.query_plan(parse_caller("+41441234567", RULES), ["contacts"])
    text = " ".join(plan)
    assert "phones_by_e164" in text
    assert "phones_by_national" in text
    assert "phones_by_digits_rev (digits_rev>? AND digits_rev<?)" in text
    assert not [step for step in plan if step.startswith("SCAN") and "hits" not in step]
    assert "contacts_by_href" not in text


def test_sources_kept_apart(book: AddressBook) -> None:
    book.import_contacts("office", read_vcards(VCARD_3))
    caller = parse_caller("+41441234567", RULES)
    assert [stored.source for stored, _ in book.find(caller, ["office"])] == ["office"]
    assert book.find(caller, ["carddav"]) == []


def test_numbers_parsed_again_when_regions_change(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    swiss_only = AddressBook(path, NumberRules("CH", (), 8))
    swiss_only.import_contacts(
        "contacts", [Contact(uid="w", display_name="Weber", phones=(ContactPhone("030 1234567"),))]
    )
    caller = parse_caller("+49301234567", NumberRules("CH", ("DE",), 8))
    before = swiss_only.find(caller, ["contacts"])
    swiss_only.close()

    with_germany = AddressBook(path, NumberRules("CH", ("DE",), 8))
    after = with_germany.find(caller, ["contacts"])
    with_germany.close()

    assert [match.reason for _, match in before] != [MatchReason.E164]
    assert [match.reason for _, match in after] == [MatchReason.E164]


def test_name_search(book: AddressBook) -> None:
    book.import_contacts("contacts", read_csv(OUTLOOK_CSV.encode("utf-8")) + read_vcards(VCARD_3))
    assert [stored.contact.display_name for stored in book.search("muller")] == ["Jürg Müller"]
    assert [stored.contact.display_name for stored in book.search("Must")] == ["Max Muster"]
    assert book.search('"') == []


async def test_demo_contacts(book: AddressBook) -> None:
    result = load_demo(book, "contacts")
    connector = AddressBookConnector("contacts", "Demo contacts", book)
    expected = {
        "+41441234567": "Max Muster",
        "+41446681800": "Anna Keller",
        "+49301234567": "Jonas Weber",
        "+4315123456": "Lena Gruber",
        "+41795550011": "Luca Bernasconi",
        "+41225551234": "Claire Dubois",
    }
    assert result.added == 7
    for number, name in expected.items():
        cards = await connector.lookup(parse_caller(number, RULES))
        assert [card.name for card in cards] == [name], number
    company = await connector.lookup(parse_caller("+41441234500", RULES))
    assert [(card.name, card.company) for card in company] == [(None, "Muster AG")]

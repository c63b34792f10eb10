"""The `contacts import`, `contacts export` and `lookup` commands.

`add_commands` registers them on the `ringboard` parser. Each handler takes the parsed
arguments and the loaded configuration (None when there is no configuration file, in
which case the lab's settings and the demo contacts apply, as for `ringboard run`) and
returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tomllib
from pathlib import Path
from typing import Any

from agent.config import Config, ConfigError
from agent.lookup.carddav import CardDavConnector
from agent.lookup.connector import ConnectorError, ErrorCode
from agent.lookup.csvimport import CsvError, parse_mapping, read_csv
from agent.lookup.factory import create_lookup, open_address_book
from agent.lookup.service import ConnectorFailure, LookupUpdate
from agent.lookup.settings import AddressBookSettings, LookupSettings, lab_settings, parse_lookup_settings
from agent.lookup.vcard import VCardError, read_vcards, write_vcards

# The lab's data folder, the same that `ringboard run` uses without a configuration file.
LAB_DATA_DIR = Path("var")

CONFIG_HELP = "configuration file (default: ./ringboard.toml, then /etc/ringboard)"

EXIT_FOUND = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2


def add_commands(subparsers: Any) -> None:
    """Register `contacts import`, `contacts export` and `lookup` on the `ringboard` parser."""
    contacts = subparsers.add_parser("contacts", help="import or export the local address book")
    actions = contacts.add_subparsers(dest="contacts_command", required=True)

    importing = actions.add_parser("import", help="add the contacts of a vCard or CSV file to the address book")
    importing.add_argument("file", type=Path, help="a .vcf file (vCard 3.0 or 4.0) or a .csv file")
    importing.add_argument(
        "--format", choices=("vcard", "csv"), help="the file's format (default: from the file name, .csv or .vcf)"
    )
    importing.add_argument(
        "--mapping",
        help='CSV columns to contact fields, e.g. "Name=name,Firma=org,Telefon=phone,Handy=mobile";'
        " needed for CSV files that are neither Google nor Outlook exports",
    )
    importing.add_argument("--to", dest="source", help="address book connector to import into (default: the first)")
    importing.add_argument(
        "--replace",
        action="store_true",
        help="also remove contacts of that address book that the file does not contain",
    )
    importing.add_argument("--config", type=Path, help=CONFIG_HELP)
    importing.set_defaults(handler=import_command)

    exporting = actions.add_parser("export", help="write the address book as vCards")
    exporting.add_argument("file", nargs="?", type=Path, help="output file (default: standard output)")
    exporting.add_argument("--from", dest="source", help="address book connector to export (default: the first)")
    exporting.add_argument("--config", type=Path, help=CONFIG_HELP)
    exporting.set_defaults(handler=export_command)

    lookup = subparsers.add_parser(
        "lookup", help="look a number up in every connector, as for an incoming call (exit 1: nothing found)"
    )
    lookup.add_argument("number", help='the number as the PBX presents it, e.g. "+41441234567" or "sip:0441234567@pbx"')
    lookup.add_argument("--config", type=Path, help=CONFIG_HELP)
    lookup.set_defaults(handler=lookup_command)


def import_command(args: argparse.Namespace, config: Config | None) -> int:
    """Import a vCard or CSV file into an address book connector's contacts."""
    try:
        settings, data_dir = lookup_settings(config)
        source = _address_book_name(settings, args.source)
        data = args.file.read_bytes()
        file_format = args.format or ("csv" if args.file.suffix.lower() == ".csv" else "vcard")
        if file_format == "csv":
            mapping = parse_mapping(args.mapping) if args.mapping else None
            contacts = read_csv(data, mapping)
        else:
            if args.mapping:
                raise CsvError("--mapping applies to CSV files only")
            contacts = read_vcards(data.decode("utf-8-sig", errors="replace"))
    except OSError as error:
        return _fail(f"cannot read {args.file}: {error.strerror}")
    except (ConfigError, CsvError, VCardError) as error:
        return _fail(str(error))

    book = open_address_book(settings, data_dir)
    try:
        result = book.import_contacts(source, contacts, replace=args.replace)
        total = book.count(source)
    finally:
        book.close()
    print(
        f"{args.file}: {result.added} contacts added, {result.updated} updated, {result.removed} removed;"
        f" address book {source} has {total} contacts"
    )
    return 0


def export_command(args: argparse.Namespace, config: Config | None) -> int:
    """Write an address book connector's contacts as one vCard file."""
    try:
        settings, data_dir = lookup_settings(config)
        source = _address_book_name(settings, args.source)
    except ConfigError as error:
        return _fail(str(error))

    book = open_address_book(settings, data_dir)
    try:
        text = write_vcards([stored.contact for stored in book.contacts(source)])
        count = book.count(source)
    finally:
        book.close()

    if args.file is None:
        sys.stdout.write(text)
        return 0
    try:
        args.file.write_text(text, encoding="utf-8", newline="")
    except OSError as error:
        return _fail(f"cannot write {args.file}: {error.strerror}")
    print(f"{args.file}: {count} contacts written", file=sys.stderr)
    return 0


def lookup_command(args: argparse.Namespace, config: Config | None) -> int:
    """Look a number up in every connector and print the cards with the reason each matched."""
    try:
        settings, data_dir = lookup_settings(config)
    except ConfigError as error:
        return _fail(str(error))
    update = asyncio.run(_look_up(settings, data_dir, args.number))
    print(describe_update(update))
    return EXIT_FOUND if update.cards else EXIT_NOT_FOUND


def lookup_settings(config: Config | None) -> tuple[LookupSettings, Path]:
    """Return the lookup settings and data folder of a configuration (the lab's without one)."""
    if config is None:
        return lab_settings(), LAB_DATA_DIR
    settings = getattr(config, "lookup", None)
    if settings is None:
        raw: dict[str, Any] = {"numbers": {"default_region": config.numbers.default_region}}
        if config.source is not None:
            raw = tomllib.loads(config.source.read_text(encoding="utf-8"))
        settings = parse_lookup_settings(raw)
    return settings, config.agent.data_dir


def describe_update(update: LookupUpdate) -> str:
    """Return the lookup result as English text for the terminal."""
    if update.skipped is not None:
        return f"{update.number}: not looked up ({update.skipped}: no phone number to search for)"

    lines = [f"{update.display} ({update.e164}):"]
    for index, card in enumerate(update.cards, start=1):
        title = ", ".join(part for part in (card.name, card.company) if part) or "?"
        chosen = ", chosen by the office" if card.chosen else ""
        lines.append(f"{index}. {title}  [{card.label}, score {card.score}{chosen}]")
        lines.append(f"   {card.explain()}")
        for link in (card.url, card.company_url):
            if link:
                lines.append(f"   {link}")
        for detail in card.details:
            lines.append(f"   {detail.label}: {detail.value}")
    if not update.cards:
        lines.append("no contact found")
    for error in update.errors:
        lines.append(f"{error.label} ({error.connector}): {explain_failure(error)}")
    return "\n".join(lines)


def explain_failure(error: ConnectorFailure) -> str:
    """Return an English sentence for a connector error code."""
    params = error.params
    sentences = {
        ErrorCode.TIMEOUT: f"timed out (no response within {params.get('seconds', '?')} s)",
        ErrorCode.HTTP_ERROR: f"the server returned HTTP {params.get('status', '?')}",
        ErrorCode.INVALID_RESPONSE: "the server's response is invalid; see the log",
        ErrorCode.AUTH_FAILED: "authentication failed; check the user name and password or token",
        ErrorCode.UNREACHABLE: "cannot connect to the server",
    }
    return sentences.get(error.code, "failed; see the log")


async def _look_up(settings: LookupSettings, data_dir: Path, number: str) -> LookupUpdate:
    """Run one lookup; synced connectors that never synced are synced first."""
    service = create_lookup(settings, data_dir)
    try:
        for connector in service.connectors:
            if (
                isinstance(connector, CardDavConnector)
                and connector.book.sync_state(connector.source).synced_at is None
            ):
                try:
                    await connector.sync()
                except ConnectorError as error:
                    print(f"{connector.label} ({connector.name}): sync failed: {error.detail}", file=sys.stderr)
        return await service.lookup_final(number)
    finally:
        await service.stop()


def _address_book_name(settings: LookupSettings, requested: str | None) -> str:
    names = [connector.name for connector in settings.connectors if isinstance(connector, AddressBookSettings)]
    if not names:
        raise ConfigError('no [[connectors]] entry has type = "addressbook": add one to import or export contacts')
    if requested is None:
        return names[0]
    if requested not in names:
        raise ConfigError(f'"{requested}" is not an address book connector; use one of {", ".join(names)}')
    return requested


def _fail(message: str) -> int:
    print(f"ringboard: {message}", file=sys.stderr)
    return EXIT_ERROR

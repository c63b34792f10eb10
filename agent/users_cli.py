"""The `users`, `devices` and `tls` commands: who may pair browsers, which are paired, and HTTPS.

`add_commands` registers them on the `ringboard` parser. Each handler takes the parsed
arguments and the configuration (None without a configuration file: then the lab's data
folder `var` applies, as for `ringboard run`) and returns the exit code. They work while
the agent runs: the agent closes the pages of a revoked device within a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.tls import (
    TlsError,
    TlsFiles,
    create_ca,
    default_names,
    issue_server_certificate,
    names_outside_ca,
    split_names,
    trust_instructions,
)
from agent.users import ROLES, UserError, UserStore, format_pin, lock_remaining

# The lab's data folder, the same that `ringboard run` uses without a configuration file.
LAB_DATA_DIR = Path("var")

CONFIG_HELP = "configuration file (default: ./ringboard.toml, then /etc/ringboard)"

EXIT_OK = 0
EXIT_ERROR = 1


def add_commands(subparsers: Any) -> None:
    """Register `users`, `devices` and `tls` on the `ringboard` parser."""
    users = subparsers.add_parser("users", help="add, list and remove the people who may pair browsers")
    user_actions = users.add_subparsers(dest="users_command", required=True)

    adding = user_actions.add_parser("add", help="add a user and print its PIN")
    adding.add_argument("name", help="user name, e.g. anna (letters, digits and . _ @ -)")
    adding.add_argument(
        "--extension", action="append", default=[], metavar="EXT",
        help="an extension whose calls the user sees, e.g. 201; repeat for several",
    )
    adding.add_argument("--role", choices=ROLES, default="user", help="receptionist: sees every extension (default: user)")
    adding.add_argument("--config", type=Path, help=CONFIG_HELP)
    adding.set_defaults(handler=users_add)

    listing = user_actions.add_parser("list", help="list the users")
    listing.add_argument("--config", type=Path, help=CONFIG_HELP)
    listing.set_defaults(handler=users_list)

    reset = user_actions.add_parser("reset-pin", help="give a user a new PIN and lift its pairing lock-out")
    reset.add_argument("name")
    reset.add_argument("--config", type=Path, help=CONFIG_HELP)
    reset.set_defaults(handler=users_reset_pin)

    removing = user_actions.add_parser("remove", help="remove a user; its browsers stop working at once")
    removing.add_argument("name")
    removing.add_argument("--config", type=Path, help=CONFIG_HELP)
    removing.set_defaults(handler=users_remove)

    devices = subparsers.add_parser("devices", help="list and revoke paired browsers")
    device_actions = devices.add_subparsers(dest="devices_command", required=True)

    listing = device_actions.add_parser("list", help="list the paired browsers")
    listing.add_argument("--all", action="store_true", help="include revoked devices")
    listing.add_argument("--config", type=Path, help=CONFIG_HELP)
    listing.set_defaults(handler=devices_list)

    revoking = device_actions.add_parser("revoke", help="unpair a browser; its open page closes at once")
    revoking.add_argument("id", help="device id from `devices list`, e.g. d-1a2b3c4d")
    revoking.add_argument("--config", type=Path, help=CONFIG_HELP)
    revoking.set_defaults(handler=devices_revoke)

    tls = subparsers.add_parser("tls", help="HTTPS certificates for the page")
    tls_actions = tls.add_subparsers(dest="tls_command", required=True)
    init = tls_actions.add_parser(
        "init", help="make a local CA (once) and a server certificate for this host, and print how to trust the CA"
    )
    init.add_argument(
        "--name", action="append", default=[], metavar="NAME",
        help="a host name or IP address the office uses for this server, e.g. ringboard.office.lan or 192.0.2.10;"
        " repeat for several (always added: this host's name, localhost, 127.0.0.1, ::1)",
    )
    init.add_argument("--dir", type=Path, help="where to write the files (default: DATA_DIR/tls)")
    init.add_argument(
        "--new-ca", action="store_true",
        help="replace the local CA too; every browser must then trust the new one",
    )
    init.add_argument("--config", type=Path, help=CONFIG_HELP)
    init.set_defaults(handler=tls_init)


# Users ------------------------------------------------------------------------------------


def users_add(args: argparse.Namespace, config: Config | None) -> int:
    """Add a user and print its PIN."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        user, pin = store.add_user(args.name, args.extension, args.role)
    except UserError as error:
        return _fail(str(error))
    finally:
        store.close()

    _warn_unmonitored(user.extensions, config)
    sees = "every extension" if user.sees_all else "extensions " + ", ".join(user.extensions)
    print(f"User {user.name} added ({user.role}, sees {sees}).")
    print(f"PIN: {format_pin(pin)}")
    print("It is shown only now. Give it to the user, who enters it when the page asks, once per browser.")
    return EXIT_OK


def users_list(args: argparse.Namespace, config: Config | None) -> int:
    """Print every user with role, extensions, paired devices and lock-out."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        users = store.users()
        devices = store.devices()
    finally:
        store.close()

    if not users:
        print("No users yet; add one with `ringboard users add NAME --extension 201`.")
        return EXIT_OK
    rows = [("NAME", "ROLE", "EXTENSIONS", "PIN STARTS", "DEVICES", "PAIRING")]
    for user in users:
        locked = lock_remaining(user.locked_until)
        if locked:
            pairing = f"locked {locked:.0f} s"
        elif user.failed_pairings:
            pairing = f"{user.failed_pairings} failed"
        else:
            pairing = "open"
        count = sum(1 for device in devices if device.user_name == user.name)
        extensions = "all" if user.sees_all else ", ".join(user.extensions)
        rows.append((user.name, user.role, extensions, f"{user.number:03d}", str(count), pairing))
    _print_table(rows)
    return EXIT_OK


def users_reset_pin(args: argparse.Namespace, config: Config | None) -> int:
    """Print a new PIN for a user."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        pin = store.reset_pin(args.name)
    except UserError as error:
        return _fail(str(error))
    finally:
        store.close()
    print(f"New PIN for {args.name}: {format_pin(pin)}")
    print("The old PIN no longer pairs; browsers paired before stay paired (`devices revoke` unpairs them).")
    return EXIT_OK


def users_remove(args: argparse.Namespace, config: Config | None) -> int:
    """Remove a user and its devices."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        user = store.remove_user(args.name)
    except UserError as error:
        return _fail(str(error))
    finally:
        store.close()
    print(f"User {user.name} removed; its browsers are unpaired and their open pages close within a second.")
    return EXIT_OK


# Devices ----------------------------------------------------------------------------------


def devices_list(args: argparse.Namespace, config: Config | None) -> int:
    """Print the paired devices."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        devices = store.devices(include_revoked=args.all)
    finally:
        store.close()

    if not devices:
        print("No paired devices.")
        return EXIT_OK
    rows = [("ID", "USER", "PAIRED", "LAST SEEN", "ADDRESS", "STATE", "BROWSER")]
    for device in devices:
        state = f"revoked {device.revoked_at}" if device.revoked_at else "paired"
        rows.append(
            (device.id, device.user_name, device.created_at, device.last_seen_at, device.address, state, device.user_agent[:60])
        )
    _print_table(rows)
    return EXIT_OK


def devices_revoke(args: argparse.Namespace, config: Config | None) -> int:
    """Revoke one device."""
    store = _open_store(config)
    if store is None:
        return EXIT_ERROR
    try:
        device = store.revoke_device(args.id)
    except UserError as error:
        return _fail(str(error))
    finally:
        store.close()
    print(f"Device {device.id} of {device.user_name} revoked; its open pages close within a second.")
    return EXIT_OK


# TLS --------------------------------------------------------------------------------------


def tls_init(args: argparse.Namespace, config: Config | None) -> int:
    """Make the local CA if needed, issue the server certificate and print the next steps."""
    data_dir = _data_dir(config)
    if not _may_write(data_dir):
        return EXIT_ERROR
    files = TlsFiles(args.dir or data_dir / "tls")
    names = default_names()
    for name in args.name:
        if name not in names:
            names.insert(0, name)
    try:
        split_names(names)
        new_ca = args.new_ca or not files.ca_cert.is_file()
        if not new_ca:
            outside = names_outside_ca(files, names)
            if outside:
                return _fail(
                    f"the local CA in {files.directory} was made for other names and may not sign {', '.join(outside)};"
                    " run `ringboard tls init --new-ca` with every --name, then trust the new CA in every browser"
                )
        if new_ca:
            create_ca(files, names)
            print(f"Local CA created: {files.ca_cert} (key {files.ca_key}, readable by its owner only)")
        else:
            print(f"Local CA reused: {files.ca_cert}")
        issue_server_certificate(files, names)
    except TlsError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write in {files.directory}: {error.strerror}")

    print(f"Server certificate for {', '.join(names)}: {files.server_cert} (key {files.server_key})")
    print()
    print("In the [http] table of ringboard.toml set:")
    print(f'  certificate = "{files.server_cert.resolve()}"')
    print(f'  key = "{files.server_key.resolve()}"')
    print('  host = "0.0.0.0"        # to serve the office network')
    print("then restart the agent, or reload a running one: systemctl reload ringboard (SIGHUP).")
    print()
    print(trust_instructions(files.ca_cert))
    return EXIT_OK


# Helpers ----------------------------------------------------------------------------------


def _data_dir(config: Config | None) -> Path:
    return config.agent.data_dir if config is not None else LAB_DATA_DIR


def _open_store(config: Config | None) -> UserStore | None:
    data_dir = _data_dir(config)
    if not _may_write(data_dir):
        return None
    return UserStore.in_data_dir(data_dir)


def _may_write(data_dir: Path) -> bool:
    """Refuse root in another user's data folder: files it created there would lock the agent out."""
    if os.geteuid() != 0 or not data_dir.is_dir():
        return True
    owner = data_dir.stat().st_uid
    if owner == 0:
        return True
    try:
        import pwd

        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    _fail(f"{data_dir} belongs to {name}; run this command as that user, e.g. sudo -u {name} ringboard ...")
    return False


def _warn_unmonitored(extensions: tuple[str, ...], config: Config | None) -> None:
    if config is None:
        return
    unmonitored = [extension for extension in extensions if extension not in config.sip.extensions]
    if unmonitored:
        print(
            f"warning: [sip] extensions does not list {', '.join(unmonitored)}, so no calls of them are observed",
            file=sys.stderr,
        )


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _fail(message: str) -> int:
    print(f"ringboard: {message}", file=sys.stderr)
    return EXIT_ERROR

"""Benchmark 6: looking callers up, from the cache to a live LDAP query, and cards on the page.

The lookups run in this process through `LookupService`, as the agent runs them, with
caller numbers as a PBX presents them (`sip:+41...@pbx`). Radicale and slapd run on
127.0.0.1 with their files in a temporary folder, as tests/lookup/conftest.py starts
them. "Cards on the page" runs the agent with the demo address book and times a
ringing NOTIFY to the `crm` message at a WebSocket client.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from agent.lookup.addressbook import AddressBook, AddressBookConnector
from agent.lookup.carddav import CardDavConnector
from agent.lookup.contact import Contact, ContactPhone
from agent.lookup.ldap import LdapConnector
from agent.lookup.numbers import NumberRules
from agent.lookup.service import LookupService, LookupUpdate
from agent.lookup.settings import CardDavSettings, LdapSettings, Secret
from tests.support.fake_pbx import FakePbx, kamailio_document

from .common import AgentProcess, ClientProcess, Figure, agent_config, checked, free_port, percentile

RULES = NumberRules(default_region="CH")

# Lookups timed per figure; the cached path is fast, so it gets more.
LOOKUPS = 200
CACHED_LOOKUPS = 2000

# Radicale stores one file per card and slapd is a live query per ring, so both get an
# office-sized directory rather than the address book's 20,000 contacts.
CARDDAV_CONTACTS = 2000
LDAP_ENTRIES = 2000

# Swiss area codes and mobile prefixes the generated numbers use.
AREA_CODES = ("44", "43", "31", "61", "22", "79", "76", "78")

SERVER_START_TIMEOUT = 20.0

# The demo address book's numbers (agent/lookup/demo/contacts.vcf) as PBXs present them.
DEMO_CALLERS = ("+41441234567", "+41446681800", "+41441234500", "+41795550011", "+41225551234")


def national_number(index: int) -> str:
    """Return a distinct Swiss national significant number (nine digits) per index."""
    area = AREA_CODES[index % len(AREA_CODES)]
    return f"{area}{3000000 + index * 7 % 6999999:07d}"


def written_forms(nsn: str, index: int) -> str:
    """Write a number the ways CRMs and phones store it, one form per index."""
    local = f"0{nsn[:2]} {nsn[2:5]} {nsn[5:7]} {nsn[7:]}"
    forms = (
        local,
        f"+41 {nsn[:2]} {nsn[2:5]} {nsn[5:7]} {nsn[7:]}",
        f"+41 (0){nsn}",
        f"0041{nsn}",
        f"tel:+41-{nsn[:2]}-{nsn[2:5]}-{nsn[5:]}",
    )
    return forms[index % len(forms)]


def generated_contacts(count: int) -> list[Contact]:
    """Return `count` contacts with one or two numbers each, in mixed written forms."""
    contacts = []
    for index in range(count):
        phones = [ContactPhone(written_forms(national_number(index), index), "work")]
        if index % 3 == 0:
            phones.append(ContactPhone(written_forms(national_number(index + count), index + 1), "cell"))
        contacts.append(
            Contact(
                uid=f"bench-{index}",
                display_name=f"Person {index}",
                given_name="Person",
                family_name=str(index),
                org=f"Company {index % 500}",
                phones=tuple(phones),
            )
        )
    return contacts


def caller_uris(count: int, stored: int, hit_share: float, seed: int) -> list[str]:
    """Return callers as a PBX presents them: `hit_share` of them are stored numbers."""
    chooser = random.Random(seed)
    callers = []
    for _ in range(count):
        if chooser.random() < hit_share:
            nsn = national_number(chooser.randrange(stored))
        else:
            nsn = f"{chooser.choice(AREA_CODES)}{chooser.randrange(2000000, 2999999):07d}"  # never stored
        callers.append(f"sip:+41{nsn}@pbx.local")
    return callers


class Timings(list[float]):
    """Milliseconds per lookup, and how many lookups found at least one card."""

    found: int = 0


async def timed_lookups(lookup: Callable[[str], Awaitable[LookupUpdate]], callers: list[str]) -> Timings:
    """Return the milliseconds of each lookup and the count of lookups that found cards."""
    values = Timings()
    for caller in callers:
        started = time.perf_counter()
        update = await lookup(caller)
        values.append((time.perf_counter() - started) * 1000)
        values.found += bool(update.cards)
    return values


def summary(
    benchmark: str, name: str, values: list[float], setup: str, target: tuple[str, float] | None = None
) -> list[Figure]:
    """Return the p50 and p99 figures of `values`, checked against `target` when given."""
    p50 = Figure(benchmark, f"{name}, p50", round(percentile(values, 0.5), 3), "ms", setup)
    p99 = Figure(benchmark, f"{name}, p99", round(percentile(values, 0.99), 3), "ms", setup)
    if target is not None:
        checked(p50, *target)
        checked(p99, *target)
    return [p50, p99]


async def lookup_times(contacts: int) -> list[Figure]:
    """Time cached, address book, CardDAV, LDAP and on-page lookups."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ringboard-bench-") as folder:
        work = Path(folder)
        figures += await address_book_lookups(work, contacts)
        for part in (carddav_lookups, ldap_lookups, cards_on_page):
            try:
                figures += await part(work)
            except Exception as error:  # One missing server must not hide the other figures.
                figures.append(Figure("lookup", part.__name__, f"failed: {type(error).__name__}: {error}", "", ""))
    return figures


async def address_book_lookups(work: Path, count: int) -> list[Figure]:
    """Import `count` contacts, then time uncached and cached lookups."""
    book = AddressBook(work / "contacts.db", RULES)
    started = time.perf_counter()
    book.import_contacts("contacts", generated_contacts(count))
    import_seconds = time.perf_counter() - started
    connector = AddressBookConnector("contacts", "Address book", book)

    uncached = LookupService([connector], RULES, cache_seconds=0)
    callers = caller_uris(LOOKUPS, count, 0.5, seed=1)
    await timed_lookups(uncached.lookup_final, callers[:20])  # SQLite's page cache and phonenumbers' metadata
    uncached_ms = await timed_lookups(uncached.lookup_final, callers)

    cached = LookupService([connector], RULES)
    callers = caller_uris(100, count, 0.5, seed=2)
    await timed_lookups(cached.lookup_final, callers)
    repeated = [callers[index % len(callers)] for index in range(CACHED_LOOKUPS)]
    cached_ms = await timed_lookups(cached.lookup_final, repeated)
    book.close()

    setup = (
        f"local address book of {count} contacts (SQLite), LookupService with one connector; "
        f"{uncached_ms.found} of {len(uncached_ms)} callers found"
    )
    cached_setup = f"the same {count} contacts, every caller looked up before; {CACHED_LOOKUPS} lookups"
    return [
        Figure("lookup", f"address book import, {count} contacts", round(import_seconds, 2), "s", "one transaction"),
        *summary("lookup", "cached", cached_ms, cached_setup, ("< 1 ms", 1.0)),
        *summary("lookup", "address book, uncached", uncached_ms, setup),
    ]


# CardDAV (Radicale) ---------------------------------------------------------------------

MKCOL_ADDRESSBOOK = """<?xml version="1.0" encoding="utf-8"?>
<d:mkcol xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">
  <d:set><d:prop>
    <d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>
    <d:displayname>Office</d:displayname>
  </d:prop></d:set>
</d:mkcol>"""


def vcard(contact: Contact) -> str:
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"UID:{contact.uid}",
        f"FN:{contact.display_name}",
        f"N:{contact.family_name};{contact.given_name};;;",
        f"ORG:{contact.org}",
    ]
    lines += [f"TEL;TYPE={phone.kind}:{phone.number}" for phone in contact.phones]
    lines.append("END:VCARD")
    return "\r\n".join(lines) + "\r\n"


async def carddav_lookups(work: Path) -> list[Figure]:
    """Fill Radicale, sync it into the local index, then time lookups there."""
    if importlib.util.find_spec("radicale") is None:
        return [Figure("lookup", "CardDAV", "not run: Radicale is not installed", "", "pip install -e '.[test]'")]
    folder = work / "radicale"
    folder.mkdir()
    port = free_port()
    (folder / "users").write_text("ringboard:secret\n")
    config = folder / "config"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {folder / 'users'}\nhtpasswd_encryption = plain\ndelay = 0\n"
        f"[storage]\nfilesystem_folder = {folder / 'collections'}\n[logging]\nlevel = warning\n"
    )
    log = (folder / "radicale.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)], stdout=log, stderr=log)
    log.close()
    book = AddressBook(work / "carddav.db", RULES)
    try:
        await wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/ringboard/office/"
        contacts = generated_contacts(CARDDAV_CONTACTS)
        async with httpx.AsyncClient(auth=("ringboard", "secret"), timeout=120) as client:
            response = await client.request("MKCOL", url, content=MKCOL_ADDRESSBOOK)
            response.raise_for_status()
            # Radicale replaces a collection's items with the cards of one PUT on it.
            cards = "".join(vcard(contact) for contact in contacts)
            response = await client.put(url, content=cards, headers={"Content-Type": "text/vcard"})
            response.raise_for_status()

        settings = CardDavSettings(
            type="carddav", name="carddav", label="CardDAV", url=url, username="ringboard", password=Secret("secret")
        )
        connector = CardDavConnector(settings, book)
        started = time.perf_counter()
        result = await connector.sync()
        sync_seconds = time.perf_counter() - started
        service = LookupService([connector], RULES, cache_seconds=0)
        callers = caller_uris(LOOKUPS, CARDDAV_CONTACTS, 0.5, seed=3)
        await timed_lookups(service.lookup_final, callers[:20])
        values = await timed_lookups(service.lookup_final, callers)
        await connector.stop()
    finally:
        book.close()
        stop_process(process)
    setup = (
        f"Radicale on 127.0.0.1 with {CARDDAV_CONTACTS} cards, synced into the local index; "
        f"{values.found} of {len(values)} callers found"
    )
    return [
        Figure(
            "lookup",
            f"CardDAV full sync, {result.updated} cards",
            round(sync_seconds, 2),
            "s",
            "sync-collection REPORT and multiget",
        ),
        *summary("lookup", "CardDAV-synced, uncached", values, setup),
    ]


# LDAP (slapd) ---------------------------------------------------------------------------

SLAPD_SUFFIX = "dc=example,dc=test"
SLAPD_ADMIN = f"cn=admin,{SLAPD_SUFFIX}"
SLAPD_PASSWORD = "secret"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")


def ldif(count: int) -> str:
    entries = [
        f"dn: {SLAPD_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        f"dn: ou=people,{SLAPD_SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
    ]
    for contact in generated_contacts(count):
        phones = "".join(f"telephoneNumber: {phone.number.removeprefix('tel:')}\n" for phone in contact.phones)
        entries.append(
            f"dn: uid={contact.uid},ou=people,{SLAPD_SUFFIX}\nobjectClass: inetOrgPerson\nuid: {contact.uid}\n"
            f"cn: {contact.display_name}\nsn: {contact.family_name}\no: {contact.org}\n{phones}"
        )
    return "\n".join(entries)


async def ldap_lookups(work: Path) -> list[Figure]:
    """Start slapd with LDAP_ENTRIES people and time live lookups."""
    slapd = shutil.which("slapd", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    slapadd = shutil.which("slapadd", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if slapd is None or slapadd is None or not SCHEMA_DIR.is_dir():
        return [Figure("lookup", "LDAP", "not run: slapd is not installed", "", "scripts/setup installs slapd")]

    folder = work / "slapd"
    (folder / "db").mkdir(parents=True)
    config = folder / "slapd.conf"
    config.write_text(slapd_config(folder))
    entries = folder / "entries.ldif"
    entries.write_text(ldif(LDAP_ENTRIES))
    subprocess.run([slapadd, "-q", "-f", str(config), "-l", str(entries)], check=True, capture_output=True)

    port = free_port()
    log = (folder / "slapd.log").open("wb")
    command = [slapd, "-f", str(config), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"]
    process = subprocess.Popen(command, stdout=log, stderr=log)
    log.close()
    try:
        await wait_for_port(port, process)
        settings = LdapSettings(
            type="ldap",
            name="ldap",
            label="Directory",
            url=f"ldap://127.0.0.1:{port}",
            base_dn=SLAPD_SUFFIX,
            bind_dn=SLAPD_ADMIN,
            password=Secret(SLAPD_PASSWORD),
        )
        service = LookupService([LdapConnector(settings, timeout=1.5, match_digits=8)], RULES, cache_seconds=0)
        callers = caller_uris(LOOKUPS, LDAP_ENTRIES, 0.5, seed=4)
        await timed_lookups(service.lookup_final, callers[:10])
        values = await timed_lookups(service.lookup_final, callers)
    finally:
        stop_process(process)

    setup = (
        f"slapd on 127.0.0.1 with {LDAP_ENTRIES} people, a bind and a search per lookup; "
        f"{values.found} of {len(values)} callers found"
    )
    return summary("lookup", "LDAP live query", values, setup)


def slapd_config(folder: Path) -> str:
    """Return a slapd.conf for one MDB database under `folder`, as tests/lookup/conftest.py writes it."""
    # Debian builds back_mdb as a loadable module; other builds link it in.
    modules = f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n" if any(MODULE_DIR.glob("back_mdb*")) else ""
    schemas = "".join(f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
    return (
        schemas
        + f"pidfile {folder / 'slapd.pid'}\nargsfile {folder / 'slapd.args'}\n"
        + modules
        + "database mdb\nmaxsize 104857600\n"
        + f'suffix "{SLAPD_SUFFIX}"\nrootdn "{SLAPD_ADMIN}"\nrootpw {SLAPD_PASSWORD}\n'
        + f"directory {folder / 'db'}\n"
        + "index objectClass eq\nindex telephoneNumber,mobile,homePhone eq,sub\n"
    )


# Cards on the page ----------------------------------------------------------------------


async def cards_on_page(work: Path) -> list[Figure]:
    """Time a ringing NOTIFY to the call frame and to the cards at a WebSocket client."""
    from .pairing import ClientPlan, pair_clients

    folder = work / "page"
    folder.mkdir()
    extension = "2000"
    pbx = FakePbx()
    pbx_address = await pbx.start()
    http_port = free_port()
    config = agent_config(
        folder, http_port, pbx_address, [extension], '[[connectors]]\ntype = "addressbook"\ndemo = true\n'
    )
    agent = AgentProcess(config, http_port)
    clients: ClientProcess | None = None
    sent: dict[tuple[str, str], float] = {}
    try:
        await agent.start()
        await pbx.wait_subscribed([extension], timeout=30)
        pairing = pair_clients(config, folder / "var", agent.base_url, [ClientPlan("cards", (extension,))])
        clients = ClientProcess(agent.events_url, 1, folder, pairing.cookies)
        await clients.start()
        # Each demo caller rings twice: first uncached, then from the lookup cache.
        for round_name in ("uncached", "cached"):
            for index, caller in enumerate(DEMO_CALLERS):
                call = f"{round_name}-{index}"
                for state in ("early", "terminated"):
                    body = kamailio_document(extension, pbx.next_version(extension), [(call, call, state)], caller=caller)
                    cseq = pbx.send_notify(extension, body)
                    if state == "early":
                        sent[(round_name, caller)] = pbx.notify_sent_at[(extension, cseq)]
                    await asyncio.sleep(0.3)
        records = await clients.stop()
    finally:
        if clients is not None:
            await clients.kill()
        await agent.stop()
        pbx.close()

    messages = records["messages"]
    arrivals = records["received"][0]
    rows: dict[str, list[float]] = {"call uncached": [], "cards uncached": [], "cards cached": []}
    order = iter(sorted(sent.items(), key=lambda item: item[1]))
    # Frames arrive in NOTIFY order; each ringing NOTIFY's call frame is followed by its cards.
    current: tuple[str, str] | None = None
    for number, arrived in arrivals:
        message = messages[number]
        if message["type"] == "call" and message["event"] == "ringing":
            current, sent_at = next(order)
            if current[0] == "uncached":
                rows["call uncached"].append((arrived - sent_at) * 1000)
        elif message["type"] == "crm" and current is not None and message["cards"] and not message["pending"]:
            rows[f"cards {current[0]}"].append((arrived - sent[current]) * 1000)
            current = None
    setup = f"agent with the demo address book, 1 WebSocket client, {pairing.note}; {len(DEMO_CALLERS)} callers"
    figures = []
    for name, values in rows.items():
        label = ROW_LABELS[name]
        median = round(percentile(values, 0.5), 2)
        figures.append(Figure("lookup", f"{label}, median", median, "ms", setup + f", {len(values)} measured"))
    return figures


ROW_LABELS = {
    "call uncached": "ringing NOTIFY to call frame",
    "cards uncached": "ringing NOTIFY to cards, uncached",
    "cards cached": "ringing NOTIFY to cards, cached",
}


# Servers ---------------------------------------------------------------------------------


async def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until a server accepts connections on 127.0.0.1:`port`."""
    deadline = time.perf_counter() + SERVER_START_TIMEOUT
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    stop_process(process)
    raise RuntimeError(f"server did not listen on port {port} within {SERVER_START_TIMEOUT:g} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server this benchmark started: SIGTERM, then SIGKILL after five seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

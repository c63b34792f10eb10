"""Servers for the lookup tests: Radicale, slapd and a REST lookup service, all on 127.0.0.1.

Each fixture starts its server on a free loopback port with its files in a temporary
folder and stops it (by its process id) when the tests that use it are done.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Servers start within a second here; a slow CI machine gets ten.
START_TIMEOUT = 10.0

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server accepts connections; fail with its log if it exits or hangs."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    stop_process(process)
    pytest.fail(f"server did not listen on port {port} within {START_TIMEOUT} s:\n{log.read_text(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started by a fixture: SIGTERM, then SIGKILL after five seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Radicale --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RadicaleServer:
    url: str
    user: str
    password: str


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    pytest.importorskip("radicale", reason="Radicale is not installed (pip install -e '.[test]')")
    folder = tmp_path_factory.mktemp("radicale")
    port = free_port()
    # A second user owns a single address book, for the discovery test.
    (folder / "users").write_text("ringboard:secret\ndiscover:secret\n")
    config = folder / "config"
    config.write_text(
        "[server]\n"
        f"hosts = {LOOPBACK}:{port}\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {folder / 'users'}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0\n"
        "[storage]\n"
        f"filesystem_folder = {folder / 'collections'}\n"
        "[logging]\n"
        "level = warning\n"
    )
    log = folder / "radicale.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log)
        yield RadicaleServer(url=f"http://{LOOPBACK}:{port}", user="ringboard", password="secret")
    finally:
        stop_process(process)


# slapd -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlapdServer:
    url: str
    base_dn: str
    bind_dn: str
    password: str


SLAPD_SUFFIX = "dc=example,dc=test"
SLAPD_ADMIN = f"cn=admin,{SLAPD_SUFFIX}"
SLAPD_PASSWORD = "secret"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

# Entries whose numbers are stored in the forms directories really contain.
SLAPD_ENTRIES = f"""
dn: {SLAPD_SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SLAPD_SUFFIX}
objectClass: organizationalUnit
ou: people

dn: uid=max,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: max
cn: Max Muster
displayName: Max Muster
sn: Muster
o: Muster AG
telephoneNumber: 044 123 45 67

dn: uid=zentrale,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: zentrale
cn: Muster AG Zentrale
sn: Zentrale
o: Muster AG
telephoneNumber: +41 (0)44 123 45 00

dn: uid=anna,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: anna
cn: Anna Keller
sn: Keller
o: Keller Treuhand
telephoneNumber: +41 44 668 18 00

dn: uid=jonas,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: jonas
cn: Jonas Weber
sn: Weber
o: Weber Logistik GmbH
telephoneNumber: +49 (0)30 1234567

dn: uid=lena,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: lena
cn: Lena Gruber
sn: Gruber
mobile: 0043-1-5123456

dn: uid=luca,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: luca
cn: Luca Bernasconi
sn: Bernasconi
mobile: +41 79 555-00-11

dn: uid=burgdorf,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: burgdorf
cn: Hans Burgdorfer
sn: Burgdorfer
telephoneNumber: +41 34 123 45 67

dn: uid=beat,ou=people,{SLAPD_SUFFIX}
objectClass: inetOrgPerson
uid: beat
cn: Beat Punkt
sn: Punkt
homePhone: 044.987.65.43
"""


def find_slapd() -> Path | None:
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    binary = find_slapd()
    slapadd = shutil.which("slapadd", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if binary is None or slapadd is None or not SCHEMA_DIR.is_dir():
        pytest.skip("slapd is not installed (Debian packages slapd and ldap-utils; scripts/setup installs them)")

    folder = tmp_path_factory.mktemp("slapd")
    (folder / "db").mkdir()
    port = free_port()
    # Debian builds back_mdb as a loadable module; other builds link it in.
    modules = f"modulepath {MODULE_DIR}\nmoduleload back_mdb\n" if any(MODULE_DIR.glob("back_mdb*")) else ""
    config = folder / "slapd.conf"
    config.write_text(
        "".join(f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
        + f"pidfile {folder / 'slapd.pid'}\n"
        f"argsfile {folder / 'slapd.args'}\n" + modules + "database mdb\n"
        "maxsize 10485760\n"
        f'suffix "{SLAPD_SUFFIX}"\n'
        f'rootdn "{SLAPD_ADMIN}"\n'
        f"rootpw {SLAPD_PASSWORD}\n"
        f"directory {folder / 'db'}\n"
        "index objectClass eq\n"
        "index telephoneNumber,mobile,homePhone eq,sub\n"
    )
    entries = folder / "entries.ldif"
    entries.write_text(SLAPD_ENTRIES.lstrip())
    subprocess.run([slapadd, "-f", str(config), "-l", str(entries)], check=True, capture_output=True)

    log = folder / "slapd.log"
    with log.open("wb") as output:
        # -d 0 keeps slapd in the foreground as this process's child, logging nothing.
        process = subprocess.Popen(
            [str(binary), "-f", str(config), "-h", f"ldap://{LOOPBACK}:{port}/", "-d", "0"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        yield SlapdServer(f"ldap://{LOOPBACK}:{port}", SLAPD_SUFFIX, SLAPD_ADMIN, SLAPD_PASSWORD)
    finally:
        stop_process(process)


# REST lookup service ---------------------------------------------------------------------

REST_TOKEN = "s3cret-token"

# How long the /slow endpoint waits: beyond every timeout the tests use.
SLOW_SECONDS = 3.0

MAX_MUSTER = {
    "name": "Max Muster",
    "company": "Muster AG",
    "contactUri": "https://crm.example.com/contacts/4711",
    "companyUri": "https://crm.example.com/accounts/815",
    "id": "4711",
    "crmName": "Sugar CRM",
    "crmLogo": "https://crm.example.com/logo.png",
    "crmActions": ["CallFlow", "CreateTicket"],
    "customData": {"Customer number": "K-1001", "Open tickets": 2},
}


class LookupHandler(BaseHTTPRequestHandler):
    """A lookup service speaking the peoplefone CONNECTOR contract, with failure endpoints."""

    server: LookupServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append({"path": self.path, "body": body, "token": self.headers.get("X-Execution-Token")})
        if self.headers.get("X-Execution-Token") != REST_TOKEN:
            return self._send(401, b'{"error": "unauthorized"}')
        number = body.get("inputs", {}).get("phoneNumber")

        if self.path == "/Lookup":
            items = [MAX_MUSTER] if number == "41441234567" else []
            return self._json(items)
        if self.path == "/legacy":
            return self._json(
                [{"Name": "Max Muster", "Company": "Muster AG", "ContactUri": "https://crm.example.com/c/1", "Id": 1}]
            )
        if self.path == "/verified":
            return self._json(
                [
                    {"name": "Right Number", "phoneNumber": "044 123 45 67"},
                    {"name": "Wrong Number", "phoneNumber": "044 765 43 21"},
                    {"name": "Unsafe Link", "contactUri": "javascript:alert(1)"},
                ]
            )
        if self.path == "/error":
            return self._send(500, b"Internal Server Error")
        if self.path == "/invalid":
            return self._send(200, b"<html>not json</html>")
        if self.path == "/object":
            return self._json({"name": "Max Muster"})
        if self.path == "/slow":
            time.sleep(SLOW_SECONDS)
            return self._json([MAX_MUSTER])
        if self.path == "/empty":
            return self._send(204, b"")
        return self._send(404, b"not found")

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "token": self.headers.get("X-Execution-Token")})
        if self.headers.get("X-Execution-Token") != REST_TOKEN:
            return self._send(401, b"")
        if self.path.startswith("/get?number=%2B41441234567"):
            return self._json([MAX_MUSTER])
        return self._json([])

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout tests)


class LookupServer(ThreadingHTTPServer):
    """The HTTP server of the lookup service; it records every request it receives."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), LookupHandler)
        self.requests: list[dict[str, object]] = []


@dataclass
class RestServer:
    url: str
    requests: list[dict[str, object]]


@pytest.fixture(scope="module")
def rest_server() -> Iterator[RestServer]:
    server = LookupServer()
    thread = threading.Thread(target=server.serve_forever, name="rest-lookup-server", daemon=True)
    thread.start()
    try:
        yield RestServer(url=f"http://{LOOPBACK}:{server.server_address[1]}", requests=server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""The `doctor` command: checks the set-up and prints what to fix.

It checks that the configuration is valid, that the HTTP and SIP ports are free or held
by a running agent, that the PBX responds to a SIP OPTIONS, that the HTTPS certificate
is valid and not about to expire, and that no secret file is readable by every user.
Apart from the DNS lookup of the PBX's name, the OPTIONS request is the only packet it
sends off this machine, and only to the configured `[sip] server`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import socket
import ssl
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, ConfigError, find_config, load_config
from agent.secrets import secret_files, world_readable
from agent.tls import EXPIRY_WARNING_DAYS, TlsError, TlsFiles, certificate_info, load_certificate
from agent.users import USERS_FILE_NAME
from sip.message import Response, SipParseError, build_request, parse_message

CONFIG_HELP = "configuration file (default: ./ringboard.toml, then /etc/ringboard)"

# SIP over UDP retransmits a request after 0.5 s, doubling (RFC 3261 timer T1). Three
# tries cover a PBX that lost one datagram, and 3.5 s in all keeps the command quick.
OPTIONS_RETRANSMITS = (0.5, 1.0, 2.0)
# How long the check of a port held by a running agent waits for its /healthz.
HEALTHZ_TIMEOUT = 3.0

# Setting names whose inline values are secrets; a world-readable file holding one leaks it.
SECRET_SETTING_NAMES = frozenset({"password", "token", "secret", "api_key", "client_secret", "private_key"})

OK = "ok"
WARNING = "warning"
PROBLEM = "problem"


@dataclass(frozen=True, slots=True)
class Finding:
    """One result: `ok`, `warning` or `problem`, and a sentence with the fix."""

    level: str
    text: str


def add_commands(subparsers: Any) -> None:
    """Register `doctor` on the `ringboard` parser."""
    doctor = subparsers.add_parser("doctor", help="check the configuration, ports, PBX, certificates and secret files")
    doctor.add_argument("--config", type=Path, help=CONFIG_HELP)
    # The command reads the configuration itself, so an invalid one is reported as a finding.
    doctor.set_defaults(handler=doctor_command, reads_own_config=True)


def doctor_command(args: argparse.Namespace, config: Config | None) -> int:
    """Run every check, print the findings, and return 1 when any is a problem."""
    findings = list(run_checks(args.config))
    for finding in findings:
        print(f"{finding.level:<8} {finding.text}")
    problems = sum(1 for finding in findings if finding.level == PROBLEM)
    warnings = sum(1 for finding in findings if finding.level == WARNING)
    print(f"\n{problems} problems, {warnings} warnings")
    return 1 if problems else 0


def run_checks(explicit: Path | None) -> Iterator[Finding]:
    """Yield the findings of every check, in the order an admin would fix them."""
    try:
        path = find_config(explicit)
        config = load_config(path) if path else None
    except ConfigError as error:
        yield Finding(PROBLEM, f"configuration: {error}")
        return
    if config is None or path is None:
        yield Finding(
            PROBLEM,
            "no configuration file: copy ringboard.example.toml to /etc/ringboard/ringboard.toml"
            " (or ./ringboard.toml) and set [sip] server and extensions; without one `ringboard run` starts the lab",
        )
        return
    yield Finding(OK, f"configuration {path} is valid")

    yield from check_data_dir(config)
    running = yield from check_http_port(config)
    yield from check_sip_port(config, running)
    yield from check_pbx(config)
    yield from check_certificates(config)
    yield from check_secret_files(config, path)


def check_data_dir(config: Config) -> Iterator[Finding]:
    """Check that the data folder exists, is writable, and that its files have its owner."""
    data_dir = config.agent.data_dir
    if not data_dir.is_dir():
        yield Finding(WARNING, f"data folder {data_dir} does not exist yet; the agent creates it at start")
        return
    if not os.access(data_dir, os.W_OK | os.X_OK):
        yield Finding(PROBLEM, f"data folder {data_dir} is not writable by this user; run doctor as the agent's user")
        return
    owner = data_dir.stat().st_uid
    foreign = [path for path in data_dir.rglob("*") if _owner(path) not in (owner, None)]
    if foreign:
        shown = ", ".join(str(path) for path in foreign[:3])
        yield Finding(
            PROBLEM,
            f"{len(foreign)} files in {data_dir} belong to another user than the folder ({shown}),"
            f" so the agent may not be able to write them: chown -R {_user_name(owner)}: {data_dir}",
        )
        return
    yield Finding(OK, f"data folder {data_dir} is writable")


def check_http_port(config: Config) -> Iterator[Finding]:
    """Check that the page's port is free, or held by a running Ringboard agent; return whether one runs."""
    http = config.http
    if http.port == 0:
        yield Finding(OK, "HTTP port 0: the system picks a free port at start")
        return False
    if _tcp_port_free(http.host, http.port):
        yield Finding(OK, f"HTTP port {http.host}:{http.port} is free")
        return False
    if _agent_answers(config):
        yield Finding(OK, f"HTTP port {http.host}:{http.port} is held by the running Ringboard agent")
        return True
    yield Finding(
        PROBLEM,
        f"HTTP port {http.host}:{http.port} is in use by another program: stop it or set [http] port to a free port",
    )
    return False


def check_sip_port(config: Config, agent_running: bool) -> Iterator[Finding]:
    """Check that the SIP port is free, or presumably held by the running agent."""
    sip = config.sip
    if sip.listen_port == 0:
        yield Finding(OK, "SIP port 0: the system picks a free port at start")
        return
    if _udp_port_free(sip.listen_host, sip.listen_port):
        yield Finding(OK, f"SIP port {sip.listen_host}:{sip.listen_port}/udp is free")
    elif agent_running:
        yield Finding(OK, f"SIP port {sip.listen_host}:{sip.listen_port}/udp is in use, presumably by the running agent")
    else:
        yield Finding(
            PROBLEM,
            f"SIP port {sip.listen_host}:{sip.listen_port}/udp is in use by another program (a softphone or a PBX?):"
            " stop it or set [sip] listen_port",
        )


def check_pbx(config: Config) -> Iterator[Finding]:
    """Send one SIP OPTIONS to the configured PBX and report whether it responds."""
    sip = config.sip
    target = f"{sip.server}:{sip.port}/udp"
    try:
        family, _, _, _, address = socket.getaddrinfo(sip.server, sip.port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as error:
        yield Finding(PROBLEM, f"PBX {sip.server}: the name does not resolve ({error.strerror}); check [sip] server")
        return

    try:
        status = _send_options(family, address, sip.domain, sip.user)
    except ConnectionRefusedError:
        yield Finding(PROBLEM, f"PBX {target}: nothing listens there (port unreachable); check [sip] server and port")
        return
    except OSError as error:
        yield Finding(PROBLEM, f"PBX {target}: sending SIP OPTIONS failed: {error.strerror or error}")
        return
    if status is None:
        yield Finding(
            PROBLEM,
            f"PBX {target} did not answer SIP OPTIONS within {sum(OPTIONS_RETRANSMITS):.1f} s:"
            " check [sip] server and port, and that a firewall lets SIP from this host through",
        )
        return
    yield Finding(OK, f"PBX {target} answers SIP OPTIONS (status {status})")


def check_certificates(config: Config) -> Iterator[Finding]:
    """Check the HTTPS certificate and key, and the local CA's expiry."""
    http = config.http
    if http.certificate is None or http.key is None:
        yield Finding(OK, "HTTPS is off, so the page is served to this machine only ([http] host is loopback)")
        return
    try:
        info = load_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), http.certificate, http.key)
    except TlsError as error:
        yield Finding(PROBLEM, f"[http] certificate: {error}")
        return
    yield from _expiry(f"certificate {http.certificate}", info.days_left(), "run `ringboard tls init` and reload the agent")
    host = socket.gethostname()
    if info.names and host not in info.names:
        yield Finding(
            WARNING,
            f"certificate {http.certificate} names {', '.join(info.names)} but not this host ({host});"
            " browsers accept it only at those names",
        )

    ca = TlsFiles(config.agent.data_dir / "tls").ca_cert
    if ca.is_file():
        try:
            ca_info = certificate_info(ca)
        except TlsError as error:
            yield Finding(PROBLEM, f"local CA: {error}")
            return
        yield from _expiry(f"local CA {ca}", ca_info.days_left(), "run `ringboard tls init --new-ca` and trust the new CA")


def check_secret_files(config: Config, config_path: Path) -> Iterator[Finding]:
    """Report secret files that every user of the machine may read."""
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    candidates = [(f"[{key.split('.')[0]}] {key.split('.', 1)[-1]}", path) for key, path in secret_files(raw)]
    if config.http.key is not None:
        candidates.append(("[http] key", config.http.key))
    data_dir = config.agent.data_dir
    candidates.append(("user database", data_dir / USERS_FILE_NAME))
    candidates.append(("call history", data_dir / "ringboard.sqlite3"))
    if data_dir.is_dir():
        for path in sorted(data_dir.rglob("*")):
            if path.is_file() and any(word in path.name.lower() for word in ("key", "token", "secret", "vapid")):
                candidates.append(("data folder", path))
    if _has_inline_secret(raw):
        candidates.append(("configuration with an inline secret", config_path))

    unique = {path: label for label, path in reversed(candidates)}
    exposed = [(label, path) for path, label in unique.items() if world_readable(path)]
    for label, path in exposed:
        yield Finding(PROBLEM, f"{label} {path} is readable by every user of this machine: chmod o-rwx {path}")
    if not exposed:
        yield Finding(OK, "no secret file is readable by every user")


# Helpers ----------------------------------------------------------------------------------


def _expiry(what: str, days: float, fix: str) -> Iterator[Finding]:
    if days < 0:
        yield Finding(PROBLEM, f"{what} expired {-days:.0f} days ago: {fix}")
    elif days < EXPIRY_WARNING_DAYS:
        yield Finding(WARNING, f"{what} expires in {days:.0f} days: {fix}")
    else:
        yield Finding(OK, f"{what} is valid for {days:.0f} more days")


def _send_options(family: int, address: Any, domain: str, user: str) -> int | None:
    """Send SIP OPTIONS from an ephemeral port; return the response status, or None on timeout."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        local_host, local_port = sock.getsockname()[:2]
        call_id = secrets.token_hex(8)
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        request = build_request(
            "OPTIONS",
            f"sip:{host}:{address[1]}",
            [
                ("Via", f"SIP/2.0/UDP {local_host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{user}@{domain}>;tag={secrets.token_hex(4)}"),
                ("To", f"<sip:{host}:{address[1]}>"),
                ("Call-ID", f"{call_id}@ringboard-doctor"),
                ("CSeq", "1 OPTIONS"),
                ("User-Agent", "ringboard doctor"),
            ],
        )
        for wait in OPTIONS_RETRANSMITS:
            sock.send(request)
            deadline = time.monotonic() + wait
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    break
                try:
                    message = parse_message(data)
                except SipParseError:
                    continue
                if isinstance(message, Response) and message.call_id == f"{call_id}@ringboard-doctor" and message.status >= 200:
                    return message.status
    return None


def _tcp_port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            return error.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def _udp_port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            return error.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def _agent_answers(config: Config) -> bool:
    """Return whether the process on the HTTP port serves /healthz as a Ringboard agent does."""
    http = config.http
    host = http.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if http.tls else "http"
    context = None
    if http.tls:
        # Only the answer's shape matters here; the certificate is checked on its own.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{scheme}://{host}:{http.port}/healthz", timeout=HEALTHZ_TIMEOUT, context=context) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except ValueError:
            return False
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and "subscriptions" in body


def _has_inline_secret(raw: dict[str, Any]) -> bool:
    for key, value in raw.items():
        if isinstance(value, dict) and _has_inline_secret(value):
            return True
        if isinstance(value, list) and any(isinstance(item, dict) and _has_inline_secret(item) for item in value):
            return True
        if key in SECRET_SETTING_NAMES and isinstance(value, str) and value:
            return True
    return False


def _owner(path: Path) -> int | None:
    try:
        return path.lstat().st_uid
    except OSError:
        return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)

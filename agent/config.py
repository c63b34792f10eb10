"""The agent's TOML configuration, checked key by key.

Every key and its default is documented in `ringboard.example.toml`. An unknown key or
a bad value stops start-up with a `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.lookup.settings import LookupSettings, parse_lookup_settings
from agent.raw_config import RawConfigError, RawSettings, parse_raw_settings
from sip.profiles import PROFILES

CONFIG_FILE_NAME = "ringboard.toml"
SYSTEM_CONFIG_PATH = Path("/etc/ringboard/ringboard.toml")

# Without TLS the agent listens on loopback only. Browsers give service workers and
# notifications only to secure contexts (HTTPS, or http://localhost), and over plain
# HTTP the PIN, the device cookie and the callers' numbers would cross the network
# readable by anyone on it.
PLAIN_HTTP_REASON = (
    "without HTTPS the page would not be a secure context (browsers then refuse its service worker "
    "and notifications) and PINs, device cookies and caller data would cross the network unencrypted"
)



@dataclass(frozen=True, slots=True)
class AgentSettings:
    """`[agent]`: where state lives and how long history is kept."""

    data_dir: Path = Path("./var")
    history_days: int = 90
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """`[http]`: the page and API listener."""

    host: str = "127.0.0.1"
    port: int = 8080
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    certificate: Path | None = None
    key: Path | None = None

    @property
    def tls(self) -> bool:
        """Whether the page is served over HTTPS."""
        return self.certificate is not None


@dataclass(frozen=True, slots=True)
class SipSettings:
    """`[sip]`: the PBX to observe and the agent's SIP identity."""

    server: str = ""
    port: int = 5060
    # True when no port was configured and the server is a host name, so DNS SRV
    # records (RFC 3263) name the PBX's hosts and ports.
    srv_lookup: bool = False
    transport: str = "udp"
    domain: str = ""
    user: str = "ringboard"
    # The name for digest authentication when it differs from `user` (3CX and FreePBX
    # call it the authentication ID); empty means `user`.
    username: str = ""
    password: str | None = field(default=None, repr=False)
    extensions: tuple[str, ...] = ()
    pbx: str = "generic"
    listen_host: str = "0.0.0.0"
    listen_port: int = 5070
    expires: int = 600
    outbound_proxy: str = ""
    ca_file: str = ""
    register: bool = False
    list_uri: str = ""
    retry_max: int = 60
    dns_servers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class NumberSettings:
    """`[numbers]`: how caller numbers are read and shown."""

    default_region: str = "CH"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    agent: AgentSettings = field(default_factory=AgentSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    numbers: NumberSettings = field(default_factory=NumberSettings)
    lookup: LookupSettings | None = None
    raw: RawSettings = field(default_factory=RawSettings)
    # The VAPID `sub` claim: how a push service reaches the office admin (RFC 8292).
    push_contact: str = "mailto:ringboard@example.com"
    # Push service hosts accepted beyond the browser vendors' own, and whether they may
    # use plain HTTP (only for a test push service on this machine).
    push_hosts: tuple[str, ...] = ()
    push_allow_http: bool = False
    source: Path | None = None

    def lookup_settings(self) -> LookupSettings:
        """Return the lookup settings, the defaults when the file has no `[lookup]`."""
        if self.lookup is not None:
            return self.lookup
        return parse_lookup_settings({"numbers": {"default_region": self.numbers.default_region}})


def find_config(explicit: Path | None) -> Path | None:
    """Return the configuration file to read: the given one, ./ringboard.toml, or /etc."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"configuration file {explicit} not found")
        return explicit
    for candidate in (Path.cwd() / CONFIG_FILE_NAME, SYSTEM_CONFIG_PATH):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path) -> Config:
    """Read and check a configuration file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    config = parse_config(raw)
    return dataclasses.replace(config, source=path)


def parse_config(raw: dict[str, Any]) -> Config:
    """Check a parsed TOML document and build the configuration."""
    _reject_unknown(raw, "", {"agent", "http", "sip", "numbers", "lookup", "connectors", "hep", "capture", "push"})

    agent_raw = _table(raw, "agent")
    _reject_unknown(agent_raw, "agent", {"data_dir", "history_days", "log_level"})
    agent = AgentSettings(
        data_dir=Path(_string(agent_raw, "agent.data_dir", "./var")),
        history_days=_integer(agent_raw, "agent.history_days", 90, minimum=1, maximum=3650),
        log_level=_choice(agent_raw, "agent.log_level", "info", ("debug", "info", "warning", "error")),
    )

    http_raw = _table(raw, "http")
    _reject_unknown(http_raw, "http", {"host", "port", "metrics_allow", "certificate", "key"})
    certificate, key = _tls_files(http_raw)
    http = HttpSettings(
        host=_listen_host(http_raw, "http.host", "127.0.0.1", tls=certificate is not None),
        port=_integer(http_raw, "http.port", 8080, minimum=0, maximum=65535),
        metrics_allow=_networks(http_raw, "http.metrics_allow", ("127.0.0.0/8", "::1/128")),
        certificate=certificate,
        key=key,
    )

    sip_raw = _table(raw, "sip")
    _reject_unknown(sip_raw, "sip", SIP_KEYS)
    server = _string(sip_raw, "sip.server", "")
    if not server:
        raise ConfigError('[sip] server is missing: set it to the PBX host name or address, e.g. server = "pbx.example.com"')
    transport = _choice(sip_raw, "sip.transport", "udp", ("udp", "tcp", "tls", "auto"))
    default_port = 5061 if transport == "tls" else 5060
    sip = SipSettings(
        server=server,
        port=_integer(sip_raw, "sip.port", default_port, minimum=1, maximum=65535),
        srv_lookup="port" not in sip_raw and not _is_ip_literal(server),
        transport=transport,
        domain=_string(sip_raw, "sip.domain", server),
        user=_string(sip_raw, "sip.user", "ringboard"),
        username=_string(sip_raw, "sip.username", ""),
        password=_sip_password(sip_raw),
        extensions=_extensions(sip_raw),
        pbx=_choice(sip_raw, "sip.pbx", "generic", tuple(PROFILES)),
        listen_host=_ip_address(sip_raw, "sip.listen_host", "0.0.0.0"),
        listen_port=_integer(sip_raw, "sip.listen_port", 5070, minimum=0, maximum=65535),
        expires=_integer(sip_raw, "sip.expires", 600, minimum=60, maximum=86400),
        outbound_proxy=_sip_uri_or_host(sip_raw, "sip.outbound_proxy"),
        ca_file=_existing_file(sip_raw, "sip.ca_file"),
        register=_sip_boolean(sip_raw, "sip.register", False),
        list_uri=_list_uri(sip_raw),
        retry_max=_integer(sip_raw, "sip.retry_max", 60, minimum=1, maximum=3600),
        dns_servers=_dns_servers(sip_raw),
    )

    numbers_raw = _table(raw, "numbers")
    _reject_unknown(numbers_raw, "numbers", {"default_region"})
    region = _string(numbers_raw, "numbers.default_region", "CH").upper()
    if len(region) != 2 or not region.isalpha():
        raise ConfigError(f'[numbers] default_region = "{region}" is invalid: use a two-letter country code such as "CH"')
    numbers = NumberSettings(default_region=region)

    lookup = parse_lookup_settings(raw)
    try:
        raw_sources = parse_raw_settings(sip_raw, _table(raw, "hep"), _table(raw, "capture"), sip.extensions)
    except RawConfigError as error:
        raise ConfigError(str(error)) from None
    push_raw = _table(raw, "push")
    _reject_unknown(push_raw, "push", {"contact", "hosts", "allow_http"})
    push_hosts = push_raw.get("hosts", [])
    if not isinstance(push_hosts, list) or not all(isinstance(host, str) and host for host in push_hosts):
        raise ConfigError('[push] hosts must list host names, e.g. hosts = ["push.example.com"]')
    push_allow_http = push_raw.get("allow_http", False)
    if not isinstance(push_allow_http, bool):
        raise ConfigError("[push] allow_http must be true or false")
    contact = _string(push_raw, "push.contact", "mailto:ringboard@example.com")
    if not contact.startswith(("mailto:", "https://")):
        raise ConfigError(f'[push] contact = "{contact}" is invalid: use a mailto: or https: address, e.g. "mailto:it@example.com"')
    return Config(
        agent=agent, http=http, sip=sip, numbers=numbers, lookup=lookup, raw=raw_sources, push_contact=contact,
        push_hosts=tuple(push_hosts), push_allow_http=push_allow_http,
    )


# Value checks ----------------------------------------------------------------------------


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table, e.g. a line [{name}] followed by its keys")
    return value


def _reject_unknown(raw: dict[str, Any], table: str, known: set[str]) -> None:
    for key in raw:
        if key not in known:
            where = f"[{table}] {key}" if table else f"[{key}]"
            raise ConfigError(f"{where} is not a known setting; known ones here: {', '.join(sorted(known))}")


def _string(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key.split(".")[-1], default)
    if not isinstance(value, str):
        raise ConfigError(f"{_label(key)} must be a string in quotes, got {value!r}")
    return value.strip()


def _integer(raw: dict[str, Any], key: str, default: int, *, minimum: int, maximum: int) -> int:
    value = raw.get(key.split(".")[-1], default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_label(key)} must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{_label(key)} = {value} is out of range: use {minimum} to {maximum}")
    return value


def _choice(raw: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = _string(raw, key, default).lower()
    if value not in choices:
        raise ConfigError(f'{_label(key)} = "{value}" is invalid: use one of {", ".join(choices)}')
    return value


def _ip_address(raw: dict[str, Any], key: str, default: str) -> str:
    value = _string(raw, key, default)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f'{_label(key)} = "{value}" is not an IP address, e.g. "0.0.0.0" for every interface') from None
    return value


def _networks(raw: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = raw.get(key.split(".")[-1], list(default))
    if not isinstance(value, list):
        raise ConfigError(f'{_label(key)} must be a list of addresses or networks, e.g. ["127.0.0.1", "10.0.0.0/8"]')
    networks: list[str] = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise ConfigError(f'{_label(key)}: "{item}" is not an IP address or network such as "10.0.0.0/8"') from None
    return tuple(networks)


def _listen_host(raw: dict[str, Any], key: str, default: str, *, tls: bool) -> str:
    value = _string(raw, key, default)
    if value == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(value).is_loopback
    except ValueError:
        raise ConfigError(
            f'{_label(key)} = "{value}" is not an IP address: use "127.0.0.1", or with HTTPS "0.0.0.0" for every interface'
        ) from None
    if not loopback and not tls:
        raise ConfigError(
            f'{_label(key)} = "{value}" needs HTTPS: {PLAIN_HTTP_REASON}. Set [http] certificate and key '
            '(`ringboard tls init` makes them), or use host = "127.0.0.1"'
        )
    return value


def _tls_files(raw: dict[str, Any]) -> tuple[Path | None, Path | None]:
    certificate = _string(raw, "http.certificate", "")
    key = _string(raw, "http.key", "")
    if bool(certificate) != bool(key):
        missing = "key" if certificate else "certificate"
        raise ConfigError(
            f"[http] {missing} is missing: HTTPS needs both certificate and key (PEM files, e.g. from `ringboard tls init`)"
        )
    if not certificate:
        return None, None
    return Path(certificate), Path(key)


# [sip] settings ---------------------------------------------------------------------------

SIP_KEYS = {
    "server", "port", "transport", "domain", "user", "username", "password", "password_file", "password_env",
    "extensions", "pbx", "listen_host", "listen_port", "expires", "outbound_proxy", "ca_file", "register",
    "list_uri", "retry_max", "dns_servers", "sources", "dids", "link_header",
}

# Each extension is one SUBSCRIBE dialog on the PBX. An office notifier watches tens to
# a few hundred lines; the cap catches a mistyped range such as "200-20000".
MAX_EXTENSIONS = 1000


def _extensions(raw: dict[str, Any]) -> tuple[str, ...]:
    """Read `extensions`: user names, or ranges of numbers such as "201-219"."""
    value = raw.get("extensions")
    example = 'extensions = ["201", "202", "210-219"]'
    if not isinstance(value, list) or not value:
        raise ConfigError(f"[sip] extensions must list the extensions to watch, e.g. {example}")
    extensions: list[str] = []
    for item in value:
        text = str(item).strip() if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
        if not text or any(ch in text for ch in " @:;<>\"") or len(text) > 64:
            raise ConfigError(f"[sip] extensions: {item!r} is not an extension user name; e.g. {example}")
        for extension in _extension_range(text, example):
            if extension in extensions:
                raise ConfigError(f'[sip] extensions lists "{extension}" twice')
            extensions.append(extension)
            if len(extensions) > MAX_EXTENSIONS:
                raise ConfigError(f"[sip] extensions lists more than {MAX_EXTENSIONS} extensions; check the ranges")
    return tuple(extensions)


def _extension_range(text: str, example: str) -> list[str]:
    """Expand "201-219" into each number, keeping leading zeros ("001-010"); else return [text]."""
    first, dash, last = text.partition("-")
    if not dash or not first.isdigit() or not last.isdigit():
        return [text]
    if len(first) != len(last) or int(first) > int(last):
        raise ConfigError(
            f'[sip] extensions: range "{text}" is invalid: give the first and last extension with the '
            f"same number of digits, lowest first; e.g. {example}"
        )
    return [str(number).zfill(len(first)) for number in range(int(first), int(last) + 1)][: MAX_EXTENSIONS + 1]


def _sip_password(raw: dict[str, Any]) -> str | None:
    """Read the SIP password from `password`, `password_file` or `password_env` (one of them)."""
    import os

    password_keys = [key for key in ("password", "password_file", "password_env") if key in raw]
    if len(password_keys) > 1:
        raise ConfigError(f"[sip] sets {' and '.join(password_keys)}: keep only one way to give the password")
    if not password_keys:
        return None
    if password_keys[0] == "password":
        return _string(raw, "sip.password", "")

    if password_keys[0] == "password_file":
        path = Path(_string(raw, "sip.password_file", ""))
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"[sip] password_file: cannot read {path}: {error.strerror}") from None

    name = _string(raw, "sip.password_env", "")
    secret = os.environ.get(name)
    if not name or secret is None:
        raise ConfigError(f'[sip] password_env = "{name}": the environment variable is not set for the agent')
    return secret


def _sip_boolean(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key.split(".")[-1], default)
    if not isinstance(value, bool):
        raise ConfigError(f"{_label(key)} must be true or false, got {value!r}")
    return value


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _sip_uri_or_host(raw: dict[str, Any], key: str) -> str:
    """Read a host, host:port or sip: URI, such as an outbound proxy."""
    value = _string(raw, key, "")
    if not value:
        return ""
    from sip.uri import UriError, parse_uri

    text = value if value.lower().startswith(("sip:", "sips:")) else f"sip:{value}"
    try:
        uri = parse_uri(text)
    except UriError as error:
        raise ConfigError(f'{_label(key)} = "{value}" is invalid ({error}); e.g. "sip:proxy.example.com:5060"') from None
    if not uri.host:
        raise ConfigError(f'{_label(key)} = "{value}" names no host; e.g. "sip:proxy.example.com:5060"')
    return value


def _existing_file(raw: dict[str, Any], key: str) -> str:
    value = _string(raw, key, "")
    if value and not Path(value).is_file():
        raise ConfigError(f'{_label(key)} = "{value}": file not found; give the path of a PEM file')
    return value


def _list_uri(raw: dict[str, Any]) -> str:
    value = _string(raw, "sip.list_uri", "")
    if value and not value.lower().startswith(("sip:", "sips:")):
        raise ConfigError(f'[sip] list_uri = "{value}" must be a SIP URI such as "sip:blf-list@pbx.example.com"')
    return value


def _dns_servers(raw: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """Read `dns_servers`: IP addresses with an optional port ("10.0.0.2", "127.0.0.1:5353")."""
    value = raw.get("dns_servers", [])
    example = 'dns_servers = ["10.0.0.2"]'
    if not isinstance(value, list):
        raise ConfigError(f"[sip] dns_servers must be a list of IP addresses, e.g. {example}")
    servers: list[tuple[str, int]] = []
    ports: set[int] = set()
    for item in value:
        text = str(item).strip()
        host, port = text, 53
        if text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = int(port_text) if port_text.isdigit() else -1
        elif text.startswith("[") and "]:" in text:
            host, _, port_text = text[1:].partition("]:")
            port = int(port_text) if port_text.isdigit() else -1
        if not _is_ip_literal(host) or not 1 <= port <= 65535:
            raise ConfigError(f'[sip] dns_servers: "{text}" is not an IP address with an optional port; e.g. {example}')
        servers.append((host.strip("[]"), port))
        ports.add(port)
    if len(ports) > 1:
        # The resolver library asks every server on one port.
        raise ConfigError("[sip] dns_servers: all servers must use the same port")
    return tuple(servers)


def _label(key: str) -> str:
    table, _, name = key.partition(".")
    return f"[{table}] {name}"

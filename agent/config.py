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
from typing import TYPE_CHECKING, Any

from sip.profiles import PROFILES

if TYPE_CHECKING:
    from agent.lookup.settings import LookupSettings

CONFIG_FILE_NAME = "ringboard.toml"
SYSTEM_CONFIG_PATH = Path("/etc/ringboard/ringboard.toml")

# The agent serves caller numbers without user pairing, so it may only listen on the
# loopback interface until device pairing protects the API.
LOOPBACK_ONLY_REASON = (
    "the page has no PIN pairing yet, so caller data may only be served to this machine"
)


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key and the fix."""


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


@dataclass(frozen=True, slots=True)
class SipSettings:
    """`[sip]`: the PBX to observe and the agent's SIP identity."""

    server: str = ""
    port: int = 5060
    transport: str = "udp"
    domain: str = ""
    user: str = "ringboard"
    extensions: tuple[str, ...] = ()
    pbx: str = "generic"
    listen_host: str = "0.0.0.0"
    listen_port: int = 5070
    expires: int = 600


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
    source: Path | None = None

    def lookup_settings(self) -> LookupSettings:
        """Return the lookup settings, the defaults when the file has no `[lookup]`."""
        if self.lookup is not None:
            return self.lookup
        from agent.lookup.settings import parse_lookup_settings

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
    _reject_unknown(raw, "", {"agent", "http", "sip", "numbers", "lookup", "connectors"})

    agent_raw = _table(raw, "agent")
    _reject_unknown(agent_raw, "agent", {"data_dir", "history_days", "log_level"})
    agent = AgentSettings(
        data_dir=Path(_string(agent_raw, "agent.data_dir", "./var")),
        history_days=_integer(agent_raw, "agent.history_days", 90, minimum=1, maximum=3650),
        log_level=_choice(agent_raw, "agent.log_level", "info", ("debug", "info", "warning", "error")),
    )

    http_raw = _table(raw, "http")
    _reject_unknown(http_raw, "http", {"host", "port", "metrics_allow"})
    http = HttpSettings(
        host=_loopback_host(http_raw, "http.host", "127.0.0.1"),
        port=_integer(http_raw, "http.port", 8080, minimum=0, maximum=65535),
        metrics_allow=_networks(http_raw, "http.metrics_allow", ("127.0.0.0/8", "::1/128")),
    )

    sip_raw = _table(raw, "sip")
    _reject_unknown(
        sip_raw,
        "sip",
        {"server", "port", "transport", "domain", "user", "extensions", "pbx", "listen_host", "listen_port", "expires"},
    )
    server = _string(sip_raw, "sip.server", "")
    if not server:
        raise ConfigError('[sip] server is missing: set it to the PBX host name or address, e.g. server = "pbx.example.com"')
    sip = SipSettings(
        server=server,
        port=_integer(sip_raw, "sip.port", 5060, minimum=1, maximum=65535),
        # TODO: add TCP and TLS transports; only UDP is implemented.
        transport=_choice(sip_raw, "sip.transport", "udp", ("udp",)),
        domain=_string(sip_raw, "sip.domain", server),
        user=_string(sip_raw, "sip.user", "ringboard"),
        extensions=_extensions(sip_raw),
        pbx=_choice(sip_raw, "sip.pbx", "generic", tuple(PROFILES)),
        listen_host=_ip_address(sip_raw, "sip.listen_host", "0.0.0.0"),
        listen_port=_integer(sip_raw, "sip.listen_port", 5070, minimum=0, maximum=65535),
        expires=_integer(sip_raw, "sip.expires", 600, minimum=60, maximum=86400),
    )

    numbers_raw = _table(raw, "numbers")
    _reject_unknown(numbers_raw, "numbers", {"default_region"})
    region = _string(numbers_raw, "numbers.default_region", "CH").upper()
    if len(region) != 2 or not region.isalpha():
        raise ConfigError(f'[numbers] default_region = "{region}" is invalid: use a two-letter country code such as "CH"')
    numbers = NumberSettings(default_region=region)

    # Imported here because the lookup settings module raises this module's ConfigError.
    from agent.lookup.settings import parse_lookup_settings

    lookup = parse_lookup_settings(raw)
    return Config(agent=agent, http=http, sip=sip, numbers=numbers, lookup=lookup)


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


def _loopback_host(raw: dict[str, Any], key: str, default: str) -> str:
    value = _string(raw, key, default)
    if value == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(value).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f'{_label(key)} = "{value}" is refused: {LOOPBACK_ONLY_REASON}; use "127.0.0.1"')
    return value


def _extensions(raw: dict[str, Any]) -> tuple[str, ...]:
    value = raw.get("extensions")
    example = 'extensions = ["201", "202"]'
    if not isinstance(value, list) or not value:
        raise ConfigError(f"[sip] extensions must list the extensions to watch, e.g. {example}")
    extensions: list[str] = []
    for item in value:
        text = str(item).strip() if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
        if not text or any(ch in text for ch in " @:;<>\"") or len(text) > 64:
            raise ConfigError(f"[sip] extensions: {item!r} is not an extension user name; e.g. {example}")
        if text in extensions:
            raise ConfigError(f'[sip] extensions lists "{text}" twice')
        extensions.append(text)
    return tuple(extensions)


def _label(key: str) -> str:
    table, _, name = key.partition(".")
    return f"[{table}] {name}"

"""The agent's configuration for observing the lab, shared by `ringboard run` and the tools."""

from __future__ import annotations

from pathlib import Path

from agent.config import AgentSettings, Config, HttpSettings, SipSettings
from agent.lab.lab import Lab
from agent.lookup.settings import lab_settings
from agent.raw_config import RawSettings

LAB_EXTENSIONS = ("201", "202", "203")


def lab_agent_config(lab: Lab, data_dir: Path, hep_port: int, http_port: int = 8080) -> Config:
    """Return the configuration that observes a started lab.

    The agent subscribes to 201-203 with the lab's authenticated account, reads the
    lab's SIP mirrored as HEP on `hep_port`, and looks callers up in the demo contacts.
    """
    host, sip_port = lab.sip_address
    return Config(
        agent=AgentSettings(data_dir=data_dir),
        http=HttpSettings(host="127.0.0.1", port=http_port),
        sip=SipSettings(
            server=host,
            port=sip_port,
            domain=lab.domain,
            extensions=LAB_EXTENSIONS,
            pbx="kamailio",
            listen_host="127.0.0.1",
            listen_port=0,
            user=lab.agent_user,
            password=lab.agent_password,
        ),
        lookup=lab_settings(),
        raw=RawSettings(sources=("subscribe", "hep"), hep_host="127.0.0.1", hep_port=hep_port, hep_transports=("udp",)),
    )

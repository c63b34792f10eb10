"""Lab PBX for development and tests: Kamailio with simulated phones on 127.0.0.1.

``Lab`` starts Kamailio 5.6 (registrar, proxy, dialog-event presence, digest
authentication of the agent's account, UDP, TCP and TLS), SIPp phones for
extensions 201-203, ring group 600 (201 and 202) and a carrier for external
numbers, and places calls through them. ``restart_pbx`` stops or kills Kamailio
and starts it again, as a PBX restart would.
"""

from agent.lab.calls import CallHandle, CallPlan
from agent.lab.lab import DOMAIN, EXTENSIONS, RING_GROUP, RING_GROUP_MEMBERS, Lab
from agent.lab.processes import LabError

__all__ = [
    "DOMAIN",
    "EXTENSIONS",
    "RING_GROUP",
    "RING_GROUP_MEMBERS",
    "CallHandle",
    "CallPlan",
    "Lab",
    "LabError",
]

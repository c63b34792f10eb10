"""The raw-SIP call engine that HEP mirrors and packet captures feed."""

from sip.raw.engine import EngineStats, RawCallEngine, Role

__all__ = ["EngineStats", "RawCallEngine", "Role"]

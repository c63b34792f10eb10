"""SIPp command lines and scenario files for the lab's phones and callers."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from agent.lab.pbx import render_template
from agent.lab.processes import LOOPBACK, find_program


def sipp_program() -> str:
    return find_program("sipp", "sip-tester")


def write_scenario(name: str, workdir: Path, values: Mapping[str, str] | None = None, suffix: str = "") -> Path:
    """Copy scenarios/NAME.xml into the work dir, with its {{name}} placeholders filled in."""
    template = resources.files("agent.lab").joinpath("scenarios").joinpath(f"{name}.xml").read_text()
    text = render_template(template, values or {})
    target = workdir / "scenarios" / f"{name}{suffix}.xml"
    target.parent.mkdir(parents=True, exist_ok=True)

    # Calls start from several threads, and no SIPp process may read a half-written file.
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(text)
    os.replace(partial, target)
    return target


def base_argv(scenario: Path, error_file: Path, local_port: int | None = None) -> list[str]:
    """Return the SIPp options every lab process uses: loopback only, no terminal.

    Without local_port, the kernel picks a free port when SIPp binds.
    """
    port_argv = [] if local_port is None else ["-p", str(local_port)]
    # -bind_local makes SIPp bind 127.0.0.1 rather than every address.
    # -mi and -ci do the same for its media and control sockets, whose ports
    # SIPp raises by itself when taken.
    return [
        sipp_program(),
        "-sf", str(scenario),
        "-i", LOOPBACK,
        *port_argv,
        "-bind_local",
        "-mi", LOOPBACK,
        "-ci", LOOPBACK,
        "-nostdin",
        "-trace_err",
        "-error_file", str(error_file),
    ]


def keyword_argv(keywords: Mapping[str, str]) -> list[str]:
    """Return -key options: SIPp puts each value where the scenario has [name]."""
    argv: list[str] = []
    for name, value in keywords.items():
        argv += ["-key", name, value]
    return argv

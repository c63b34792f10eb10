"""The `ringboard` command."""

from __future__ import annotations

import argparse
import importlib
import asyncio
import logging
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

from agent.config import Config, ConfigError, HttpSettings, find_config, load_config

log = logging.getLogger("ringboard")


# The lab's user: a receptionist, so the page shows every lab extension.
LAB_USER = "lab"

# Modules that register further sub-commands with an `add_commands(subparsers)` function.
PLUGGED_COMMANDS = ("agent.lookup.cli", "agent.inspect", "agent.users_cli", "agent.doctor")


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(prog="ringboard", description="On-premises call notifier for SIP PBXs.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="observe the PBX and serve the page")
    run.add_argument("--config", type=Path, help="configuration file (default: ./ringboard.toml, then /etc/ringboard)")
    run.add_argument("--lab", action="store_true", help="run the built-in lab PBX even if a configuration file exists")
    run.add_argument("--port", type=int, help="HTTP port, overriding [http] port")

    for module in PLUGGED_COMMANDS:
        importlib.import_module(module).add_commands(commands)

    args = parser.parse_args(argv)
    if args.command == "run":
        return run_command(args)
    if getattr(args, "reads_own_config", False):
        return args.handler(args, None)
    return args.handler(args, _config_for(args))


def _config_for(args: argparse.Namespace) -> Config | None:
    """Load the configuration named by `--config` or found in the usual places, if any."""
    try:
        path = find_config(getattr(args, "config", None))
        return load_config(path) if path else None
    except ConfigError as error:
        print(f"ringboard: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def run_command(args: argparse.Namespace) -> int:
    """Start the agent against the configured PBX, or against the lab when there is none."""
    try:
        path = None if args.lab else find_config(args.config)
        config = load_config(path) if path else None
    except ConfigError as error:
        print(f"ringboard: {error}", file=sys.stderr)
        return 2

    _setup_logging(config.agent.log_level if config else "info")
    if config is None:
        return _run_lab(args.port)

    if args.port:
        config = replace(config, http=replace(config.http, port=args.port))
    log.info("configuration read from %s", config.source)
    return _serve_until_stopped(config)


def _serve_until_stopped(config: Config, ready: threading.Event | None = None) -> int:
    from agent.tls import TlsError

    try:
        asyncio.run(serve(config, ready=ready))
    except TlsError as error:
        print(f"ringboard: HTTPS cannot start: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: the agent has already stopped in order.
        pass
    return 0


async def serve(config: Config, *, ready: threading.Event | None = None) -> None:
    """Run the call service and the web server until interrupted."""
    from agent.runner import AgentRunner

    runner = AgentRunner(config)
    url = await runner.start()
    print(f"Ringboard is ready: open {url} in your browser", flush=True)
    if ready is not None:
        ready.set()
    try:
        await runner.wait()
    finally:
        await runner.stop()


def _run_lab(port: int | None) -> int:
    """Start Kamailio, the simulated phones and their traffic, and observe them."""
    from agent.lab import Lab, LabError
    from agent.lab.processes import free_port
    from agent.lab.agent_config import lab_agent_config

    data_dir = Path("var").resolve()
    # Kamailio mirrors its SIP to the agent as HEP, so the page shows callers' display
    # names and outcomes that dialog-info cannot tell.
    hep_port = free_port()
    lab = Lab(data_dir / "lab", hep_address=("127.0.0.1", hep_port))
    print("No ringboard.toml found: starting the lab (Kamailio and simulated phones on 127.0.0.1)", flush=True)
    try:
        lab.start()
    except LabError as error:
        print(f"ringboard: the lab could not start: {error}", file=sys.stderr)
        return 1
    config = lab_agent_config(lab, data_dir, hep_port, http_port=port or HttpSettings().port)

    pin = lab_user_pin(data_dir)

    stop_traffic = threading.Event()
    traffic = threading.Thread(target=lab.run_traffic, args=(stop_traffic,), name="lab-traffic", daemon=True)
    agent_ready = threading.Event()

    def start_traffic() -> None:
        agent_ready.wait()
        print(
            f"Pair your browser with PIN {pin} when the page asks (user {LAB_USER}, sees every lab extension).",
            flush=True,
        )
        print("The lab places a call every few seconds to extensions 201-203; press Ctrl-C to stop.", flush=True)
        traffic.start()

    threading.Thread(target=start_traffic, daemon=True).start()
    try:
        return _serve_until_stopped(config, agent_ready)
    finally:
        stop_traffic.set()
        lab.stop()


def lab_user_pin(data_dir: Path) -> str:
    """Create the lab's receptionist, or give the existing one a new PIN; return the PIN to show.

    Only a hash of a PIN is stored, so a reused lab user gets a new PIN at every start.
    Browsers paired before stay paired.
    """
    from agent.users import UserStore, format_pin

    store = UserStore.in_data_dir(data_dir)
    try:
        if store.user(LAB_USER) is None:
            _, pin = store.add_user(LAB_USER, [], "receptionist")
        else:
            pin = store.reset_pin(LAB_USER)
    finally:
        store.close()
    return format_pin(pin)


def _setup_logging(level: str) -> None:
    # Under systemd, output goes to the journal, which adds its own time stamps.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=stamp + "%(levelname)s %(name)s: %(message)s",
    )


"""Run the lab until Ctrl-C: ``python -m agent.lab [--sip-port N] [--no-traffic]``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from agent.lab.lab import Lab
from agent.lab.processes import LabError

# Not 5060, which a softphone or PBX on the same machine may hold, and not the
# agent's own default of 5070.
DEFAULT_SIP_PORT = 15060


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent.lab",
        description="Run Kamailio with simulated phones 201-203 and ring group 600 on 127.0.0.1, "
        "and place a mix of calls through it until Ctrl-C.",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("var/lab"), help="directory for configuration and logs (default: var/lab)"
    )
    parser.add_argument(
        "--sip-port",
        type=int,
        default=DEFAULT_SIP_PORT,
        help=f"UDP and TCP port of Kamailio, or 0 for a free port (default: {DEFAULT_SIP_PORT})",
    )
    parser.add_argument("--no-traffic", action="store_true", help="start the PBX and phones but place no calls")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the call mix, for a repeatable sequence")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every call placed and ended")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Start the lab, print its SIP address, run the traffic until interrupted."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # SIGTERM ends the lab the same way as Ctrl-C, so Kamailio and SIPp stop too.
    signal.signal(signal.SIGTERM, _raise_interrupt)

    lab = Lab(args.workdir, sip_port=args.sip_port)
    try:
        lab.start()
    except LabError as error:
        print(f"lab failed to start: {error}", file=sys.stderr)
        return 1

    host, port = lab.sip_address
    print(f"Lab PBX at sip:{host}:{port} (UDP and TCP), TLS port {lab.tls_port}, domain {lab.domain}")
    print(f"TLS certificate signed by the lab CA in {lab.ca_file}")
    print(f"Agent account: user {lab.agent_user}, password {lab.agent_password} ({lab.auth_algorithm} digest)")
    print(f"Extensions {', '.join(lab.extensions)}; ring group {lab.ring_group} rings {', '.join(lab.ring_group_members)}")
    print(f"Subscribe with Event: dialog to sip:201@{lab.domain} (and 202, 203) at {host}:{port}")
    print(f"Logs in {args.workdir}; press Ctrl-C to stop")

    stop = threading.Event()
    try:
        if args.no_traffic:
            stop.wait()
        else:
            placed = lab.run_traffic(stop, seed=args.seed)
            print(f"traffic stopped after {placed} calls because the lab is no longer running", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopping the lab")
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``host logs --port PORT [--lines N]``: print the hub's event log.

The hub's event log is JSON lines (time, risk, probabilities, model version,
latency, sensor health). Lines are printed as they are; ``--json`` prints one
JSON array of the parsed events (lines that are not JSON are kept as
``{"raw": line}``).
"""

from __future__ import annotations

import argparse
import json

from .common import add_json_argument, add_port_arguments, emit

HELP = "print the hub's event log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``logs``' flags."""
    add_port_arguments(parser)
    parser.add_argument("--lines", "-n", type=int, default=50, help="how many of the latest lines (default 50)")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Fetch and print."""
    from edge.errors import ConfigError

    from .common import open_client

    if args.lines < 1:
        raise ConfigError(f"--lines {args.lines}; expected at least 1")
    with open_client(args) as client:
        parts = client.request("logs", {"lines": args.lines})
    lines = [line for part in parts for line in part.get("lines", [])]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"raw": line})
    emit(args, events, "\n".join(lines) if lines else "(the hub's event log is empty)")
    return 0

"""``host rollback --port PORT`` (or ``--to DIR``): return a hub to its previous bundle.

The hub keeps the bundle that was active before the last flash. Rolling back
switches to it atomically (the one rolled back from becomes "previous", so a
second rollback undoes the first); the hub's daemon picks it up without a
restart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import DEFAULT_BAUD, add_json_argument, emit

HELP = "switch a hub back to its previous bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``rollback``'s flags."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT", help="hub serial port (e.g. /dev/ttyACM0) or a pyserial URL")
    where.add_argument("--to", type=Path, metavar="DIR", help="hub bundle store on a mounted SD card")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the hub's reply")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Roll back and report."""
    if args.to is not None:
        from edge.errors import ConfigError
        from edge.store import BundleStore

        if not args.to.is_dir():
            raise ConfigError(f"--to {args.to}: no such directory; expected the hub's store on the SD card")
        result = BundleStore(args.to).rollback()
    else:
        from edge.manage import ManagementClient

        with ManagementClient(args.port, baud=args.baud, timeout=args.timeout) as client:
            result = client.call("rollback")
    emit(args, result, f"OK active bundle is now {result['active']} (previous: {result['previous'] or 'none'})")
    return 0

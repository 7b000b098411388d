"""``host provision --port PORT --trust KEY.pub [--hub-id ID]``: set up a new hub, once.

Puts the trusted Ed25519 public key (the ``KEY.pub`` from
``python -m quantize keygen``; only bundles signed by its private key will be
accepted) and a hub id on the hub. A hub that is already provisioned refuses
a second provisioning; changing its key or id needs ``--replace``, which also
removes the old trusted keys. ``--to DIR`` provisions a store on a mounted SD
card instead.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from .common import DEFAULT_BAUD, add_json_argument, emit

HELP = "put the trusted public key and a hub id on a new hub (once; --replace to change)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``provision``'s flags."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT", help="hub serial port (e.g. /dev/ttyACM0) or a pyserial URL")
    where.add_argument("--to", type=Path, metavar="DIR", help="hub bundle store on a mounted SD card")
    parser.add_argument("--trust", type=Path, required=True, metavar="KEY.pub",
                        help="Ed25519 public key whose bundles the hub will accept")
    parser.add_argument("--hub-id", default=None, metavar="ID",
                        help="hub id (letters, digits, . _ -; default: hub-<random>)")
    parser.add_argument("--replace", action="store_true",
                        help="change the key and id of an already provisioned hub")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the hub's reply")
    add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Provision and report."""
    from edge.errors import ConfigError
    from edge.store import check_public_key

    try:
        key = args.trust.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--trust {args.trust}: cannot read it ({exc.strerror or exc})") from None
    check_public_key(key, f"--trust {args.trust}")
    hub_id = args.hub_id or f"hub-{secrets.token_hex(4)}"
    if args.to is not None:
        from edge.store import BundleStore

        if not args.to.is_dir():
            raise ConfigError(f"--to {args.to}: no such directory; expected the hub's store on the SD card")
        result = BundleStore(args.to).provision(key, hub_id, replace=args.replace)
    else:
        from edge.manage import ManagementClient

        try:
            key_text = key.decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError(f"--trust {args.trust}: binary key files cannot be sent; use the PEM "
                              f"KEY.pub written by 'python -m quantize keygen'") from None
        with ManagementClient(args.port, baud=args.baud, timeout=args.timeout) as client:
            result = client.call("provision", {"public_key": key_text, "hub_id": hub_id,
                                               "replace": args.replace})
    emit(args, result, f"OK hub {result['hub_id']} now trusts key {result['key_fingerprint']}"
                       + (" (replaced the previous provisioning)" if result.get("replaced") else ""))
    return 0

"""``host verify FILE --trust PUBKEY``: check a bundle on a workstation before flashing it.

Runs the same checks a hub runs (:func:`edge.bundle.load_bundle`): container,
schema, Ed25519 signature against the given keys, every member's sha256, the
layout against the hub's sensors, the version against ``--installed-version``,
then the interpreter and the golden-vector self-test. ``--no-selftest`` stops
before the interpreter (:func:`edge.bundle.verify_bundle`: still checks that
this machine's signal path reproduces the golden int8 inputs bit for bit).
Exit status 0 means the hub would accept the bundle.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "verify a bundle's signature, hashes, layout and golden self-test (the hub's checks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``verify``'s flags."""
    parser.add_argument("bundle", type=Path, metavar="FILE", help="bundle file (*.lgb)")
    parser.add_argument("--trust", type=Path, action="append", required=True, metavar="PUBKEY",
                        help="trusted Ed25519 public key (repeatable)")
    parser.add_argument("--sensors", default=None, help="comma-separated sensors of the target hub (default: all six)")
    parser.add_argument("--installed-version", default=None, help="the hub's installed version; older bundles fail")
    parser.add_argument("--force", action="store_true", help="accept an older version (as 'host flash --force')")
    parser.add_argument("--no-selftest", action="store_true",
                        help="skip the interpreter and golden outputs (no TFLite runtime needed)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    """Verify and print the result."""
    from edge.bundle import load_bundle, verify_bundle
    from edge.bundle_cli import parse_sensors, summary, summary_text

    from .common import emit

    sensors = parse_sensors(args.sensors)
    if args.no_selftest:
        m = verify_bundle(args.bundle, trusted_keys=args.trust, hub_sensors=sensors,
                          installed_version=args.installed_version, force=args.force)
        data = {"bundle": str(args.bundle), "model_id": m["model_id"], "model_version": m["model_version"],
                "created": m["created"], "checks": "signature, hashes, schema, layout, version, golden inputs",
                "selftest": "skipped (--no-selftest)"}
        emit(args, data, f"OK {args.bundle}: model {m['model_id']} version {m['model_version']} "
                         f"passed signature, hash, schema, layout, version and golden-input checks "
                         f"(interpreter self-test skipped)")
        return 0
    loaded = load_bundle(args.bundle, trusted_keys=args.trust, hub_sensors=sensors,
                         installed_version=args.installed_version, force=args.force, num_threads=args.threads)
    s = summary(loaded)
    loaded.close()
    emit(args, s, "OK " + summary_text(s))
    return 0

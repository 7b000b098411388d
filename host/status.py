"""``host status --port PORT`` (or ``--to DIR``): the hub's health at a glance.

Shows the hub id, trusted keys, the active and previous bundles, what the
running daemon reports (loaded model, sensors, counters) and the management
link's counters. ``--json`` prints the hub's full answer.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict

from .common import DEFAULT_BAUD, add_json_argument, emit, format_mapping

HELP = "show a hub's health: id, keys, active bundle, daemon state"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``status``' flags."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT", help="hub serial port (e.g. /dev/ttyACM0) or a pyserial URL")
    where.add_argument("--to", type=Path, metavar="DIR", help="hub bundle store on a mounted SD card")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the hub's reply")
    add_json_argument(parser)


def describe(status: Dict[str, Any]) -> str:
    """Render a status answer for people."""
    store = status.get("store") or {}
    active, previous = store.get("active") or {}, store.get("previous") or {}
    lines = [
        f"hub id          {store.get('hub_id') or '(not provisioned)'}",
        f"trusted keys    {', '.join(store.get('trusted_keys') or []) or '(none)'}",
        f"active bundle   {active.get('model_id', '-')} {active.get('version', 'none')}"
        + (f"  sha256 {active['sha256'][:16]}  installed {active.get('installed_at', '?')}" if active.get("sha256") else ""),
        f"previous        {previous.get('model_id', '-')} {previous.get('version', 'none')}",
    ]
    daemon = status.get("daemon")
    if daemon and "aligner" in daemon:  # the hub daemon (edge run): the essentials
        model = daemon.get("model") or {}
        source = daemon.get("source") or {}
        sensors = (daemon.get("aligner") or {}).get("sensors") or {}
        counts = daemon.get("counts") or {}
        lines += [
            f"running model   {model.get('model_id', '-')} {model.get('model_version', 'none')}"
            + (f" on {model['runtime']}" if model.get("runtime") else "")
            + (f"  (error: {daemon['model_error']})" if daemon.get("model_error") else ""),
            f"source          {source.get('url', '-')} {source.get('state', '')}".rstrip(),
            f"sensors         " + (", ".join(f"{n} {s.get('state', '?')}" for n, s in sensors.items()) or "-"),
            f"battery         {str(source['battery_pct']) + '%' if source.get('battery_pct') is not None else 'not reported'}"
            + (f"   faults {', '.join(source['faults'])}" if source.get("faults") else ""),
            f"lifts           {counts.get('lifts', 0)} classified, {counts.get('buzzes', 0)} buzzed, "
            f"{counts.get('skipped', 0)} skipped; uptime {daemon.get('uptime_s', '?')} s",
        ]
    elif daemon:
        lines.append("daemon:")
        lines.append(format_mapping(daemon, 2))
    link = status.get("link")
    if link:
        lines.append("management link:")
        lines.append(format_mapping({k: v for k, v in link.items() if v}, 2))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fetch and print."""
    if args.to is not None:
        from edge.errors import ConfigError
        from edge.store import BundleStore

        if not args.to.is_dir():
            raise ConfigError(f"--to {args.to}: no such directory; expected the hub's store on the SD card")
        status = {"store": BundleStore(args.to).status()}
    else:
        from edge.manage import ManagementClient

        with ManagementClient(args.port, baud=args.baud, timeout=args.timeout) as client:
            status = client.call("status")
    emit(args, status, describe(status))
    return 0

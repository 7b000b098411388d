"""``host flash FILE --port PORT`` or ``--to DIR``: put a signed bundle on a hub.

Over USB serial (``--port /dev/ttyACM0``) the bundle goes to the hub in
chunks, each with its own CRC-32 and acknowledgement (see
:mod:`edge.manage`); a transfer cut short (cable pulled, laptop asleep)
resumes where it stopped when the same command is run again. The hub then
checks the signature against its trusted keys, every hash, the sensor layout
and the version, runs the golden self-test and only then switches atomically,
keeping the previous bundle for ``host rollback``.

With ``--to DIR`` (a hub's store on a mounted SD card, e.g.
``/media/$USER/rootfs/var/lib/liftguard``) the same checks run on this
machine against the trusted keys on the card, then the same atomic switch.

Refusals:

* a file that is not a signed LiftGuard bundle is refused before anything is
  sent; a bundle not signed by a key the hub trusts is always refused by the
  hub (``--force`` does not override a signature);
* a version older than the hub's active one is refused unless ``--force``.

``--dry-run`` runs every check, on the hub, without installing. Progress
(bytes, percentage, rate) goes to stderr; the outcome to stdout (``--json``
for scripts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict

from .common import DEFAULT_BAUD, ByteProgress, add_json_argument, emit, human_bytes, say

HELP = "flash a signed bundle onto a hub over USB serial (--port) or onto its SD card (--to)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``flash``'s flags."""
    parser.add_argument("bundle", type=Path, metavar="FILE", help="signed bundle (*.lgb)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="PORT", help="hub serial port (e.g. /dev/ttyACM0) or a pyserial URL")
    where.add_argument("--to", type=Path, metavar="DIR", help="hub bundle store on a mounted SD card")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each hub reply")
    parser.add_argument("--force", action="store_true",
                        help="accept a version older than the hub's (never overrides the signature check)")
    parser.add_argument("--dry-run", action="store_true", help="run every check but install nothing")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="BYTES",
                        help="bytes per chunk (1..4096; default 1024)")
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="chunks in flight before waiting for acknowledgements (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_argument(parser)


def read_manifest(path: Path) -> Dict[str, Any]:
    """Read a bundle's manifest, refusing files that are not signed bundles.

    Raises:
        BundleError: Not a bundle, corrupt, or without a signature.
    """
    from edge.bundle import read_bundle
    from edge.errors import BundleError

    contents = read_bundle(path)  # refuses a missing signature.json ("unsigned")
    try:
        manifest = json.loads(contents.manifest_bytes.decode("utf-8"))
        sig = json.loads(contents.signature_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: manifest or signature is not JSON ({exc})") from None
    if not isinstance(sig, dict) or not sig.get("signature"):
        raise BundleError(f"{path}: the bundle is unsigned; sign it with "
                          f"'python -m quantize export --sign KEY'")
    if not isinstance(manifest, dict) or "model_version" not in manifest:
        raise BundleError(f"{path}: manifest has no model_version; not a LiftGuard bundle")
    return manifest


def check_version(manifest: Dict[str, Any], active: Any, force: bool, path: Path) -> None:
    """Refuse a bundle older than the hub's active one unless forced."""
    from edge.bundle import compare_versions
    from edge.errors import BundleError

    if active and not force and compare_versions(manifest["model_version"], active) < 0:
        raise BundleError(f"{path}: bundle version {manifest['model_version']} is older than the hub's "
                          f"active {active}; pass --force to downgrade")


def run(args: argparse.Namespace) -> int:
    """Flash and report."""
    from edge.errors import ConfigError

    path: Path = args.bundle
    manifest = read_manifest(path)
    if args.to is not None:
        return _flash_to_dir(args, path, manifest)
    from edge.manage import ManagementClient, DEFAULT_WINDOW
    from edge.protocol import DEFAULT_FLASH_CHUNK

    chunk = args.chunk_size or DEFAULT_FLASH_CHUNK
    window = args.window or DEFAULT_WINDOW
    if window < 1:
        raise ConfigError(f"--window {window}; expected at least 1")
    data = path.read_bytes()
    with ManagementClient(args.port, baud=args.baud, timeout=args.timeout) as client:
        caps = client.hello()
        status = client.call("status")
        active = ((status.get("store") or {}).get("active") or {}).get("version")
        check_version(manifest, active, args.force, path)
        if not args.quiet:
            say(f"hub {caps.device_id} on {args.port}: active bundle {active or 'none'}; "
                f"sending {path.name} ({manifest.get('model_id')} {manifest['model_version']}, "
                f"{human_bytes(len(data))})")
        bar = ByteProgress(len(data), label="flash", enabled=not args.quiet)
        try:
            result = client.flash(data, name=path.name, force=args.force, dry_run=args.dry_run,
                                  chunk_size=chunk, window=window, progress=lambda done, total: bar.update(done))
        finally:
            bar.close()
    link_rate = args.baud / 10.0
    rate = (len(data) - result["resumed_from"]) / result["transfer_s"] if result["transfer_s"] > 0 else 0.0
    out = dict(result, hub_id=caps.device_id, model_id=manifest.get("model_id"),
               model_version=manifest["model_version"], previous_version=active, dry_run=args.dry_run,
               rate_bytes_per_s=round(rate, 1), link_share=round(rate / link_rate, 4) if link_rate else None)
    sent = len(data) - result["resumed_from"]
    if sent > 0:
        moved = (f"  sent {human_bytes(sent)}"
                 + (f" (resumed at {human_bytes(result['resumed_from'])})" if result["resumed_from"] else "")
                 + f" in {result['transfer_s']:.1f} s at {human_bytes(rate)}/s"
                 + (f" ({100 * rate / link_rate:.0f}% of the {args.baud}-baud link)" if link_rate else ""))
    else:
        moved = "  nothing to send: the hub already held these bytes from an earlier (dry-run or interrupted) transfer"
    text = (f"{'DRY RUN OK' if args.dry_run else 'OK'} hub {caps.device_id}: {result['message']}\n"
            f"{moved}; verify and install {result['total_s'] - result['transfer_s']:.1f} s\n"
            f"  active bundle: {result['active_version'] or 'none'}")
    emit(args, out, text)
    return 0


def _flash_to_dir(args: argparse.Namespace, path: Path, manifest: Dict[str, Any]) -> int:
    """Install onto a mounted hub store with the same checks."""
    from edge.errors import FlashError
    from edge.store import BundleStore

    root: Path = args.to
    if not root.is_dir():
        raise FlashError(f"--to {root}: no such directory; expected the hub's bundle store on the "
                         f"mounted SD card")
    store = BundleStore(root)
    active = store.active_version()
    check_version(manifest, active, args.force, path)
    if not args.quiet:
        say(f"store {root}: active bundle {active or 'none'}; verifying {path.name} "
            f"({manifest.get('model_id')} {manifest['model_version']}) against {len(store.trusted_keys())} "
            f"trusted key(s) and running the golden self-test")
    t0 = time.monotonic()
    result = store.install(path, force=args.force, dry_run=args.dry_run)
    out = dict(result.to_dict(), store=str(root), dry_run=args.dry_run, seconds=round(time.monotonic() - t0, 3))
    emit(args, out, f"{'DRY RUN OK' if args.dry_run else 'OK'} {root}: {result.message}")
    return 0

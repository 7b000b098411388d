"""A minimal hub process: the bundle store, the loaded bundle and the management port.

``python -m edge.hub_process --store DIR --port PATH`` does what the hub's
daemon does around bundles, without sensors: it loads and self-tests the
active bundle from the :class:`edge.store.BundleStore`, serves the
management port (:class:`edge.manage.ManagementServer`), reloads when the
store's generation changes, and stops cleanly on SIGTERM. Tests and the flash
benchmark run it as a real subprocess on a pseudo-terminal; QA rigs can use it
to exercise ``host flash`` against a bare board. The full daemon
(``edge run --manage-port``) embeds the same server.

On start it prints one line to stdout::

    hub-ready active=<version|none> sha256=<hex|none> folder=<name|none>

and after each reload ``hub-reloaded ...`` with the same fields.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


class BundleHost:
    """Keeps the active bundle loaded and reloads it when the store changes.

    Args:
        store: The :class:`edge.store.BundleStore`.
        self_test: Run the golden self-test on load (always on in the field).
    """

    def __init__(self, store: Any, *, self_test: bool = True) -> None:
        self.store = store
        self.self_test = self_test
        self.generation: Optional[str] = None
        self.bundle: Any = None
        self.loaded: Dict[str, Any] = {"version": None, "sha256": None, "folder": None}
        self.errors: List[str] = []
        self.started = time.monotonic()

    def load(self) -> bool:
        """(Re)load the active bundle if the generation changed; True if it did.

        A bundle that fails to load leaves the previously loaded one running
        and the error is reported in :meth:`status`.
        """
        from .bundle import load_bundle

        gen = self.store.generation()
        if gen == self.generation:
            return False
        self.generation = gen
        path = self.store.active_path()
        if path is None:
            self.bundle, self.loaded = None, {"version": None, "sha256": None, "folder": None}
            return True
        try:
            bundle = load_bundle(path, trusted_keys=self.store.trusted_keys(),
                                 hub_sensors=self.store.hub_sensors, force=True, self_test=self.self_test)
        except Exception as exc:  # keep the old one running; report why
            self.errors.append(f"{path}: {exc}")
            del self.errors[:-10]
            return False
        old, self.bundle = self.bundle, bundle
        if old is not None and hasattr(old, "close"):
            old.close()
        self.loaded = {"version": bundle.model_version, "model_id": bundle.model_id,
                       "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                       "folder": path.parent.name}
        return True

    def line(self) -> str:
        """The one-line description printed after a (re)load."""
        return (f"active={self.loaded.get('version') or 'none'} sha256={self.loaded.get('sha256') or 'none'} "
                f"folder={self.loaded.get('folder') or 'none'}")

    def status(self) -> Dict[str, Any]:
        """Health for the management port's ``status`` op."""
        return {"pid": os.getpid(), "uptime_s": round(time.monotonic() - self.started, 1),
                "loaded": dict(self.loaded), "load_errors": list(self.errors)}


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m edge.hub_process", description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="bundle store root")
    p.add_argument("--port", required=True, help="management serial port or pyserial URL")
    p.add_argument("--baud", type=int, default=921600)
    p.add_argument("--events", default=None, help="event log (JSON lines) served by 'logs'")
    p.add_argument("--no-self-test", action="store_true", help="skip the golden self-test on load")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between store generation checks")
    return p


async def amain(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT."""
    from .manage import ManagementServer
    from .store import BundleStore

    store = BundleStore(args.store)
    host = BundleHost(store, self_test=not args.no_self_test)
    host.load()

    def reload() -> None:
        if host.load():
            print(f"hub-reloaded {host.line()}", flush=True)

    server = ManagementServer(args.port, store, host.status, args.events, baud=args.baud, on_change=reload)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    server.opened = asyncio.Event()
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.wait_for(server.opened.wait(), 10)
    except asyncio.TimeoutError:
        print(f"hub: warning: management port {args.port} not open yet ({server.last_error})",
              file=sys.stderr, flush=True)
    print(f"hub-ready {host.line()}", flush=True)
    while not task.done():
        await asyncio.wait([task], timeout=args.poll)
        reload()
    await task
    print("hub-stopped", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; errors print one line and return 1."""
    from .errors import LiftGuardError

    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except LiftGuardError as exc:
        print(f"hub: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``host restart --port PORT``: restart a hub's daemon over its management port.

The hub answers the ``restart`` op (:mod:`edge.manage`), stops its daemon
cleanly (lifts in progress finished, buzzer off, a ``stop`` event with
``"restart_requested": true``) and exits with status 75
(:data:`edge.daemon.RESTART_EXIT_STATUS`); systemd's ``Restart=on-failure``
(``edge/systemd/liftguard-hub.service``, ``RestartSec=3``) starts it again.
This command then waits (``--wait``, default 60 s) until a daemon with a new
process id answers ``status`` with a model loaded, and prints how long that
took. ``--no-wait`` only asks.

A hub whose daemon runs without a service manager stops and stays stopped;
an emulated hub (``python -m edge.hub_process``) refuses the op.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, Optional

from .common import add_json_argument, add_port_arguments, emit, say

HELP = "restart the hub's daemon (systemd brings it back) and wait until it answers again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``restart``'s flags."""
    add_port_arguments(parser)
    parser.add_argument("--wait", type=float, default=60.0, metavar="S",
                        help="seconds to wait for the restarted daemon (default 60)")
    parser.add_argument("--no-wait", action="store_true", help="only ask; do not wait for the daemon to return")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_json_argument(parser)


def daemon_pid(status: Dict[str, Any]) -> Optional[int]:
    """The daemon's process id in a ``status`` answer, or None."""
    pid = (status.get("daemon") or {}).get("pid")
    return int(pid) if isinstance(pid, int) else None


def wait_for_new_daemon(client: Any, old_pid: Optional[int], wait_s: float,
                        poll_s: float = 0.25) -> Dict[str, Any]:
    """Poll ``status`` until a daemon other than ``old_pid`` answers with its model loaded.

    Args:
        client: An open :class:`edge.manage.ManagementClient`.
        old_pid: The process id before the restart.
        wait_s: Seconds to wait at most.
        poll_s: Pause between attempts.

    Returns:
        The new daemon's ``status`` answer.

    Raises:
        HubUnreachable: No new daemon within ``wait_s`` (the message says what was last seen).
    """
    from edge.manage import HubRefused, HubUnreachable

    deadline = time.monotonic() + wait_s
    last = "no answer"
    while True:
        try:
            status = client.call("status", timeout=min(1.0, max(0.2, deadline - time.monotonic())))
            pid = daemon_pid(status)
            daemon = status.get("daemon") or {}
            if pid is not None and pid != old_pid and (daemon.get("model") or daemon.get("model_error")):
                return status
            last = f"daemon pid {pid}" + (" (still the old one)" if pid == old_pid else ", model not loaded yet")
        except (HubUnreachable, HubRefused) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise HubUnreachable(f"the hub on {client.port} did not come back within {wait_s:g} s of the restart "
                                 f"(last: {last}); is the daemon run by systemd (Restart=on-failure)?")
        time.sleep(poll_s)


def run(args: argparse.Namespace) -> int:
    """Ask for the restart, wait and report."""
    from edge.errors import ConfigError

    from .common import open_client

    if args.wait <= 0:
        raise ConfigError(f"--wait {args.wait:g}; expected a positive number of seconds")
    with open_client(args) as client:
        caps = client.hello()
        before = client.call("status")
        old_pid = daemon_pid(before)
        answer = client.call("restart")
        t0 = time.monotonic()
        out: Dict[str, Any] = {"hub_id": caps.device_id, "old_pid": old_pid, "restarting": answer.get("restarting")}
        if args.no_wait:
            emit(args, out, f"OK hub {caps.device_id}: restart requested (daemon pid {old_pid})")
            return 0
        if not args.quiet:
            say(f"hub {caps.device_id}: daemon {old_pid} restarting; waiting up to {args.wait:g} s")
        after = wait_for_new_daemon(client, old_pid, args.wait)
    model = (after.get("daemon") or {}).get("model") or {}
    out.update(new_pid=daemon_pid(after), seconds=round(time.monotonic() - t0, 3),
               model_version=model.get("model_version"))
    emit(args, out, f"OK hub {caps.device_id}: daemon restarted (pid {old_pid} -> {out['new_pid']}) in "
                    f"{out['seconds']:.1f} s; running model {out['model_version'] or 'none'}")
    return 0

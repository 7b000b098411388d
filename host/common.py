"""Helpers shared by the ``host`` subcommands: output, progress, port flags.

* :func:`emit` prints data to stdout, as JSON with ``--json`` or as text;
* :class:`ByteProgress` draws a bytes-and-rate progress bar on stderr;
* :func:`add_port_arguments` / :func:`open_client` give every management
  command the same ``--port``, ``--baud`` and ``--timeout`` flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Optional, TextIO

#: Default baud rate of the hub's USB gadget serial port.
DEFAULT_BAUD = 921600


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` (machine-readable output on stdout)."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_port_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add ``--port``, ``--baud`` and ``--timeout`` for a hub's management port."""
    parser.add_argument("--port", required=required, metavar="PORT",
                        help="hub serial port (e.g. /dev/ttyACM0) or a pyserial URL")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for each reply from the hub (default 5)")


def open_client(args: argparse.Namespace):
    """Open a :class:`edge.manage.ManagementClient` from the port flags."""
    from edge.manage import ManagementClient

    return ManagementClient(args.port, baud=args.baud, timeout=args.timeout)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def emit(args: argparse.Namespace, data: Any, text: Optional[str] = None,
         stream: Optional[TextIO] = None) -> None:
    """Print ``data`` as JSON when ``args.json`` is set, else ``text`` (or a readable dump).

    Args:
        args: Parsed arguments (``json`` attribute optional).
        data: A JSON-able value.
        text: Human-readable rendering; defaults to ``key: value`` lines.
        stream: Where to print (stdout by default).
    """
    stream = stream or sys.stdout
    if getattr(args, "json", False):
        stream.write(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
    else:
        if text is None:
            text = format_mapping(data) if isinstance(data, dict) else str(data)
        stream.write(text.rstrip("\n") + "\n")
    stream.flush()


def format_mapping(data: dict, indent: int = 0) -> str:
    """Render a nested dict as aligned ``key: value`` lines."""
    lines = []
    width = max((len(str(k)) for k in data), default=0)
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.append(format_mapping(value, indent + 2))
        else:
            lines.append(f"{pad}{str(key).ljust(width)}  {value if value is not None else '-'}")
    return "\n".join(lines)


def human_bytes(n: float) -> str:
    """Format a byte count as B, KiB or MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"  # pragma: no cover


class ByteProgress:
    """A one-line progress bar with bytes done, total and rate, on stderr.

    Redraws at most ``hz`` times a second; on a non-terminal stream it prints a
    line every 10% instead, so logs stay readable.

    Args:
        total: Total bytes.
        label: Text before the bar.
        stream: Defaults to stderr.
        enabled: False to draw nothing (``--quiet``).
        clock: Time source (for tests).
    """

    def __init__(self, total: int, label: str = "", stream: Optional[TextIO] = None,
                 enabled: bool = True, hz: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._last_draw = 0.0
        self._period = 1.0 / hz
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def rate(self) -> float:
        """Bytes per second since the start."""
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def render(self) -> str:
        """The current line."""
        share = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(round(share * width))
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {share * 100:5.1f}% "
                f"{human_bytes(self.done)} / {human_bytes(self.total)}  {human_bytes(self.rate())}/s")

    def update(self, done: int) -> None:
        """Set the bytes done (may go back on a resend) and redraw if due."""
        self.done = max(0, min(int(done), self.total))
        if not self.enabled:
            return
        now = self.clock()
        if self._tty:
            if now - self._last_draw >= self._period or self.done >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self.render())
                self.stream.flush()
        else:
            decile = int(10 * self.done / self.total) if self.total else 10
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self.render() + "\n")
                self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled and self._tty:
            self.stream.write("\r" + self.render() + "\n")
            self.stream.flush()


def say(message: str) -> None:
    """Print a progress/status line on stderr."""
    print(message, file=sys.stderr, flush=True)

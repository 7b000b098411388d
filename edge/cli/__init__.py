"""A small command-line framework shared by ``edge``, ``host`` and ``quantize``.

Each tool is a :class:`CommandLineTool` with a table of subcommands, each a
module imported on demand that defines::

    HELP = "one line shown in --help"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

``main(argv) -> int`` is what tests call directly (as with gpiozero's CLI
tools). A :class:`edge.errors.LiftGuardError` or a bad flag prints
``<tool>: error: <message>`` and returns 1 (2 for usage errors); a traceback
is shown only with ``--debug``. Progress goes to stderr, data to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from typing import Dict, List, Optional, Sequence

from ..errors import LiftGuardError


class CommandLineTool:
    """A tool with subcommands loaded lazily from modules.

    Args:
        prog: Program name (``edge``, ``host`` or ``quantize``).
        description: One paragraph for ``--help``.
        commands: Subcommand name to module path; the module provides
            ``HELP``, ``add_arguments`` and ``run``.
    """

    def __init__(self, prog: str, description: str, commands: Dict[str, str]) -> None:
        self.prog = prog
        self.description = description
        self.commands = commands

    def _help_of(self, module_path: str) -> str:
        try:
            return getattr(importlib.import_module(module_path), "HELP", "")
        except ImportError as exc:  # a missing optional dependency
            return f"(unavailable here: {exc.name or exc})"

    def build_parser(self, wanted: Optional[str] = None) -> argparse.ArgumentParser:
        """Build the parser; only ``wanted``'s module gets its full arguments."""
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, module_path in self.commands.items():
            if name == wanted:
                module = importlib.import_module(module_path)
                p = sub.add_parser(name, help=getattr(module, "HELP", ""),
                                   description=getattr(module, "HELP", ""))
                p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
                module.add_arguments(p)
                p.set_defaults(_run=module.run)
            else:
                sub.add_parser(name, help=self._help_of(module_path) if wanted is None else "")
        return parser

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        """Parse ``argv`` and run the subcommand; return the exit status."""
        argv = list(sys.argv[1:] if argv is None else argv)
        wanted = next((a for a in argv if not a.startswith("-")), None)
        if wanted not in self.commands:
            wanted = None
        debug = "--debug" in argv
        try:
            parser = self.build_parser(wanted)
        except ImportError as exc:
            print(f"{self.prog}: error: command {wanted!r} needs a package that is not installed: {exc}",
                  file=sys.stderr)
            return 1
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help or a usage error
            return int(exc.code or 0)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        try:
            return int(args._run(args) or 0)
        except KeyboardInterrupt:
            print(f"{self.prog}: interrupted", file=sys.stderr)
            return 130
        except LiftGuardError as exc:
            if debug:
                traceback.print_exc()
            print(f"{self.prog}: error: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            if debug:
                traceback.print_exc()
            print(f"{self.prog}: error: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # last resort: no traceback reaches a user
            if debug:
                traceback.print_exc()
            print(f"{self.prog}: error: unexpected {type(exc).__name__}: {exc} "
                  f"(run with --debug for details)", file=sys.stderr)
            return 1


def run_tool(tool: CommandLineTool, argv: Optional[List[str]] = None) -> int:
    """Entry point helper for console scripts and ``python -m``."""
    return tool.main(argv)

"""``edge``: the belt hub's command line (``python -m edge``)."""

from __future__ import annotations

import sys

from edge.cli import CommandLineTool

TOOL = CommandLineTool(
    "edge",
    "LiftGuard belt hub: read six IMUs, find each lift, classify it with the int8 model, buzz.",
    {
        "run": "edge.daemon",
        "classify": "edge.classify",
        "tensorize": "edge.tensorize_cli",
        "selftest": "edge.bundle_cli",
    },
)


def main(argv=None) -> int:
    """Run the ``edge`` tool; returns the exit status."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""``quantize``: the workstation's command line (``python -m quantize``)."""

from __future__ import annotations

import sys

from edge.cli import CommandLineTool

TOOL = CommandLineTool(
    "quantize",
    "LiftGuard workstation: simulate, check, train, evaluate, quantize to int8, export signed bundles.",
    {
        "check": "quantize.check",
        "synth": "quantize.liftsim.cli_synth",
        "synth-shift": "quantize.liftsim.cli_shift",
        "calibrate": "quantize.liftsim.calibrate",
        "train": "quantize.train",
        "table4": "quantize.table4",
        "sweep": "quantize.sweep",
        "saliency": "quantize.saliency",
        "convert": "quantize.convert",
        "keygen": "quantize.keygen",
        "export": "quantize.export",
        "demo": "quantize.demo",
        "train-gate": "quantize.lift_gate",
    },
)


def main(argv=None) -> int:
    """Run the ``quantize`` tool; returns the exit status."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())

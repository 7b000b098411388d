"""``host``: the technicians' and QA's command line (``python -m host``)."""

from __future__ import annotations

import sys

from edge.cli import CommandLineTool

TOOL = CommandLineTool(
    "host",
    "LiftGuard host tools: flash and provision hubs, scan, record, monitor, emulate sensor hubs, replay.",
    {
        "flash": "host.flash",
        "provision": "host.provision",
        "rollback": "host.rollback",
        "verify": "host.verify",
        "status": "host.status",
        "logs": "host.logs",
        "restart": "host.restart",
        "scan": "host.scan",
        "record": "host.record",
        "monitor": "host.monitor",
        "emulate": "host.emulate",
        "replay": "host.replay",
    },
)


def main(argv=None) -> int:
    """Run the ``host`` tool; returns the exit status."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())

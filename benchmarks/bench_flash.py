"""Flash throughput over a serial link throttled to 921,600 baud.

A real hub process (``python -m edge.hub_process``) listens on one end of a
:class:`host.serial_relay.SerialRelay` paced to 921,600 baud (8N1: 92,160
bytes/s each way, like a UART); ``host flash`` (its client,
:class:`edge.manage.ManagementClient`) sends a real signed bundle from the
other end. The figure is the bundle's bytes divided by the transfer time
(FlashBegin to the last acknowledgement) as a share of the link's 92,160
bytes/s; COBS, frame headers, CRCs and acknowledgements all count against it.
Target: at least 80%.

Also recorded: the time from FlashBegin to the hub's verdict (transfer plus
signature, hashes, golden self-test and atomic switch).

Run: ``python -m benchmarks flash`` (about 1 minute: it first builds the tiny
signed bundle of the test suite).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import record

BAUD = 921600
REPEATS = 3


def main() -> None:
    """Measure and record ``flash_throughput_share`` and ``flash_total_s``."""
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests"))
    from host_kit import HubProcess, bundles, new_store

    from edge.manage import ManagementClient
    from host.serial_relay import SerialRelay

    kit = bundles()
    data = kit.v130.read_bytes()
    link_rate = BAUD / 10.0
    shares, totals = [], []
    with tempfile.TemporaryDirectory(prefix="lg-bench-flash-") as tmp, SerialRelay(baud=BAUD) as relay:
        for i in range(REPEATS):
            store = Path(tmp) / f"store{i}"
            new_store(store, kit.pub, install=kit.v120)
            hub = HubProcess(store, relay.hub_path)
            try:
                with ManagementClient(relay.host_path, baud=BAUD, timeout=5) as client:
                    client.hello()
                    result = client.flash(data)
            finally:
                hub.stop()
            share = len(data) / result["transfer_s"] / link_rate
            shares.append(share)
            totals.append(result["total_s"])
            print(f"bench_flash: run {i + 1}/{REPEATS}: {len(data)} bytes in {result['transfer_s']:.2f} s = "
                  f"{100 * share:.1f}% of {link_rate:.0f} B/s; verdict after {result['total_s']:.2f} s "
                  f"(resends {result['resends']})", file=sys.stderr, flush=True)
    share = statistics.median(shares)
    record("flash_throughput_share", round(share, 4), "share of link rate", ">= 0.80", share >= 0.80,
           f"host flash of a {len(data)}-byte signed bundle to a hub process over a pty relay paced to "
           f"{BAUD} baud 8N1 ({link_rate:.0f} B/s); median of {REPEATS}; 1024-byte chunks, window 8")
    record("flash_total_s", round(statistics.median(totals), 3), "s", None, None,
           f"FlashBegin to verdict (transfer + verify + golden self-test + atomic switch) for "
           f"{len(data)} bytes at {BAUD} baud; median of {REPEATS}")


if __name__ == "__main__":
    main()

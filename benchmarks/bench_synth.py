"""Benchmark the simulator: the default 720-trial cohort and a 60-minute shift, written to disk.

Figures: ``synth_720_trials_s`` (target < 60 s, the issue's "done when") and
``synth_shift_60min_s``. Both run the real command lines into a temporary
folder and time them end to end (generation + CSV writing), single process.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import record


def main() -> None:
    """Time ``quantize synth`` (defaults) and ``quantize synth-shift --minutes 60``."""
    from quantize.__main__ import main as quantize_main

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rc = quantize_main(["synth", "--out", str(Path(tmp) / "cohort"), "--no-progress"])
        dt = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"quantize synth exited {rc}")
        n = len(list((Path(tmp) / "cohort" / "trials").glob("*.csv")))
        print(f"synth: {n} trials in {dt:.1f} s", file=sys.stderr)
        record("synth_720_trials_s", round(dt, 2), "s", "< 60 s", dt < 60.0,
               f"quantize synth defaults ({n} trials, 10 subjects x 12 zones x 6 reps), 1 process, incl. CSV writing")
        t0 = time.perf_counter()
        rc = quantize_main(["synth-shift", "--out", str(Path(tmp) / "shift"), "--minutes", "60"])
        dt = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"quantize synth-shift exited {rc}")
        print(f"synth-shift: 60 min in {dt:.1f} s", file=sys.stderr)
        record("synth_shift_60min_s", round(dt, 2), "s", "< 60 s", dt < 60.0,
               "quantize synth-shift --minutes 60 (90,000 samples), 1 process, incl. CSV writing")


if __name__ == "__main__":
    main()

"""Benchmark: tensorize 720 trials from raw samples to 95x95x3 (target < 2 s).

Uses 720 raw windows of realistic lengths (10-15 s at 25 Hz) and a fitted
recipe, and times :func:`edge.signal_path.tensorize_batch` (what training
runs) plus one-window :func:`edge.signal_path.tensorize` (what the hub runs).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.harness import record


def main() -> None:
    """Measure and record the tensorize figures."""
    from edge.signal_path import TensorRecipe, fit_standardization, tensorize, tensorize_batch
    from quantize.filter_design import design_bandpass

    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(int(rng.integers(250, 376)), 36)) for _ in range(720)]
    sos = design_bandpass()
    mean, std = fit_standardization(windows[:540], sos)
    recipe = TensorRecipe(sos=sos, mean=mean, std=std)
    tensorize_batch(windows[:8], recipe)  # warm-up
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = tensorize_batch(windows, recipe)
        runs.append(time.perf_counter() - t0)
    assert out.shape == (720, 95, 95, 3)
    best = min(runs)
    record("tensorize_720_trials", round(best, 3), "s", "< 2 s", best < 2.0,
           f"edge.signal_path.tensorize_batch, best of 3, windows 10-15 s")
    single = []
    for w in windows[:50]:
        t0 = time.perf_counter()
        tensorize(w, recipe)
        single.append(time.perf_counter() - t0)
    med = statistics.median(single) * 1000
    record("tensorize_one_window_ms", round(med, 2), "ms", None, None,
           "edge.signal_path.tensorize on one 10-15 s window (the hub's path), median of 50")
    print(f"tensorize 720 trials: {best:.3f} s; one window: {med:.2f} ms")


if __name__ == "__main__":
    main()

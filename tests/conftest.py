"""Shared pytest fixtures: an isolated trial cache and small data sets."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep each test session's parsed-trial cache out of the user's home."""
    monkeypatch.setenv("LIFTGUARD_CACHE", str(tmp_path_factory.getbasetemp() / "trial-cache"))


@pytest.fixture
def tiny_dataset(tmp_path):
    """A valid 6-trial data set of random signals (zones 1..6)."""
    from edge.dataset import DatasetWriter

    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    with DatasetWriter(root, source="unit test") as w:
        for i in range(6):
            n = 300 + 10 * i
            w.add_trial(f"T{i}", f"S{i % 2}", i + 1, rng.normal(size=(n, 36)),
                        1.7e9 + np.arange(n) / 25.0, 50, 250)
    return root

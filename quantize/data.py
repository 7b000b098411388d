"""Load a data set into model tensors through the shared edge signal path.

This is the only bridge from the data set format to training arrays. Every
numeric step is :mod:`edge.signal_path`'s: :func:`edge.signal_path.cut_lift`
with the index's markers, then :func:`edge.signal_path.tensorize_batch` with a
recipe fitted on training windows only. The hub runs the same two calls on
the windows its lift detector cuts.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edge.dataset import Dataset, TrialMeta, load_dataset
from edge.layout import CLASS_NAMES
from edge.signal_path import (
    DEFAULT_CLIP,
    DEFAULT_POST_SAMPLES,
    DEFAULT_PRE_SAMPLES,
    TensorRecipe,
    cut_lift,
    fit_standardization,
    tensorize_batch,
)

from .filter_design import design_bandpass


@dataclasses.dataclass
class LabelledWindows:
    """Raw lift windows of a data set with their labels.

    Attributes:
        windows: Raw cut windows, each ``(m_i, 36)`` float64.
        labels: int array, index into :data:`edge.layout.CLASS_NAMES`.
        subjects: str array of subject ids.
        zones: int array of ACGIH zones.
        trial_ids: Trial ids in the same order.
        dataset: The loaded :class:`edge.dataset.Dataset`.
    """

    windows: List[np.ndarray]
    labels: np.ndarray
    subjects: np.ndarray
    zones: np.ndarray
    trial_ids: List[str]
    dataset: Dataset

    def select(self, trial_ids: Sequence[str]) -> "LabelledWindows":
        """Return the subset with these trial ids, in the given order."""
        pos = {t: i for i, t in enumerate(self.trial_ids)}
        idx = [pos[t] for t in trial_ids]
        return LabelledWindows([self.windows[i] for i in idx], self.labels[idx], self.subjects[idx],
                               self.zones[idx], [self.trial_ids[i] for i in idx], self.dataset)


def load_windows(data_dir, *, skip_bad: bool = False, pre_samples: int = DEFAULT_PRE_SAMPLES,
                 post_samples: int = DEFAULT_POST_SAMPLES, progress: bool = True) -> LabelledWindows:
    """Read every trial and cut its lift window with :func:`edge.signal_path.cut_lift`.

    Args:
        data_dir: Data set folder (LiftGuard or authors' layout).
        skip_bad: Leave out trials with errors (and say which on stderr).
        pre_samples: Margin before the lift's first movement sample.
        post_samples: Margin after its last movement sample.
        progress: Show a progress bar on stderr.
    """
    ds = load_dataset(data_dir, skip_bad=skip_bad)
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} bad trial file(s): {', '.join(ds.skipped[:20])}"
              + (" ..." if len(ds.skipped) > 20 else ""), file=sys.stderr)
    metas: List[TrialMeta] = ds.trials
    iterator = metas
    if progress:
        try:
            from tqdm import tqdm
            iterator = tqdm(metas, desc="load trials", unit="trial", file=sys.stderr, leave=False)
        except ImportError:
            pass
    windows = []
    for m in iterator:
        trial = ds.read(m)
        windows.append(cut_lift(trial.samples, m.lift_start, m.lift_end,
                                pre_samples=pre_samples, post_samples=post_samples))
    return LabelledWindows(
        windows=windows,
        labels=np.array([CLASS_NAMES.index(m.risk) for m in metas], dtype=np.int64),
        subjects=np.array([m.subject for m in metas]),
        zones=np.array([m.zone for m in metas], dtype=np.int64),
        trial_ids=[m.trial_id for m in metas],
        dataset=ds,
    )


def fit_recipe(windows: Sequence[np.ndarray], sos: Optional[np.ndarray] = None, *,
               pre_samples: int = DEFAULT_PRE_SAMPLES, post_samples: int = DEFAULT_POST_SAMPLES) -> TensorRecipe:
    """Fit the tensor recipe on TRAINING windows only.

    Args:
        windows: Raw training windows.
        sos: Band-pass coefficients; default: the paper's order-2, 2-12 Hz.
        pre_samples: Margin recorded in the recipe for the hub's cut.
        post_samples: Margin recorded in the recipe for the hub's cut.
    """
    sos = design_bandpass() if sos is None else np.asarray(sos, dtype=np.float64)
    mean, std = fit_standardization(windows, sos)
    return TensorRecipe(sos=sos, mean=mean, std=std, pre_samples=pre_samples, post_samples=post_samples,
                        clip=DEFAULT_CLIP)


def make_tensors(windows: Sequence[np.ndarray], recipe: TensorRecipe, progress: bool = True,
                 chunk: int = 256) -> np.ndarray:
    """Tensorize windows into ``(N, 95, 95, 3)`` float32 via :func:`edge.signal_path.tensorize_batch`."""
    out = np.empty((len(windows), 95, 95, 3), dtype=np.float32)
    starts = range(0, len(windows), chunk)
    if progress and len(windows) > chunk:
        try:
            from tqdm import tqdm
            starts = tqdm(starts, desc="tensorize", unit="chunk", file=sys.stderr, leave=False)
        except ImportError:
            pass
    for s in starts:
        out[s:s + chunk] = tensorize_batch(windows[s:s + chunk], recipe)
    return out

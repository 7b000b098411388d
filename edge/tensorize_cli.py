"""``edge tensorize``: build model inputs for a data set with a recipe, on the hub's code.

Writes an ``.npz`` with ``x`` (N, 95, 95, 3) float32, ``labels``, ``trial_ids``
— exactly what training feeds the model — so the hub's path can be compared
with training's on any data set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "tensorize a data set's lift windows with a recipe (the hub's code path) into an .npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags."""
    parser.add_argument("--data", required=True, type=Path, help="data set folder")
    parser.add_argument("--recipe", required=True, type=Path, help="recipe.json from a training run")
    parser.add_argument("--out", required=True, type=Path, help="output .npz")
    parser.add_argument("--skip-bad", action="store_true", help="leave out trials with errors")


def run(args: argparse.Namespace) -> int:
    """Tensorize every trial, one window at a time as the hub does."""
    import numpy as np

    from edge.dataset import load_dataset
    from edge.layout import CLASS_NAMES
    from edge.signal_path import TensorRecipe, cut_lift, tensorize

    recipe = TensorRecipe.load(args.recipe)
    ds = load_dataset(args.data, skip_bad=args.skip_bad)
    x = np.empty((len(ds), 95, 95, 3), dtype=np.float32)
    for i, meta in enumerate(ds.trials):
        trial = ds.read(meta)
        x[i] = tensorize(cut_lift(trial.samples, meta.lift_start, meta.lift_end, recipe), recipe)
        if (i + 1) % 50 == 0 or i + 1 == len(ds):
            print(f"tensorized {i + 1}/{len(ds)}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x=x, labels=np.array([CLASS_NAMES.index(m.risk) for m in ds.trials]),
                        trial_ids=np.array([m.trial_id for m in ds.trials]))
    print(f"wrote {args.out} ({len(ds)} tensors)")
    return 0

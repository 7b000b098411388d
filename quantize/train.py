"""``quantize train``: train one model and write a self-contained run folder.

Example::

    python -m quantize train --data /tmp/sim --model proposed --split subject \\
        --seed 0 --out runs/proposed_subject_s0 --epochs 60

The data go through :mod:`quantize.data` only (``load_windows`` ->
``fit_recipe`` on the *training* windows -> ``make_tensors``), which calls
:mod:`edge.signal_path`; nothing here touches the signal maths.

Training: Adam, categorical cross-entropy, batch 32,
``EarlyStopping(monitor="loss", min_delta=0, patience=10,
restore_best_weights=True)``, at most ``--epochs`` epochs, one line per epoch
on stderr. The test set is evaluated after each epoch only to draw the
curves; it never drives stopping or model choice.

Batch-normalisation statistics (``--bn-statistics``, default ``train``): after
the best weights are restored, every ``BatchNormalization`` layer's moving mean
and variance are replaced by the exact mean and variance of its input over the
*training* tensors, computed in inference mode
(:func:`recompute_batchnorm_statistics`). Keras' moving averages (momentum
0.99, 17 batches per epoch here) lag the weights by several epochs, so the
weights of record could meet statistics from other weights: on the simulator's
cohorts that made about one run in ten (4 of 38) classify almost everything as
high risk (test accuracy 0.61-0.72 where the same weights score 0.88-0.92 with
exact statistics; ``docs/models.md``). ``moving`` keeps Keras' averages, as the paper
did. The per-epoch test curves are drawn with the moving averages.

Sensor subsets (``--sensors Back,LtWt,RtWt``): the channels of the other
sensors are made zero *through the recipe*: their standardization ``std`` is
set to :data:`MASKED_STD` (1e30), so ``edge.signal_path.tensorize`` maps them
to |x| < 1e-26, which is 0 after int8 quantization. The tensor stays
95x95x3, so the model and its bundle stay compatible with any hub, and the
hub reproduces the masking with no code of its own.

Run folder: ``model.keras``, ``recipe.json``, ``split.json``, ``config.json``,
``metrics.json``, ``history.json``, ``predictions.csv``,
``training_curves.png``, ``confusion.png``, ``swarm.png`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import ConfigError
from edge.layout import CHANNELS, CLASS_NAMES, SENSORS, predicted_class
from edge.signal_path import DEFAULT_POST_SAMPLES, DEFAULT_PRE_SAMPLES, WINDOW_SAMPLES

#: Samples kept before / after each lift's markers unless ``--margins`` says otherwise (the hub's).
DEFAULT_MARGINS: Tuple[int, int] = (DEFAULT_PRE_SAMPLES, DEFAULT_POST_SAMPLES)

HELP = "train one model (proposed, cnn_lstm, maxpool, cnn, mlp) and write a run folder with metrics, plots and report.md"

#: std written into the recipe for channels of sensors left out with --sensors.
MASKED_STD = 1e30
DEFAULT_EPOCHS = 200
DEFAULT_BATCH = 32
PATIENCE = 10
#: Where the final batch-normalisation statistics come from (see the module docstring).
BN_STATISTICS = ("train", "moving")
DEFAULT_BN_STATISTICS = "train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``quantize train``."""
    from .models import DEFAULT_DROPOUT, DEFAULT_L2, DEFAULT_LEARNING_RATE, MODEL_NAMES

    parser.add_argument("--data", required=True, type=Path, help="data set directory (index.csv + trial CSVs)")
    parser.add_argument("--model", default="proposed", choices=MODEL_NAMES, help="model to train (default proposed)")
    parser.add_argument("--split", default="random", choices=("random", "subject"),
                        help="random stratified 75/25 (paper) or subject-wise k-fold (default random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the weights and the shuffling (default 0)")
    parser.add_argument("--out", required=True, type=Path, help="run folder to write")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"maximum epochs; early stopping on training loss, patience {PATIENCE} (default {DEFAULT_EPOCHS})")
    parser.add_argument("--sensors", default=None,
                        help=f"comma-separated subset of {','.join(SENSORS)}; other sensors are zeroed (default all six)")
    parser.add_argument("--margins", default=f"{DEFAULT_PRE_SAMPLES},{DEFAULT_POST_SAMPLES}", metavar="PRE,POST",
                        help=f"samples kept before and after each lift's markers, recorded in the recipe for the "
                             f"hub (default {DEFAULT_PRE_SAMPLES},{DEFAULT_POST_SAMPLES}; 750,750 keeps whole trials "
                             f"as the paper did)")
    parser.add_argument("--fold", type=int, default=0, help="subject fold used as the test set (--split subject; default 0)")
    parser.add_argument("--n-folds", type=int, default=None, help="number of subject folds (default 4)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=f"batch size (default {DEFAULT_BATCH})")
    parser.add_argument("--l2", type=float, default=DEFAULT_L2, help=f"L2 on the softmax kernel (default {DEFAULT_L2:g})")
    parser.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT, help=f"dropout rate (default {DEFAULT_DROPOUT:g})")
    parser.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE,
                        help=f"Adam learning rate (default {DEFAULT_LEARNING_RATE:g})")
    add_bn_statistics_argument(parser)
    parser.add_argument("--skip-bad", action="store_true", help="skip trials that fail validation instead of stopping")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def add_bn_statistics_argument(parser: argparse.ArgumentParser) -> None:
    """``--bn-statistics`` for every command that trains (train, table4, sweep)."""
    parser.add_argument("--bn-statistics", default=DEFAULT_BN_STATISTICS, choices=BN_STATISTICS,
                        help="final batch-normalisation statistics: exact over the training tensors (train) or "
                             f"Keras' moving averages as the paper (moving) (default {DEFAULT_BN_STATISTICS})")


def parse_sensors(text: Optional[str]) -> Tuple[str, ...]:
    """Parse ``"Back,LtWt,RtWt"`` into sensor names in layout order (all six when empty).

    Raises:
        ConfigError: On an unknown or repeated name.
    """
    if text is None or not str(text).strip():
        return tuple(SENSORS)
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    for n in names:
        if n not in SENSORS:
            raise ConfigError(f"--sensors: {n!r} is not a sensor; expected names from {', '.join(SENSORS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--sensors: {text!r} names a sensor twice")
    return tuple(s for s in SENSORS if s in names)


def mask_recipe(recipe, sensors: Sequence[str]):
    """Return ``recipe`` with the channels of sensors not in ``sensors`` mapped to ~0.

    Sets their ``std`` to :data:`MASKED_STD`; see the module docstring.
    """
    keep = set(sensors)
    if keep == set(SENSORS):
        return recipe
    std = np.array(recipe.std, dtype=np.float64, copy=True)
    for j, name in enumerate(CHANNELS):
        if name.split("_")[0] not in keep:
            std[j] = MASKED_STD
    return dataclasses.replace(recipe, std=std)


def recipe_sensors(recipe) -> Tuple[str, ...]:
    """The sensors a recipe keeps (those whose channels are not masked)."""
    std = np.asarray(recipe.std)
    return tuple(s for s in SENSORS
                 if any(std[j] < MASKED_STD / 10 for j, c in enumerate(CHANNELS) if c.startswith(s + "_")))


@dataclass
class Prepared:
    """Tensors of one split.

    Attributes:
        recipe: Recipe fitted on the training windows (masked for --sensors).
        x_train, y_train, x_test, y_test: Images and class indices.
        split: The :class:`quantize.splits.Split`.
    """

    recipe: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: object


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def parse_margins(text: str) -> Tuple[int, int]:
    """``--margins PRE,POST`` as two sample counts.

    Raises:
        ConfigError: Unless both are integers in 0..WINDOW_SAMPLES.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        pre, post = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--margins {text!r}: expected two sample counts PRE,POST such as 50,50") from None
    for name, value in (("PRE", pre), ("POST", post)):
        if not 0 <= value <= WINDOW_SAMPLES:
            raise ConfigError(f"--margins {text!r}: {name}={value} is out of range; expected 0 to {WINDOW_SAMPLES} samples")
    return pre, post


def load(data_dir: Path, skip_bad: bool = False, margins: Tuple[int, int] = DEFAULT_MARGINS):
    """Load cut lift windows through :func:`quantize.data.load_windows`.

    ``margins`` = (pre, post) samples kept around each lift (default the recipe's 50, 50).
    """
    from .data import load_windows

    t0 = time.perf_counter()
    pre, post = margins
    lw = load_windows(Path(data_dir), skip_bad=skip_bad, pre_samples=pre, post_samples=post)
    log(f"loaded {len(lw.windows)} trials from {data_dir} ({time.perf_counter() - t0:.1f} s)")
    return lw


def make_run_split(lw, kind: str, seed: int, fold: int = 0, n_folds: Optional[int] = None, data: str = ""):
    """Split a :class:`LabelledWindows` (see :func:`quantize.splits.make_split`)."""
    from .splits import make_split

    return make_split(kind, labels=np.asarray(lw.labels), subjects=np.asarray(lw.subjects),
                      trial_ids=list(lw.trial_ids), seed=seed, fold=fold, n_folds=n_folds, data=data)


def prepare(lw, split, sensors: Sequence[str] = SENSORS, progress: bool = True,
            margins: Tuple[int, int] = DEFAULT_MARGINS) -> Prepared:
    """Fit the recipe on the training windows and tensorize both sides.

    ``margins`` (pre, post) are recorded in the recipe, so the hub cuts lifts as ``lw`` was cut.
    """
    from .data import fit_recipe, make_tensors

    pre, post = margins
    train_w = [lw.windows[i] for i in split.train_index]
    test_w = [lw.windows[i] for i in split.test_index]
    recipe = mask_recipe(fit_recipe(train_w, pre_samples=pre, post_samples=post), sensors)
    x_train = make_tensors(train_w, recipe, progress=progress)
    x_test = make_tensors(test_w, recipe, progress=progress)
    labels = np.asarray(lw.labels, dtype=np.int64)
    return Prepared(recipe, x_train, labels[split.train_index], x_test, labels[split.test_index], split)


def fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int = DEFAULT_BATCH, seed: int = 0,
        validation: Optional[Tuple[np.ndarray, np.ndarray]] = None, label: str = "",
        quiet: bool = False, bn_statistics: str = DEFAULT_BN_STATISTICS) -> Dict[str, object]:
    """Train with early stopping on training loss; return history and timing.

    Args:
        bn_statistics: ``"train"`` sets every batch-normalisation layer's
            statistics from ``x`` after the best weights are restored
            (:func:`recompute_batchnorm_statistics`); ``"moving"`` keeps
            Keras' moving averages.

    Returns:
        ``{"history": {metric: [per epoch]}, "epochs_run", "best_epoch", "seconds",
        "seconds_per_epoch", "bn_statistics", "bn_layers"}``.
    """
    import keras

    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be at least 1")
    if bn_statistics not in BN_STATISTICS:
        raise ConfigError(f"--bn-statistics {bn_statistics!r}: expected one of {', '.join(BN_STATISTICS)}")
    keras.utils.set_random_seed(int(seed))
    n_classes = len(CLASS_NAMES)
    y_hot = keras.utils.to_categorical(y, n_classes)
    val = None
    if validation is not None and len(validation[0]):
        val = (validation[0], keras.utils.to_categorical(validation[1], n_classes))

    class EpochLine(keras.callbacks.Callback):
        """Print one line per epoch to stderr."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if quiet:
                return
            logs = logs or {}
            extra = ""
            if "val_accuracy" in logs:
                extra = f" test_acc {logs['val_accuracy']:.3f}"
            log(f"{label}epoch {epoch + 1}/{epochs} loss {logs.get('loss', float('nan')):.4f} "
                f"acc {logs.get('accuracy', float('nan')):.3f}{extra} ({time.perf_counter() - self._t:.1f} s)")

    stopper = keras.callbacks.EarlyStopping(monitor="loss", min_delta=0, patience=PATIENCE,
                                            restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(x, y_hot, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0,
                     validation_data=val, callbacks=[stopper, EpochLine()])
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    n_run = len(history.get("loss", []))
    best = int(np.argmin(history["loss"])) + 1 if n_run else 0
    n_bn = recompute_batchnorm_statistics(model, x) if bn_statistics == "train" else 0
    return {"history": history, "epochs_run": n_run, "best_epoch": best, "seconds": seconds,
            "seconds_per_epoch": seconds / max(1, n_run), "bn_statistics": bn_statistics, "bn_layers": n_bn}


def recompute_batchnorm_statistics(model, x: np.ndarray, batch_size: int = 64) -> int:
    """Set each batch-normalisation layer's statistics from ``x``.

    Layers are visited in order; for each, the input it receives from ``x`` in
    inference mode (dropout off, earlier layers already updated) is computed,
    and its ``moving_mean`` / ``moving_variance`` become that input's mean and
    (population) variance over every axis but the layer's feature axis. Gamma,
    beta and every other weight are untouched. Only training data may be
    passed: this is part of fitting.

    Args:
        model: A built Keras functional model.
        x: Training inputs, shape ``(n, ...)`` with ``n >= 1``.
        batch_size: Prediction batch size.

    Returns:
        The number of layers updated (0 for models without batch normalisation).

    Raises:
        ConfigError: If ``x`` is empty.
    """
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    if len(x) == 0:
        raise ConfigError("batch-normalisation statistics need at least one training tensor; got none")
    for layer in layers:
        probe = keras.Model(model.inputs, layer.input)
        z = np.asarray(probe.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        axis = axis % z.ndim
        flat = np.moveaxis(z, axis, -1).reshape(-1, z.shape[axis])
        weights = layer.get_weights()  # [gamma], [beta], moving_mean, moving_variance
        weights[-2] = flat.mean(axis=0).astype(weights[-2].dtype)
        weights[-1] = flat.var(axis=0).astype(weights[-1].dtype)
        layer.set_weights(weights)
    return len(layers)


def predict(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(n, 3)`` for images ``x``."""
    if len(x) == 0:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def write_predictions(path: Path, trial_ids: Sequence[str], subjects: Sequence[str], zones: Sequence[int],
                      y_true: np.ndarray, probs: np.ndarray) -> None:
    """``predictions.csv``: trial_id, subject, zone, true, predicted, p_low, p_medium, p_high."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial_id", "subject", "zone", "true", "predicted"] + [f"p_{c}" for c in CLASS_NAMES])
        for tid, subj, zone, t, p in zip(trial_ids, subjects, zones, y_true, probs):
            w.writerow([tid, subj, int(zone), CLASS_NAMES[int(t)], CLASS_NAMES[predicted_class(p)]]
                       + [f"{v:.6f}" for v in p])


def split_sentence(split) -> str:
    """Describe a split in one sentence for reports."""
    if split.kind == "random":
        return (f"random stratified split (paper's 75/25), seed {split.seed}: "
                f"{len(split.train)} training / {len(split.test)} test trials; test workers were also seen in training")
    return (f"subject-wise split, fold {split.fold} of {split.n_folds}, seed {split.seed}: "
            f"{len(split.train)} training / {len(split.test)} test trials; "
            f"held-out workers {', '.join(split.test_subjects)} never seen in training")


def train_run(data: Path, model_name: str, split_kind: str, seed: int, out: Path, *,
              epochs: int = DEFAULT_EPOCHS, sensors: Sequence[str] = SENSORS, fold: int = 0,
              n_folds: Optional[int] = None, batch_size: int = DEFAULT_BATCH, l2: Optional[float] = None,
              dropout: Optional[float] = None, learning_rate: Optional[float] = None, skip_bad: bool = False,
              quiet: bool = False, windows=None, margins: Tuple[int, int] = DEFAULT_MARGINS,
              bn_statistics: str = DEFAULT_BN_STATISTICS) -> dict:
    """Train one model and write the run folder; return its metrics dict.

    Args:
        data: Data set directory.
        model_name: One of :data:`quantize.models.MODEL_NAMES`.
        split_kind: ``"random"`` or ``"subject"``.
        seed: Seed of split, initial weights and batch order.
        out: Run folder (created).
        epochs: Maximum epochs.
        sensors: Sensors kept (others masked through the recipe).
        fold, n_folds: Subject fold (subject split only).
        batch_size: Batch size.
        l2, dropout, learning_rate: Hyperparameters (paper defaults when None).
        skip_bad: Skip malformed trials.
        quiet: No per-epoch lines.
        windows: An already loaded :class:`LabelledWindows` (saves reloading), cut with ``margins``.
        margins: (pre, post) samples kept around each lift's markers (default 50, 50: the
            hub's segmenter margins); ``(750, 750)`` keeps the whole recorded trial, as the
            paper trained (its windows were the 10-15 s trials, zero-padded to 30 s).
        bn_statistics: ``"train"`` (exact statistics over the training tensors) or
            ``"moving"`` (Keras' moving averages, as the paper); see :func:`fit`.
    """
    from . import models as M
    from .metrics import compute_metrics

    l2 = M.DEFAULT_L2 if l2 is None else l2
    dropout = M.DEFAULT_DROPOUT if dropout is None else dropout
    learning_rate = M.DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lw = windows if windows is not None else load(data, skip_bad, margins)
    split = make_run_split(lw, split_kind, seed, fold, n_folds, data=str(Path(data).resolve()))
    log(split_sentence(split))
    prep = prepare(lw, split, sensors, progress=not quiet, margins=margins)
    model = M.build_model(model_name, l2=l2, dropout=dropout, learning_rate=learning_rate, seed=seed)
    log(f"model {model_name}: {model.count_params():,} parameters; at most {epochs} epochs")
    result = fit(model, prep.x_train, prep.y_train, epochs=epochs, batch_size=batch_size, seed=seed,
                 validation=(prep.x_test, prep.y_test), quiet=quiet, bn_statistics=bn_statistics)
    log(f"trained {result['epochs_run']} epochs in {result['seconds']:.1f} s "
        f"({result['seconds_per_epoch']:.2f} s/epoch); best training loss at epoch {result['best_epoch']}"
        + (f"; batch-normalisation statistics of {result['bn_layers']} layer(s) set from the training tensors"
           if result["bn_layers"] else ""))
    probs = predict(model, prep.x_test)
    metrics = compute_metrics(prep.y_test, predicted_class(probs))
    config = {"model": model_name, "parameters": int(model.count_params()), "split": split_kind, "seed": seed,
              "fold": split.fold, "n_folds": split.n_folds, "sensors": list(sensors), "epochs_max": epochs,
              "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"],
              "train_seconds": round(result["seconds"], 2), "seconds_per_epoch": round(result["seconds_per_epoch"], 3),
              "batch_size": batch_size, "l2": l2, "dropout": dropout, "learning_rate": learning_rate,
              "bn_statistics": bn_statistics,
              "n_train": len(split.train), "n_test": len(split.test), "data": str(Path(data).resolve()),
              "margins": [int(prep.recipe.pre_samples), int(prep.recipe.post_samples)]}
    save_run(out, model, prep, metrics, result["history"], probs, lw, config)
    log(f"accuracy {metrics['accuracy']:.3f}, RK {metrics['rk']:.3f} on {metrics['n']} test trials; run in {out}")
    return metrics


def save_model(model, path: Path) -> Path:
    """Save architecture and weights as ``model.keras`` without the optimizer state.

    Keras 3 always stores the Adam moments with a compiled model (3x the
    weights: 104 MB instead of 35 MB for ``proposed``); an uncompiled clone
    with the trained weights holds everything inference, conversion and
    saliency need. Load with :func:`quantize.models.load_model`.
    """
    import keras

    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    clean.save(path)
    return Path(path)


def save_run(out: Path, model, prep: Prepared, metrics: dict, history: dict, probs: np.ndarray, lw,
             config: dict) -> None:
    """Write every file of a run folder, then ``report.md``."""
    from .report import plot_confusion, plot_history, plot_swarm

    out = Path(out)
    save_model(model, out / "model.keras")
    (out / "recipe.json").write_text(json.dumps(prep.recipe.to_dict(), indent=1) + "\n")
    prep.split.save(out / "split.json")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    subjects = np.asarray(lw.subjects)
    write_predictions(out / "predictions.csv", prep.split.test, subjects[prep.split.test_index],
                      np.asarray(lw.zones)[prep.split.test_index], prep.y_test, probs)
    name = config["model"]
    plot_history(history, out / "training_curves.png", f"{name}, {config['split']} split, seed {config['seed']}")
    plot_confusion(np.asarray(metrics["confusion"]), out / "confusion.png",
                   f"{name}: row-normalised confusion (test)")
    plot_swarm(prep.y_test, probs, out / "swarm.png", f"{name}: test predictions by true class")
    write_report(out, metrics, config, prep.split)


def write_report(out: Path, metrics: dict, config: dict, split) -> Path:
    """``report.md`` of a run folder."""
    from .models import PAPER_TITLES
    from .report import flat_row, metrics_markdown, table4_row_markdown, write_markdown

    name = config["model"]
    sensors = config["sensors"]
    sections = [
        f"# Training run: {PAPER_TITLES.get(name, name)} (`{name}`)",
        f"- Data: `{config['data']}` ({config['n_train'] + config['n_test']} trials)\n"
        f"- Split: {split_sentence(split)}\n"
        f"- Sensors: {', '.join(sensors)}"
        + ("" if len(sensors) == len(SENSORS) else
           " (other sensors' channels zeroed through the recipe's std; tensor stays 95x95x3)") + "\n"
        f"- Model: {config['parameters']:,} parameters; Adam lr {config['learning_rate']:g}, "
        f"L2 {config['l2']:g} on the softmax kernel, dropout {config['dropout']:g}, batch {config['batch_size']}\n"
        f"- Training: {config['epochs_run']} of at most {config['epochs_max']} epochs "
        f"(early stopping on training loss, patience {PATIENCE}, best weights from epoch {config['best_epoch']}), "
        f"{config['train_seconds']:.1f} s ({config['seconds_per_epoch']:.2f} s/epoch); batch-normalisation "
        + ("statistics exact over the training tensors" if config.get("bn_statistics", "moving") == "train"
           else "statistics: Keras' moving averages (as the paper)"),
        "## Test results\n\n" + metrics_markdown(metrics),
        "## Next to the paper's Table 4\n\nThe paper used a random 75/25 split of the NIOSH data (180 test "
        "trials); ours is " + ("the same kind of split" if config["split"] == "random" else
                               "a subject-wise split, which is harder") + " on this data set.\n\n"
        + table4_row_markdown(name, flat_row(metrics)),
        "## Plots\n\n"
        "Training curves (the test curve is drawn for information only; stopping used training loss):\n\n"
        "![training curves](training_curves.png)\n\n"
        "Row-normalised confusion matrix (rows true, columns predicted; counts in brackets):\n\n"
        "![confusion](confusion.png)\n\n"
        "Test predictions by true class (y = expected class index Σ c·p_c; colour = predicted class):\n\n"
        "![swarm](swarm.png)",
        "## Files\n\n`model.keras` (load with `quantize.models.load_model`), `recipe.json` (the tensor recipe "
        "fitted on the training trials), `split.json`, `config.json`, `metrics.json`, `history.json`, "
        "`predictions.csv`.",
    ]
    return write_markdown(Path(out) / "report.md", sections)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantize train``."""
    from .report import flat_row, table4_row_markdown

    sensors = parse_sensors(args.sensors)
    if args.split == "random" and args.fold:
        raise ConfigError("--fold only applies to --split subject")
    if not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data}: not a directory; expected a data set folder with index.csv")
    metrics = train_run(args.data, args.model, args.split, args.seed, args.out, epochs=args.epochs,
                        sensors=sensors, fold=args.fold, n_folds=args.n_folds, batch_size=args.batch_size,
                        l2=args.l2, dropout=args.dropout, learning_rate=args.lr, skip_bad=args.skip_bad,
                        quiet=args.quiet, margins=parse_margins(args.margins), bn_statistics=args.bn_statistics)
    print(f"{args.model} ({args.split} split, seed {args.seed}) next to the paper's Table 4:")
    print(table4_row_markdown(args.model, flat_row(metrics)))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0

"""Shared builder for the bundle tests: a tiny trained run, converted, keyed and exported.

Not a test module of its own (it holds no tests); ``test_bundle_*.py``,
``test_convert.py`` and ``legacy_runtime/`` import :func:`tiny_bundle`. The
run is built once per Python process through the real command lines
(``quantize convert``, ``quantize keygen``, ``quantize export``):

* a 30-trial synthetic data set (3 subjects, all three classes, one trial
  longer than the 750-sample window) written with :class:`edge.dataset.DatasetWriter`;
* a small Keras CNN on 95x95x3 trained for 6 epochs on the training split;
* ``model.keras``, ``recipe.json``, ``split.json`` and ``metrics.json`` in the
  run folder, as ``quantize train`` writes them.

Everything is seeded. Building takes about 15-25 s on 2 cores.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np

SEED = 7


@dataclasses.dataclass
class TinyBundle:
    """Paths and outputs of the tiny build."""

    root: Path
    data: Path
    run: Path
    key: Path
    pub: Path
    other_key: Path
    other_pub: Path
    bundle: Path
    convert_stdout: str
    export_stdout: str
    seconds: float


_CACHE: Dict[str, TinyBundle] = {}


def _signal(rng: np.random.Generator, n: int, cls: int) -> np.ndarray:
    """Random IMU-like samples whose lift segment depends on the class."""
    t = np.arange(n) / 25.0
    x = rng.normal(scale=0.05, size=(n, 36))
    x[:, 2::6] += 1.0  # gravity on the accelerometers' z axis
    freq = (3.0, 6.0, 9.0)[cls]
    amp = (0.2, 0.6, 1.2)[cls]
    x += amp * np.sin(2 * np.pi * freq * t)[:, None] * rng.uniform(0.5, 1.5, size=36)
    x[:, 3::6] *= 40.0  # gyroscope channels in deg/s
    return x


def write_dataset(root: Path, n_per_class: int = 10) -> Path:
    """Write the synthetic data set; return its folder."""
    from edge.dataset import DatasetWriter

    rng = np.random.default_rng(SEED)
    zones = {0: (4, 5), 1: (6, 7, 8, 9), 2: (1, 2, 3, 10, 11, 12)}
    with DatasetWriter(root, source="bundle tests") as w:
        k = 0
        for cls in range(3):
            for i in range(n_per_class):
                n = int(rng.integers(220, 420)) if k != 5 else 900
                start, end = 30, n - 30
                zone = zones[cls][i % len(zones[cls])]
                w.add_trial(f"T{k:03d}", f"S{k % 3}", zone, _signal(rng, n, cls),
                            1.7e9 + np.arange(n) / 25.0, start, end)
                k += 1
    return root


def tiny_model():
    """A small CNN on the 95x95x3 input (conv, avg-pool, dense, batch norm, dropout, softmax)."""
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((95, 95, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.25)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def write_run(run: Path, data: Path, epochs: int = 6) -> Path:
    """Train the tiny model and write a run folder as ``quantize train`` does."""
    import keras

    from quantize.data import fit_recipe, load_windows, make_tensors
    from quantize.metrics import compute_metrics

    run.mkdir(parents=True, exist_ok=True)
    lw = load_windows(data, progress=False)
    rng = np.random.default_rng(SEED)
    test_idx = []
    for cls in range(3):
        members = np.flatnonzero(lw.labels == cls)
        test_idx += list(rng.choice(members, size=max(1, len(members) // 4), replace=False))
    long_idx = int(np.argmax([len(w) for w in lw.windows]))
    if long_idx not in test_idx:
        test_idx.append(long_idx)
    test_ids = [lw.trial_ids[i] for i in sorted(test_idx)]
    train_ids = [t for t in lw.trial_ids if t not in test_ids]
    train, test = lw.select(train_ids), lw.select(test_ids)
    recipe = fit_recipe(train.windows)
    recipe.save(run / "recipe.json")
    x_train = make_tensors(train.windows, recipe, progress=False)
    x_test = make_tensors(test.windows, recipe, progress=False)
    model = tiny_model()
    model.fit(x_train, keras.utils.to_categorical(train.labels, 3), epochs=epochs, batch_size=8, verbose=0)
    model.save(run / "model.keras")
    preds = np.argmax(model.predict(x_test, verbose=0), axis=1)
    (run / "metrics.json").write_text(json.dumps(compute_metrics(test.labels, preds), indent=1))
    (run / "split.json").write_text(json.dumps({"kind": "random", "seed": SEED, "train": train_ids,
                                                "test": test_ids, "data": str(data)}, indent=1))
    return run


def run_cli(tool: str, argv) -> tuple:
    """Run ``python -m <tool> argv`` in-process; return ``(status, stdout, stderr)``."""
    import importlib

    main = importlib.import_module(f"{tool}.__main__").main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def tiny_bundle(root: Optional[Path] = None) -> TinyBundle:
    """Build (once per process) the tiny run and its signed bundle."""
    import time

    if "tiny" in _CACHE:
        return _CACHE["tiny"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="lg-bundle-tests-"))
        atexit.register(shutil.rmtree, root, True)
    data = write_dataset(root / "data")
    run = write_run(root / "run", data)
    status, convert_out, err = run_cli("quantize", ["convert", "--run", run, "--representative", 40])
    assert status == 0, err
    for name in ("key", "other"):
        status, _, err = run_cli("quantize", ["keygen", "--out", root / name])
        assert status == 0, err
    bundle = root / "tiny.lgb"
    status, export_out, err = run_cli("quantize", ["export", "--run", run, "--out", bundle, "--sign", root / "key",
                                                   "--model-version", "1.2.0", "--golden", 3])
    assert status == 0, err
    tb = TinyBundle(root, data, run, root / "key", root / "key.pub", root / "other", root / "other.pub", bundle,
                    convert_out, export_out, time.perf_counter() - t0)
    _CACHE["tiny"] = tb
    return tb

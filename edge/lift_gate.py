"""The lift gate: "is this detected window a lift at all?", asked before the risk CNN.

The hub's lift detector (:mod:`edge.lift_detector`) finds every lift on the
continuous stream, but unloaded bends and reaches move the same sensors and
also become windows; the risk CNN was trained on lifts only and calls many of
them high, so the worker is buzzed for nothing. The gate is a small logistic
regression on features of the raw window, trained on the detector's own
windows from simulated shifts (``quantize train-gate``) and shipped in the
bundle's manifest (``"lift_gate"``). It is numpy only and runs in well under
a millisecond per window (the filter dominates).

Features (:func:`gate_features`, names in :data:`FEATURE_NAMES`), from the
window exactly as the detector cut it (``cut_lift`` with the recipe's
margins):

* per sensor and instrument: RMS and peak of the magnitude of the
  band-passed, standardised signal (``edge.signal_path.apply_sos`` and
  ``standardize`` with the bundle's recipe: the same numbers the CNN sees);
* per sensor: the RMS of the accelerometer magnitude's fast part (raw
  magnitude minus its 1 s moving average; grasp, lift-off and placing
  transients);
* per sensor (Back, both wrists, upper arm, thigh): the angle between the
  gravity direction (1 s moving average of the accelerometer) and the one
  before the movement (the window's first ``pre`` samples): its maximum, its
  mean, and the share of the window it exceeds 30 degrees;
* the movement's duration (window length minus the margins), the share of
  the window in which the summed gyroscope magnitude of Back, wrists and
  upper arm exceeds 40 deg/s, and the number of separate movement bursts.

:class:`LiftGate` holds the standardisation of these features, the
logistic-regression weights and the decision threshold as plain numbers;
``to_dict``/``from_dict`` are its JSON form (``gate.json`` and the manifest's
``lift_gate``). The gate is tied to the recipe it was trained with
(``recipe_sha256``), because the standardised features depend on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError, TensorError
from .layout import SAMPLE_RATE_HZ, SENSORS
from .signal_path import TensorRecipe, apply_sos, standardize

#: Version tag of the feature definition; a gate trained on other features is refused.
GATE_VERSION = "lg-gate-1"

#: Sensors whose gravity direction change is a feature.
POSTURE_SENSORS: Tuple[str, ...] = ("Back", "LtWt", "RtWt", "UArm", "Thig")

#: Sensors whose summed gyroscope magnitude is the movement signal (as the detector's).
MOVEMENT_SENSORS: Tuple[str, ...] = ("Back", "LtWt", "RtWt", "UArm")

#: Tilt (degrees) above which a sensor counts as "away from its starting posture".
TILT_LIMIT_DEG = 30.0

#: Movement signal level (deg/s, summed) that counts as moving.
MOVING_DPS = 40.0


def _feature_names() -> Tuple[str, ...]:
    names: List[str] = []
    for s in SENSORS:
        for k in ("A", "G"):
            names += [f"{s}_{k}_rms", f"{s}_{k}_peak"]
    names += [f"{s}_A_fast_rms" for s in SENSORS]
    for s in POSTURE_SENSORS:
        names += [f"{s}_tilt_max", f"{s}_tilt_mean", f"{s}_tilt_share"]
    names += ["duration_s", "moving_share", "bursts"]
    return tuple(names)


#: Names of the features, in the order :func:`gate_features` returns them.
FEATURE_NAMES: Tuple[str, ...] = _feature_names()


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge values repeated (same length)."""
    n = max(1, min(int(n), x.shape[0]))
    half = n // 2
    padded = np.concatenate([np.repeat(x[:1], half, axis=0), x, np.repeat(x[-1:], n - 1 - half, axis=0)])
    c = np.cumsum(padded, axis=0)
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), c])
    return (c[n:] - c[:-n]) / n


def recipe_fingerprint(recipe: TensorRecipe) -> str:
    """sha256 (hex) of the recipe's canonical JSON; ties a gate to the recipe it was trained with."""
    blob = json.dumps(recipe.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def gate_features(raw_window: Any, recipe: TensorRecipe) -> np.ndarray:
    """Compute the gate's features of one detected window.

    Args:
        raw_window: ``(n, 36)`` raw samples as the detector cut them
            (``cut_lift`` with ``recipe``'s margins), at the recipe's rate.
        recipe: The bundle's tensor recipe (filter, standardisation, margins).

    Returns:
        ``(len(FEATURE_NAMES),)`` float64, all finite.

    Raises:
        TensorError: If the window has the wrong shape, is too short or holds
            non-finite values.
    """
    x = np.asarray(raw_window, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 36:
        raise TensorError(f"gate window has shape {x.shape}; expected (n_samples, 36)")
    if x.shape[0] < 8:
        raise TensorError(f"gate window has {x.shape[0]} samples; expected at least 8")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise TensorError(f"gate window has a non-finite value at sample {bad[0]}, channel {bad[1]}; "
                          f"expected finite numbers")
    n = x.shape[0]
    rate = float(recipe.sample_rate_hz) or SAMPLE_RATE_HZ
    z = standardize(apply_sos(recipe.sos, x), recipe.mean, recipe.std)
    zz = z.reshape(n, len(SENSORS), 2, 3)
    mag = np.sqrt(np.sum(zz * zz, axis=3))                        # (n, 6 sensors, 2 kinds)
    feats: List[float] = []
    rms = np.sqrt(np.mean(mag * mag, axis=0))
    peak = np.max(mag, axis=0)
    for j in range(len(SENSORS)):
        for k in range(2):
            feats += [float(np.log1p(rms[j, k])), float(np.log1p(peak[j, k]))]

    raw = x.reshape(n, len(SENSORS), 2, 3)
    acc = raw[:, :, 0, :]                                          # (n, 6, 3) g
    acc_mag = np.sqrt(np.sum(acc * acc, axis=2))                   # (n, 6)
    sec = int(round(rate))
    fast = acc_mag - _moving_average(acc_mag, sec)
    feats += [float(np.log1p(10.0 * v)) for v in np.sqrt(np.mean(fast * fast, axis=0))]

    gravity = _moving_average(acc, sec)                            # (n, 6, 3)
    pre = max(1, min(int(recipe.pre_samples), n // 4))
    ref = np.mean(gravity[:pre], axis=0)                           # (6, 3)
    for s in POSTURE_SENSORS:
        j = SENSORS.index(s)
        g, r = gravity[:, j, :], ref[j]
        norm = np.linalg.norm(g, axis=1) * (np.linalg.norm(r) or 1.0)
        cos = np.where(norm > 1e-9, (g @ r) / np.maximum(norm, 1e-9), 1.0)
        angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        feats += [float(angle.max() / 90.0), float(angle.mean() / 90.0), float(np.mean(angle > TILT_LIMIT_DEG))]

    margins = int(recipe.pre_samples) + int(recipe.post_samples)
    duration = max(n - margins, 1) / rate
    gyro = raw[:, :, 1, :]
    move = sum(np.linalg.norm(gyro[:, SENSORS.index(s), :] - np.median(gyro[:pre, SENSORS.index(s), :], axis=0),
                              axis=1) for s in MOVEMENT_SENSORS)
    move = _moving_average(move, max(1, int(round(0.36 * rate))))
    moving = move > MOVING_DPS
    # bursts: runs of movement separated by at least 0.5 s of stillness
    bursts, still = 0, 10 ** 9
    min_still = int(round(0.5 * rate))
    for m in moving:
        if m:
            if still >= min_still:
                bursts += 1
            still = 0
        else:
            still += 1
    feats += [duration / 10.0, float(np.mean(moving)), float(bursts)]
    out = np.asarray(feats, dtype=np.float64)
    return np.where(np.isfinite(out), out, 0.0)


def _number_list(d: Dict[str, Any], key: str, length: int, where: str, positive: bool = False) -> np.ndarray:
    v = d.get(key)
    if not isinstance(v, list) or len(v) != length:
        got = f"a list of {len(v)}" if isinstance(v, list) else repr(type(v).__name__)
        raise ConfigError(f"{where}.{key} is {got}; expected a list of {length} numbers")
    for i, e in enumerate(v):
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e):
            raise ConfigError(f"{where}.{key}[{i}] = {e!r}; expected a finite number")
        if positive and e <= 0:
            raise ConfigError(f"{where}.{key}[{i}] = {e!r}; expected a number > 0")
    return np.asarray(v, dtype=np.float64)


class LiftGate:
    """Logistic regression on :func:`gate_features`: the probability that a window is a lift.

    Args:
        mean: Per-feature mean used for standardisation.
        scale: Per-feature scale (> 0).
        coef: Logistic-regression weights on the standardised features.
        intercept: Bias term.
        threshold: Windows with probability below it are not lifts.
        recipe_sha256: :func:`recipe_fingerprint` of the recipe it was trained with (or None).
        metrics: Training and evaluation figures (informative).
        recipe: The recipe windows are cut and filtered with (the bundle's);
            needed by :meth:`probability` unless passed there.
    """

    def __init__(self, mean: Sequence[float], scale: Sequence[float], coef: Sequence[float], intercept: float,
                 threshold: float, recipe_sha256: Optional[str] = None,
                 metrics: Optional[Dict[str, Any]] = None, recipe: Optional[TensorRecipe] = None) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.recipe_sha256 = recipe_sha256
        self.metrics = dict(metrics or {})
        self.recipe = recipe
        n = len(FEATURE_NAMES)
        for name, arr in (("mean", self.mean), ("scale", self.scale), ("coef", self.coef)):
            if arr.shape != (n,):
                raise ConfigError(f"lift gate {name} has shape {arr.shape}; expected ({n},)")
        if not np.all(self.scale > 0):
            raise ConfigError("lift gate scale must be > 0 for every feature")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"lift gate threshold {self.threshold!r}; expected a probability 0..1")

    def probability_of_features(self, features: np.ndarray) -> float:
        """Lift probability for an already computed feature vector."""
        s = float(np.dot((features - self.mean) / self.scale, self.coef) + self.intercept)
        return 1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0

    def _recipe(self, recipe: Optional[TensorRecipe]) -> TensorRecipe:
        r = recipe if recipe is not None else self.recipe
        if r is None:
            raise ConfigError("lift gate has no recipe; pass one or build the gate with recipe=")
        return r

    def probability(self, raw_window: Any, recipe: Optional[TensorRecipe] = None) -> float:
        """Probability that ``raw_window`` (``(n, 36)``, cut with the recipe's margins) is a lift."""
        return self.probability_of_features(gate_features(raw_window, self._recipe(recipe)))

    def is_lift(self, raw_window: Any, recipe: Optional[TensorRecipe] = None) -> bool:
        """True when the window's lift probability reaches the threshold."""
        return self.probability(raw_window, recipe) >= self.threshold

    def check_recipe(self, recipe: TensorRecipe) -> None:
        """Raise ConfigError if the gate was trained with a different recipe."""
        if self.recipe_sha256 is not None and self.recipe_sha256 != recipe_fingerprint(recipe):
            raise ConfigError(f"lift gate was trained with recipe {self.recipe_sha256[:12]}, this recipe is "
                              f"{recipe_fingerprint(recipe)[:12]}; train the gate with this run's recipe.json")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able form (``gate.json``, manifest ``lift_gate``)."""
        return {"version": GATE_VERSION, "features": list(FEATURE_NAMES), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
                "threshold": self.threshold, "recipe_sha256": self.recipe_sha256, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: Any, where: str = "lift_gate", recipe: Optional[TensorRecipe] = None) -> "LiftGate":
        """Build a gate from :meth:`to_dict` output, checking every field.

        Args:
            d: The dict.
            where: How error messages name it (a file, ``manifest lift_gate``).
            recipe: Bound to the gate (see the class); checked against ``recipe_sha256``.

        Raises:
            ConfigError: Naming ``where`` and the bad field, value and what was expected.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{where} is {type(d).__name__}; expected an object")
        if d.get("version") != GATE_VERSION:
            raise ConfigError(f"{where}.version = {d.get('version')!r}; expected {GATE_VERSION!r}")
        if d.get("features") != list(FEATURE_NAMES):
            raise ConfigError(f"{where}.features do not match this hub's {len(FEATURE_NAMES)} gate features "
                              f"({FEATURE_NAMES[0]} ... {FEATURE_NAMES[-1]})")
        n = len(FEATURE_NAMES)
        mean = _number_list(d, "mean", n, where)
        scale = _number_list(d, "scale", n, where, positive=True)
        coef = _number_list(d, "coef", n, where)
        for key in ("intercept", "threshold"):
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{where}.{key} = {v!r}; expected a finite number")
        if not 0.0 <= d["threshold"] <= 1.0:
            raise ConfigError(f"{where}.threshold = {d['threshold']!r}; expected a probability 0..1")
        sha = d.get("recipe_sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise ConfigError(f"{where}.recipe_sha256 = {sha!r}; expected 64 hex digits or null")
        metrics = d.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ConfigError(f"{where}.metrics is {type(metrics).__name__}; expected an object")
        gate = cls(mean, scale, coef, float(d["intercept"]), float(d["threshold"]), sha, metrics, recipe)
        if recipe is not None:
            gate.check_recipe(recipe)
        return gate

    def __repr__(self) -> str:
        return f"LiftGate({len(self.coef)} features, threshold {self.threshold:.3f})"

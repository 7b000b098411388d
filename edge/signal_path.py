"""The one signal path from raw IMU samples to the CNN's 95x95x3 input.

Training (``quantize``) and the hub (``edge``) both call these functions; no
other code turns samples into model input, so the two cannot drift. The
choices where the paper is ambiguous are argued in ``docs/preprocessing.md``:

1. :func:`cut_lift` cuts ``[lift_start - pre, lift_end + post]`` out of a
   recording (training cuts with the index's markers, the hub with its lift
   detector's).
2. :func:`apply_sos` runs the stored Butterworth band-pass (second-order
   sections) causally, starting from the filter's steady state for the
   window's first sample, so a constant offset such as gravity causes no
   start-up transient. The design is done once with scipy in ``quantize``;
   here only the numbers are applied.
3. :func:`standardize` scales each of the 36 channels with mean and standard
   deviation fitted on training windows' real samples
   (:func:`fit_standardization`), never over padding, then clips to
   ``+-recipe.clip`` standard deviations.
4. :func:`pad_or_cut` zero-pads at the end (after standardization, so padding
   is the channel mean) or keeps the first 750 samples.
5. :func:`to_matrix` builds the 12x750x3 matrix (row = one IMU's
   accelerometer or gyroscope in :data:`edge.layout.SENSORS` order, column =
   time, depth = x, y, z) and :func:`wrap_to_image` line-wraps each depth
   row-major into 95x95 (9,000 values then 25 zeros).
6. :func:`quantize_int8` maps to the model's int8 input with its own scale
   and zero point.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import TensorError
from .layout import (
    IMAGE_SHAPE,
    IMAGE_SIDE,
    N_CHANNELS,
    N_DEPTH,
    N_ROWS,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
)

#: Version tag of the recipe below; bumped whenever any step changes meaning.
RECIPE_VERSION = "lg-tensor-1"

#: Default margins around a lift's first and last movement sample (2 s each).
DEFAULT_PRE_SAMPLES = 50
DEFAULT_POST_SAMPLES = 50

#: Standardized values are clipped to +-this many standard deviations (training
#: default). Rare spikes otherwise set the int8 input scale: without the clip the
#: demo model's input step was 0.32 sigma and int8 agreed with float on 96.7 % of
#: test windows; with it the step is 0.047 sigma and agreement is 100 %.
DEFAULT_CLIP = 6.0


@dataclasses.dataclass(frozen=True)
class TensorRecipe:
    """Everything needed to turn a raw window into model input.

    Attributes:
        sos: Butterworth band-pass as second-order sections, shape
            ``(n_sections, 6)`` (``b0 b1 b2 a0 a1 a2``, ``a0 == 1``).
        mean: Per-channel mean of the filtered training samples, shape (36,).
        std: Per-channel standard deviation, shape (36,), all > 0.
        window: Samples per window (750).
        pre_samples: Samples kept before the lift's first movement sample.
        post_samples: Samples kept after the lift's last movement sample.
        sample_rate_hz: Sample rate the recipe was fitted at (25 Hz).
        version: Recipe version tag (:data:`RECIPE_VERSION`).
        clip: Standardized values are clipped to ``[-clip, clip]`` (None: no
            clip; recipes written before the field existed have none).
    """

    sos: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    window: int = WINDOW_SAMPLES
    pre_samples: int = DEFAULT_PRE_SAMPLES
    post_samples: int = DEFAULT_POST_SAMPLES
    sample_rate_hz: float = SAMPLE_RATE_HZ
    version: str = RECIPE_VERSION
    clip: Optional[float] = None

    def __post_init__(self) -> None:
        sos = np.ascontiguousarray(np.asarray(self.sos, dtype=np.float64))
        mean = np.ascontiguousarray(np.asarray(self.mean, dtype=np.float64))
        std = np.ascontiguousarray(np.asarray(self.std, dtype=np.float64))
        if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
            raise TensorError(f"recipe sos has shape {sos.shape}; expected (n_sections, 6)")
        if not np.allclose(sos[:, 3], 1.0):
            raise TensorError(f"recipe sos a0 coefficients are {sos[:, 3].tolist()}; expected all 1.0")
        if mean.shape != (N_CHANNELS,) or std.shape != (N_CHANNELS,):
            raise TensorError(
                f"recipe mean/std have shapes {mean.shape}/{std.shape}; expected ({N_CHANNELS},)")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise TensorError("recipe std must be finite and > 0 and mean finite; got "
                              f"std min {np.min(std)!r}")
        if self.window != WINDOW_SAMPLES:
            raise TensorError(f"recipe window is {self.window}; expected {WINDOW_SAMPLES} (95x95 wrap)")
        if self.clip is not None and not (np.isfinite(self.clip) and self.clip > 0):
            raise TensorError(f"recipe clip is {self.clip!r}; expected a finite number > 0 or none")
        if self.version != RECIPE_VERSION:
            raise TensorError(f"recipe version {self.version!r} is not supported; expected {RECIPE_VERSION!r}")
        object.__setattr__(self, "sos", sos)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def to_dict(self) -> Dict[str, Any]:
        """Return a JSON-able dict (floats written with full precision)."""
        return {
            "version": self.version,
            "window": int(self.window),
            "pre_samples": int(self.pre_samples),
            "post_samples": int(self.post_samples),
            "sample_rate_hz": float(self.sample_rate_hz),
            "sos": self.sos.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": None if self.clip is None else float(self.clip),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TensorRecipe":
        """Build a recipe from :meth:`to_dict` output.

        Raises:
            TensorError: If a field is missing or malformed.
        """
        try:
            return cls(
                sos=np.asarray(d["sos"], dtype=np.float64),
                mean=np.asarray(d["mean"], dtype=np.float64),
                std=np.asarray(d["std"], dtype=np.float64),
                window=int(d.get("window", WINDOW_SAMPLES)),
                pre_samples=int(d.get("pre_samples", DEFAULT_PRE_SAMPLES)),
                post_samples=int(d.get("post_samples", DEFAULT_POST_SAMPLES)),
                sample_rate_hz=float(d.get("sample_rate_hz", SAMPLE_RATE_HZ)),
                version=str(d.get("version", "")),
                clip=None if d.get("clip") is None else float(d["clip"]),
            )
        except KeyError as exc:
            raise TensorError(f"recipe is missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise TensorError(f"recipe field is malformed: {exc}") from None

    def save(self, path) -> None:
        """Write the recipe as JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)

    @classmethod
    def load(cls, path) -> "TensorRecipe":
        """Read a recipe written by :meth:`save`."""
        try:
            with open(path, encoding="utf-8") as fh:
                return cls.from_dict(json.load(fh))
        except json.JSONDecodeError as exc:
            raise TensorError(f"{path}: not a JSON recipe: {exc}") from None


def _as_samples(samples: Any, what: str = "window") -> np.ndarray:
    """Check and convert raw samples to float64 ``(n, 36)``."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_CHANNELS:
        raise TensorError(f"{what} has shape {x.shape}; expected (n_samples, {N_CHANNELS})")
    if x.shape[0] < 1:
        raise TensorError(f"{what} has no samples; expected at least 1")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise TensorError(f"{what} has a non-finite value {x[bad[0], bad[1]]!r} at sample {bad[0]}, "
                          f"channel {bad[1]}; expected finite numbers")
    return x


def cut_lift(samples: Any, lift_start: int, lift_end: int, recipe: Optional[TensorRecipe] = None,
             *, pre_samples: Optional[int] = None, post_samples: Optional[int] = None) -> np.ndarray:
    """Cut a lift window out of a recording, as training and the hub both do.

    Args:
        samples: Raw samples ``(n, 36)``.
        lift_start: Index of the lift's first movement sample.
        lift_end: Index of the lift's last movement sample (inclusive).
        recipe: Supplies the margins; or give ``pre_samples``/``post_samples``.
        pre_samples: Samples kept before ``lift_start`` (overrides recipe).
        post_samples: Samples kept after ``lift_end`` (overrides recipe).

    Returns:
        ``samples[max(0, lift_start - pre) : min(n, lift_end + post + 1)]``.

    Raises:
        TensorError: If the markers are outside the recording or reversed.
    """
    x = np.asarray(samples)
    n = x.shape[0]
    pre = pre_samples if pre_samples is not None else (recipe.pre_samples if recipe else DEFAULT_PRE_SAMPLES)
    post = post_samples if post_samples is not None else (recipe.post_samples if recipe else DEFAULT_POST_SAMPLES)
    start, end = int(lift_start), int(lift_end)
    if not (0 <= start <= end < n):
        raise TensorError(f"lift markers start={start}, end={end} do not fit a recording of {n} samples; "
                          f"expected 0 <= start <= end < {n}")
    return x[max(0, start - pre): min(n, end + post + 1)]


def apply_sos(sos: Any, x: Any) -> np.ndarray:
    """Filter along axis 0 with second-order sections, causally.

    Direct form II transposed, starting from the steady state for a constant
    input equal to the first sample (like ``scipy.signal.sosfilt`` with
    ``zi = sosfilt_zi(sos) * x[0]``), so a constant offset produces no
    transient. Vectorised over the remaining axes.

    Args:
        sos: ``(n_sections, 6)`` coefficients with ``a0 == 1``.
        x: Array ``(n, ...)``; filtered along the first axis.

    Returns:
        float64 array of the same shape.
    """
    sos = np.asarray(sos, dtype=np.float64)
    y = np.array(x, dtype=np.float64, copy=True)
    if y.shape[0] == 0:
        return y
    for b0, b1, b2, _a0, a1, a2 in sos:
        # Steady state of this section for a constant input c: output gain
        # g = (b0+b1+b2)/(1+a1+a2); states z1 = g*c - b0*c, z2 = b2*c - a2*g*c.
        c = y[0].copy()
        den = 1.0 + a1 + a2
        gain = (b0 + b1 + b2) / den if den != 0 else 0.0
        z1 = (gain - b0) * c
        z2 = (b2 - a2 * gain) * c
        out = np.empty_like(y)
        for t in range(y.shape[0]):
            xt = y[t]
            yt = b0 * xt + z1
            z1 = b1 * xt - a1 * yt + z2
            z2 = b2 * xt - a2 * yt
            out[t] = yt
        y = out
    return y


def apply_sos_batch(sos: Any, windows: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Filter many windows of different lengths at once, each as :func:`apply_sos`.

    The windows are stacked end-padded (padding never feeds back into real
    samples of a causal filter), filtered together along time, and cut back.
    Gives the same numbers as calling :func:`apply_sos` on each window.
    """
    if not windows:
        return []
    lengths = [w.shape[0] for w in windows]
    n_max = max(lengths)
    stack = np.zeros((n_max, len(windows), windows[0].shape[1]), dtype=np.float64)
    for i, w in enumerate(windows):
        stack[: lengths[i], i, :] = w
    filtered = apply_sos(sos, stack)
    return [filtered[: lengths[i], i, :] for i in range(len(windows))]


def fit_standardization(windows: Iterable[Any], sos: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Fit per-channel mean and standard deviation on filtered real samples.

    Args:
        windows: Raw training windows, each ``(n_i, 36)``. Never test data.
        sos: The band-pass used by the recipe.

    Returns:
        ``(mean, std)``, each shape (36,); a channel with zero variance gets
        std 1.0 so it maps to zeros rather than dividing by zero.
    """
    checked = [_as_samples(w, f"training window {i}") for i, w in enumerate(windows)]
    if not checked:
        raise TensorError("no training windows to fit standardization on; expected at least 1")
    filtered = apply_sos_batch(sos, checked)
    total = sum(f.shape[0] for f in filtered)
    s1 = sum(f.sum(axis=0) for f in filtered)
    mean = s1 / total
    s2 = sum(((f - mean) ** 2).sum(axis=0) for f in filtered)
    std = np.sqrt(s2 / total)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def standardize(filtered: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Scale each channel to zero mean and unit variance with fitted stats."""
    return (filtered - mean) / std


def pad_or_cut(x: np.ndarray, window: int = WINDOW_SAMPLES) -> np.ndarray:
    """Zero-pad at the end, or keep the first ``window`` samples.

    Returns:
        float32 array ``(window, channels)``.
    """
    out = np.zeros((window, x.shape[1]), dtype=np.float32)
    n = min(window, x.shape[0])
    out[:n] = x[:n]
    return out


def to_matrix(x: np.ndarray) -> np.ndarray:
    """Arrange ``(750, 36)`` samples as the paper's ``(12, 750, 3)`` matrix.

    Row r is sensor ``r // 2``'s accelerometer (even r) or gyroscope (odd r),
    in :data:`edge.layout.SENSORS` order; depth is the axis x, y, z. This is
    exactly the column order of :data:`edge.layout.CHANNELS` reshaped.
    """
    if x.ndim != 2 or x.shape[1] != N_CHANNELS:
        raise TensorError(f"to_matrix got shape {x.shape}; expected (n, {N_CHANNELS})")
    n = x.shape[0]
    return np.ascontiguousarray(x.reshape(n, N_ROWS, N_DEPTH).transpose(1, 0, 2))


def from_matrix(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_matrix`: ``(12, n, 3)`` to ``(n, 36)``."""
    if m.ndim != 3 or m.shape[0] != N_ROWS or m.shape[2] != N_DEPTH:
        raise TensorError(f"from_matrix got shape {m.shape}; expected ({N_ROWS}, n, {N_DEPTH})")
    return np.ascontiguousarray(m.transpose(1, 0, 2).reshape(m.shape[1], N_CHANNELS))


_N_VALUES = N_ROWS * WINDOW_SAMPLES  # 9,000 values per depth
_N_PIXELS = IMAGE_SIDE * IMAGE_SIDE  # 9,025 pixels per depth


def wrap_to_image(m: Any) -> np.ndarray:
    """Line-wrap a ``(12, 750, 3)`` matrix into a ``(95, 95, 3)`` image.

    For each depth d, the 12x750 plane is flattened row-major (row 0's 750
    values, then row 1's, ...), 25 zeros are appended, and the 9,025 values
    fill the 95x95 image row by row.
    """
    m = np.asarray(m)
    if m.shape != (N_ROWS, WINDOW_SAMPLES, N_DEPTH):
        raise TensorError(f"wrap_to_image got shape {m.shape}; expected ({N_ROWS}, {WINDOW_SAMPLES}, {N_DEPTH})")
    lead = m.reshape(_N_VALUES, N_DEPTH)
    flat = np.zeros((_N_PIXELS, N_DEPTH), dtype=np.float32 if m.dtype != np.float64 else np.float64)
    flat[:_N_VALUES] = lead
    return flat.reshape(IMAGE_SIDE, IMAGE_SIDE, N_DEPTH)


def unwrap_image(img: Any) -> np.ndarray:
    """Inverse of :func:`wrap_to_image`: ``(95, 95, 3)`` to ``(12, 750, 3)``.

    The 25 trailing pixels per depth (always zero in model input) are dropped.
    Works on saliency maps as well as inputs.
    """
    img = np.asarray(img)
    if img.shape != IMAGE_SHAPE:
        raise TensorError(f"unwrap_image got shape {img.shape}; expected {IMAGE_SHAPE}")
    return img.reshape(_N_PIXELS, N_DEPTH)[:_N_VALUES].reshape(N_ROWS, WINDOW_SAMPLES, N_DEPTH)


def _finish(filtered: np.ndarray, recipe: TensorRecipe) -> np.ndarray:
    z = standardize(filtered, recipe.mean, recipe.std)
    if recipe.clip is not None:
        z = np.clip(z, -recipe.clip, recipe.clip)
    return wrap_to_image(to_matrix(pad_or_cut(z, recipe.window))).astype(np.float32, copy=False)


def tensorize(raw_window: Any, recipe: TensorRecipe) -> np.ndarray:
    """Turn one raw window into the model's float32 ``(95, 95, 3)`` input.

    Args:
        raw_window: Raw samples ``(n, 36)`` in g and deg/s, n >= 1; longer
            than 750 samples keeps the first 750.
        recipe: Fitted :class:`TensorRecipe`.

    Raises:
        TensorError: On a wrong shape or non-finite values.
    """
    x = _as_samples(raw_window)
    return _finish(apply_sos(recipe.sos, x[: recipe.window]), recipe)


def tensorize_batch(raw_windows: Sequence[Any], recipe: TensorRecipe) -> np.ndarray:
    """Tensorize many windows; item i equals ``tensorize(raw_windows[i], recipe)``.

    Returns:
        float32 array ``(N, 95, 95, 3)``.
    """
    checked = [_as_samples(w, f"window {i}")[: recipe.window] for i, w in enumerate(raw_windows)]
    out = np.empty((len(checked),) + IMAGE_SHAPE, dtype=np.float32)
    for i, f in enumerate(apply_sos_batch(recipe.sos, checked)):
        out[i] = _finish(f, recipe)
    return out


def quantize_int8(x: Any, scale: float, zero_point: int) -> np.ndarray:
    """Quantize float values to int8 with a model's own scale and zero point.

    ``q = clip(round(x / scale) + zero_point, -128, 127)`` with round half to
    even, as TFLite does.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise TensorError(f"quantization scale {scale!r} is invalid; expected a finite number > 0")
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_int8(q: Any, scale: float, zero_point: int) -> np.ndarray:
    """Map int8 values back to float32: ``(q - zero_point) * scale``."""
    return ((np.asarray(q, dtype=np.int32) - int(zero_point)) * np.float32(scale)).astype(np.float32)

"""``quantize convert``: a trained run's Keras model to float32 and int8 TFLite, with a parity report.

Reads a run folder written by ``quantize train`` (``model.keras``,
``recipe.json``, ``split.json``), rebuilds the run's training and test tensors
through :mod:`quantize.data` (so through :mod:`edge.signal_path`), and writes
into the run folder:

``model_float32.tflite``
    Plain float conversion, for comparison.
``model_int8.tflite``
    Full-integer post-training quantization: int8 weights and activations,
    int8 input and output tensors, only ``TFLITE_BUILTINS_INT8`` ops (what
    Coral's ``edgetpu_compiler`` accepts). The calibration
    (``representative_dataset``) is a seeded sample of the run's *training*
    tensors, never test data.
``parity.json`` / ``parity.md``
    Keras float vs TFLite float vs TFLite int8 on the run's test split:
    accuracy, RK, precision/recall/F per class, decision agreement with Keras and
    the largest probability difference. Targets: agreement >= 99 %, int8
    accuracy at most 0.5 points below Keras.

The int8 model is run the way the hub runs it: inputs quantized with the
model's own scale and zero point (:func:`edge.signal_path.quantize_int8`),
outputs dequantized with its own output parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import ConfigError, DataError

HELP = "convert a run's Keras model to float32 and full-integer int8 TFLite; write the parity report"

#: Parity targets of issue 5.
TARGET_AGREEMENT = 0.99
TARGET_ACCURACY_DROP_POINTS = 0.5

FLOAT_MODEL = "model_float32.tflite"
INT8_MODEL = "model_int8.tflite"
PARITY_JSON = "parity.json"
PARITY_MD = "parity.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``convert``'s flags."""
    parser.add_argument("--run", required=True, type=Path, help="run folder written by 'quantize train'")
    parser.add_argument("--data", type=Path, default=None,
                        help="data set folder (default: the one recorded in RUN/split.json)")
    parser.add_argument("--representative", type=int, default=300, metavar="N",
                        help="training tensors used to calibrate int8 ranges (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing the calibration sample")
    parser.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads for the parity run")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="skip empirical bias correction of the int8 model (see docs/bundle.md)")
    parser.add_argument("--activation-percentile", type=float, default=DEFAULT_ACTIVATION_PERCENTILE,
                        metavar="P", help="each ReLU layer's int8 range ends at this percentile of its calibration "
                                          f"activations (default {DEFAULT_ACTIVATION_PERCENTILE:g}; 100 = plain "
                                          "min/max; see docs/bundle.md)")
    parser.add_argument("--logit-margin", type=float, default=DEFAULT_LOGIT_MARGIN, metavar="L",
                        help="bound the int8 logits to [smallest top logit - L, largest second logit + L] of the "
                             f"calibration windows (default {DEFAULT_LOGIT_MARGIN:g}; 0 = the full range; see "
                             "docs/bundle.md)")
    parser.add_argument("--no-fold-pooling", action="store_true",
                        help="convert the model as trained, without folding average pooling into the next "
                             "convolution (see docs/bundle.md)")


def run(args: argparse.Namespace) -> int:
    """Convert and print the parity table."""
    parity = convert_run(args.run, data_dir=args.data, n_representative=args.representative,
                         seed=args.seed, num_threads=args.threads, bias_correction=not args.no_bias_correction,
                         fold_pooling=not args.no_fold_pooling, activation_percentile=args.activation_percentile,
                         logit_margin=args.logit_margin)
    print(parity_markdown(parity))
    print(f"wrote {Path(args.run) / FLOAT_MODEL}, {Path(args.run) / INT8_MODEL}, "
          f"{Path(args.run) / PARITY_JSON}, {Path(args.run) / PARITY_MD}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- run folder

def read_json(path: Path, what: str) -> Any:
    """Read a JSON file of a run folder with a clear error."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; expected the {what} written by 'quantize train'") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable {what}: {exc}") from None


def read_split(run_dir: Path) -> Dict[str, Any]:
    """Read and check ``RUN/split.json``."""
    split = read_json(Path(run_dir) / "split.json", "split.json")
    for key in ("train", "test"):
        if not isinstance(split.get(key), list):
            raise ConfigError(f"{Path(run_dir) / 'split.json'}: field {key!r} is {split.get(key)!r}; "
                              f"expected a list of trial ids")
    return split


def data_dir_of(run_dir: Path, split: Dict[str, Any], data_dir: Optional[Path]) -> Path:
    """The data set folder: ``data_dir`` if given, else the one in split.json."""
    if data_dir is not None:
        d = Path(data_dir)
    else:
        recorded = split.get("data") or ""
        if not recorded:
            raise ConfigError(f"{Path(run_dir) / 'split.json'} records no data folder; pass --data DIR")
        d = Path(recorded)
        if not d.is_absolute() and not d.exists() and (Path(run_dir) / d).exists():
            d = Path(run_dir) / d
    if not d.is_dir():
        raise ConfigError(f"data folder {d} does not exist; pass --data DIR (the data set the run was trained on)")
    return d


def load_run_windows(run_dir: Path, data_dir: Optional[Path] = None, progress: bool = True):
    """Load the run's recipe and its train and test windows.

    Returns:
        ``(recipe, train, test)`` where train/test are
        :class:`quantize.data.LabelledWindows` in split.json order.
    """
    from edge.signal_path import TensorRecipe

    from .data import load_windows

    run_dir = Path(run_dir)
    recipe_path = run_dir / "recipe.json"
    if not recipe_path.is_file():
        raise ConfigError(f"{recipe_path}: missing; expected the recipe written by 'quantize train'")
    recipe = TensorRecipe.load(recipe_path)
    split = read_split(run_dir)
    data = data_dir_of(run_dir, split, data_dir)
    windows = load_windows(data, progress=progress)
    known = set(windows.trial_ids)
    for key in ("train", "test"):
        missing = [t for t in split[key] if t not in known]
        if missing:
            raise DataError(f"{run_dir / 'split.json'}: {key} trial {missing[0]!r} is not in {data} "
                            f"({len(missing)} missing); pass --data with the data set the run was trained on")
    if not split["test"]:
        raise DataError(f"{run_dir / 'split.json'}: the test split is empty; parity needs test trials")
    return recipe, windows.select(split["train"]), windows.select(split["test"])


# --------------------------------------------------------------- conversion

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the converter's chatter off the terminal; show it only if conversion fails.

    TensorFlow's converter prints concrete-function dumps from Python and
    MLIR/absl log lines from C++ straight to file descriptors 1 and 2. Both
    are captured into a temporary file for the duration; when the block
    raises, the captured text is written to stderr before the error goes on.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        fds = (sys.stdout.fileno(), sys.stderr.fileno())
    except (AttributeError, io.UnsupportedOperation, ValueError):  # pytest capture, StringIO
        fds = ()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(fd) for fd in fds]
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except BaseException:
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace")[-20000:])
            raise
        finally:
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
                os.close(old)


#: Builtin ops the Edge TPU compiler maps to the TPU (Coral's "supported operations" table).
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "DEQUANTIZE",
    "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "HARD_SWISH", "GATHER",
})


def fixed_batch(model: Any) -> Any:
    """Wrap a Keras model with a batch size of 1 fixed in its input.

    With a dynamic batch the converter emits SHAPE/STRIDED_SLICE/PACK ops to
    compute the Flatten shape at run time; with batch 1 the shapes are static
    and the graph is only the model's own layers (which the Edge TPU compiler
    needs: it cannot map dynamic-shape ops). Weights are shared, not copied,
    and inference mode (dropout off, batch norm with moving statistics) is used.
    """
    import keras

    shape = tuple(model.inputs[0].shape[1:])
    inputs = keras.Input(shape=shape, batch_size=1, name="image")
    outputs = model(inputs, training=False)
    return keras.Model(inputs, outputs, name=f"{model.name}_b1")


def convert_float(model: Any) -> bytes:
    """Convert a Keras model to a float32 ``.tflite`` (bytes), batch size 1."""
    import tensorflow as tf

    with _quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch(model))
        return bytes(converter.convert())


def representative_sample(train_tensors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Draw up to ``n`` training tensors (seeded, without replacement) for int8 calibration."""
    if len(train_tensors) == 0:
        raise DataError("no training tensors to calibrate int8 ranges on; expected at least 1")
    rng = np.random.default_rng(seed)
    k = min(int(n), len(train_tensors))
    idx = np.sort(rng.choice(len(train_tensors), size=k, replace=False))
    return np.asarray(train_tensors[idx], dtype=np.float32)


#: Keras layer types whose full-integer conversion crashes TensorFlow 2.21's converter.
UNSUPPORTED_INT8_LAYERS = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")


def check_int8_convertible(model: Any) -> None:
    """Refuse models the int8 converter cannot handle, before it crashes the process.

    TensorFlow 2.21's full-integer converter dies with a segmentation fault
    (no Python exception) on the ``cnn_lstm`` model's LSTM layers, so such
    models are refused up front with a clear message.

    Raises:
        ConfigError: Naming the first unsupported layer.
    """
    for layer in model.layers:
        if type(layer).__name__ in UNSUPPORTED_INT8_LAYERS:
            raise ConfigError(f"model {model.name!r} has a {type(layer).__name__} layer ({layer.name!r}); TensorFlow's "
                              f"full-integer int8 converter crashes on recurrent layers, so only the CNN models "
                              f"(proposed, maxpool, cnn, mlp) can be converted and bundled")


def convert_int8(model: Any, representative: np.ndarray) -> bytes:
    """Full-integer post-training quantization with int8 input and output.

    Args:
        model: The Keras float model.
        representative: Calibration tensors ``(k, 95, 95, 3)`` float32 drawn
            from the training split.

    Returns:
        The ``.tflite`` bytes.
    """
    import tensorflow as tf

    check_int8_convertible(model)

    def dataset() -> Iterator[List[np.ndarray]]:
        for i in range(len(representative)):
            yield [representative[i: i + 1]]

    with _quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch(model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        try:
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises ConverterError and others
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"full-integer int8 conversion of model {model.name!r} failed "
                              f"(only TFLITE_BUILTINS_INT8 ops are allowed): {first}") from None


# ------------------------------------------------------- average pooling folded into the next convolution

#: Largest probability difference allowed between a model and its pooling-folded copy (float).
FOLD_TOLERANCE = 1e-4


def _is_chain(model: Any) -> bool:
    """Whether every layer of ``model`` takes exactly the previous layer's output (a plain chain)."""
    layers = model.layers
    if not layers or type(layers[0]).__name__ != "InputLayer":
        return False
    for prev, layer in zip(layers, layers[1:]):
        try:
            if layer.input is not prev.output:
                return False
        except (AttributeError, ValueError):  # several inbound nodes or inputs
            return False
    return True


def _foldable(pool: Any, conv: Any) -> bool:
    """A 2x2/2 'valid' average pooling followed by a stride-1, undilated, 'valid' Conv2D."""
    if type(pool).__name__ != "AveragePooling2D" or type(conv).__name__ != "Conv2D":
        return False
    p, c = pool.get_config(), conv.get_config()
    return (tuple(p["pool_size"]) == (2, 2) and tuple(p["strides"]) == (2, 2) and p["padding"] == "valid"
            and c["padding"] == "valid" and tuple(c["strides"]) == (1, 1)
            and tuple(c.get("dilation_rate", (1, 1))) == (1, 1) and c.get("groups", 1) == 1
            and p.get("data_format", "channels_last") == c.get("data_format", "channels_last") == "channels_last")


def fold_average_pooling(model: Any, check_inputs: Optional[np.ndarray] = None) -> Tuple[Any, List[str]]:
    """An inference copy of a chain model with each 2x2 average pooling folded into the convolution after it.

    In an int8 model every average-pooling output is a tensor of its own,
    rounded back to int8 at the scale of its input (TFLite requires the same
    scale in and out). Measured on the demo model, the rounding of the three
    pooled tensors is the largest source of int8 noise, larger than all the
    convolutions together. A 2x2 stride-2 average pooling followed by a 'valid'
    kxk convolution is exactly one 2k x 2k convolution of stride 2 whose
    kernel repeats each tap over a 2x2 block, divided by 4; the pooling then
    happens inside the convolution's 32-bit accumulator and is never rounded.
    The float function is unchanged (checked on ``check_inputs``), the ops are
    the same (CONV_2D, which the Edge TPU accepts) and the cost is more
    multiply-adds in the folded layers (+0.1 ms/inference with XNNPACK here,
    see ``docs/bundle.md``). Pooling before Flatten is kept (folding it into
    the dense layer would quadruple its weights). Dropout layers are dropped
    (identity at inference). Models that are not a plain chain, or with
    nothing to fold, are returned unchanged.

    Args:
        model: The trained Keras model (not modified).
        check_inputs: Float tensors to check the copy against ``model`` on.

    Returns:
        ``(model to convert, names of the convolutions that absorbed a pooling)``.

    Raises:
        ConfigError: If the folded copy disagrees with the model by more than
            :data:`FOLD_TOLERANCE` (a bug, never expected).
    """
    import keras

    if not _is_chain(model):
        return model, []
    layers = [layer for layer in model.layers[1:] if type(layer).__name__ != "Dropout"]
    if not any(_foldable(a, b) for a, b in zip(layers, layers[1:])):
        return model, []
    shape = tuple(model.inputs[0].shape[1:])
    inputs = keras.Input(shape=shape, name=model.layers[0].name)
    x = inputs
    weights: List[Tuple[Any, List[np.ndarray]]] = []
    folded: List[str] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and _foldable(layer, nxt):
            kernel, *rest = [np.asarray(w) for w in nxt.get_weights()]
            big = np.repeat(np.repeat(kernel, 2, axis=0), 2, axis=1) / 4.0
            cfg = dict(nxt.get_config(), kernel_size=tuple(2 * k for k in kernel.shape[:2]), strides=(2, 2))
            new = keras.layers.Conv2D.from_config(cfg)
            x = new(x)
            weights.append((new, [big.astype(kernel.dtype)] + rest))
            folded.append(nxt.name)
            i += 2
            continue
        new = type(layer).from_config(layer.get_config())
        x = new(x)
        weights.append((new, [np.asarray(w) for w in layer.get_weights()]))
        i += 1
    copy = keras.Model(inputs, x, name=model.name)
    for new, w in weights:
        if w:
            new.set_weights(w)
    if check_inputs is not None and len(check_inputs):
        a = np.asarray(model.predict(check_inputs, batch_size=32, verbose=0))
        b = np.asarray(copy.predict(check_inputs, batch_size=32, verbose=0))
        diff = float(np.max(np.abs(a - b)))
        if diff > FOLD_TOLERANCE:
            raise ConfigError(f"folding average pooling into {', '.join(folded)} changed model {model.name!r}'s "
                              f"outputs by {diff:.3g}; expected at most {FOLD_TOLERANCE:g} (float round-off)")
    return copy, folded


# ------------------------------------------------------- activation ranges clipped at a percentile

#: Default percentile of each ReLU layer's calibration activations that its int8 range ends at:
#: 100 = the converter's own min/max. Over 21 trained models with bounded logits (docs/bundle.md
#: §6) 99.999 gave finer steps but saturated unusual test windows (largest |dp| up to 0.16, and
#: two targets missed that 100 met), 100 a bounded worst case (largest |dp| at most 0.08).
DEFAULT_ACTIVATION_PERCENTILE = 100.0

#: Layers that pass a positive scale of their input straight through (or that
#: :func:`clip_activation_ranges` rescales itself: BatchNormalization).
_SCALE_TRANSPARENT = ("AveragePooling2D", "MaxPooling2D", "AveragePooling1D", "MaxPooling1D", "Flatten",
                      "Dropout", "BatchNormalization", "Reshape")


def clip_activation_ranges(model: Any, calibration: np.ndarray,
                           percentile: float = DEFAULT_ACTIVATION_PERCENTILE) -> Tuple[Any, Dict[str, float]]:
    """A copy whose ReLU layers saturate at a percentile of their calibration activations.

    TFLite's calibration sets each activation tensor's int8 range to the
    largest value seen, and ReLU activations are long-tailed (on the demo
    model the largest conv1 output was 2.4x its 99.99th percentile), so the
    typical activation gets only a few int8 steps. Here each Conv/Dense layer
    with a ReLU is rescaled so that the ``percentile``-th percentile of its
    outputs on ``calibration`` (training tensors) maps to 6 and its activation
    becomes ReLU6, which the converter fuses and calibrates to [0, 6]; the
    next weight layer takes the inverse scale (through pooling, flatten,
    dropout, and batch normalization, whose statistics are rescaled), so the
    function is unchanged except that the rarest larger activations saturate.
    Same ops (ReLU6 is fused into CONV_2D / FULLY_CONNECTED).

    Args:
        model: A plain chain model (e.g. :func:`fold_average_pooling`'s copy).
        calibration: Training tensors (never test data).
        percentile: Where each range ends; 100 or more returns the model unchanged.

    Returns:
        ``(model to convert, {layer name: activation value mapped to the top of its range})``;
        the model unchanged and ``{}`` when it is not a chain of supported layers.
    """
    import keras

    if percentile >= 100 or not _is_chain(model):
        return model, {}
    layers = list(model.layers[1:])
    kinds = [type(layer).__name__ for layer in layers]
    if any(k not in ("Conv1D", "Conv2D", "Dense") + _SCALE_TRANSPARENT for k in kinds):
        return model, {}
    relu = [layer for layer in layers if type(layer).__name__ in ("Conv1D", "Conv2D", "Dense")
            and layer.get_config().get("activation") == "relu" and layer.use_bias]
    if not relu:
        return model, {}
    outputs = keras.Model(model.inputs, [layer.output for layer in relu]).predict(calibration, batch_size=16,
                                                                                  verbose=0)
    if len(relu) == 1:
        outputs = [outputs]
    clip = {layer.name: float(np.percentile(out, percentile)) for layer, out in zip(relu, outputs)}
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name=model.layers[0].name)
    x, weights, carried = inputs, [], 1.0  # carried: the current tensor is `carried` x the original one
    for layer in layers:
        kind, cfg = type(layer).__name__, layer.get_config()
        w = [np.asarray(v) for v in layer.get_weights()]
        if kind in ("Conv1D", "Conv2D", "Dense"):
            w[0] = w[0] / carried
            carried = 1.0
            if layer.name in clip and clip[layer.name] > 0:
                k = 6.0 / clip[layer.name]
                w[0], w[1] = w[0] * k, w[1] * k
                cfg["activation"] = "relu6"
                carried = k
        elif kind == "BatchNormalization" and carried != 1.0:
            gamma_beta = w[:-2] if len(w) > 2 else []
            mean, var = w[-2], w[-1]
            eps = float(layer.epsilon)
            w = gamma_beta + [mean * carried, (carried ** 2) * (var + eps) - eps]
            carried = 1.0
        new = type(layer).from_config(cfg)
        x = new(x)
        weights.append((new, w))
    copy = keras.Model(inputs, x, name=model.name)
    for new, w in weights:
        if w:
            new.set_weights([v.astype(np.float32) for v in w])
    return copy, clip


#: Logits by which :func:`bound_logit_range` keeps its bounds away from the calibration
#: windows' decisive logits: e^-6 = 0.0025 of probability, under one output step (1/256).
DEFAULT_LOGIT_MARGIN = 6.0


def bound_logit_range(model: Any, calibration: np.ndarray,
                      margin: float = DEFAULT_LOGIT_MARGIN) -> Tuple[Any, Any, Dict[str, Any]]:
    """A copy whose softmax layer sees its logits bounded to the range that decides anything.

    The int8 logit tensor spans every calibration logit, and a confident
    model's logits are large (on the demo model -25 to +29: a step of 0.21
    logits), so two classes whose float logits differ by less than a step
    become an exact int8 tie; emulated on the demo model, that rounding alone
    was the largest source of int8 error. Softmax only depends on logit
    differences, and a decision only on the two largest, so the last Dense is
    split into Dense + ReLU6 (bounds ``[lo, hi]`` mapped to ``[0, 6]``, so 255
    int8 steps span ``hi - lo`` logits) + softmax with ``beta = (hi - lo) / 6``,
    with ``lo`` = the smallest top logit of the calibration windows minus
    ``margin`` and ``hi`` = their largest second logit plus ``margin``.
    Within the bounds the function is unchanged (softmax(z - lo) = softmax(z));
    on windows like the calibration ones a logit pushed up to ``lo`` had a
    probability under e^-margin, and a top logit cut to ``hi`` still beats the
    second by ``margin`` (probability above 0.995 for margin 6). Outside the calibration data, a window whose two top
    logits both exceed ``hi`` (or all three fall under ``lo``) becomes a tie,
    which :func:`edge.layout.predicted_class` gives to the higher risk.

    Args:
        model: A model ending in a Dense layer with a softmax activation.
        calibration: Training tensors (never test data).
        margin: Logits kept on either side; 0 or less returns the model unchanged.

    Returns:
        ``(float copy, model to convert, info)``: the float copy computes the
        bounded function (Dense + ReLU6 + Rescaling + softmax); the model to
        convert leaves out the Rescaling, whose factor ``info["softmax_beta"]``
        :func:`set_softmax_beta` puts into the converted SOFTMAX. info also has
        the bounds, the full logit range they replace and the step sizes. When
        the last layer is not a softmax Dense or the bounds would not be
        narrower: ``(model, model, {})``.
    """
    import keras

    last = model.layers[-1]
    if margin <= 0 or type(last).__name__ != "Dense" or last.get_config().get("activation") != "softmax" \
            or not last.use_bias or len(model.inputs) != 1 or len(model.outputs) != 1:
        return model, model, {}
    kernel, bias = [np.asarray(w, dtype=np.float64) for w in last.get_weights()]
    if kernel.shape[-1] < 2:
        return model, model, {}
    features = keras.Model(model.inputs, last.input).predict(calibration, batch_size=16, verbose=0)
    logits = np.asarray(features, dtype=np.float64) @ kernel + bias
    ordered = np.sort(logits, axis=1)
    lo = float(ordered[:, -1].min() - margin)
    hi = float(ordered[:, -2].max() + margin)
    full = float(max(logits.max(), 0.0) - min(logits.min(), 0.0))  # TFLite ranges always hold 0
    if hi - lo >= full:
        return model, model, {}
    k = 6.0 / (hi - lo)
    bounded = keras.layers.Dense(kernel.shape[-1], activation="relu6", name=f"{last.name}_bounded")
    bounded_logits = bounded(last.input)
    bounded.set_weights([(kernel * k).astype(np.float32), ((bias - lo) * k).astype(np.float32)])
    unscale = keras.layers.Rescaling(1.0 / k, name=f"{last.name}_unscale")
    copy = keras.Model(model.inputs, keras.layers.Activation("softmax", name=last.name)(unscale(bounded_logits)),
                       name=model.name)
    convertible = keras.Model(model.inputs, keras.layers.Activation("softmax", name=last.name)(bounded_logits),
                              name=model.name)
    info = {"margin": float(margin), "low": round(lo, 4), "high": round(hi, 4),
            "calibration_range": [round(float(logits.min()), 4), round(float(logits.max()), 4)],
            "step_before": round(full / 255.0, 5), "step_after": round((hi - lo) / 255.0, 5),
            "softmax_beta": 1.0 / k}
    return copy, convertible, info


def set_softmax_beta(model_bytes: bytes, beta: float) -> bytes:
    """The ``.tflite`` with its one SOFTMAX operator's ``beta`` set (softmax(beta x)).

    The converter turns a Rescaling before the softmax into a MUL whose output
    scale it also forces on the bounded logits, losing the resolution
    :func:`bound_logit_range` gains; SOFTMAX's own ``beta`` parameter applies the
    same factor inside the operator, with the int8 kernels' lookup table built
    for ``input scale x beta``.

    Raises:
        ConfigError: The model does not have exactly one SOFTMAX operator.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    softmax_ops = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.SOFTMAX:
                softmax_ops.append(op)
    if len(softmax_ops) != 1:
        raise ConfigError(f"int8 model has {len(softmax_ops)} SOFTMAX operators; expected exactly 1 to carry the "
                          f"logit bounds (convert with --logit-margin 0)")
    options = schema.SoftmaxOptionsT()
    options.beta = float(beta)
    softmax_ops[0].builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    softmax_ops[0].builtinOptions = options
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ------------------------------------------------------- empirical bias correction

def _correctable_layers(model: Any) -> List[Any]:
    """Layers with a bias whose output TFLite keeps as one tensor: Conv/Dense, linear/ReLU/ReLU6/softmax."""
    out = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in ("Conv1D", "Conv2D", "Dense") or not getattr(layer, "use_bias", False):
            continue
        act = getattr(getattr(layer, "activation", None), "__name__", "")
        if act in ("linear", "relu", "relu6") or (act == "softmax" and kind == "Dense"):
            out.append(layer)
    return out


def _reference_fn(model: Any, layer: Any):
    """Float reference of ``layer``'s TFLite tensor: its output, or its logits for a softmax Dense."""
    import keras

    act = getattr(layer.activation, "__name__", "")
    if act == "softmax":
        feed = keras.Model(model.inputs, layer.input)
        kernel, bias = [np.asarray(w) for w in layer.get_weights()]
        return lambda x: np.asarray(feed.predict(x, batch_size=32, verbose=0)) @ kernel + bias
    sub = keras.Model(model.inputs, layer.output)
    return lambda x: np.asarray(sub.predict(x, batch_size=32, verbose=0))


def _find_tensor(details: Sequence[Dict[str, Any]], layer_name: str, shape: Sequence[int]) -> Optional[Dict[str, Any]]:
    """The int8 activation tensor of a Keras layer in a converted model (matched by name and shape)."""
    import re

    candidates = [d for d in details if np.dtype(d["dtype"]) == np.int8 and d["quantization"][0] > 0
                  and list(d["shape"]) == [1] + list(shape)]
    exact = re.compile(rf"(^|/){re.escape(layer_name)}/")
    suffixed = re.compile(rf"(^|/){re.escape(layer_name)}_\d+/")
    found = [d for d in candidates if exact.search(d["name"])] or \
        [d for d in candidates if suffixed.search(d["name"])]
    if len({d["index"] for d in found}) != 1:
        return None  # absent (folded away) or ambiguous: leave this layer alone
    return found[0]


def layer_mean_error(int8_bytes: bytes, reference: Any, layer_name: str, x: np.ndarray) -> Optional[Tuple[np.ndarray, float]]:
    """Per-channel mean of (int8 activation - float activation) over ``x``.

    Args:
        int8_bytes: Full-integer model.
        reference: Callable giving the float activation for a batch.
        layer_name: Keras layer whose tensor is compared.
        x: Float input tensors (calibration data).

    Returns:
        ``(mean error per output channel, the tensor's scale)``, or None when
        the converted model has no tensor for the layer (e.g. folded away).
    """
    from edge.runtime import make_interpreter
    from edge.signal_path import quantize_int8

    ref = reference(x)
    interp, _ = make_interpreter(int8_bytes, kernels="builtin", preserve_all_tensors=True)
    detail = _find_tensor(interp.get_tensor_details(), layer_name, ref.shape[1:])
    if detail is None:
        return None
    d_in = interp.get_input_details()[0]
    scale, zp = float(detail["quantization"][0]), int(detail["quantization"][1])
    total = np.zeros(ref.shape[-1], dtype=np.float64)
    for i in range(len(x)):
        interp.set_tensor(d_in["index"], quantize_int8(x[i: i + 1], *d_in["quantization"]))
        interp.invoke()
        got = (interp.get_tensor(detail["index"])[0].astype(np.float64) - zp) * scale
        total += (got - ref[i]).reshape(-1, ref.shape[-1]).mean(axis=0)
    return total / len(x), scale


def convert_int8_bias_corrected(model: Any, representative: np.ndarray, *, threshold_steps: float = 0.25,
                                progress: bool = True) -> Tuple[bytes, List[Dict[str, Any]]]:
    """Full-integer conversion with empirical bias correction (Nagel et al. 2019, sec. 4.2).

    int8 kernels round with a small systematic bias (e.g. average pooling of
    int8 values with zero point -128 rounds half away from zero, about -1/8
    step per pool), which a wide dense layer sums over thousands of inputs
    into a shift of whole steps. Layer by layer, in model order, the mean
    error per output channel between the int8 model and the float model is
    measured on the calibration tensors (training data only) and subtracted
    from that layer's bias in a copy of the float model, which is then
    converted again. Layers whose error is under ``threshold_steps`` of their
    int8 step are left alone. The original model is not changed.

    Returns:
        ``(int8 bytes, corrections)``: one entry per corrected layer with the
        error before correction in int8 steps.
    """
    import keras

    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())
    current = convert_int8(work, representative)
    corrections: List[Dict[str, Any]] = []
    for layer in _correctable_layers(model):
        measured = layer_mean_error(current, _reference_fn(model, layer), layer.name, representative)
        if measured is None:
            continue
        err, scale = measured
        worst = float(np.max(np.abs(err)) / scale)
        if worst < threshold_steps:
            continue
        target = work.get_layer(layer.name)
        original = target.get_weights()
        weights = [w.copy() for w in original]
        weights[1] = (weights[1] - err).astype(weights[1].dtype)
        target.set_weights(weights)
        if progress:
            print(f"convert: bias correction of {layer.name}: mean error up to {worst:.2f} int8 steps; reconverting",
                  file=sys.stderr, flush=True)
        candidate = convert_int8(work, representative)
        after = layer_mean_error(candidate, _reference_fn(model, layer), layer.name, representative)
        after_steps = float(np.max(np.abs(after[0])) / after[1]) if after is not None else float("inf")
        if after_steps >= worst:  # did not help (or the tensor was mismatched): undo
            target.set_weights(original)
            continue
        current = candidate
        corrections.append({"layer": layer.name, "max_error_steps": round(worst, 4),
                            "max_error_steps_after": round(after_steps, 4),
                            "mean_error": float(np.mean(err)), "scale": scale})
    return current, corrections


def model_ops(model_bytes: bytes) -> List[str]:
    """Names of the builtin operators a ``.tflite`` model uses (for the Edge TPU check)."""
    try:
        from ai_edge_litert import schema_py_generated as schema  # type: ignore
    except ImportError:  # pragma: no cover - older stacks
        from tensorflow.lite.python import schema_py_generated as schema  # type: ignore
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for code in model.operatorCodes or []:
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(builtin, f"CUSTOM:{code.customCode!r}" if code.customCode else str(builtin))
        if name not in ops:
            ops.append(name)
    return ops


def tflite_probs(model_bytes: bytes, x: np.ndarray, *, num_threads: int = 1, progress: str = "",
                 kernels: str = "builtin") -> np.ndarray:
    """Run a ``.tflite`` model on float tensors; return float probabilities ``(N, classes)``.

    int8 models get their input quantized with the model's own scale and zero
    point and their output dequantized, exactly as :class:`edge.bundle.LoadedBundle` does.
    """
    from edge.runtime import make_interpreter
    from edge.signal_path import dequantize_int8, quantize_int8

    interpreter, _ = make_interpreter(model_bytes, num_threads=num_threads, kernels=kernels)
    d_in, d_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    int8_in = np.dtype(d_in["dtype"]) == np.int8
    int8_out = np.dtype(d_out["dtype"]) == np.int8
    s_in, z_in = d_in["quantization"]
    s_out, z_out = d_out["quantization"]
    out = np.empty((len(x), int(d_out["shape"][-1])), dtype=np.float32)
    items: Sequence[int] = range(len(x))
    if progress:
        try:
            from tqdm import tqdm
            items = tqdm(items, desc=progress, unit="window", file=sys.stderr, leave=False)
        except ImportError:
            pass
    for i in items:
        xi = x[i: i + 1]
        feed = quantize_int8(xi, s_in, z_in) if int8_in else xi.astype(np.float32)
        interpreter.set_tensor(d_in["index"], feed)
        interpreter.invoke()
        y = interpreter.get_tensor(d_out["index"])[0]
        out[i] = dequantize_int8(y, s_out, z_out) if int8_out else y
    return out


def _metrics(y_true: np.ndarray, probs: np.ndarray) -> Dict[str, Any]:
    from edge.layout import predicted_class

    from .metrics import compute_metrics

    return compute_metrics(y_true, predicted_class(probs))


def parity_report(keras_probs: np.ndarray, float_probs: np.ndarray, int8_probs: np.ndarray,
                  y_true: np.ndarray, int8_default_kernels_probs: Optional[np.ndarray] = None,
                  ids: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Compare the three models on the same test tensors.

    ``int8_probs`` are from TFLite's built-in kernels (what the hub runs by
    default) and decide the targets; ``int8_default_kernels_probs`` (the
    runtime's XNNPACK kernels), when given, are reported as an extra row.
    ``ids`` (trial ids of the windows) name the windows whose int8 decision
    differs from Keras.

    Returns:
        ``{"n_test", "models": {"keras"|"tflite_float32"|"tflite_int8": {metrics...,
        "agreement_with_keras", "max_prob_diff_vs_keras"}}, "int8_accuracy_drop_points",
        "targets": {...}, "met": bool, "disagreements": [{"window", "id", "true", "keras",
        "int8", "keras_margin"}, ...]}``; ``keras_margin`` is the Keras probability of its
        decision minus the next class's: how near the float model was to a tie.
    """
    from edge.layout import predicted_class

    y_true = np.asarray(y_true)
    keras_pred = predicted_class(keras_probs)
    models: Dict[str, Dict[str, Any]] = {}
    rows = [("keras", keras_probs), ("tflite_float32", float_probs), ("tflite_int8", int8_probs)]
    if int8_default_kernels_probs is not None:
        rows.append(("tflite_int8_xnnpack", int8_default_kernels_probs))
    for name, probs in rows:
        m = _metrics(y_true, probs)
        m["agreement_with_keras"] = float(np.mean(predicted_class(probs) == keras_pred)) if len(y_true) else 0.0
        m["max_prob_diff_vs_keras"] = float(np.max(np.abs(probs - keras_probs))) if len(y_true) else 0.0
        models[name] = m
    drop = 100.0 * (models["keras"]["accuracy"] - models["tflite_int8"]["accuracy"])
    agreement = models["tflite_int8"]["agreement_with_keras"]
    met_agreement = agreement >= TARGET_AGREEMENT
    met_drop = drop <= TARGET_ACCURACY_DROP_POINTS
    disagreements = []
    for i in np.flatnonzero(predicted_class(int8_probs) != keras_pred):
        top_two = np.sort(np.asarray(keras_probs[i], dtype=np.float64))[-2:]
        disagreements.append({"window": int(i), "id": str(ids[i]) if ids is not None else None,
                              "true": int(y_true[i]), "keras": [round(float(v), 4) for v in keras_probs[i]],
                              "int8": [round(float(v), 4) for v in int8_probs[i]],
                              "keras_margin": round(float(top_two[1] - top_two[0]), 4)})
    return {
        "disagreements": disagreements,
        "n_test": int(len(y_true)),
        "models": models,
        "int8_accuracy_drop_points": float(drop),
        "targets": {"agreement_with_keras": f">= {TARGET_AGREEMENT:.0%}",
                    "accuracy_drop_points": f"<= {TARGET_ACCURACY_DROP_POINTS}",
                    "agreement_met": bool(met_agreement), "accuracy_drop_met": bool(met_drop)},
        "met": bool(met_agreement and met_drop),
    }


def parity_markdown(parity: Dict[str, Any]) -> str:
    """The parity table as markdown."""
    from edge.layout import CLASS_NAMES

    head = ["model", "accuracy", "RK"] + [f"F {c}" for c in CLASS_NAMES] + ["agree w/ Keras", "max |dp|"]
    lines = [f"## int8 parity on the test split ({parity['n_test']} windows)", "",
             "tflite_int8 runs TFLite's built-in kernels, as the hub does by default; tflite_int8_xnnpack the "
             "runtime's XNNPACK kernels (faster, rounds differently).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in parity["models"].items():
        row = [name, f"{m['accuracy']:.4f}", f"{m['rk']:.4f}"] + [f"{m[c]['f1']:.4f}" for c in CLASS_NAMES]
        row += [f"{m['agreement_with_keras']:.2%}", f"{m['max_prob_diff_vs_keras']:.4f}"]
        lines.append("| " + " | ".join(row) + " |")
    t = parity["targets"]
    lines += ["", f"- int8 decision agreement with Keras: {parity['models']['tflite_int8']['agreement_with_keras']:.2%} "
              f"(target {t['agreement_with_keras']}): {'met' if t['agreement_met'] else 'MISSED'}",
              f"- int8 accuracy drop vs Keras: {parity['int8_accuracy_drop_points']:+.2f} points "
              f"(target {t['accuracy_drop_points']}): {'met' if t['accuracy_drop_met'] else 'MISSED'}"]
    if parity.get("disagreements"):
        names = CLASS_NAMES
        parts = []
        for d in parity["disagreements"]:
            k, q = d["keras"], d["int8"]
            parts.append(f"{d['id'] or '#' + str(d['window'])} (true {names[d['true']]}; Keras "
                         f"{' / '.join(f'{v:.3f}' for v in k)}, margin {d['keras_margin']:.3f}; int8 "
                         f"{' / '.join(f'{v:.3f}' for v in q)})")
        lines.append(f"- windows where int8 decides otherwise than Keras (probabilities "
                     f"{' / '.join(names)}): " + "; ".join(parts))
    if "int8_model" in parity:
        im = parity["int8_model"]
        lines += [f"- int8 model: {im['bytes']} bytes, input scale {im['input_scale']:.6g} zero point "
                  f"{im['input_zero_point']}, output scale {im['output_scale']:.6g} zero point "
                  f"{im['output_zero_point']}; ops: {', '.join(im['ops'])}",
                  f"- ops the Edge TPU compiler would leave on the CPU: "
                  f"{', '.join(im.get('ops_not_on_edgetpu') or []) or 'none'}",
                  f"- calibration: {im['representative']} training tensors (seed {im['seed']})"]
        bc = im.get("bias_correction")
        if bc == "off":
            lines.append("- empirical bias correction: off")
        elif bc is not None:
            done = ", ".join(f"{c['layer']} (mean error up to {c['max_error_steps']:.2f} -> "
                             f"{c['max_error_steps_after']:.2f} int8 steps)" for c in bc) or "no layer needed it"
            lines.append(f"- empirical bias correction (calibration data only): {done}")
        pf = im.get("pooling_folded_into")
        if pf == "off":
            lines.append("- average pooling folded into the next convolution: off")
        elif pf:
            lines.append(f"- average pooling folded into the next convolution (same float function, fewer rounded "
                         f"tensors): {', '.join(pf)}")
        ar = im.get("activation_ranges")
        if ar and ar.get("layers"):
            lines.append(f"- ReLU ranges end at the {ar['percentile']:g}th percentile of the calibration activations "
                         f"({len(ar['layers'])} layers, ReLU6 rescaling)")
        elif ar:
            lines.append(f"- ReLU ranges: the converter's min/max (percentile {ar['percentile']:g})")
        lb = ar.get("logit_bounds") if ar else None
        if isinstance(lb, dict) and lb:
            lines.append(f"- logits bounded to [{lb['low']:.2f}, {lb['high']:.2f}] (the calibration windows' smallest top "
                         f"logit and largest second logit, +- {lb['margin']:g}; all calibration logits "
                         f"{lb['calibration_range'][0]:.2f} to {lb['calibration_range'][1]:.2f}): int8 logit step "
                         f"{lb['step_before']:.3f} -> {lb['step_after']:.3f}")
        elif lb == "off":
            lines.append("- logits: the converter's min/max range")
        if ar and "float_agreement" in ar:
            lines.append(f"- the float copy that was converted agrees with Keras on {ar['float_agreement']:.2%} of the "
                         f"calibration tensors (max |dp| {ar['float_max_prob_diff']:.4f})")
    lines.append("- decisions: the most probable class, an exact tie (int8 outputs come in steps of 1/256) going "
                 "to the higher risk, as on the hub (edge.layout.predicted_class)")
    return "\n".join(lines) + "\n"


def convert_model(model: Any, train_tensors: np.ndarray, *, n_representative: int = 300,
                  seed: int = 0, bias_correction: bool = True, fold_pooling: bool = True,
                  activation_percentile: float = DEFAULT_ACTIVATION_PERCENTILE,
                  logit_margin: float = DEFAULT_LOGIT_MARGIN,
                  ) -> Tuple[bytes, bytes, List[Dict[str, Any]], List[str], Dict[str, Any]]:
    """Convert to float32 and int8 TFLite.

    The float32 file is the trained model as it is; the int8 file is made from
    :func:`fold_average_pooling`'s copy (with ``fold_pooling``), the same float
    function with fewer rounded tensors, with its ReLU ranges ending at
    ``activation_percentile`` (:func:`clip_activation_ranges`; 100 = the
    converter's plain min/max) and its logits bounded to the range that decides
    (:func:`bound_logit_range`, ``logit_margin``; 0 = off), then bias-corrected.

    Returns:
        ``(float_bytes, int8_bytes, bias corrections, folded layers, clipping info)``
        (empty when a step is off or did not apply); clipping info holds the
        activation ranges, ``logit_bounds`` and how the final float copy agrees
        with Keras on the calibration tensors.
    """
    rep = representative_sample(train_tensors, n_representative, seed)
    print("convert: float32 ...", file=sys.stderr, flush=True)
    float_bytes = convert_float(model)
    int8_source, folded = (fold_average_pooling(model, rep) if fold_pooling else (model, []))
    if folded:
        print(f"convert: average pooling folded into {', '.join(folded)} for int8 (same float function)",
              file=sys.stderr, flush=True)
    int8_source, clipped = clip_activation_ranges(int8_source, rep, activation_percentile)
    clip_info: Dict[str, Any] = {"percentile": float(activation_percentile), "layers": clipped}
    if clipped:
        print(f"convert: ReLU ranges end at the {activation_percentile:g}th percentile of the calibration "
              f"activations ({len(clipped)} layers)", file=sys.stderr, flush=True)
    int8_source, to_convert, bounds = bound_logit_range(int8_source, rep, logit_margin)
    clip_info["logit_bounds"] = bounds or "off"
    if bounds:
        print(f"convert: logits bounded to [{bounds['low']:.2f}, {bounds['high']:.2f}] for int8 (calibration "
              f"logits {bounds['calibration_range'][0]:.2f} to {bounds['calibration_range'][1]:.2f}; int8 step "
              f"{bounds['step_before']:.3f} -> {bounds['step_after']:.3f})", file=sys.stderr, flush=True)
    if clipped or bounds:
        keras_rep = np.asarray(model.predict(rep, batch_size=32, verbose=0))
        copy_rep = np.asarray(int8_source.predict(rep, batch_size=32, verbose=0))
        from edge.layout import predicted_class

        clip_info.update(float_agreement=float(np.mean(predicted_class(keras_rep) == predicted_class(copy_rep))),
                         float_max_prob_diff=float(np.max(np.abs(keras_rep - copy_rep))))
        print(f"convert: the float copy to be converted agrees with Keras on {clip_info['float_agreement']:.2%} "
              f"of the calibration tensors (max |dp| {clip_info['float_max_prob_diff']:.4f})",
              file=sys.stderr, flush=True)
    print(f"convert: int8 (calibrating on {len(rep)} training tensors) ...", file=sys.stderr, flush=True)
    if bias_correction:
        int8_bytes, corrections = convert_int8_bias_corrected(to_convert, rep)
    else:
        int8_bytes, corrections = convert_int8(to_convert, rep), []
    if bounds:
        int8_bytes = set_softmax_beta(int8_bytes, bounds["softmax_beta"])
    return float_bytes, int8_bytes, corrections, folded, clip_info


def int8_io(model_bytes: bytes) -> Dict[str, Any]:
    """Input/output quantization of an int8 ``.tflite``: scales, zero points, shapes, dtypes."""
    from edge.runtime import make_interpreter

    interpreter, _ = make_interpreter(model_bytes)
    d_in, d_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {"input_scale": float(d_in["quantization"][0]), "input_zero_point": int(d_in["quantization"][1]),
            "output_scale": float(d_out["quantization"][0]), "output_zero_point": int(d_out["quantization"][1]),
            "input_shape": [int(v) for v in d_in["shape"]], "output_shape": [int(v) for v in d_out["shape"]],
            "input_dtype": np.dtype(d_in["dtype"]).name, "output_dtype": np.dtype(d_out["dtype"]).name}


def convert_run(run_dir: Path, *, data_dir: Optional[Path] = None, n_representative: int = 300,
                seed: int = 0, num_threads: int = 2, progress: bool = True,
                bias_correction: bool = True, fold_pooling: bool = True,
                activation_percentile: float = DEFAULT_ACTIVATION_PERCENTILE,
                logit_margin: float = DEFAULT_LOGIT_MARGIN) -> Dict[str, Any]:
    """Convert a run folder's model and write the TFLite files and the parity report.

    Returns:
        The parity dict (also written to ``RUN/parity.json``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .data import make_tensors
    from .models import load_model

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    model = load_model(run_dir / "model.keras")
    check_int8_convertible(model)
    recipe, train, test = load_run_windows(run_dir, data_dir, progress=progress)
    print(f"convert: {len(train.windows)} training and {len(test.windows)} test windows", file=sys.stderr)
    rng = np.random.default_rng(seed)
    k = min(int(n_representative), len(train.windows))
    rep_idx = np.sort(rng.choice(len(train.windows), size=k, replace=False))
    rep_tensors = make_tensors([train.windows[i] for i in rep_idx], recipe, progress=progress)
    test_tensors = make_tensors(test.windows, recipe, progress=progress)
    float_bytes, int8_bytes, corrections, folded, clip_info = convert_model(
        model, rep_tensors, n_representative=k, seed=seed, bias_correction=bias_correction,
        fold_pooling=fold_pooling, activation_percentile=activation_percentile, logit_margin=logit_margin)
    (run_dir / FLOAT_MODEL).write_bytes(float_bytes)
    (run_dir / INT8_MODEL).write_bytes(int8_bytes)
    print("convert: Keras predictions ...", file=sys.stderr, flush=True)
    keras_probs = np.asarray(model.predict(test_tensors, batch_size=32, verbose=0), dtype=np.float32)
    float_probs = tflite_probs(float_bytes, test_tensors, num_threads=num_threads,
                               progress="tflite float32" if progress else "")
    int8_probs = tflite_probs(int8_bytes, test_tensors, num_threads=num_threads,
                              progress="tflite int8" if progress else "")
    int8_fast = tflite_probs(int8_bytes, test_tensors, num_threads=num_threads, kernels="default",
                             progress="tflite int8 xnnpack" if progress else "")
    parity = parity_report(keras_probs, float_probs, int8_probs, test.labels, int8_fast,
                           ids=getattr(test, "trial_ids", None))
    io_info = int8_io(int8_bytes)
    ops = model_ops(int8_bytes)
    parity["int8_model"] = dict(io_info, bytes=len(int8_bytes), ops=ops,
                                ops_not_on_edgetpu=[o for o in ops if o not in EDGETPU_OPS],
                                representative=int(k), seed=int(seed),
                                bias_correction=corrections if bias_correction else "off",
                                pooling_folded_into=folded if fold_pooling else "off",
                                activation_ranges=clip_info)
    parity["float_model"] = {"bytes": len(float_bytes)}
    parity["seconds"] = round(time.perf_counter() - t0, 2)
    (run_dir / PARITY_JSON).write_text(json.dumps(parity, indent=1) + "\n")
    (run_dir / PARITY_MD).write_text(parity_markdown(parity))
    return parity

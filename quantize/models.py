"""The five classifiers of the paper's Table 4, built with Keras 3.

Every model takes the same input, the ``(95, 95, 3)`` float32 image made by
:func:`edge.signal_path.tensorize`, and ends in a 3-unit softmax ``Dense``
layer (``low``, ``medium``, ``high``) whose kernel carries the L2 penalty.
Keeping one input shape for all five means any of them can be converted and
shipped in a bundle without touching the hub.

Models (see ``docs/models.md`` for padding choices and parameter counts):

* ``proposed`` -- Table 2: VGGNet-B style, 3x3 convolutions (32; 64, 64;
  128, 128) with 'valid' padding, 2x2 average pooling and dropout after each
  group, dense 1024 + batch normalization + dropout, softmax (about 8.7 M
  parameters).
* ``maxpool`` -- identical, with 2x2 max pooling.
* ``cnn_lstm`` -- DeepConvLSTM style: the image is put back into time order
  (750 steps x 36 channels) by a fixed gather whose indices come from
  :func:`edge.signal_path.unwrap_image`, so it sees exactly the values of the
  12x750x3 matrix; then 1-D convolutions over time and two LSTM layers.
* ``cnn`` -- the "simpler CNN": two convolutions, no pooling and no dense
  layer, straight into the softmax.
* ``mlp`` -- a multilayer perceptron on the flattened image.

All models are compiled with Adam (learning rate 1e-3 by default) and
categorical cross-entropy; the paper's chosen values are the defaults
(L2 1e-5, dropout 0.25). TensorFlow/Keras are imported inside the functions
so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from edge.errors import ConfigError
from edge.layout import CLASS_NAMES, IMAGE_SHAPE, N_CHANNELS, WINDOW_SAMPLES

#: Model names accepted by :func:`build_model`, in Table 4's column order.
MODEL_NAMES: Tuple[str, ...] = ("proposed", "cnn_lstm", "maxpool", "cnn", "mlp")

#: Column titles the paper uses for each model.
PAPER_TITLES: Dict[str, str] = {
    "proposed": "Proposed Model",
    "cnn_lstm": "CNN+LSTM",
    "maxpool": "VGGNet B (Max Pool)",
    "cnn": "CNN",
    "mlp": "MLP",
}

#: The paper's chosen hyperparameters (section "Hyperparameter results").
DEFAULT_L2 = 1e-5
DEFAULT_DROPOUT = 0.25
DEFAULT_LEARNING_RATE = 1e-3

#: Package under which custom layers are registered for ``model.keras`` files.
KERAS_PACKAGE = "liftguard"


def time_order_indices() -> np.ndarray:
    """Return the flat image indices that put a wrapped image back in time order.

    The index image ``arange(95*95*3).reshape(95, 95, 3)`` is passed through
    :func:`edge.signal_path.unwrap_image`, giving for every cell of the
    12x750x3 matrix the flat position it occupies in the image. Transposed to
    ``(750, 12, 3)`` and reshaped to ``(750, 36)``, column ``j`` is channel
    ``edge.layout.CHANNELS[j]`` (sensor, instrument, axis order).

    Returns:
        int32 array of shape ``(750 * 36,)``.
    """
    from edge.signal_path import unwrap_image

    n = int(np.prod(IMAGE_SHAPE))
    index_image = np.arange(n, dtype=np.float64).reshape(IMAGE_SHAPE)
    matrix = np.asarray(unwrap_image(index_image))  # (12, 750, 3)
    by_time = np.transpose(matrix, (1, 0, 2)).reshape(WINDOW_SAMPLES, N_CHANNELS)
    flat = np.rint(by_time).astype(np.int64).reshape(-1)
    if flat.min() < 0 or flat.max() >= n or len(np.unique(flat)) != flat.size:
        raise ConfigError("edge.signal_path.unwrap_image did not return a permutation of image cells; "
                          "cannot build the CNN+LSTM time-order layer")
    return flat.astype(np.int32)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter unless the user asked for it (call before importing keras)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_order_layer_class():
    """Define (once) and return the registered ``TimeOrder`` Keras layer."""
    global _TIME_ORDER_CLASS
    if _TIME_ORDER_CLASS is not None:
        return _TIME_ORDER_CLASS
    quiet_tensorflow()
    import keras

    @keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
    class TimeOrder(keras.layers.Layer):
        """Gather a ``(95, 95, 3)`` image back into ``(750, 36)`` time order.

        The indices are recomputed from :func:`edge.signal_path.unwrap_image`
        when the layer is built, so they are never stored twice.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._indices = time_order_indices()

        def call(self, inputs):  # noqa: D102 - Keras API
            flat = keras.ops.reshape(inputs, (-1, int(np.prod(IMAGE_SHAPE))))
            gathered = keras.ops.take(flat, self._indices, axis=1)
            return keras.ops.reshape(gathered, (-1, WINDOW_SAMPLES, N_CHANNELS))

        def compute_output_shape(self, input_shape):  # noqa: D102 - Keras API
            return (input_shape[0], WINDOW_SAMPLES, N_CHANNELS)

    _TIME_ORDER_CLASS = TimeOrder
    return TimeOrder


_TIME_ORDER_CLASS = None


def register_custom_objects() -> None:
    """Register LiftGuard's custom layers so ``keras.models.load_model`` finds them."""
    _time_order_layer_class()


def _vgg_b(keras, pooling: str, dropout: float, l2: float):
    """Table 2 layers with ``pooling`` ('average' or 'max')."""
    layers = keras.layers
    pool = layers.AveragePooling2D if pooling == "average" else layers.MaxPooling2D
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Conv2D(32, 3, padding="valid", activation="relu", name="conv1")(inputs)
    x = pool(2, name="pool1")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Conv2D(64, 3, padding="valid", activation="relu", name="conv2a")(x)
    x = layers.Conv2D(64, 3, padding="valid", activation="relu", name="conv2b")(x)
    x = pool(2, name="pool2")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    x = layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv3a")(x)
    x = layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv3b")(x)
    x = pool(2, name="pool3")(x)
    x = layers.Dropout(dropout, name="drop3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, activation="relu", name="fc1024")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Dropout(dropout, name="drop4")(x)
    outputs = _softmax(keras, x, l2)
    return inputs, outputs


def _softmax(keras, x, l2: float):
    """The shared output layer: 3-way softmax with L2 on its kernel."""
    return keras.layers.Dense(
        len(CLASS_NAMES), activation="softmax", name="softmax",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None,
    )(x)


def _cnn_lstm(keras, dropout: float, l2: float):
    """DeepConvLSTM-style model over the 750x36 time series."""
    layers = keras.layers
    time_order = _time_order_layer_class()
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = time_order(name="time_order")(inputs)  # (750, 36), same values as the 12x750x3 matrix
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="conv1d_a")(x)
    x = layers.Conv1D(64, 5, padding="same", activation="relu", name="conv1d_b")(x)
    x = layers.AveragePooling1D(4, name="pool_time")(x)  # 750 -> 187 steps keeps the LSTM affordable on CPU
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.LSTM(64, return_sequences=True, name="lstm_a")(x)
    x = layers.LSTM(64, return_sequences=True, name="lstm_b")(x)
    # Most of the 750 steps are the zero padding after the lift; an LSTM's last state has
    # forgotten the lift by then (a first version stuck at the class prior), so pool over time.
    x = layers.GlobalMaxPooling1D(name="pool_steps")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    return inputs, _softmax(keras, x, l2)


def _simple_cnn(keras, dropout: float, l2: float):
    """Convolutions only, then the softmax (no pooling, no dense layer)."""
    layers = keras.layers
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Conv2D(16, 3, padding="valid", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(32, 3, padding="valid", activation="relu", name="conv2")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Flatten(name="flatten")(x)
    return inputs, _softmax(keras, x, l2)


def _mlp(keras, dropout: float, l2: float):
    """Two hidden fully connected layers on the flattened image."""
    layers = keras.layers
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(128, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Dense(64, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    return inputs, _softmax(keras, x, l2)


def build_model(name: str, *, l2: float = DEFAULT_L2, dropout: float = DEFAULT_DROPOUT,
                learning_rate: float = DEFAULT_LEARNING_RATE, seed: Optional[int] = None):
    """Build and compile one of the five models.

    Args:
        name: One of :data:`MODEL_NAMES`.
        l2: L2 weight on the softmax kernel (the paper's lambda).
        dropout: Dropout rate of every dropout layer, 0 <= rate < 1.
        learning_rate: Adam learning rate (the paper's alpha).
        seed: If given, ``keras.utils.set_random_seed(seed)`` is called first so
            the initial weights are reproducible.

    Returns:
        A compiled ``keras.Model`` with input ``(None, 95, 95, 3)`` and output
        ``(None, 3)``.

    Raises:
        ConfigError: On an unknown name or an out-of-range hyperparameter.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"model {name!r} is not known; expected one of {', '.join(MODEL_NAMES)}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout {dropout!r} is out of range; expected 0 <= dropout < 1")
    if float(l2) < 0:
        raise ConfigError(f"l2 {l2!r} is negative; expected >= 0")
    if not float(learning_rate) > 0:
        raise ConfigError(f"learning rate {learning_rate!r} must be > 0")
    quiet_tensorflow()
    import keras

    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    builders = {
        "proposed": lambda: _vgg_b(keras, "average", dropout, l2),
        "maxpool": lambda: _vgg_b(keras, "max", dropout, l2),
        "cnn_lstm": lambda: _cnn_lstm(keras, dropout, l2),
        "cnn": lambda: _simple_cnn(keras, dropout, l2),
        "mlp": lambda: _mlp(keras, dropout, l2),
    }
    inputs, outputs = builders[name]()
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def load_model(path):
    """Load a ``model.keras`` written by ``quantize train`` (registers custom layers first).

    Raises:
        ConfigError: If the file is missing or is not a Keras model.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file; expected a model.keras written by 'quantize train'")
    quiet_tensorflow()
    import keras

    register_custom_objects()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many kinds
        raise ConfigError(f"{path}: cannot load as a Keras model: {exc}") from None


def describe_models() -> Dict[str, int]:
    """Return the parameter count of each model (used for docs/models.md)."""
    return {name: int(build_model(name, seed=0).count_params()) for name in MODEL_NAMES}

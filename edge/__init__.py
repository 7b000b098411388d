"""LiftGuard edge: everything that runs on the belt hub.

This package is the one home of the sensor layout (:mod:`edge.layout`), the
data set format (:mod:`edge.dataset`) and every step from raw samples to model
input (:mod:`edge.signal_path`). Training imports them; nothing is written
twice. It needs numpy and, for the hub's links and model, pyserial, bleak,
a TFLite interpreter and gpiozero — never TensorFlow.
"""

from .errors import LiftGuardError
from .layout import (
    CHANNELS,
    CLASS_NAMES,
    IMAGE_SHAPE,
    SAMPLE_RATE_HZ,
    SENSORS,
    TIME_COLUMN,
    WINDOW_SAMPLES,
    ZONE_RISK,
    risk_of_zone,
)
from .signal_path import (
    TensorRecipe,
    cut_lift,
    tensorize,
    tensorize_batch,
    unwrap_image,
    wrap_to_image,
)

__version__ = "0.1.0"

__all__ = [
    "CHANNELS",
    "CLASS_NAMES",
    "IMAGE_SHAPE",
    "LiftGuardError",
    "SAMPLE_RATE_HZ",
    "SENSORS",
    "TIME_COLUMN",
    "TensorRecipe",
    "WINDOW_SAMPLES",
    "ZONE_RISK",
    "cut_lift",
    "risk_of_zone",
    "tensorize",
    "tensorize_batch",
    "unwrap_image",
    "wrap_to_image",
]

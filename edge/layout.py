"""The sensor layout, zones and class names: the one home of these constants.

Everything that names a channel, a zone or a class imports it from here:
the simulator, the data set reader and writer, training, the bundle manifest
and the hub. The column order is the NIOSH authors' layout::

    {Side,LtWt,RtWt,Back,UArm,Thig}_{A,G}_{x,y,z}, then Time_stp

Units: accelerometer in g, gyroscope in deg/s, ``Time_stp`` in Unix seconds.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: The six IMU sites, in the authors' column order.
SENSORS: Tuple[str, ...] = ("Side", "LtWt", "RtWt", "Back", "UArm", "Thig")

#: Human-readable body site of each sensor.
SENSOR_SITES: Dict[str, str] = {
    "Side": "waist, dominant side",
    "LtWt": "left wrist",
    "RtWt": "right wrist",
    "Back": "upper back at T12",
    "UArm": "dominant upper arm",
    "Thig": "dominant thigh",
}

#: The two instruments of each IMU: accelerometer then gyroscope.
KINDS: Tuple[str, ...] = ("A", "G")

#: Axes, in order.
AXES: Tuple[str, ...] = ("x", "y", "z")

#: Units of each instrument.
UNITS: Dict[str, str] = {"A": "g", "G": "deg/s"}

#: The 36 data columns, in order.
CHANNELS: Tuple[str, ...] = tuple(
    f"{s}_{k}_{a}" for s in SENSORS for k in KINDS for a in AXES
)

#: The timestamp column that follows the 36 data columns.
TIME_COLUMN = "Time_stp"

#: Full header of a trial CSV.
CSV_COLUMNS: Tuple[str, ...] = CHANNELS + (TIME_COLUMN,)

N_CHANNELS = len(CHANNELS)  # 36
N_ROWS = len(SENSORS) * len(KINDS)  # 12 rows of the 12x750x3 matrix
N_DEPTH = len(AXES)  # 3

#: Sample rate of every IMU stream and of every trial, Hz.
SAMPLE_RATE_HZ = 25.0

#: Window length in samples (30 s at 25 Hz).
WINDOW_SAMPLES = 750

#: Side of the square image the window is wrapped into.
IMAGE_SIDE = 95

#: Model input shape.
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, N_DEPTH)

#: Class names in model output order.
CLASS_NAMES: Tuple[str, ...] = ("low", "medium", "high")

def predicted_class(probs):
    """The class a model output decides: the most probable one, ties to the higher risk.

    An int8 model's probabilities come in steps of 1/256, so two classes can
    come out exactly equal where the float model separated them by less than
    a step. The hub cannot tell which is larger, and for a lift-risk alert the
    safe reading of such a tie is the riskier class (``CLASS_NAMES`` runs from
    low to high risk). Float outputs practically never tie, so for them this
    is plain argmax. Training, evaluation, the parity report, ``edge classify``
    and the hub all decide with this one function.

    Args:
        probs: Class probabilities ``(classes,)`` or a batch ``(n, classes)``.

    Returns:
        The class index (int) for one output, an int array for a batch.
    """
    import numpy as np

    p = np.asarray(probs)
    flipped = np.argmax(p[..., ::-1], axis=-1)  # the last of the maxima = the highest risk among ties
    index = p.shape[-1] - 1 - flipped
    return int(index) if np.ndim(index) == 0 else index.astype(np.int64)


#: ACGIH zones 1..12, numbered by row from the top (shoulder, knuckle-shoulder,
#: mid-shin-knuckle, floor-mid-shin), close to extended within a row.
ZONES: Tuple[int, ...] = tuple(range(1, 13))

#: Table 1 of the paper: zone number to risk name.
ZONE_RISK: Dict[int, str] = {
    **{z: "low" for z in (4, 5)},
    **{z: "medium" for z in (6, 7, 8, 9)},
    **{z: "high" for z in (1, 2, 3, 10, 11, 12)},
}

#: Full-scale ranges assumed by the int16 wire formats.
ACCEL_FULL_SCALE_G = 16.0
GYRO_FULL_SCALE_DPS = 2000.0


def risk_of_zone(zone: int) -> str:
    """Return the risk name of an ACGIH zone (Table 1).

    Args:
        zone: Zone number, 1 to 12.

    Returns:
        ``"low"``, ``"medium"`` or ``"high"``.

    Raises:
        DataError: If ``zone`` is not 1 to 12.
    """
    from .errors import DataError

    try:
        return ZONE_RISK[int(zone)]
    except (KeyError, ValueError, TypeError):
        raise DataError(f"zone {zone!r} is not an ACGIH zone; expected an integer 1 to 12") from None


def class_index(risk: str) -> int:
    """Return the model output index of a risk name.

    Raises:
        DataError: If ``risk`` is not one of :data:`CLASS_NAMES`.
    """
    from .errors import DataError

    try:
        return CLASS_NAMES.index(risk)
    except ValueError:
        raise DataError(f"risk {risk!r} is not a class; expected one of {', '.join(CLASS_NAMES)}") from None


def channel_index(sensor: str, kind: str, axis: str) -> int:
    """Return the column index of ``{sensor}_{kind}_{axis}`` within :data:`CHANNELS`."""
    return CHANNELS.index(f"{sensor}_{kind}_{axis}")

"""Sensor placement, ideal IMU physics, hardware errors and decimation (spec §6-§7).

Pipeline for one recording (all numpy, vectorised over time and sensors):

1. Forward kinematics at 100 Hz give each sensor's position ``p`` and
   sensor-to-world rotation ``R`` (:func:`sensor_kinematics`).
2. ``a_W`` is the central second difference of ``p``; specific force
   ``f_s = R^T (a_W - g_W)``; angular rate ``omega_s = vee(R_k^T R_{k+2}) / (2 dt)``
   (:func:`ideal_imu`). Band-energy artefacts are added here (world-frame
   accelerations, sensor-frame rates).
3. Each sensor's clock offset shifts its signal in time.
4. A 41-tap Hamming-windowed sinc low-pass at 10 Hz, then every 4th sample:
   25 Hz (:func:`decimate`).
5. Per-sensor bias, scale and cross-axis, white noise, 16-bit quantisation at
   +-8 g / +-2000 deg/s, and dropouts that repeat the last value
   (:func:`apply_hardware`). Units: g and deg/s.

Sensors follow :data:`edge.layout.SENSORS` (Side = waist, LtWt, RtWt,
Back = T12, UArm, Thig). The sensor frame: ``z_s`` the outward skin normal,
``x_s`` as in the spec (Back and Side up, wrists distal, UArm and Thig
proximal), ``y_s = z_s x x_s``.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from edge.layout import SENSORS

from .body import BodyDims, Frames, rot_x, rot_y, rot_z
from .options import SimOptions

G = 9.80665
G_WORLD = np.array([0.0, 0.0, -G])
SYNTH_RATE_HZ = 100.0
DECIMATION = 4
ACCEL_RANGE_G = 8.0
GYRO_RANGE_DPS = 2000.0
ACCEL_LSB_G = 2 * ACCEL_RANGE_G / 65536
GYRO_LSB_DPS = 2 * GYRO_RANGE_DPS / 65536
#: White-noise densities (BMI160 class, spec §7).
ACCEL_NOISE_G_PER_RTHZ = 180e-6
GYRO_NOISE_DPS_PER_RTHZ = 0.008


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a sensor sits.

    Attributes:
        sensor: Layout name (``Side``, ``LtWt``, ...).
        segment: Segment frame it is strapped to.
        offset: Position in the segment frame, m.
        axes: ``(3, 3)`` sensor-to-segment rotation (columns x_s, y_s, z_s).
        along: Unit vector of the segment's long axis in the segment frame
            (mount position errors move the sensor along it).
    """

    sensor: str
    segment: str
    offset: np.ndarray
    axes: np.ndarray
    along: np.ndarray


def _axes(x_s, z_s) -> np.ndarray:
    x_s = np.asarray(x_s, dtype=np.float64)
    z_s = np.asarray(z_s, dtype=np.float64)
    return np.column_stack([x_s, np.cross(z_s, x_s), z_s])


def placements(dims: BodyDims, dominant: str = "r") -> List[Placement]:
    """Nominal sensor placements (spec §6) for a right- or left-dominant subject.

    Lateral offsets of limb sensors are measured from the segment's axis; the
    waist offset from the midline. Positions are [E].
    """
    side = 1.0 if dominant == "l" else -1.0
    H = dims.stature
    up, down = np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])
    out = {
        "Side": Placement("Side", "pelvis", np.array([0.0, side * 0.16, 0.06 * H]), _axes(up, [0, side, 0]), up),
        "LtWt": Placement("LtWt", "forearm_l", np.array([0.0, 0.02, -0.95 * dims.forearm]),
                          _axes(down, [0, 1, 0]), down),
        "RtWt": Placement("RtWt", "forearm_r", np.array([0.0, -0.02, -0.95 * dims.forearm]),
                          _axes(down, [0, -1, 0]), down),
        "Back": Placement("Back", "thorax", np.array([-0.10, 0.0, 0.03 * H]), _axes(up, [-1, 0, 0]), up),
        "UArm": Placement("UArm", f"upper_arm_{dominant}", np.array([0.0, side * 0.05, -0.5 * dims.upper_arm]),
                          _axes(up, [0, side, 0]), down),
        "Thig": Placement("Thig", "thigh", np.array([0.0, side * 0.12, 0.5 * dims.thigh]),
                          _axes(up, [0, side, 0]), up),
    }
    return [out[s] for s in SENSORS]


@dataclasses.dataclass(frozen=True)
class HardwareErrors:
    """One subject's sensor imperfections (per sensor, spec §7).

    Attributes:
        accel_matrix, gyro_matrix: ``(6, 3, 3)`` scale + cross-axis matrices.
        accel_bias: ``(6, 3)`` g. gyro_bias: ``(6, 3)`` deg/s.
        mount_rotation: ``(6, 3, 3)`` mounting error in the sensor frame.
        mount_shift: ``(6,)`` m along the segment.
        clock_offset_s: ``(6,)`` s.
    """

    accel_matrix: np.ndarray
    accel_bias: np.ndarray
    gyro_matrix: np.ndarray
    gyro_bias: np.ndarray
    mount_rotation: np.ndarray
    mount_shift: np.ndarray
    clock_offset_s: np.ndarray


def draw_hardware_errors(rng: np.random.Generator, options: SimOptions) -> HardwareErrors:
    """Draw a subject's sensor errors (spec §7); mounting spreads scale with kappa."""
    n = len(SENSORS)
    on = 1.0 if options.sensor_errors else 0.0

    def affine(cross_sd: float, scale_sd: float) -> np.ndarray:
        m = np.eye(3) + on * rng.normal(0.0, cross_sd, (n, 3, 3))
        idx = np.arange(3)
        m[:, idx, idx] = 1.0 + on * rng.normal(0.0, scale_sd, (n, 3))
        return m

    accel_matrix = affine(0.01, 0.01)
    accel_bias = on * rng.normal(0.0, 0.040, (n, 3))
    gyro_matrix = affine(0.01, 0.01)
    gyro_bias = on * rng.normal(0.0, 1.0, (n, 3))
    trunk = np.array([s in ("Back", "Side", "Thig") for s in SENSORS])
    # per sensor; an array scale draws the same normals as the former scalar one
    m = options.mount_error_scale * options.difficulty * np.where(trunk, options.trunk_mount_scale, 1.0)
    d = np.pi / 180.0
    rx = rng.normal(0.0, 5.0 * d * m, n)
    ry = rng.normal(0.0, 5.0 * d * m, n)
    rz = rng.normal(0.0, 10.0 * d * m, n)
    wrist = np.array([s in ("LtWt", "RtWt") for s in SENSORS])
    rx = rx + wrist * rng.normal(0.0, 10.0 * d * m, n)  # extra wrist roll about the long axis x_s
    mount_rotation = rot_z(rz) @ rot_y(ry) @ rot_x(rx)
    mount_shift = rng.normal(0.0, 0.02 * m, n)
    clock = rng.normal(0.0, options.clock_offset_ms / 1000.0, n)
    return HardwareErrors(accel_matrix, accel_bias, gyro_matrix, gyro_bias, mount_rotation, mount_shift, clock)


def sensor_kinematics(frames: Frames, places: List[Placement],
                      errors: Optional[HardwareErrors] = None) -> Tuple[np.ndarray, np.ndarray]:
    """World position ``(T, 6, 3)`` and sensor-to-world rotation ``(T, 6, 3, 3)`` of every sensor."""
    T = next(iter(frames.origin.values())).shape[0]
    pos = np.empty((T, len(places), 3))
    rot = np.empty((T, len(places), 3, 3))
    for i, pl in enumerate(places):
        R_seg = frames.rotation[pl.segment]
        offset = pl.offset
        axes = pl.axes
        if errors is not None:
            offset = offset + errors.mount_shift[i] * pl.along
            axes = axes @ errors.mount_rotation[i]
        pos[:, i] = frames.origin[pl.segment] + R_seg @ offset
        rot[:, i] = R_seg @ axes
    return pos, rot


def second_difference(p: np.ndarray, dt: float) -> np.ndarray:
    """Central second difference along axis 0 (ends copy their neighbours)."""
    a = np.empty_like(p)
    a[1:-1] = (p[2:] - 2 * p[1:-1] + p[:-2]) / (dt * dt)
    a[0] = a[1]
    a[-1] = a[-2]
    return a


def angular_rate(rot: np.ndarray, dt: float) -> np.ndarray:
    """Body-frame angular rate (rad/s) ``vee(R_k^T R_{k+2}) / (2 dt)`` along axis 0."""
    M = np.einsum("t...ji,t...jk->t...ik", rot[:-2], rot[2:])
    v = 0.5 * np.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    # vee of the skew part is sin(angle) * axis; recover the angle for accuracy.
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    c = 0.5 * (np.trace(M, axis1=-2, axis2=-1)[..., None] - 1.0)
    ang = np.arctan2(s, c)
    w = np.where(s > 1e-15, v * ang / np.where(s > 1e-15, s, 1.0), v) / (2 * dt)
    out = np.empty(rot.shape[:-1])
    out[1:-1] = w
    out[0] = w[0]
    out[-1] = w[-1]
    return out


def ideal_imu(pos: np.ndarray, rot: np.ndarray, rate_hz: float = SYNTH_RATE_HZ,
              extra_accel_world: Optional[np.ndarray] = None,
              extra_gyro_sensor: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Specific force (g) and angular rate (deg/s) in each sensor frame.

    Args:
        pos: ``(T, S, 3)`` sensor positions, m.
        rot: ``(T, S, 3, 3)`` sensor-to-world rotations.
        rate_hz: Sample rate.
        extra_accel_world: ``(T, S, 3)`` m/s^2 added to the kinematic
            acceleration (artefacts), or None.
        extra_gyro_sensor: ``(T, S, 3)`` deg/s added in the sensor frame, or None.

    Returns:
        ``(accel_g, gyro_dps, linear_accel_world)`` with shapes ``(T, S, 3)``.
    """
    dt = 1.0 / rate_hz
    a_w = second_difference(pos, dt)
    if extra_accel_world is not None:
        a_w = a_w + extra_accel_world
    f_s = np.einsum("tsji,tsj->tsi", rot, a_w - G_WORLD) / G
    w = np.degrees(angular_rate(rot, dt))
    if extra_gyro_sensor is not None:
        w = w + extra_gyro_sensor
    return f_s, w, a_w


def lowpass_taps(n_taps: int = 41, cutoff_hz: float = 10.0, rate_hz: float = SYNTH_RATE_HZ) -> np.ndarray:
    """Hamming-windowed sinc low-pass, unit DC gain."""
    k = np.arange(n_taps) - (n_taps - 1) / 2.0
    h = 2 * cutoff_hz / rate_hz * np.sinc(2 * cutoff_hz / rate_hz * k) * np.hamming(n_taps)
    return h / h.sum()


_TAPS = lowpass_taps()


def decimate(x: np.ndarray, factor: int = DECIMATION, taps: np.ndarray = _TAPS) -> np.ndarray:
    """Low-pass (zero phase, edge-padded) and keep every ``factor``-th sample along axis 0."""
    half = (len(taps) - 1) // 2
    pad = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)], 0)
    win = np.lib.stride_tricks.sliding_window_view(pad, len(taps), axis=0)[::factor]
    return win @ taps


def time_shift(x: np.ndarray, shift_s: np.ndarray, rate_hz: float = SYNTH_RATE_HZ) -> np.ndarray:
    """Resample each sensor's signal at ``t + shift`` (linear, ends held).

    Args:
        x: ``(T, S, C)`` signals.
        shift_s: ``(S,)`` seconds; positive means the sensor's clock runs ahead.
    """
    T = x.shape[0]
    t = np.arange(T, dtype=np.float64)
    out = np.empty_like(x)
    for s in range(x.shape[1]):
        q = np.clip(t + shift_s[s] * rate_hz, 0, T - 1)
        i0 = np.floor(q).astype(np.int64)
        i1 = np.minimum(i0 + 1, T - 1)
        frac = (q - i0)[:, None]
        out[:, s] = x[i0, s] * (1 - frac) + x[i1, s] * frac
    return out


def apply_hardware(accel: np.ndarray, gyro: np.ndarray, errors: HardwareErrors, rng: np.random.Generator,
                   options: SimOptions, rate_hz: float = SYNTH_RATE_HZ / DECIMATION) -> np.ndarray:
    """Sensor errors, quantisation and dropouts on 25 Hz signals.

    Args:
        accel: ``(n, 6, 3)`` g. gyro: ``(n, 6, 3)`` deg/s.

    Returns:
        ``(n, 36)`` in :data:`edge.layout.CHANNELS` order.
    """
    n = accel.shape[0]
    a = np.einsum("sij,tsj->tsi", errors.accel_matrix, accel) + errors.accel_bias
    g = np.einsum("sij,tsj->tsi", errors.gyro_matrix, gyro) + errors.gyro_bias
    if options.sensor_errors:
        bw = np.sqrt(rate_hz / 2.0)
        a = a + rng.normal(0.0, ACCEL_NOISE_G_PER_RTHZ * bw, a.shape)
        g = g + rng.normal(0.0, GYRO_NOISE_DPS_PER_RTHZ * bw, g.shape)
        a = np.clip(np.round(a / ACCEL_LSB_G), -32768, 32767) * ACCEL_LSB_G
        g = np.clip(np.round(g / GYRO_LSB_DPS), -32768, 32767) * GYRO_LSB_DPS
    out = np.concatenate([a, g], axis=2)  # (n, 6, 6): A xyz, G xyz per sensor
    if options.dropout_rate > 0 and n > 1:
        out = apply_dropouts(out, rng, options.dropout_rate, options.dropout_mean_ms / 1000.0 * rate_hz)
    return out.reshape(n, -1)


def apply_dropouts(x: np.ndarray, rng: np.random.Generator, rate: float, mean_samples: float) -> np.ndarray:
    """Hold each sensor's last value during randomly started dropouts.

    Args:
        x: ``(n, S, C)``.
        rate: Per-sample probability that a dropout starts on a sensor.
        mean_samples: Mean dropout length in samples (exponential, >= 1).
    """
    n, S = x.shape[:2]
    x = x.copy()
    starts = rng.random((n, S)) < rate
    starts[0] = False
    for t, s in zip(*np.nonzero(starts)):
        length = max(1, int(round(rng.exponential(max(mean_samples, 1e-9)))))
        x[t:t + length, s] = x[t - 1, s]
    return x


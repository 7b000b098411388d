"""Energy in the 2-12 Hz band: transients, heel strikes, tremor, soft tissue (issue item 4).

A smooth minimum-jerk movement has almost no power above 2 Hz, so the
paper's 2-12 Hz band-pass would see little of it. Real lifts carry band
energy from events and tissues; this module adds them at the synthesis rate
(100 Hz, before the anti-alias filter):

* Damped-sinusoid transients (world-frame acceleration plus sensor-frame
  rate) at hand events (``grasp``, ``liftoff``, ``place``) and foot contacts
  (``heel``), with per-sensor peak amplitudes in :data:`TRANSIENTS`.
* Physiological tremor: narrow-band noise around a subject's tremor
  frequency (6-11 Hz), strongest at the wrists, x1.5 while holding the load.
* Soft-tissue motion: 1-8 Hz band noise whose RMS grows with the sensor's
  linear acceleration and angular rate (spec §7), x1.5 on arms and wrists,
  x BMI/25 on the waist and thigh.

Amplitudes and their sources are tabulated in ``docs/simulator.md``; most are
engineering estimates [E] anchored on published ranges.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from edge.layout import SENSORS

from .sensors import G

#: kind -> (accel peak, g, per sensor; gyro peak, deg/s, per sensor; frequency range Hz; decay s).
#: Sensor order: Side, LtWt, RtWt, Back, UArm, Thig.
TRANSIENTS: Dict[str, Tuple[Sequence[float], Sequence[float], Tuple[float, float], float]] = {
    "grasp": ([0.02, 0.25, 0.25, 0.02, 0.08, 0.01], [2, 30, 30, 2, 8, 1], (5.0, 9.0), 0.06),
    "liftoff": ([0.03, 0.15, 0.15, 0.03, 0.06, 0.02], [2, 15, 15, 2, 6, 1], (4.0, 8.0), 0.08),
    "place": ([0.03, 0.35, 0.35, 0.04, 0.12, 0.02], [3, 40, 40, 3, 12, 2], (6.0, 10.0), 0.05),
    "heel": ([0.45, 0.25, 0.25, 0.35, 0.20, 0.60], [8, 15, 15, 6, 10, 20], (7.0, 11.0), 0.03),
}
#: Tremor RMS per axis: accel g and gyro deg/s per sensor.
TREMOR_ACCEL_G = np.array([0.001, 0.004, 0.004, 0.0015, 0.002, 0.001])
TREMOR_GYRO_DPS = np.array([0.1, 0.8, 0.8, 0.15, 0.4, 0.1])
#: Resting floor of the soft-tissue artefact (per axis RMS) [E].
SOFT_TISSUE_FLOOR_G = 0.002
SOFT_TISSUE_FLOOR_DPS = 0.2
#: Soft-tissue factors per sensor (arms x1.5; waist and thigh x BMI/25 at run time).
_ARMS = np.array([s in ("LtWt", "RtWt", "UArm") for s in SENSORS])
_FAT = np.array([s in ("Side", "Thig") for s in SENSORS])


def band_noise(n: int, rate_hz: float, lo_hz: float, hi_hz: float, rng: np.random.Generator,
               shape: Tuple[int, ...] = ()) -> np.ndarray:
    """Gaussian noise band-limited to ``[lo_hz, hi_hz]`` with unit RMS, shape ``(n,) + shape``."""
    if n < 4:
        return np.zeros((n,) + shape)
    spec = np.fft.rfft(rng.standard_normal((n,) + shape), axis=0)
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    mask = ((f >= lo_hz) & (f <= hi_hz)).astype(np.float64)
    x = np.fft.irfft(spec * mask.reshape((-1,) + (1,) * len(shape)), n=n, axis=0)
    rms = np.sqrt(np.mean(x ** 2, axis=0, keepdims=True))
    return x / np.where(rms > 0, rms, 1.0)


def transients(n: int, rate_hz: float, events: Iterable[Tuple[str, int, float]], rng: np.random.Generator,
               rot: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Damped-sinusoid bursts at events.

    Args:
        n: Number of samples.
        rate_hz: Sample rate.
        events: ``(kind, sample index, amplitude factor)``.
        rng: Random generator.
        rot: ``(n, 6, 3, 3)`` sensor-to-world rotations (hand bursts act
            along the sensor's own axes, mostly the skin normal).

    Returns:
        ``(accel_world m/s^2, gyro_sensor deg/s)``, each ``(n, 6, 3)``.
    """
    acc = np.zeros((n, len(SENSORS), 3))
    gyr = np.zeros((n, len(SENSORS), 3))
    for kind, idx, factor in events:
        a_peak, g_peak, (f_lo, f_hi), tau = TRANSIENTS[kind]
        length = min(n - idx, int(6 * tau * rate_hz) + 1)
        if idx < 0 or length <= 0:
            continue
        t = np.arange(length) / rate_hz
        for s in range(len(SENSORS)):
            f = rng.uniform(f_lo, f_hi)
            amp = factor * rng.lognormal(0.0, 0.3)
            wave = np.exp(-t / tau) * np.sin(2 * np.pi * f * t)
            if kind == "heel":
                d_world = np.array([0.0, 0.0, 1.0]) + 0.3 * rng.standard_normal(3)
                d_world /= np.linalg.norm(d_world)
            else:
                d_sensor = np.array([0.3, 0.3, 1.0]) * rng.standard_normal(3)
                d_sensor /= max(np.linalg.norm(d_sensor), 1e-9)
                d_world = rot[idx, s] @ d_sensor
            acc[idx:idx + length, s] += np.outer(wave, d_world) * (a_peak[s] * G * amp)
            axis = rng.standard_normal(3)
            axis /= max(np.linalg.norm(axis), 1e-9)
            gyr[idx:idx + length, s] += np.outer(wave, axis) * (g_peak[s] * amp)
    return acc, gyr


def tremor(n: int, rate_hz: float, rng: np.random.Generator, centre_hz: float,
           loaded: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Physiological tremor: ``(accel g, gyro deg/s)`` in sensor frames, each ``(n, 6, 3)``."""
    lo, hi = max(centre_hz - 1.5, 4.0), min(centre_hz + 1.5, rate_hz / 2 - 1)
    env = np.ones(n) if loaded is None else 1.0 + 0.5 * loaded.astype(np.float64)
    a = band_noise(n, rate_hz, lo, hi, rng, (len(SENSORS), 3)) * TREMOR_ACCEL_G[None, :, None]
    g = band_noise(n, rate_hz, lo, hi, rng, (len(SENSORS), 3)) * TREMOR_GYRO_DPS[None, :, None]
    return a * env[:, None, None], g * env[:, None, None]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.ones(width) / width
    pad = np.concatenate([np.repeat(x[:1], width, 0), x, np.repeat(x[-1:], width, 0)], 0)
    c = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 0, pad)
    return c[width:-width]


def soft_tissue(lin_acc_world: np.ndarray, gyro_dps: np.ndarray, rate_hz: float, rng: np.random.Generator,
                bmi: float) -> Tuple[np.ndarray, np.ndarray]:
    """Soft-tissue artefact: 1-8 Hz noise, ``(accel g, gyro deg/s)`` each ``(n, 6, 3)``.

    RMS per axis: accel 0.002 g + 0.05 |linear acceleration|, gyro 0.2 deg/s
    + 0.03 |omega|, with the envelope smoothed over 0.2 s. The spec's resting
    floor (0.01 g, 0.5 deg/s) is lowered: at rest the skin is driven only by
    sway and tremor, and 0.01 g RMS on the waist would exceed the modal
    postural tremor of the hand itself (0.01 g peak, Arch Neurol 1982 normative study).
    """
    n = lin_acc_world.shape[0]
    w = int(0.2 * rate_hz)
    amag = _smooth(np.linalg.norm(lin_acc_world, axis=2) / G, w)
    wmag = _smooth(np.linalg.norm(gyro_dps, axis=2), w)
    factor = np.where(_ARMS, 1.5, 1.0) * np.where(_FAT, bmi / 25.0, 1.0)
    a_env = (SOFT_TISSUE_FLOOR_G + 0.05 * amag) * factor
    g_env = (SOFT_TISSUE_FLOOR_DPS + 0.03 * wmag) * factor
    a = band_noise(n, rate_hz, 1.0, 8.0, rng, (len(SENSORS), 3)) * a_env[:, :, None]
    g = band_noise(n, rate_hz, 1.0, 8.0, rng, (len(SENSORS), 3)) * g_env[:, :, None]
    return a, g

"""Pose tracks: minimum-jerk transitions between keyframes, holds and sway (spec §5).

A :class:`Track` is built chunk by chunk at the synthesis rate (100 Hz):
``hold`` keeps the current pose, ``move`` runs a quintic minimum-jerk
transition of every degree of freedom to new values (each DOF may start late
by an onset lag, and still arrives at the end of the chunk), ``append`` takes
precomputed arrays (walking). Named events mark sample indices. ``render``
concatenates the chunks into one array per degree of freedom.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .body import DOF_NAMES

#: Onset lag of each DOF as a fraction of the transition time (spec §5, [E]).
ONSET_LAGS: Dict[str, float] = {
    "phi_s": 0.0, "theta_k": 0.0, "root_x": 0.0, "root_y": 0.0, "root_z": 0.0, "yaw": 0.0,
    "psi_u_l": 0.04, "psi_u_r": 0.04, "theta_e_l": 0.06, "theta_e_r": 0.06,
    "phi_x": 0.08, "beta": 0.08, "gamma": 0.08, "pron_l": 0.10, "pron_r": 0.10,
}


def minimum_jerk(tau: np.ndarray) -> np.ndarray:
    """Quintic minimum-jerk profile ``10 t^3 - 15 t^4 + 6 t^5`` on clipped ``tau`` in [0, 1]."""
    t = np.clip(tau, 0.0, 1.0)
    return t ** 3 * (10.0 - 15.0 * t + 6.0 * t * t)


def transition_time(delta_max_deg: float, speed_subject: float, speed_trial: float,
                    rng: np.random.Generator) -> float:
    """Transition duration (s): ``v_s v_t (0.9 + 0.008 * delta_max) LN(0, 0.08)`` (spec §5)."""
    return float(speed_subject * speed_trial * (0.9 + 0.008 * delta_max_deg) * rng.lognormal(0.0, 0.08))


class Track:
    """Degree-of-freedom tracks built chunk by chunk.

    Args:
        start: Initial value of every DOF (missing names are 0).
        rate_hz: Sample rate of the track.
    """

    def __init__(self, start: Mapping[str, float], rate_hz: float = 100.0) -> None:
        self.rate_hz = float(rate_hz)
        self.state: Dict[str, float] = {k: float(start.get(k, 0.0)) for k in DOF_NAMES}
        self._chunks: Dict[str, List[np.ndarray]] = {k: [] for k in DOF_NAMES}
        self.n = 0
        self.events: List[Tuple[str, int]] = []

    def samples(self, seconds: float) -> int:
        """Number of samples (at least 1) for a duration."""
        return max(1, int(round(seconds * self.rate_hz)))

    def mark(self, name: str, index: Optional[int] = None) -> int:
        """Record event ``name`` at ``index`` (default: the next sample)."""
        idx = self.n if index is None else int(index)
        self.events.append((name, idx))
        return idx

    def event(self, name: str) -> int:
        """Sample index of the last event called ``name``."""
        for n, i in reversed(self.events):
            if n == name:
                return i
        raise KeyError(name)

    def hold(self, seconds: float) -> None:
        """Keep the current pose for ``seconds``."""
        n = self.samples(seconds)
        for k in DOF_NAMES:
            self._chunks[k].append(np.full(n, self.state[k]))
        self.n += n

    def move(self, target: Mapping[str, float], seconds: float, lags: Mapping[str, float] = ONSET_LAGS) -> None:
        """Minimum-jerk transition of the DOFs in ``target``; others hold.

        Each DOF starts ``lag * seconds`` late and arrives at the chunk's end.
        """
        n = self.samples(seconds)
        tau = np.arange(1, n + 1) / n
        for k in DOF_NAMES:
            v0 = self.state[k]
            if k in target:
                lag = float(lags.get(k, 0.0))
                s = minimum_jerk((tau - lag) / (1.0 - lag))
                v1 = float(target[k])
                self._chunks[k].append(v0 + (v1 - v0) * s)
                self.state[k] = v1
            else:
                self._chunks[k].append(np.full(n, v0))
        self.n += n

    def append(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Append precomputed arrays (all the same length); missing DOFs hold."""
        n = len(next(iter(arrays.values())))
        for k in DOF_NAMES:
            if k in arrays:
                a = np.asarray(arrays[k], dtype=np.float64)
                if a.shape != (n,):
                    raise ValueError(f"DOF {k} has shape {a.shape}; expected ({n},)")
                self._chunks[k].append(a)
                self.state[k] = float(a[-1])
            else:
                self._chunks[k].append(np.full(n, self.state[k]))
        self.n += n

    def render(self) -> Dict[str, np.ndarray]:
        """Concatenate the chunks: DOF name -> array ``(n,)``."""
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self._chunks.items()}


def smooth_noise(n: int, rate_hz: float, rms: float, rng: np.random.Generator,
                 corner_hz: float = 0.5) -> np.ndarray:
    """Hann-smoothed Gaussian noise with a given RMS (sway; spec §5).

    The Hann window spans ``1 / corner_hz`` seconds, so the noise has little
    power above about ``2 * corner_hz``.
    """
    if rms <= 0 or n == 0:
        return np.zeros(n)
    width = max(3, int(round(rate_hz / corner_hz)))
    win = np.hanning(width)
    raw = rng.standard_normal(n + width)
    sm = np.convolve(raw, win / win.sum(), mode="same")[width // 2: width // 2 + n]
    sd = sm.std()
    return sm * (rms / sd) if sd > 0 else sm


def add_sway(dofs: Dict[str, np.ndarray], rate_hz: float, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Add postural sway in place: RMS thorax 0.5 deg, shank 0.3, lateral bend 2, axial rotation 3.

    The spec's ~0.5 Hz sway is realised with a 4 s Hann window (0.25 Hz
    corner): with a 2 s window the 3 deg axial rotation alone gives ~9 deg/s
    RMS trunk rate at rest, several times what standing subjects show [E].
    """
    n = len(dofs["phi_x"])
    for name, deg in (("phi_x", 0.5), ("phi_s", 0.3), ("beta", 2.0), ("gamma", 3.0)):
        dofs[name] = dofs[name] + smooth_noise(n, rate_hz, np.radians(deg) * scale, rng, corner_hz=0.25)

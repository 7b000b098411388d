"""Whole-shift streams: a worker standing, walking, turning, bending, reaching and lifting.

One continuous recording at 25 Hz from the same body model and sensor
pipeline as the trials, plus a ground-truth event list covering every sample
exactly once. Lifts are full trial-protocol lifts (reach, lift, hold, return,
recover) from uniformly random zones at a Poisson rate; the gaps between them
are filled with activities that move the same sensors without being lifts:

* ``stand``: quiet standing with sway.
* ``walk``: gait at 1.7-2.0 steps/s with thigh swing, knee flexion, pelvis
  bob, arm swing, trunk rotation and a heel strike every step.
* ``turn``: a heading change of 60-180 deg in 1-2.5 s with small steps.
* ``bend``: trunk and knee flexion to a low point (rows C/D) without a load,
  a pause of 0.5-3 s, and back up: no grasp, lift-off or placing transients.
* ``reach``: the dominant (or both) arm(s) to a point at knuckle-shoulder
  height or above, without a load.

Long shifts are synthesised in one-minute chunks (with margins) so memory
stays flat; every chunk has its own random stream.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from edge.layout import SAMPLE_RATE_HZ, ZONE_RISK

from .body import hip_height_of
from .options import SimOptions
from .posture import perturb, solve_posture
from .sensors import DECIMATION, SYNTH_RATE_HZ
from .subjects import Subject, make_subject
from .timeline import Track, add_sway, minimum_jerk, transition_time
from .trials import (BASE_TIME, STAND_DOFS, append_lift, keyframe_dofs, loaded_mask, plan_lift, row_band,
                     synthesize)

_D = np.pi / 180.0
#: Relative frequency of the non-lift activities that fill the gaps between lifts.
ACTIVITY_WEIGHTS: Dict[str, float] = {"stand": 0.35, "walk": 0.30, "turn": 0.15, "bend": 0.10, "reach": 0.10}


@dataclasses.dataclass(frozen=True)
class ShiftEvent:
    """One stretch of the shift (25 Hz sample indices, ``end`` inclusive).

    Attributes:
        start, end: Samples.
        kind: ``stand``, ``walk``, ``turn``, ``bend``, ``reach`` or ``lift``.
        zone: ACGIH zone of a lift, else 0.
        risk: ``low``/``medium``/``high`` for a lift, else ``none``.
    """

    start: int
    end: int
    kind: str
    zone: int = 0
    risk: str = "none"


@dataclasses.dataclass
class SimShift:
    """A simulated shift.

    Attributes:
        samples: ``(n, 36)``. timestamps: ``(n,)`` Unix seconds.
        events: Contiguous events covering every sample.
        subject: Who wore the sensors.
    """

    samples: np.ndarray
    timestamps: np.ndarray
    events: List[ShiftEvent]
    subject: Subject


class _Builder:
    """Appends activities to a 100 Hz track and keeps the ground truth."""

    def __init__(self, subject: Subject, rng: np.random.Generator, options: SimOptions) -> None:
        self.subject = subject
        self.rng = rng
        self.options = options
        self.track = Track(STAND_DOFS, SYNTH_RATE_HZ)
        self.events: List[Tuple[int, int, str, int]] = []  # 100 Hz start, end (inclusive), kind, zone
        self.transients: List[Tuple[str, int, float]] = []
        self.loaded: List[Tuple[int, int]] = []

    def _record(self, start: int, kind: str, zone: int = 0) -> None:
        if self.track.n > start:
            self.events.append((start, self.track.n - 1, kind, zone))

    def stand(self, seconds: float) -> None:
        start = self.track.n
        self.track.hold(seconds)
        self._record(start, "stand")

    def lift(self, zone: int) -> None:
        start = self.track.n
        plan = plan_lift(self.subject, zone, self.rng, self.options)
        ev = append_lift(self.track, self.subject, plan, self.rng, self.options, self.transients)
        self.loaded.append((ev["grasp"], ev["release"]))
        self._record(start, "lift", zone)

    def bend(self) -> None:
        """Bend down to a low point without a load and come back up."""
        s, rng = self.subject, self.rng
        start = self.track.n
        row = int(rng.integers(2, 4))
        lo, hi, _ = row_band(row, s.stature)
        x, z = rng.uniform(0.2, 0.7), rng.uniform(lo, hi)
        key = perturb(s.dims, s.style, solve_posture(s.dims, s.style, x, z), x, z, rng, self.options.difficulty)
        target = keyframe_dofs(key, rng.normal(30 * _D, 20 * _D))
        v_t = rng.lognormal(0.0, 0.08)
        delta = max(abs(key.theta_k), abs(key.phi_x), abs(key.psi_u)) / _D
        self.track.move(target, transition_time(delta, s.speed, v_t, rng))
        self.track.hold(rng.uniform(0.5, 3.0))
        self.track.move(dict(STAND_DOFS), transition_time(delta, s.speed, v_t, rng))
        self._record(start, "bend")

    def reach(self) -> None:
        """Reach forward or up with one or both arms, without a load."""
        s, rng = self.subject, self.rng
        start = self.track.n
        x = rng.uniform(0.35, 0.65)
        z = rng.uniform(0.55, 1.0) * s.stature
        key = solve_posture(s.dims, s.style, x, z)
        both = rng.random() < 0.4
        arms = ("l", "r") if both else (s.dominant,)
        target: Dict[str, float] = {"phi_x": key.phi_x, "phi_s": key.phi_s, "theta_k": key.theta_k}
        for arm in arms:
            target.update({f"psi_u_{arm}": key.psi_u, f"theta_e_{arm}": key.theta_e,
                           f"pron_{arm}": rng.normal(40 * _D, 20 * _D)})
        v_t = rng.lognormal(0.0, 0.08)
        t = transition_time(abs(key.psi_u) / _D, s.speed, v_t, rng)
        self.track.move(target, t)
        self.track.hold(rng.uniform(0.3, 1.5))
        self.track.move({k: STAND_DOFS.get(k, 0.0) for k in target}, t)
        self._record(start, "reach")

    def turn(self) -> None:
        """Turn on the spot by 60-180 deg with small steps."""
        rng = self.rng
        start = self.track.n
        seconds = rng.uniform(1.0, 2.5)
        n = self.track.samples(seconds)
        yaw0 = self.track.state["yaw"]
        dyaw = rng.choice([-1.0, 1.0]) * rng.uniform(60.0, 180.0) * _D
        tau = np.arange(1, n + 1) / n
        steps = max(2, int(round(seconds * 1.6)))
        phase = 2 * np.pi * steps / 2 * tau
        env = np.sin(np.pi * tau)
        thigh = -env * 10 * _D * np.sin(phase)
        knee = env * 20 * _D * (0.5 - 0.5 * np.cos(phase))
        arrays = {"yaw": yaw0 + dyaw * minimum_jerk(tau), "theta_k": knee, "phi_s": thigh + knee}
        arrays["root_z"] = self.track.state["root_z"] - (hip_height_of(self.subject.dims, arrays["phi_s"], knee)
                                                         - self.subject.dims.hip_height)
        self.track.append(arrays)
        for i in range(steps):
            self.transients.append(("heel", start + int((i + 0.7) * n / steps), 0.5))
        self._record(start, "turn")

    def walk(self, seconds: float) -> None:
        """Walk ``seconds`` along the current heading, starting and ending at rest."""
        s, rng = self.subject, self.rng
        start = self.track.n
        n = self.track.samples(seconds)
        t = np.arange(n) / self.track.rate_hz
        cadence = rng.uniform(1.7, 2.0)  # steps per second
        stride = cadence / 2.0
        step_len = rng.uniform(0.36, 0.42) * s.stature
        ramp = min(0.8, seconds / 3)
        env = minimum_jerk(t / ramp) * minimum_jerk((seconds - t) / ramp)
        ph = 2 * np.pi * stride * t
        hip_flex = env * (5 * _D + 20 * _D * np.sin(ph))
        knee = env * (5 * _D + 27 * _D * (1 - np.cos(ph - 0.6)))
        phi_t = -hip_flex
        phi_s = phi_t + knee
        speed = env * step_len * cadence
        dist = np.cumsum(speed) / self.track.rate_hz
        yaw = self.track.state["yaw"]
        bob = env * 0.02 * np.cos(2 * ph)
        arrays = {
            "phi_s": phi_s, "theta_k": knee,
            "root_x": self.track.state["root_x"] + dist * np.cos(yaw),
            "root_y": self.track.state["root_y"] + dist * np.sin(yaw),
            "root_z": self.track.state["root_z"] + bob - (hip_height_of(s.dims, phi_s, knee) - s.dims.hip_height),
            "psi_u_l": env * 15 * _D * np.sin(ph), "psi_u_r": -env * 15 * _D * np.sin(ph),
            "theta_e_l": np.full(n, STAND_ELBOW) + env * 10 * _D * (1 + np.sin(ph)),
            "theta_e_r": np.full(n, STAND_ELBOW) + env * 10 * _D * (1 - np.sin(ph)),
            "gamma": env * 4 * _D * np.sin(ph), "beta": env * 2 * _D * np.sin(2 * ph),
            "phi_x": env * 3 * _D,
        }
        arrays["root_z"][-1] = self.track.state["root_z"]
        self.track.append(arrays)
        for i in range(int(seconds * cadence)):
            idx = int(round((i + 0.5) / cadence * self.track.rate_hz))
            if idx < n and env[idx] > 0.3:
                self.transients.append(("heel", start + idx, float(env[idx])))
        self._record(start, "walk")


STAND_ELBOW = STAND_DOFS["theta_e_l"]


def simulate_shift(minutes: float, seed: int = 0, options: SimOptions = SimOptions(),
                   lifts_per_minute: float = 2.0, subject_index: int = 0,
                   start_time: Optional[float] = None, chunk_seconds: float = 60.0) -> SimShift:
    """Simulate a continuous recording of ``minutes`` minutes.

    Args:
        minutes: Length of the recording.
        seed: Seed of the subject and the schedule.
        options: Simulation options (the same as for trials).
        lifts_per_minute: Mean lift rate (Poisson); realistic 1-4.
        subject_index: Which subject of cohort ``seed`` wears the sensors.
        start_time: Unix time of the first sample (default: seeded).
        chunk_seconds: Synthesis chunk length (memory bound; results do not
            depend on it beyond the noise streams).

    Returns:
        The :class:`SimShift`.
    """
    if not minutes > 0:
        raise ValueError(f"minutes={minutes!r}; expected a positive number")
    subject = make_subject(seed, subject_index, options)
    rng = np.random.default_rng([int(seed), int(subject_index), 99])
    b = _Builder(subject, rng, options)
    total = int(round(minutes * 60 * SYNTH_RATE_HZ))
    b.stand(rng.uniform(2.0, 5.0))
    kinds = list(ACTIVITY_WEIGHTS)
    weights = np.array([ACTIVITY_WEIGHTS[k] for k in kinds])
    weights /= weights.sum()
    while b.track.n < total:
        gap_end = b.track.n + int(max(5.0, rng.exponential(60.0 / max(lifts_per_minute, 1e-6))) * SYNTH_RATE_HZ)
        while b.track.n < min(gap_end, total):
            left = (min(gap_end, total) - b.track.n) / SYNTH_RATE_HZ
            kind = "stand" if left < 4.0 else str(rng.choice(kinds, p=weights))
            if kind == "stand":
                b.stand(min(left, rng.uniform(2.0, 15.0)))
            elif kind == "walk":
                b.walk(min(left, rng.uniform(3.0, 12.0)))
            elif kind == "turn":
                b.turn()
            elif kind == "bend":
                b.bend()
            else:
                b.reach()
        if b.track.n < total:
            b.lift(int(rng.integers(1, 13)))
            b.stand(rng.uniform(1.0, 3.0))
    dofs = b.track.render()
    add_sway(dofs, SYNTH_RATE_HZ, rng, 1.0)
    n100 = dofs["phi_x"].shape[0]
    n100 -= n100 % DECIMATION
    loaded = loaded_mask(n100, b.loaded)
    samples = _synthesize_chunked(subject, dofs, n100, b.transients, loaded, seed, subject_index, options,
                                  chunk_seconds)
    n_out = min(samples.shape[0], int(round(minutes * 60 * SAMPLE_RATE_HZ)))
    samples = samples[:n_out]
    events = []
    for s100, e100, kind, zone in b.events:
        s25, e25 = -(-s100 // DECIMATION), min(e100 // DECIMATION, n_out - 1)
        if events and s25 <= events[-1].end:
            s25 = events[-1].end + 1
        if s25 > e25 or s25 >= n_out:
            continue
        events.append(ShiftEvent(int(s25), int(e25), kind, zone, ZONE_RISK[zone] if zone else "none"))
    # The ground truth covers every sample: stretch each event to the next one's start,
    # and merge neighbouring non-lift events of the same kind.
    fixed: List[ShiftEvent] = []
    for i, e in enumerate(events):
        end = events[i + 1].start - 1 if i + 1 < len(events) else n_out - 1
        if fixed and e.kind == fixed[-1].kind and e.kind != "lift":
            fixed[-1] = dataclasses.replace(fixed[-1], end=end)
            continue
        start = 0 if not fixed else fixed[-1].end + 1
        fixed.append(dataclasses.replace(e, start=start, end=end))
    t0 = BASE_TIME + (int(seed) % 1000) * 86400.0 + 3600.0 if start_time is None else float(start_time)
    timestamps = np.round(t0 + np.arange(n_out) / SAMPLE_RATE_HZ, 4)
    return SimShift(samples, timestamps, fixed, subject)


def _synthesize_chunked(subject: Subject, dofs: Dict[str, np.ndarray], n100: int,
                        transients: List[Tuple[str, int, float]], loaded: np.ndarray, seed: int,
                        subject_index: int, options: SimOptions, chunk_seconds: float) -> np.ndarray:
    """Synthesise in chunks with 1 s margins; returns ``(n100 / 4, 36)``."""
    chunk = max(DECIMATION, int(chunk_seconds * SYNTH_RATE_HZ) // DECIMATION * DECIMATION)
    margin = 100
    out = []
    for ci, c0 in enumerate(range(0, n100, chunk)):
        c1 = min(n100, c0 + chunk)
        a, z = max(0, c0 - margin), min(n100, c1 + margin)
        part = {k: v[a:z] for k, v in dofs.items()}
        tev = [(k, i - a, f) for k, i, f in transients if a <= i < z]
        rng = np.random.default_rng([int(seed), int(subject_index), 98, ci])
        x = synthesize(subject, part, rng, options, tev, loaded[a:z])
        lo = (c0 - a) // DECIMATION
        out.append(x[lo: lo + (c1 - c0) // DECIMATION])
    return np.concatenate(out, axis=0)

"""Lift trials: zones, lift timelines, synthesis to 25 Hz, and the cohort (spec §1, §5, §8).

:func:`append_lift` writes one lift (reach, dwell, lift, hold, return, dwell,
recover) onto a :class:`~quantize.liftsim.timeline.Track`; the whole-shift
generator uses it too. :func:`synthesize` turns DOF tracks into the 36 sensor
channels. :func:`simulate_trial` makes one trial and :func:`generate_cohort`
yields the 720-trial cohort, each trial from its own random stream so the
output does not depend on order or process count.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge.layout import SAMPLE_RATE_HZ, ZONE_RISK

from . import artefacts
from .body import forward_kinematics
from .options import SimOptions
from .origins import paper_origin
from .posture import Keyframe, perturb, solve_posture
from .sensors import (DECIMATION, SYNTH_RATE_HZ, apply_hardware, decimate, ideal_imu, placements,
                      sensor_kinematics, time_shift)
from .subjects import Subject, make_cohort
from .timeline import Track, add_sway, transition_time

_D = np.pi / 180.0
#: Horizontal bands (lo, hi, target) in m by column: close, intermediate, extended (spec §1).
COLUMNS: Tuple[Tuple[float, float, float], ...] = ((0.18, 0.30, 0.254), (0.30, 0.60, 0.457), (0.60, 0.80, 0.711))
#: Start of the recordings of seed 0: 2026-01-05 08:00 UTC.
BASE_TIME = 1_767_600_000.0
STAND_ELBOW = 10.0 * _D


def row_band(row: int, stature: float) -> Tuple[float, float, float]:
    """Vertical band (lo, hi, target) in m of a zone row 0..3 (A shoulder .. D floor)."""
    H = stature
    return [
        (0.818 * H - 0.08, 0.818 * H + 0.30, 0.818 * H + 0.152),
        (0.44 * H, 0.818 * H - 0.08, 0.630 * H),
        (0.162 * H, 0.44 * H, 0.285 * H),
        (0.03, 0.162 * H, 0.081 * H),
    ][row]


def zone_geometry(zone: int, stature: float) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
    """``((h_lo, h_hi, h_target), (v_lo, v_hi, v_target))`` of a zone for a subject."""
    if int(zone) not in ZONE_RISK:
        raise ValueError(f"zone {zone!r}; expected 1 to 12")
    row, col = divmod(int(zone) - 1, 3)
    return COLUMNS[col], row_band(row, stature)


def truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """One draw of N(mean, sd) truncated to [lo, hi] (rejection; falls back to uniform)."""
    if sd <= 0:
        return float(np.clip(mean, lo, hi))
    for _ in range(100):
        x = rng.normal(mean, sd)
        if lo <= x <= hi:
            return float(x)
    return float(rng.uniform(lo, hi))


def sample_origin(zone: int, subject: Subject, rng: np.random.Generator, options: SimOptions) -> Tuple[float, float]:
    """Lift origin (h from the marked foot line, V) inside the zone (labels stay valid).

    ``options.origins``: ``spread`` draws around the zone's target (SD origin_spread x
    kappa x the zone's extent, truncated inside the zone); ``paper`` follows the NIOSH
    protocol (midpoints, altered points for zones 1-3, 4, 7, 10; :mod:`.origins`).
    """
    (h_lo, h_hi, h_t), (v_lo, v_hi, v_t) = zone_geometry(zone, subject.stature)
    if options.midpoints:
        return h_t, v_t
    if options.origins == "paper":
        return paper_origin(int(zone), subject, rng, (h_lo, h_hi, h_t), (v_lo, v_hi, v_t))
    s = options.origin_spread * options.difficulty
    return (truncated_normal(rng, h_t, s * (h_hi - h_lo), h_lo, h_hi),
            truncated_normal(rng, v_t, s * (v_hi - v_lo), v_lo, v_hi))


def keyframe_dofs(key: Keyframe, pronation: float) -> Dict[str, float]:
    """DOF targets (both arms) of a solved keyframe."""
    return {"phi_s": key.phi_s, "theta_k": key.theta_k, "phi_x": key.phi_x,
            "psi_u_l": key.psi_u, "psi_u_r": key.psi_u, "theta_e_l": key.theta_e, "theta_e_r": key.theta_e,
            "pron_l": pronation, "pron_r": pronation}


STAND_DOFS: Dict[str, float] = {"phi_s": 0.0, "theta_k": 0.0, "phi_x": 0.0, "psi_u_l": 0.0, "psi_u_r": 0.0,
                                "theta_e_l": STAND_ELBOW, "theta_e_r": STAND_ELBOW, "pron_l": 0.0, "pron_r": 0.0}


@dataclasses.dataclass
class LiftPlan:
    """What a lift will do (kept for tests and documentation).

    Attributes:
        zone: ACGIH zone.
        h, v: Origin relative to the marked foot line / floor, m.
        grasp, hold: Solved keyframes (after trial noise).
        step: Forward step taken toward the load, m.
        atypical: ``""``, ``"kneel"`` or ``"stoop"``.
        hold_v: Height of the destination (hold) grip, m.
    """

    zone: int
    h: float
    v: float
    grasp: Keyframe
    hold: Keyframe
    step: float
    atypical: str
    hold_v: float = 0.0


def destination_height(options: SimOptions) -> float:
    """Mean destination grip height as a fraction of stature (``options.hold_height`` or the protocol's)."""
    if options.hold_height is not None:
        return float(options.hold_height)
    return 0.44 if options.protocol == "P2" else 0.55


def plan_lift(subject: Subject, zone: int, rng: np.random.Generator, options: SimOptions,
              origin: Optional[Tuple[float, float]] = None) -> LiftPlan:
    """Choose the origin, style noise and keyframes of one lift."""
    k = options.difficulty
    h, v = origin if origin is not None else sample_origin(zone, subject, rng, options)
    row, col = divmod(zone - 1, 3)
    foot = 0.0 if options.midpoints else subject.foot_offset + rng.normal(0.0, 0.03 * k)
    dv = 0.0 if options.midpoints else rng.normal(0.0, 0.02 * k)
    step = 0.0
    if col == 2 and not options.midpoints and rng.random() < subject.step_propensity:
        step = rng.uniform(0.05, 0.15)
    target_x = max(0.12, h + foot - step)
    target_z = max(0.02, v + dv)
    style = subject.style
    if not options.midpoints:
        style = dataclasses.replace(style, squat_index=float(np.clip(style.squat_index + rng.normal(0, 0.07 * k * options.squat_scale), 0, 1)))
    atypical = ""
    if not options.midpoints and rng.random() < options.atypical_share:
        atypical = "kneel" if (row >= 2 and rng.random() < 0.5) else "stoop"
    if atypical == "kneel":
        key = solve_posture(subject.dims, style, target_x, target_z, fixed=(130 * _D, 30 * _D))
    elif atypical == "stoop":
        key = solve_posture(subject.dims, style, target_x, target_z, theta_k_pref=0.0)
    else:
        key = solve_posture(subject.dims, style, target_x, target_z)
    noise = 0.0 if options.midpoints else k
    grasp = perturb(subject.dims, style, key, target_x, target_z, rng, noise)
    hold_x, hold_z = 0.30, destination_height(options) * subject.stature
    if options.hold_spread > 0 and not options.midpoints:  # drawn only when on: default streams unchanged
        hold_z = float(np.clip(hold_z + rng.normal(0.0, options.hold_spread * subject.stature),
                               0.35 * subject.stature, 0.85 * subject.stature))
    hold = perturb(subject.dims, style, solve_posture(subject.dims, style, hold_x, hold_z), hold_x, hold_z, rng,
                   noise)
    return LiftPlan(zone, float(h), float(v), grasp, hold, float(step), atypical, float(hold_z))


def _delta_max_deg(a: Dict[str, float], b: Dict[str, float]) -> float:
    return float(max(abs(a[n] - b[n]) for n in ("theta_k", "phi_x", "psi_u_r")) / _D)


def append_lift(track: Track, subject: Subject, plan: LiftPlan, rng: np.random.Generator, options: SimOptions,
                transient_events: List[Tuple[str, int, float]]) -> Dict[str, int]:
    """Write one lift onto ``track`` starting from stance (spec §5 sequence 2-8).

    ``options.protocol``: P1 (default) lift to the hold point, hold, return the load to its
    origin and let go; P2 lift to the place point (0.30 m, 0.44 H) and let go there, no
    return; P3 lift and hold, then recover to stance still holding the load (release = end).

    Returns:
        Event name -> sample index: ``move_start``, ``grasp``, ``lift_start``,
        ``hold``, ``release``, ``end`` (last sample of the recovery).
    """
    k = options.difficulty
    pron = subject.pronation + (0.0 if options.midpoints else rng.normal(0.0, 5.0 * _D * k))
    v_t = rng.lognormal(0.0, 0.08)
    stand = dict(STAND_DOFS)
    yaw = track.state["yaw"]
    base_x, base_y = track.state["root_x"], track.state["root_y"]
    grasp = keyframe_dofs(plan.grasp, pron)
    hold = keyframe_dofs(plan.hold, pron)
    if plan.step:
        grasp.update(root_x=base_x + plan.step * np.cos(yaw), root_y=base_y + plan.step * np.sin(yaw))
        hold.update(root_x=grasp["root_x"], root_y=grasp["root_y"])
    ev: Dict[str, int] = {}
    ev["move_start"] = track.mark("move_start")
    t_reach = transition_time(_delta_max_deg(stand, grasp), subject.speed, v_t, rng)
    track.move(grasp, t_reach)
    ev["grasp"] = track.mark("grasp")
    if plan.step:
        transient_events.append(("heel", ev["move_start"] + int(0.6 * t_reach * track.rate_hz), 1.0))
    transient_events.append(("grasp", ev["grasp"], 1.0))
    track.hold(rng.uniform(0.3, 0.8))
    ev["lift_start"] = track.mark("lift_start")
    transient_events.append(("liftoff", ev["lift_start"] + int(0.1 * track.rate_hz), 1.0))
    track.move(hold, transition_time(_delta_max_deg(grasp, hold), subject.speed, v_t, rng))
    ev["hold"] = track.mark("hold")
    protocol = options.protocol
    if protocol == "P1":  # hold, return the load to its origin, let go
        track.hold(rng.uniform(0.5, 1.5))
        track.move(grasp, transition_time(_delta_max_deg(hold, grasp), subject.speed, v_t, rng))
        ev["release"] = track.mark("release")
        transient_events.append(("place", ev["release"], 1.0))
        track.hold(rng.uniform(0.3, 0.6))
        last = grasp
    elif protocol == "P2":  # the lift ends by placing the load at the destination
        ev["release"] = track.mark("release", track.n - 1)
        transient_events.append(("place", ev["release"], 1.0))
        track.hold(rng.uniform(0.3, 0.6))
        last = hold
    else:  # P3: lift and hold, then stand up straight with the load
        track.hold(rng.uniform(0.5, 1.5))
        last = hold
    back = dict(stand)
    if plan.step:
        back.update(root_x=base_x, root_y=base_y)
    t_rec = transition_time(_delta_max_deg(last, stand), subject.speed, v_t, rng)
    rec_start = track.n
    track.move(back, t_rec)
    ev["end"] = track.mark("end", track.n - 1)
    if protocol == "P3":
        ev["release"] = ev["end"]
    if plan.step:
        transient_events.append(("heel", rec_start + int(0.6 * t_rec * track.rate_hz), 1.0))
    return ev


def loaded_mask(n: int, spans: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Boolean ``(n,)`` mask, True between each (grasp, release) pair."""
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[a:b] = True
    return m


def synthesize(subject: Subject, dofs: Dict[str, np.ndarray], rng: np.random.Generator, options: SimOptions,
               transient_events: Sequence[Tuple[str, int, float]] = (), loaded: Optional[np.ndarray] = None,
               rate_hz: float = SYNTH_RATE_HZ) -> np.ndarray:
    """DOF tracks at 100 Hz -> 25 Hz samples ``(ceil(T / 4), 36)`` in layout order (g, deg/s)."""
    frames = forward_kinematics(subject.dims, dofs, subject.style.rho, subject.dominant)
    pos, rot = sensor_kinematics(frames, placements(subject.dims, subject.dominant), subject.errors)
    n = pos.shape[0]
    extra_a = extra_g = None
    if options.artefacts and transient_events:
        extra_a, extra_g = artefacts.transients(n, rate_hz, transient_events, rng, rot)
    f, w, a_lin = ideal_imu(pos, rot, rate_hz, extra_a, extra_g)
    if options.artefacts:
        ta, tg = artefacts.tremor(n, rate_hz, rng, subject.tremor_hz, loaded)
        sa, sg = artefacts.soft_tissue(a_lin, w, rate_hz, rng, subject.bmi)
        f = f + ta + sa
        w = w + tg + sg
    sig = np.concatenate([f, w], axis=2)
    if np.any(subject.errors.clock_offset_s):
        sig = time_shift(sig, subject.errors.clock_offset_s, rate_hz)
    dec = decimate(sig)
    return apply_hardware(dec[:, :, :3], dec[:, :, 3:], subject.errors, rng, options)


@dataclasses.dataclass
class SimTrial:
    """One simulated trial at 25 Hz.

    Attributes:
        trial_id, subject_id, zone, rep: Identity.
        samples: ``(n, 36)`` float64. timestamps: ``(n,)`` Unix seconds.
        lift_start, lift_end: First sample of the reach and last of the recovery.
        events: Event name -> 25 Hz sample index.
        plan: The lift's plan.
    """

    trial_id: str
    subject_id: str
    zone: int
    rep: int
    samples: np.ndarray
    timestamps: np.ndarray
    lift_start: int
    lift_end: int
    events: Dict[str, int]
    plan: LiftPlan


def to_output_index(i100: int, first: bool) -> int:
    """100 Hz sample index -> 25 Hz index (first output sample at/after, or last at/before)."""
    return int(-(-i100 // DECIMATION)) if first else int(i100 // DECIMATION)


def trial_dofs(subject: Subject, zone: int, rng: np.random.Generator, options: SimOptions,
               origin: Optional[Tuple[float, float]] = None):
    """Build the 100 Hz DOF tracks of one trial.

    Returns:
        ``(dofs, events_100hz, transient_events, loaded_mask, plan)``.
    """
    plan = plan_lift(subject, zone, rng, options, origin)
    track = Track(STAND_DOFS, SYNTH_RATE_HZ)
    track.hold(rng.uniform(2.0, 4.0))
    tev: List[Tuple[str, int, float]] = []
    ev = append_lift(track, subject, plan, rng, options, tev)
    track.hold(rng.uniform(1.5, 3.5))
    dofs = track.render()
    add_sway(dofs, SYNTH_RATE_HZ, rng, 1.0)
    return dofs, ev, tev, loaded_mask(track.n, [(ev["grasp"], ev["release"])]), plan


def simulate_trial(subject: Subject, zone: int, rep: int, seed: int, options: SimOptions = SimOptions(),
                   start_time: float = BASE_TIME, origin: Optional[Tuple[float, float]] = None) -> SimTrial:
    """Simulate repetition ``rep`` of ``zone`` by ``subject`` (own random stream)."""
    rng = np.random.default_rng([int(seed), subject.index, int(zone), int(rep), 7])
    dofs, ev, tev, loaded, plan = trial_dofs(subject, zone, rng, options, origin)
    samples = synthesize(subject, dofs, rng, options, tev, loaded)
    crop = 0 if options.midpoints else int(rng.uniform(0.0, 0.5) * SAMPLE_RATE_HZ)
    samples = samples[crop:]
    events = {name: to_output_index(i, name != "end") - crop for name, i in ev.items()}
    events["release"] = min(events["release"], events["end"])  # P3 releases at the very end
    n = samples.shape[0]
    timestamps = start_time + np.arange(n) / SAMPLE_RATE_HZ
    return SimTrial(f"{subject.subject_id}_Z{zone:02d}_R{rep}", subject.subject_id, int(zone), int(rep), samples,
                    np.round(timestamps, 4), events["move_start"], min(events["end"], n - 1), events, plan)


def trial_schedule(subjects: Sequence[Subject], reps: int, seed: int) -> List[Tuple[Subject, int, int, float]]:
    """Order of trials: per subject, zones in random order, reps consecutive; with start times."""
    out = []
    day0 = BASE_TIME + (int(seed) % 1000) * 86400.0
    for subject in subjects:
        rng = np.random.default_rng([int(seed), subject.index, 2])
        t = day0 + subject.index * 3 * 3600.0
        for zone in rng.permutation(12) + 1:
            for rep in range(1, reps + 1):
                out.append((subject, int(zone), rep, t))
                t += 60.0
    return out


def generate_cohort(n_subjects: int = 10, reps: int = 6, seed: int = 0, options: SimOptions = SimOptions(),
                    first_index: int = 0, workers: int = 1) -> Iterator[SimTrial]:
    """Yield every trial of a cohort in schedule order.

    Args:
        n_subjects: Subjects (alternately female and male).
        reps: Repetitions per zone.
        seed: Cohort seed.
        options: Simulation options.
        first_index: Index of the first subject (new indices = unseen people).
        workers: Processes; results are identical for any value.
    """
    subjects = make_cohort(n_subjects, seed, options, first_index)
    jobs = [(s, z, r, seed, options, t) for s, z, r, t in trial_schedule(subjects, reps, seed)]
    if workers <= 1:
        for job in jobs:
            yield simulate_trial(*job)
        return
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_simulate_job, jobs, chunksize=8)


def _simulate_job(job) -> SimTrial:
    return simulate_trial(*job)

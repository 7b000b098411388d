"""Subjects: anthropometry, handedness, movement style and their sensors' errors (spec §2, §8).

Each subject is drawn from its own random stream ``(seed, subject index)``, so
subject ``S03`` of seed 0 is the same person whatever the cohort size, and a
different seed (or ``first_index``) gives people never seen in training.
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from .body import SEGMENT_FRACTIONS, BodyDims
from .options import SimOptions
from .posture import Style
from .sensors import HardwareErrors, draw_hardware_errors

_D = np.pi / 180.0


@dataclasses.dataclass(frozen=True)
class Subject:
    """One simulated person.

    Attributes:
        subject_id: ``S01``, ``S02``, ... (1-based index).
        index: 0-based index (seeds the subject's random stream).
        sex: ``"F"`` or ``"M"``.
        stature: m. mass: kg.
        left_handed: Dominant-side sensors (Side, UArm, Thig) on the left.
        dims: Segment lengths.
        style: Posture preferences (squat index, lumbopelvic share, ...).
        speed: Per-subject speed factor v_s of transition times.
        pronation: Mean grasp pronation, rad.
        foot_offset: How far (m) the subject stands from the marked spot (+ = farther).
        step_propensity: Probability of stepping toward an extended-column load.
        tremor_hz: Centre frequency of physiological tremor.
        errors: The subject's sensors' errors and mounting.
        clearance: Gap (m) the subject keeps between toes and a crate's support
            (paper-protocol origins, :mod:`quantize.liftsim.origins`).
        reach_fraction: Comfortable two-handed reach as a fraction of arm length
            (paper-protocol origins of row A).
    """

    subject_id: str
    index: int
    sex: str
    stature: float
    mass: float
    left_handed: bool
    dims: BodyDims
    style: Style
    speed: float
    pronation: float
    foot_offset: float
    step_propensity: float
    tremor_hz: float
    errors: HardwareErrors
    clearance: float = 0.03
    reach_fraction: float = 0.75

    @property
    def dominant(self) -> str:
        """``"l"`` or ``"r"``."""
        return "l" if self.left_handed else "r"

    @property
    def bmi(self) -> float:
        """Body-mass index, kg/m^2."""
        return self.mass / self.stature ** 2


def make_subject(seed: int, index: int, options: SimOptions = SimOptions()) -> Subject:
    """Draw subject ``index`` of cohort ``seed`` (even index female, odd male).

    Distributions (spec §2, §8; kappa = ``options.difficulty``):
    stature F N(164.5, 5) / M N(175.5, 5) cm; mass F N(76.4, 17) / M N(95, 17)
    kg clipped to [50, 140]; segment factors N(1, 0.03); squat index
    0.5 + kappa squat_scale (Beta(2, 2) - 0.5); rho 0.55 + kappa U(-0.1, 0.1); w_t LN(0, 0.3 kappa);
    elbow preference N(15, 8 kappa) deg; pronation N(60, 15 kappa) deg; foot
    offset N(0, 4 kappa) cm; step propensity min(1, kappa step_scale 0.5 Beta(1, 3));
    speed LN(0, 0.15); tremor N(8, 1) Hz clipped to [6, 11] (postural hand tremor peaks
    near 7 Hz, Arch Neurol 1982 normative study / 6-12 Hz, Lakie et al. 2015).
    From a separate stream ``(seed, index, 3)`` (so the draws above do not move): toe
    clearance N(3, 1.5 kappa) cm clipped to [0.5, 8] and comfortable reach fraction
    N(0.75, 0.05 kappa) clipped to [0.6, 0.9], used by ``--origins paper`` [E].
    """
    rng = np.random.default_rng([int(seed), int(index), 1])
    k = options.difficulty
    sex = "F" if index % 2 == 0 else "M"
    stature = rng.normal(164.5 if sex == "F" else 175.5, 5.0) / 100.0
    mass = float(np.clip(rng.normal(76.4 if sex == "F" else 95.0, 17.0), 50.0, 140.0))
    left_handed = bool(rng.random() < options.left_handed_share)
    factors = {name: float(rng.normal(1.0, 0.03)) for name in SEGMENT_FRACTIONS}
    dims = BodyDims.from_stature(stature, factors)
    style = Style(
        squat_index=float(np.clip(0.5 + k * options.squat_scale * (rng.beta(2, 2) - 0.5), 0.0, 1.0)),
        rho=float(0.55 + k * rng.uniform(-0.1, 0.1)),
        w_t=float(rng.lognormal(0.0, 0.3 * k)),
        theta_e_pref=float(rng.normal(15.0, 8.0 * k) * _D),
    )
    speed = float(rng.lognormal(0.0, 0.15))
    pronation = float(rng.normal(60.0, 15.0 * k) * _D)
    foot_offset = float(rng.normal(0.0, 0.04 * k))
    step_propensity = float(min(1.0, k * options.step_scale * 0.5 * rng.beta(1, 3)))
    tremor_hz = float(np.clip(rng.normal(8.0, 1.0), 6.0, 11.0))
    errors = draw_hardware_errors(rng, options)
    # Comfort of the paper-protocol origins, from a stream of its own so every other draw is unchanged.
    comfort = np.random.default_rng([int(seed), int(index), 3])
    clearance = float(np.clip(comfort.normal(0.03, 0.015 * k), 0.005, 0.08))
    reach_fraction = float(np.clip(comfort.normal(0.75, 0.05 * k), 0.6, 0.9))
    return Subject(f"S{index + 1:02d}", int(index), sex, float(stature), mass, left_handed, dims, style,
                   speed, pronation, foot_offset, step_propensity, tremor_hz, errors, clearance, reach_fraction)


def make_cohort(n_subjects: int, seed: int, options: SimOptions = SimOptions(), first_index: int = 0) -> List[Subject]:
    """Subjects ``first_index .. first_index + n_subjects - 1`` of cohort ``seed``."""
    return [make_subject(seed, first_index + i, options) for i in range(n_subjects)]

"""Simulation options: the difficulty knob and the variation users will meet.

Every option has a default that reproduces the spec's cohort; each is a flag
of ``quantize synth`` (see ``docs/simulator.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from edge.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SimOptions:
    """Options of the generator.

    Attributes:
        difficulty: kappa, one multiplier on the style spreads (squat index,
            lumbopelvic share, trunk weight, elbow preference, posture noise,
            pronation, foot offsets, stepping), the mounting spreads and the
            spread of the origins (see ``origins``). 2.5 with ``origins="paper"`` is the calibrated default
            (docs/simulator.md: the paper's CNN, random 75/25, seeds 0-19); the spec's
            estimates of those spreads are kappa 1.
        origin_spread: Standard deviation of the lift origin around the zone's
            target point, as a fraction of the zone's extent (before kappa); used
            with ``origins="spread"``.
        left_handed_share: Probability that a subject is left-handed (the
            dominant-side sensors Side, UArm and Thig are then on the left).
        dropout_rate: Per-sample probability, per sensor, that a dropout starts
            (the sensor repeats its last value).
        dropout_mean_ms: Mean dropout length (exponential, at least one sample).
        clock_offset_ms: Standard deviation of each sensor's clock offset.
        mount_error_scale: Multiplier on the mounting rotation and position
            errors (on top of kappa); 0 mounts every sensor perfectly.
        trunk_mount_scale: Further multiplier on the mounting errors of the
            trunk and thigh sensors (Back, Side, Thig; the wrist and upper-arm
            straps keep ``mount_error_scale``); 1 treats all six alike.
        sensor_errors: Bias, scale, cross-axis, white noise and quantisation on.
        artefacts: Band energy on: grasp/lift-off/place transients, heel
            strikes, tremor and soft-tissue motion.
        midpoints: Put every origin on its zone's target point (sanity runs).
        atypical_share: Share of atypical trials (kneeling or pure stoop).
        step_scale: Multiplier on each subject's propensity to step toward
            extended-column loads (spec: 0.5 Beta(1, 3), mean 0.125).
        squat_scale: Multiplier on the squat-index spreads (subject and trial,
            on top of kappa); 1 scales them with kappa like every style spread,
            ``1 / difficulty`` keeps the spec's Beta(2, 2) and N(0, 0.07).
        hold_spread: SD of the lift destination's height as a fraction of
            stature (spec: fixed at 0.55 H, i.e. 0); kept within 0.35-0.85 H.
        hold_height: Mean height of the destination grip (hold with P1/P3,
            place with P2) as a fraction of stature; None keeps the spec's
            0.55 H (P1, P3) or 0.44 H (P2).
        origins: ``paper`` (default): the NIOSH protocol as the paper states it,
            zones 5, 6, 8, 9, 11, 12 at their midpoint plus placement jitter and zones 1-3, 4, 7, 10 at per-subject altered
            points (:mod:`quantize.liftsim.origins`); ``spread``: every zone's origin is
            drawn around its target with SD ``origin_spread x kappa x extent`` (the spec's
            §8 lever, the default before the paper-origins calibration).
            ``midpoints`` overrides both.
        protocol: ``P1`` lift, hold, return the load to its origin (default);
            ``P2`` place it at (0.30 m, 0.44 H), no return; ``P3`` lift and hold only.
    """

    difficulty: float = 2.5
    origin_spread: float = 0.22
    left_handed_share: float = 0.1
    dropout_rate: float = 0.005
    dropout_mean_ms: float = 40.0
    clock_offset_ms: float = 20.0
    mount_error_scale: float = 1.0
    trunk_mount_scale: float = 1.0
    sensor_errors: bool = True
    artefacts: bool = True
    midpoints: bool = False
    atypical_share: float = 0.03
    step_scale: float = 1.0
    squat_scale: float = 1.0
    hold_spread: float = 0.0
    hold_height: Optional[float] = None
    protocol: str = "P1"
    origins: str = "paper"

    def __post_init__(self) -> None:
        checks = [
            ("difficulty", self.difficulty, 0.0, 5.0),
            ("origin_spread", self.origin_spread, 0.0, 2.0),
            ("left_handed_share", self.left_handed_share, 0.0, 1.0),
            ("dropout_rate", self.dropout_rate, 0.0, 0.5),
            ("dropout_mean_ms", self.dropout_mean_ms, 0.0, 600_000.0),
            ("clock_offset_ms", self.clock_offset_ms, 0.0, 1000.0),
            ("mount_error_scale", self.mount_error_scale, 0.0, 10.0),
            ("trunk_mount_scale", self.trunk_mount_scale, 0.0, 10.0),
            ("atypical_share", self.atypical_share, 0.0, 1.0),
            ("step_scale", self.step_scale, 0.0, 8.0),
            ("squat_scale", self.squat_scale, 0.0, 4.0),
            ("hold_spread", self.hold_spread, 0.0, 0.3),
        ]
        if self.hold_height is not None and not (0.35 <= float(self.hold_height) <= 0.85):
            raise ConfigError(f"option hold_height={self.hold_height!r} is out of range; expected 0.35 to 0.85 "
                              f"(fraction of stature)")
        if self.origins not in ("spread", "paper"):
            raise ConfigError(f"option origins={self.origins!r}; expected spread or paper")
        if self.protocol not in ("P1", "P2", "P3"):
            raise ConfigError(f"option protocol={self.protocol!r}; expected P1, P2 or P3")
        for name, value, lo, hi in checks:
            if not (lo <= float(value) <= hi):
                raise ConfigError(f"option {name}={value!r} is out of range; expected {lo:g} to {hi:g}")

    @classmethod
    def ideal(cls, **overrides) -> "SimOptions":
        """Options with every sensor imperfection and artefact off (physics tests)."""
        base = dict(sensor_errors=False, artefacts=False, dropout_rate=0.0, clock_offset_ms=0.0,
                    mount_error_scale=0.0)
        base.update(overrides)
        return cls(**base)

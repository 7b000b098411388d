"""Lift origins as the NIOSH protocol describes them (``--origins paper``).

The paper (Snyder et al. 2021, "Data collection"): "Save for Zones 1-3, 4, 7,
and 10, all lifts began in the midpoint of these zones. In the aforementioned
exceptions, initial points in the zone were altered to provide realistic motion
for the subjects' ranges of motion. The object lifted consisted of a 36cm x 12 cm
wire grid weighing 0.45 kg with two handles".

This module models that as written:

* Zones 5, 6, 8, 9, 11 and 12 start at the zone's target point (spec §1),
  plus the placement jitter of a crate set down on a marked spot:
  N(0, 1 cm) along the horizontal, truncated at +-2 cm, none in height (the
  shelf or stand height is fixed) [E]. This jitter is physical, not a
  difficulty, so kappa does not scale it.
* Zones 1-3, 4, 7 and 10 start at a per-subject *altered* point: the point of
  the zone (1 cm inside its limits, so the label stays the zone's) nearest to
  the zone's target that satisfies two physical constraints, plus the same
  placement jitter:

  1. **Toe clearance (close column: zones 1, 4, 7, 10).** The crate rests on
     the floor, a stand or a rack whose front reaches the floor, so the
     subject's toes must stay behind the crate's near face with the subject's
     clearance c: grip h >= toe + c + crate depth / 2. Foot length 0.152 H
     (Drillis-Contini, spec [S3]) with the ankle joint 25 % of it from the heel
     [E], so the toes are 0.114 H ahead of the ankle line (19.4 cm at H = 1.70
     m); the 36 cm x 12 cm grid is read as 36 cm wide (the spec's handles at
     +-0.18 m) and 12 cm deep, gripped mid-depth [E]. The close column's
     target, 25.4 cm, is closer than toe + c + 6 cm for almost every subject
     (0.114 H + 6 cm alone exceeds it once H > 1.70 m), so close-column
     origins move out toward the column's far edge (30 cm). The abdomen at
     elbow height (about 0.16-0.18 m ahead of the ankles at the cohort's BMI
     28-31 [E]) binds less than the toes and is not modelled separately.
  2. **Comfortable reach (row A: zones 1-3).** The grip must lie within the
     subject's comfortable two-handed reach r = f x arm length (shoulder to
     grip) of the standing shoulder, f ~ N(0.75, 0.05 kappa), clipped to
     0.6-0.9 [E]: a load is lifted with the elbows bent, not at the
     finger-tip reach. Where no point of the zone is inside that reach (zone
     3, >= 60 cm out, for all but subjects with f near 0.9), the origin is the
     zone's point nearest to the shoulder, i.e. lowered to shoulder height at
     the column's near edge; the posture solver then leans the trunk. Zone 2 is
     lowered and pulled in for the subjects whose f is small.

  The alteration is set once per subject (the experimenter marks each
  subject's spots), so it is deterministic given the subject; its spread
  between subjects comes from the subject's clearance c ~ N(3 cm, 1.5 kappa
  cm), clipped to 0.5-8 cm, and reach fraction f (both drawn in
  :mod:`quantize.liftsim.subjects` from their own stream and scaled by
  kappa, the one difficulty knob) and from anthropometry.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from edge.errors import ConfigError

#: Zones whose origin the paper's authors altered (all others start at the midpoint).
ALTERED_ZONES = frozenset({1, 2, 3, 4, 7, 10})
#: Crate (wire grid) depth in the sagittal plane, m [E: 36 cm x 12 cm read as width x depth].
CRATE_DEPTH_M = 0.12
#: Foot length as a fraction of stature (Drillis-Contini, spec [S3]).
FOOT_LENGTH_FRACTION = 0.152
#: Share of the foot length ahead of the ankle joint [E].
TOE_SHARE = 0.75
#: Placement jitter of a crate set on a marked spot: SD and truncation along h, m [E].
PLACEMENT_SD_M = 0.01
PLACEMENT_MAX_M = 0.02
#: Altered origins stay this far inside the zone's limits so labels stay valid, m.
INSIDE_MARGIN_M = 0.01
#: Grid step of the nearest-feasible-point search, m.
SEARCH_STEP_M = 0.005
ORIGIN_MODES = ("spread", "paper")


def toe_distance(stature: float) -> float:
    """Distance (m) of the toe tips ahead of the ankle line for a stature (m)."""
    return TOE_SHARE * FOOT_LENGTH_FRACTION * float(stature)


def standing_shoulder(dims) -> Tuple[float, float]:
    """Sagittal shoulder joint (x, z) in m when standing upright (x = 0: above the ankles)."""
    return 0.0, dims.ankle_height + dims.shank + dims.thigh + dims.pelvis + dims.thorax


def arm_reach(dims) -> float:
    """Shoulder-to-grip length of the straight arm, m."""
    return dims.upper_arm + dims.forearm + dims.hand


def altered_origin(zone: int, subject, h_band: Tuple[float, float, float],
                   v_band: Tuple[float, float, float]) -> Tuple[float, float]:
    """Per-subject altered origin of zone 1-3, 4, 7 or 10 (see the module docstring).

    Args:
        zone: ACGIH zone (one of :data:`ALTERED_ZONES`).
        subject: A :class:`~quantize.liftsim.subjects.Subject` (uses ``stature``,
            ``dims``, ``clearance`` and ``reach_fraction``).
        h_band: ``(lo, hi, target)`` horizontal band of the zone, m.
        v_band: ``(lo, hi, target)`` vertical band of the zone for this subject, m.

    Returns:
        ``(h, v)`` in m, inside the zone by at least :data:`INSIDE_MARGIN_M`.
    """
    if zone not in ALTERED_ZONES:
        raise ConfigError(f"zone {zone}: the paper alters only zones 1-3, 4, 7 and 10")
    (h_lo, h_hi, h_t), (v_lo, v_hi, v_t) = h_band, v_band
    m = INSIDE_MARGIN_M
    hs = np.union1d(np.arange(h_lo + m, h_hi - m + 1e-9, SEARCH_STEP_M), [h_t])  # the target is a candidate
    vs = np.union1d(np.arange(v_lo + m, v_hi - m + 1e-9, SEARCH_STEP_M), [v_t])
    hh, vv = np.meshgrid(hs, vs, indexing="ij")
    ok = np.ones(hh.shape, dtype=bool)
    if (zone - 1) % 3 == 0:  # close column: toes behind the support's front (as far as the zone allows)
        ok &= hh >= min(toe_distance(subject.stature) + subject.clearance + CRATE_DEPTH_M / 2, hs[-1])
    sx, sz = standing_shoulder(subject.dims)
    dist_shoulder = np.hypot(hh - sx, vv - sz)
    reach_ok = dist_shoulder <= subject.reach_fraction * arm_reach(subject.dims) if zone <= 3 else ok
    if np.any(ok & reach_ok):  # the comfortable point nearest the zone's target
        i = np.argmin(np.where(ok & reach_ok, np.hypot(hh - h_t, vv - v_t), np.inf))
    else:  # nothing comfortable in the zone (zone 3): the point nearest the shoulder
        i = np.argmin(np.where(ok, dist_shoulder, np.inf))
    return float(hh.flat[i]), float(vv.flat[i])


def paper_origin(zone: int, subject, rng: np.random.Generator, h_band: Tuple[float, float, float],
                 v_band: Tuple[float, float, float]) -> Tuple[float, float]:
    """Origin of one trial under the paper's protocol: midpoint or altered point, plus placement jitter.

    Args:
        zone: ACGIH zone.
        subject: The lifting subject.
        rng: The trial's random stream (one normal draw for the jitter).
        h_band, v_band: The zone's ``(lo, hi, target)`` bands for this subject, m.

    Returns:
        ``(h, v)`` in m, inside the zone.
    """
    if zone in ALTERED_ZONES:
        h, v = altered_origin(zone, subject, h_band, v_band)
    else:
        h, v = h_band[2], v_band[2]
    jitter = float(np.clip(rng.normal(0.0, PLACEMENT_SD_M), -PLACEMENT_MAX_M, PLACEMENT_MAX_M))
    h = float(np.clip(h + jitter, h_band[0] + 1e-3, h_band[1] - 1e-3))
    return h, float(v)

"""Paper-protocol lift origins (``--origins paper``): midpoints, altered zones, labels (< 3 s)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError
from quantize.liftsim.options import SimOptions
from quantize.liftsim.origins import (ALTERED_ZONES, CRATE_DEPTH_M, PLACEMENT_MAX_M, altered_origin, arm_reach,
                                      standing_shoulder, toe_distance)
from quantize.liftsim.subjects import make_cohort
from quantize.liftsim.trials import plan_lift, sample_origin, truncated_normal, zone_geometry

PAPER = SimOptions(origins="paper")


def _origins(subject, zone, n, options=PAPER, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([sample_origin(zone, subject, rng, options) for _ in range(n)])


@pytest.mark.parametrize("zone", [5, 6, 8, 9, 11, 12])
def test_unaltered_zones_start_at_their_midpoint_with_placement_jitter_only(zone):
    for s in make_cohort(4, seed=1):
        (_, _, h_t), (_, _, v_t) = zone_geometry(zone, s.stature)
        pts = _origins(s, zone, 200)
        assert np.all(pts[:, 1] == v_t)  # shelf height is fixed
        dh = pts[:, 0] - h_t
        assert np.abs(dh).max() <= PLACEMENT_MAX_M + 1e-12
        assert 0.005 < dh.std() < 0.015  # N(0, 1 cm) truncated at 2 cm


def test_every_paper_origin_stays_inside_its_zone_at_any_difficulty():
    for kappa in (0.0, 1.0, 3.0, 5.0):
        opts = SimOptions(origins="paper", difficulty=kappa)
        for s in make_cohort(10, seed=3, options=opts):
            for zone in range(1, 13):
                (h_lo, h_hi, _), (v_lo, v_hi, _) = zone_geometry(zone, s.stature)
                for h, v in _origins(s, zone, 5, opts):
                    assert h_lo < h < h_hi and v_lo <= v <= v_hi, (kappa, s.subject_id, zone, h, v)


def test_close_column_moves_out_until_the_toes_clear_the_crate():
    moved = []
    for s in make_cohort(10, seed=0, options=PAPER):
        need = toe_distance(s.stature) + s.clearance + CRATE_DEPTH_M / 2
        for zone in (1, 4, 7, 10):
            hb, vb = zone_geometry(zone, s.stature)
            h, v = altered_origin(zone, s, hb, vb)
            assert h >= hb[2]  # never moved in
            moved.append(h - hb[2])
            assert h >= min(need, hb[1] - 0.01) - 1e-9  # toes clear, or as far as the zone allows
            assert h <= hb[1] - 0.01 + 1e-9  # still the close column
            if zone != 1:
                assert v == pytest.approx(vb[2])  # the support's height is not altered
    assert np.mean(moved) > 0.02  # the 25.4 cm target is inside most subjects' toes + half a crate


def test_row_a_is_lowered_to_what_the_subject_reaches_comfortably():
    for s in make_cohort(10, seed=0, options=PAPER):
        sx, sz = standing_shoulder(s.dims)
        reach = s.reach_fraction * arm_reach(s.dims)
        hb, vb = zone_geometry(3, s.stature)
        h3, v3 = altered_origin(3, s, hb, vb)
        assert v3 < vb[2] - 0.08 and abs(v3 - sz) < 0.03  # lowered to about shoulder height
        assert h3 == pytest.approx(hb[0] + 0.01)  # nearest the body the extended column allows
        for zone in (1, 2):
            hb, vb = zone_geometry(zone, s.stature)
            h, v = altered_origin(zone, s, hb, vb)
            assert np.hypot(h - sx, v - sz) <= reach + 1e-9
            assert v <= vb[2] + 1e-9


def test_the_alteration_is_per_subject_and_its_spread_grows_with_kappa():
    s = make_cohort(1, seed=0, options=PAPER)[0]
    pts = _origins(s, 10, 100)
    assert pts[:, 0].std() < 0.012  # the same marked spot every repetition
    spreads = []
    for kappa in (0.5, 2.0):
        opts = SimOptions(origins="paper", difficulty=kappa)
        hs = []
        for s in make_cohort(40, seed=5, options=opts):
            hb, vb = zone_geometry(2, s.stature)
            hs.append(altered_origin(2, s, hb, vb)[0] - hb[2])
        spreads.append(np.std(hs))
    assert spreads[1] > 1.5 * spreads[0]


def test_spread_mode_is_the_truncated_normal_around_the_target_and_midpoints_override_both():
    opts = SimOptions(origins="spread", difficulty=1.0)
    s = make_cohort(1, seed=0, options=opts)[0]
    got = _origins(s, 8, 20, opts)
    (h_lo, h_hi, h_t), (v_lo, v_hi, v_t) = zone_geometry(8, s.stature)
    rng, sd = np.random.default_rng(0), opts.origin_spread * opts.difficulty
    want = [(truncated_normal(rng, h_t, sd * (h_hi - h_lo), h_lo, h_hi),
             truncated_normal(rng, v_t, sd * (v_hi - v_lo), v_lo, v_hi)) for _ in range(20)]
    assert np.array_equal(got, np.array(want)) and got[:, 0].std() > 0.03
    (_, _, h_t), (_, _, v_t) = zone_geometry(1, s.stature)
    assert tuple(_origins(s, 1, 1, SimOptions(origins="paper", midpoints=True))[0]) == (h_t, v_t)


def test_paper_lifts_reach_their_origin_and_bad_mode_is_named():
    s = make_cohort(1, seed=0, options=PAPER)[0]
    for zone in sorted(ALTERED_ZONES):
        plan = plan_lift(s, zone, np.random.default_rng(zone), PAPER)
        assert plan.grasp.reach_err < 0.03, (zone, plan.grasp.reach_err)
    with pytest.raises(ConfigError, match="origins='middle'"):
        SimOptions(origins="middle")
    with pytest.raises(ConfigError, match="zone 5"):
        altered_origin(5, s, *zone_geometry(5, s.stature))

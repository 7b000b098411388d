"""Cohort generation, `quantize synth` output, determinism and the variation options."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from edge.dataset import check_dataset, load_dataset
from edge.errors import ConfigError
from edge.layout import channel_index
from quantize.__main__ import main as quantize_main
from quantize.liftsim.options import SimOptions
from quantize.liftsim.sensors import apply_dropouts, time_shift
from quantize.liftsim.subjects import make_cohort
from quantize.liftsim.trials import generate_cohort, simulate_trial


def _synth(out: Path, *extra: str) -> int:
    return quantize_main(["synth", "--out", str(out), "--subjects", "1", "--reps", "1", "--no-progress", *extra])


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _synth(a, "--seed", "7") == 0
    assert _synth(b, "--seed", "7") == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 12 + 3  # 12 trials, index, events, subjects
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert not mismatch and not errors
    c = tmp_path / "c"
    assert _synth(c, "--seed", "8") == 0
    assert (a / "trials" / "S01_Z01_R1.csv").read_bytes() != (c / "trials" / "S01_Z01_R1.csv").read_bytes()


def test_output_is_a_valid_dataset_with_labels(tmp_path):
    out = tmp_path / "d"
    assert _synth(out) == 0
    problems = [p for p in check_dataset(out) if p.severity == "error"]
    assert not problems, problems
    ds = load_dataset(out)
    assert len(ds.trials) == 12
    risks = {m.zone: m.risk for m in ds.trials}
    assert risks == {1: "high", 2: "high", 3: "high", 4: "low", 5: "low", 6: "medium", 7: "medium",
                     8: "medium", 9: "medium", 10: "high", 11: "high", 12: "high"}
    for m in ds.trials:
        trial = ds.read(m)
        assert np.allclose(np.diff(trial.timestamps), 0.04, atol=1e-3)
        assert 0 < m.lift_start < m.lift_end < trial.samples.shape[0] - 1


def test_bad_option_is_a_clear_error(tmp_path, capsys):
    assert _synth(tmp_path / "x", "--difficulty", "-1") == 1
    err = capsys.readouterr().err
    assert "difficulty=-1" in err and "Traceback" not in err
    with pytest.raises(ConfigError):
        SimOptions(dropout_rate=2.0)


def test_workers_do_not_change_results():
    one = list(generate_cohort(1, 1, seed=2, workers=1))
    two = list(generate_cohort(1, 1, seed=2, workers=2))
    assert [t.trial_id for t in one] == [t.trial_id for t in two]
    for x, y in zip(one, two):
        assert np.array_equal(x.samples, y.samples)


def test_trial_lengths_mostly_10_to_15_s_and_class_counts():
    trials = list(generate_cohort(10, 1, seed=1))
    seconds = np.array([t.samples.shape[0] / 25.0 for t in trials])
    # The paper: "the majority ended between 10 and 15 seconds"; seeds 0-4 give 78-86 %.
    assert np.mean((seconds >= 10) & (seconds <= 15)) >= 0.7, np.round(seconds, 1)
    assert 12.0 <= np.median(seconds) <= 14.5
    assert seconds.max() < 30.0
    zones = [t.zone for t in trials]
    assert sorted(zones) == sorted(list(range(1, 13)) * 10)


def test_left_handed_subject_mirrors_dominant_sensors():
    right = make_cohort(1, seed=4, options=SimOptions.ideal(left_handed_share=0.0))[0]
    left = make_cohort(1, seed=4, options=SimOptions.ideal(left_handed_share=1.0))[0]
    assert not right.left_handed and left.left_handed
    a = simulate_trial(right, 11, 1, seed=4, options=SimOptions.ideal()).samples
    b = simulate_trial(left, 11, 1, seed=4, options=SimOptions.ideal()).samples
    for sensor in ("Thig", "Side"):
        # z_s is the outward normal, so on the other side z_s and y_s = z_s x x_s point the other way:
        # sagittal rotation appears on G_z with the opposite sign, fore-aft acceleration on A_y.
        for kind, axis in (("G", "z"), ("A", "y")):
            c = channel_index(sensor, kind, axis)
            r = np.corrcoef(a[:, c], b[:, c])[0, 1]
            assert r < -0.9, (sensor, kind, axis, r)
    c = channel_index("Back", "G", "y")  # the midline sensor is unchanged
    assert np.corrcoef(a[:, c], b[:, c])[0, 1] > 0.99


def test_dropouts_hold_last_value():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6, 6))
    y = apply_dropouts(x, np.random.default_rng(1), rate=0.01, mean_samples=10)
    held = np.all(y[1:] == y[:-1], axis=2)  # (499, 6) sample equal to the previous one
    assert held.sum() > 50
    changed = np.any(y != x, axis=2)
    assert np.array_equal(changed[1:] & ~held, np.zeros_like(held))  # every changed sample is a hold


def test_clock_offset_shifts_a_sensor_in_time():
    t = np.arange(200, dtype=float)
    x = np.stack([t, t], axis=1)[:, :, None] * np.ones((1, 1, 3))
    y = time_shift(x, np.array([0.05, 0.0]), rate_hz=100.0)
    assert np.allclose(y[10:150, 0, 0], t[10:150] + 5.0)
    assert np.allclose(y[:, 1, 0], t)


def test_difficulty_spreads_origins():
    from quantize.liftsim.trials import sample_origin

    s = make_cohort(1, seed=0)[0]
    spreads = []
    for k in (0.5, 2.0):
        opts = SimOptions(difficulty=k, origins="spread")
        rng = np.random.default_rng(0)
        hs = [sample_origin(8, s, rng, opts)[0] for _ in range(300)]
        assert all(0.30 <= h <= 0.60 for h in hs)  # origins stay inside zone 8's band
        spreads.append(np.std(hs))
    assert spreads[1] > 2 * spreads[0]


def test_hold_spread_varies_the_destination_only_when_asked():
    from quantize.liftsim.trials import plan_lift

    s = make_cohort(1, seed=0)[0]
    fixed = [plan_lift(s, 8, np.random.default_rng(i), SimOptions()).hold_v for i in range(30)]
    spread = [plan_lift(s, 8, np.random.default_rng(i), SimOptions(hold_spread=0.12)).hold_v for i in range(30)]
    assert np.allclose(fixed, 0.55 * s.stature)
    assert np.std(spread) > 0.08 * s.stature
    assert min(spread) >= 0.35 * s.stature - 1e-9 and max(spread) <= 0.85 * s.stature + 1e-9


def test_hold_height_moves_the_destination_and_is_checked():
    from quantize.liftsim.trials import plan_lift

    s = make_cohort(1, seed=0)[0]
    for opts, frac in ((SimOptions(), 0.55), (SimOptions(protocol="P2"), 0.44), (SimOptions(hold_height=0.44), 0.44),
                       (SimOptions(protocol="P2", hold_height=0.6), 0.6)):
        plan = plan_lift(s, 8, np.random.default_rng(1), opts)
        assert plan.hold_v == pytest.approx(frac * s.stature)
    with pytest.raises(ConfigError, match="hold_height=0.2 .*expected 0.35 to 0.85"):
        SimOptions(hold_height=0.2)


def test_squat_scale_narrows_the_squat_index_without_moving_other_draws():
    wide = make_cohort(10, seed=3, options=SimOptions())
    spec = make_cohort(10, seed=3, options=SimOptions(squat_scale=0.4))
    none = make_cohort(10, seed=3, options=SimOptions(squat_scale=0.0))
    assert [s.style.squat_index for s in none] == [0.5] * 10
    dev_wide = np.abs(np.array([s.style.squat_index for s in wide]) - 0.5)
    dev_spec = np.abs(np.array([s.style.squat_index for s in spec]) - 0.5)
    assert np.all(dev_spec <= dev_wide + 1e-12) and dev_spec.max() < dev_wide.max()
    # only the squat index changes: every other draw of the subject stays where it was
    for a, b in zip(wide, spec):
        assert (a.stature, a.mass, a.foot_offset, a.pronation, a.style.w_t) == (b.stature, b.mass, b.foot_offset,
                                                                                b.pronation, b.style.w_t)
    with pytest.raises(ConfigError, match="squat_scale=5 .*expected 0 to 4"):
        SimOptions(squat_scale=5)


def test_trunk_mount_scale_changes_only_the_trunk_and_thigh_mounts():
    from edge.layout import SENSORS
    from quantize.liftsim.sensors import draw_hardware_errors

    same = draw_hardware_errors(np.random.default_rng(5), SimOptions())
    base = draw_hardware_errors(np.random.default_rng(5), SimOptions(trunk_mount_scale=1.0))
    firm = draw_hardware_errors(np.random.default_rng(5), SimOptions(trunk_mount_scale=0.0))
    assert np.array_equal(same.mount_rotation, base.mount_rotation)
    for i, name in enumerate(SENSORS):
        if name in ("Back", "Side", "Thig"):
            assert firm.mount_shift[i] == 0.0 and np.allclose(firm.mount_rotation[i], np.eye(3))
            assert base.mount_shift[i] != 0.0
        else:
            assert firm.mount_shift[i] == base.mount_shift[i]
            assert np.array_equal(firm.mount_rotation[i], base.mount_rotation[i])
    with pytest.raises(ConfigError, match="trunk_mount_scale=-1 .*expected 0 to 10"):
        SimOptions(trunk_mount_scale=-1)


@pytest.mark.parametrize("protocol", ["P1", "P2", "P3"])
def test_protocols_order_their_events(protocol):
    s = make_cohort(1, seed=0)[0]
    tr = simulate_trial(s, 11, 1, seed=0, options=SimOptions(protocol=protocol))
    e = tr.events
    assert e["move_start"] < e["grasp"] < e["lift_start"] < e["hold"] <= e["release"] <= e["end"]
    assert tr.lift_start == e["move_start"] and tr.lift_end == e["end"]
    if protocol == "P3":
        assert e["release"] == e["end"]
    assert np.all(np.isfinite(tr.samples))


def test_rewriting_a_folder_leaves_no_stale_trials(tmp_path):
    out = tmp_path / "d"
    assert quantize_main(["synth", "--out", str(out), "--subjects", "2", "--reps", "1", "--no-progress"]) == 0
    assert _synth(out) == 0  # now 1 subject: S02's files must go
    assert len(list((out / "trials").glob("*.csv"))) == 12
    assert not [p for p in check_dataset(out) if p.severity != "info"]

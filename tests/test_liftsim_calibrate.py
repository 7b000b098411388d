"""`quantize calibrate` pieces: proxy evaluation, band power and plots on a tiny cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantize.liftsim.options import SimOptions
from quantize.liftsim.trials import generate_cohort

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def sos():
    from quantize.filter_design import design_bandpass

    return design_bandpass()


def test_artefacts_put_energy_in_the_2_12_hz_band(sos):
    from quantize.liftsim.calibrate import band_power

    with_art = band_power(list(generate_cohort(2, 1, seed=0, options=SimOptions())), sos)
    without = band_power(list(generate_cohort(2, 1, seed=0, options=SimOptions(artefacts=False))), sos)
    for sensor in ("Side", "LtWt", "RtWt", "Back", "UArm", "Thig"):
        # The movement itself already has band energy (minimum-jerk reaches of ~1-1.5 s);
        # transients, tremor and soft tissue add to it at every site.
        assert with_art[sensor]["accel_lift_mg"] > 1.05 * without[sensor]["accel_lift_mg"], sensor
        assert with_art[sensor]["gyro_lift_dps"] > 1.05 * without[sensor]["gyro_lift_dps"], sensor
        # Quiet standing keeps a few mg (tremor, soft tissue), far below the lift.
        assert 1.0 < with_art[sensor]["accel_rest_mg"] < 0.5 * with_art[sensor]["accel_lift_mg"], sensor
    # Wrists move most: their band power is the largest, the waist's among the smallest.
    acc = {s: v["accel_lift_mg"] for s, v in with_art.items()}
    assert max(acc, key=acc.get) in ("LtWt", "RtWt")
    assert acc["Side"] < acc["LtWt"]


def test_proxy_runs_through_the_signal_path_and_reports_metrics(tmp_path):
    from quantize.liftsim.calibrate import calibrate, summary_markdown

    result = calibrate([1.0], seeds=1, n_subjects=2, reps=2, progress=False, splits=("random", "subject"))
    run, loso = result["runs"]
    assert (run["split"], loso["split"]) == ("random", "subject")
    assert np.sum(loso["confusion"]) == 48  # every trial tested once, its subject held out
    assert 0.0 <= run["accuracy"] <= 1.0
    assert np.sum(run["confusion"]) == 12  # 25 % of 48 trials
    assert set(run["recall"]) == {"low", "medium", "high"}
    s = result["summary"][0]
    assert s["accepted"] == (0.85 <= s["accuracy_mean"] <= 0.93 and s["recall_ordered"])
    assert "| 1 | random | 1 |" in summary_markdown(result)
    json.dumps(result)  # JSON-able for calibration.json


def test_cli_plots_examples(tmp_path):
    pytest.importorskip("matplotlib")
    from quantize.__main__ import main as quantize_main

    rc = quantize_main(["calibrate", "--out", str(tmp_path), "--skip-calibration", "--plot", "--subjects", "2"])
    assert rc == 0
    png = tmp_path / "sim_trials.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_kappas(tmp_path, capsys):
    from quantize.__main__ import main as quantize_main

    assert quantize_main(["calibrate", "--out", str(tmp_path), "--kappas", "one"]) == 1
    assert "--kappas 'one'" in capsys.readouterr().err

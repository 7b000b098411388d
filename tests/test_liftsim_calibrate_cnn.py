"""Tests of quantize.liftsim.calibrate_cnn's bookkeeping (no simulation or training; < 2 s).

The full sweep (synth + CNN training per kappa and seed) takes minutes per run
and is exercised by running the module itself; these tests check the table
maths, the acceptance rule, resuming from finished runs and error messages.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

import pytest

from edge.errors import ConfigError
from quantize.liftsim import calibrate_cnn as cc


def fake_run(run_dir, accuracy, recalls, epochs_run=40):
    """Write the two files calibrate_cnn reads from a finished ``quantize train`` run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": accuracy, "rk": accuracy - 0.1, "n": 180,
               **{c: {"recall": r, "precision": 0.9, "f1": 0.9, "support": 60} for c, r in zip(cc.CLASSES, recalls)}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.json").write_text(json.dumps({"epochs_max": 40, "epochs_run": epochs_run}))
    val = [0.5] * (epochs_run - 5) + [accuracy - 0.02, accuracy + 0.02, accuracy, accuracy - 0.04, accuracy + 0.04]
    (run_dir / "history.json").write_text(json.dumps({"val_accuracy": val}))


def rows_for(kappa, accs, recalls):
    return [{"kappa": kappa, "seed": s, "accuracy": a, "rk": a - 0.1, "recall_low": recalls[0],
             "recall_medium": recalls[1], "recall_high": recalls[2], "train_seconds": 100.0}
            for s, a in enumerate(accs)]


def test_summary_statistics_and_acceptance():
    rows = rows_for(1.0, [0.86, 0.88, 0.90, 0.92, 0.94], (0.70, 0.80, 0.95))
    rows += rows_for(2.0, [0.80, 0.82, 0.84, 0.86, 0.88], (0.70, 0.80, 0.95))  # mean 0.84: outside the band
    rows += rows_for(0.5, [0.90] * 5, (0.90, 0.85, 0.95))  # low above medium: not ordered
    summary = {s["kappa"]: s for s in cc.summarize(rows, wanted_seeds=range(5))}
    s1 = summary[1.0]
    assert s1["accuracy_mean"] == pytest.approx(0.90)
    assert s1["accuracy_sd"] == pytest.approx(0.028284271, rel=1e-6)  # population SD
    assert (s1["accuracy_min"], s1["accuracy_max"]) == (0.86, 0.94)
    assert s1["recall_ordered"] and s1["accepted"]
    assert not summary[2.0]["accepted"] and summary[2.0]["recall_ordered"]
    assert not summary[0.5]["recall_ordered"] and not summary[0.5]["accepted"]
    assert s1["gap_mean"] == pytest.approx(0.10) and s1["gap_se"] == pytest.approx(0.0) and s1["gap_positive"] == 5
    assert summary[0.5]["gap_positive"] == 0


def test_the_low_medium_gap_has_a_standard_error_and_a_sign_count():
    rows = rows_for(2.5, [0.9] * 4, (0.7, 0.8, 0.99))
    for r, low in zip(rows, (0.70, 0.90, 0.60, 0.80)):  # medium 0.80: gaps +0.10, -0.10, +0.20, 0.00
        r["recall_low"] = low
    (s,) = cc.summarize(rows)
    assert s["gap_mean"] == pytest.approx(0.05)
    assert s["gap_se"] == pytest.approx(0.129099445 / 2)  # sample SD / sqrt(4)
    assert s["gap_positive"] == 2
    assert "| +0.050 +- 0.065 (2 of 4) | no |" in cc.summary_markdown([s], epochs=40)


def test_an_ordering_in_the_mean_that_noise_could_flip_is_not_accepted():
    rows = rows_for(2.5, [0.9] * 6, (0.7, 0.8, 0.99))
    for r, low in zip(rows, (0.70, 0.90, 0.60, 0.80, 0.85, 0.75)):  # gaps +.1 -.1 +.2 0 -.05 +.05: mean +0.033
        r["recall_low"] = low
    (s,) = cc.summarize(rows)
    assert s["recall_ordered"] and s["gap_mean"] == pytest.approx(0.1 / 3)
    assert s["gap_mean"] < cc.FIRM_SE * s["gap_se"]
    assert not s["ordered_firmly"] and not s["accepted"]
    for r in rows:  # the same seeds with every gap +0.10 +- 0.02: firm
        r["recall_low"] = 0.70 + 0.02 * (int(r["seed"]) % 2)
    (s,) = cc.summarize(rows)
    assert s["ordered_firmly"] and s["accepted"]


def test_fewer_than_five_seeds_is_never_accepted_and_missing_seeds_are_named():
    rows = rows_for(1.0, [0.90, 0.90, 0.90], (0.70, 0.80, 0.95))
    (s,) = cc.summarize(rows, wanted_seeds=[0, 1, 2, 3, 4])
    assert s["missing_seeds"] == [3, 4] and not s["accepted"]
    md = cc.summary_markdown([s], epochs=40)
    assert "unfinished: 3,4" in md and "| no |" in md


def test_resume_reads_finished_runs_without_running_anything(tmp_path, capsys):
    out = tmp_path / "calib"
    fake_run(out / "runs" / "k1_s0", 0.9, (0.7, 0.8, 0.95))
    fake_run(out / "runs" / "k1_s1", 0.8, (0.6, 0.9, 1.0))
    md = cc.calibrate([1.0], [0, 1, 2], epochs=40, out=out, summary_only=True)
    err = capsys.readouterr().err
    assert "kappa 1 seed 2: not run" in err and "done before" in err
    assert "0.850 +- 0.050 (0.800-0.900)" in md and "unfinished: 2" in md
    with open(out / "calib_cnn.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["seed"] for r in table] == ["0", "1"]
    assert float(table[1]["recall_medium"]) == 0.9
    assert float(table[0]["test_acc_last5_mean"]) == pytest.approx(0.9)
    assert (float(table[0]["test_acc_last5_min"]), float(table[0]["test_acc_last5_max"])) == (0.86, 0.94)
    assert md.splitlines()[2].endswith("| 0.850 |")  # last-5-epoch column, mean over the two runs


def test_zone_errors_pool_each_runs_predictions(tmp_path):
    out = tmp_path / "calib"
    for seed, calls in ((0, ("low", "medium", "high", "high")), (1, ("medium", "medium", "high", "low"))):
        run = out / "runs" / f"k2_s{seed}"
        fake_run(run, 0.9, (0.7, 0.8, 0.95))
        ids = ("S01_Z4_R1", "S01_Z9_R2", "S02_Z9_R3", "S02_Z12_R1")
        (run / "predictions.csv").write_text("trial_id,subject,true,predicted\n" + "".join(
            f"{t},{t[:3]},x,{c}\n" for t, c in zip(ids, calls)))
    run = out / "runs" / "k2_s2"  # written with the zone column: its trial ids need not name the zone
    fake_run(run, 0.9, (0.7, 0.8, 0.95))
    (run / "predictions.csv").write_text("trial_id,subject,zone,true,predicted\nSubject_01_P1_T3,S01,9,medium,low\n")
    (out / "runs" / "k3_s0").mkdir(parents=True)
    fake_run(out / "runs" / "k3_s0", 0.9, (0.7, 0.8, 0.95))  # no predictions.csv: left out, no error
    md = cc.calibrate([2.0, 3.0], [0, 1, 2], epochs=40, out=out, summary_only=True)
    errors = cc.zone_errors(json.loads((out / "calib_cnn.json").read_text())["runs"])
    assert errors == {2.0: {4: {"n": 2, "low": 1, "medium": 1, "high": 0},
                            9: {"n": 5, "low": 1, "medium": 2, "high": 2},
                            12: {"n": 2, "low": 1, "medium": 0, "high": 1}}}
    assert "| 2 | 9 | medium | 5 | 1 / 2 / 2 | 0.40 |" in md
    assert "| 2 | 4 | low | 2 | 1 / 1 / 0 | 0.50 |" in md and "| 3 |" not in md.split("Where the errors")[1]
    assert json.loads((out / "calib_cnn.json").read_text())["zone_errors"]["2"]["9"]["high"] == 2


def test_broken_metrics_file_is_named(tmp_path):
    run_dir = tmp_path / "runs" / "k1_s0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(cc.CalibrationRunError, match="metrics.json"):
        cc.read_run(run_dir, 1.0, 0, 0.0, 0.0)


def test_failed_child_reports_its_log(tmp_path):
    log = tmp_path / "child.log"
    with pytest.raises(cc.CalibrationRunError, match="exit 3.*child.log.*boom"):
        cc.run_child([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], log, "synth")


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "a"], "--seeds: 'a' is not an integer"),
    (["--kappas", "1,x"], "--kappas: 'x' is not a number"),
    (["--kappas", "9"], "out of range"),
    (["--epochs", "0"], "--epochs 0"),
])
def test_bad_flags_give_one_line_errors(argv, message, tmp_path, capsys):
    assert cc.main(argv + ["--out", str(tmp_path / "o"), "--summary-only"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("origins, expected", [(None, None), ("paper", ["--origins", "paper"])])
def test_origins_reach_the_synth_child(origins, expected, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cc, "run_child", lambda cmd, log, what: seen.append(list(cmd)) or 1.0)
    cc.synthesize(tmp_path / "k2_s0", 2.0, 0, 1, origins)
    (cmd,) = seen
    assert cmd[cmd.index("--difficulty") + 1] == "2"
    if expected is None:
        assert "--origins" not in cmd
    else:
        assert cmd[-2:] == expected
    assert json.loads((tmp_path / "k2_s0" / "synth_done.json").read_text())["origins"] == origins


def test_synth_args_reach_the_synth_child_and_are_recorded(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cc, "run_child", lambda cmd, log, what: seen.append(list(cmd)) or 1.0)
    parser = argparse.ArgumentParser()
    cc.add_arguments(parser)
    args = parser.parse_args(["--synth-arg=--hold-height=0.44", "--synth-arg=--step-scale=2"])
    extra = cc.split_child_flags(args.synth_arg, "--synth-arg")
    cc.synthesize(tmp_path / "k2_s0", 2.0, 0, 1, "paper", extra)
    (cmd,) = seen
    assert cmd[-4:] == ["--hold-height", "0.44", "--step-scale", "2"]
    assert json.loads((tmp_path / "k2_s0" / "synth_done.json").read_text())["command"][-4:] == cmd[-4:]


def test_train_args_reach_the_train_child(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cc, "run_child", lambda cmd, log, what: seen.append(list(cmd)) or 1.0)
    cc.train(tmp_path / "data", tmp_path / "runs" / "k2_s0", 0, 40, "proposed",
             cc.split_child_flags(["--margins=750,750"], "--train-arg"))
    (cmd,) = seen
    assert cmd[cmd.index("train") - 2:cmd.index("train") + 1] == ["-m", "quantize", "train"]
    assert cmd[-2:] == ["--margins", "750,750"]
    assert cmd[-4:-2] == ["--bn-statistics", "moving"]  # the paper's training, unless a train arg overrides it
    seen.clear()
    cc.train(tmp_path / "data", tmp_path / "runs" / "k2_s1", 1, 40, "proposed",
             cc.split_child_flags(["--bn-statistics=train"], "--train-arg"))
    import argparse

    from quantize.train import add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (cmd,) = seen
    assert parser.parse_args(cmd[cmd.index("train") + 1:]).bn_statistics == "train"
    with pytest.raises(ConfigError, match="--train-arg 'margins=1,1'"):
        cc.split_child_flags(["margins=1,1"], "--train-arg")


def test_a_synth_arg_that_is_not_a_flag_is_refused(tmp_path, capsys):
    assert cc.main(["--synth-arg", "hold-height=0.44", "--out", str(tmp_path / "o"), "--summary-only"]) == 1
    err = capsys.readouterr().err
    assert "--synth-arg 'hold-height=0.44'" in err and "Traceback" not in err


def test_plot_shows_runs_of_other_folders_labelled_by_origins(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    fake_run(old / "runs" / "k1_s0", 0.86, (0.8, 0.7, 0.99))
    fake_run(new / "runs" / "k2_s0", 0.91, (0.7, 0.85, 0.99))
    (new / "runs" / "k2_s0" / "calib_timing.json").write_text(json.dumps({"origins": "paper"}))
    assert cc.main(["--kappas", "1", "--seeds", "0", "--out", str(old), "--summary-only"]) == 0
    png = tmp_path / "plot.png"
    assert cc.main(["--kappas", "2", "--seeds", "0", "--out", str(new), "--summary-only", "--plot", str(png),
                    "--plot-with", str(old)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((new / "calib_cnn.json").read_text())["runs"]
    assert [cc.setting_label(r) for r in rows] == ["paper, k2"]
    assert cc.setting_label({"kappa": 1.0}) == "spread, k1"  # runs from before --origins existed
    capsys.readouterr()
    assert cc.main(["--kappas", "2", "--seeds", "0", "--out", str(new), "--summary-only", "--plot", str(png),
                    "--plot-with", str(tmp_path / "nowhere")]) == 1
    assert "--plot-with" in capsys.readouterr().err


def test_seed_ranges():
    assert cc.parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(ConfigError):
        cc.parse_seeds("")


def test_rows_say_where_the_batchnorm_statistics_came_from(tmp_path):
    old, new = tmp_path / "runs" / "k2_s0", tmp_path / "runs" / "k2_s1"
    fake_run(old, 0.9, (0.7, 0.8, 0.95))  # written before --bn-statistics: no field
    fake_run(new, 0.9, (0.7, 0.8, 0.95))
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps(dict(config, bn_statistics="train")))
    assert cc.read_run(old, 2.0, 0, 0.0, 0.0)["bn_statistics"] == "moving"
    assert cc.read_run(new, 2.0, 1, 0.0, 0.0)["bn_statistics"] == "train"
    cc.calibrate([2.0], [0, 1], epochs=40, out=tmp_path, summary_only=True)
    with open(tmp_path / "calib_cnn.csv") as fh:
        assert [r["bn_statistics"] for r in csv.DictReader(fh)] == ["moving", "train"]


@pytest.mark.parametrize("zone", ["abc", "13", "0"])
def test_a_bad_zone_in_predictions_is_named_with_its_file_and_line(zone, tmp_path, capsys):
    run = tmp_path / "runs" / "k2_s0"
    fake_run(run, 0.9, (0.7, 0.8, 0.95))
    (run / "predictions.csv").write_text(
        f"trial_id,subject,zone,true,predicted\nA,S01,4,low,low\nB,S01,{zone},medium,low\n")
    assert cc.main(["--kappas", "2", "--seeds", "0", "--out", str(tmp_path), "--summary-only"]) == 1
    err = capsys.readouterr().err
    assert "predictions.csv, line 3" in err and repr(zone) in err and "1 to 12" in err
    assert "Traceback" not in err

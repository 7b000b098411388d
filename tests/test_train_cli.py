"""End-to-end tests of ``quantize train`` on a tiny random data set (1-2 epochs)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from edge.dataset import DatasetWriter
from edge.layout import SENSORS
from edge.signal_path import TensorRecipe, tensorize, unwrap_image
from quantize.__main__ import main as quantize_main


def make_tiny_dataset(root, n_subjects=4, reps=1, n_samples=160, seed=0):
    """4 subjects x 12 zones x reps random trials; the lift carries a zone-dependent wave."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(root, source="tiny random test data") as w:
        for s in range(n_subjects):
            for zone in range(1, 13):
                for r in range(reps):
                    x = rng.normal(0, 0.2, (n_samples, 36))
                    x[:, 0::6] += 1.0  # gravity-ish on accel x
                    x[50:110] += (zone % 3 + 1) * np.sin(np.arange(60) / (2.0 + zone % 4))[:, None]
                    ts = 1.7e9 + np.arange(n_samples) / 25.0
                    w.add_trial(f"S{s}_Z{zone:02d}_R{r}", f"S{s}", zone, x, ts, 50, 110)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def proposed_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "proposed"
    code = quantize_main(["train", "--data", str(tiny_data), "--model", "proposed", "--split", "subject",
                          "--seed", "1", "--out", str(out), "--epochs", "2"])
    assert code == 0
    return out


def test_run_folder_is_complete(proposed_run, capsys):
    for name in ("model.keras", "recipe.json", "split.json", "metrics.json", "history.json", "config.json",
                 "predictions.csv", "training_curves.png", "confusion.png", "swarm.png", "report.md"):
        assert (proposed_run / name).is_file(), name
    metrics = json.loads((proposed_run / "metrics.json").read_text())
    for key in ("accuracy", "rk", "confusion"):
        assert key in metrics
    for cls in ("low", "medium", "high"):
        assert set(metrics[cls]) >= {"precision", "recall", "f1"}
    conf = np.array(metrics["confusion"])
    assert conf.shape == (3, 3) and conf.sum() == metrics["n"]
    split = json.loads((proposed_run / "split.json").read_text())
    assert split["kind"] == "subject" and split["seed"] == 1
    assert not set(split["train"]) & set(split["test"])
    assert len(split["train"]) + len(split["test"]) == 48
    held_out = set(split["test_subjects"])
    assert held_out and all(t.split("_")[0] not in held_out for t in split["train"])
    history = json.loads((proposed_run / "history.json").read_text())
    assert len(history["loss"]) == 2
    assert json.loads((proposed_run / "config.json").read_text())["bn_statistics"] == "train"
    # report.md links every PNG, and they exist
    report = (proposed_run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert set(links) == {"training_curves.png", "confusion.png", "swarm.png"}
    assert "0.906" in report  # the paper's accuracy stands beside ours
    assert "batch-normalisation statistics exact over the training tensors" in report
    TensorRecipe.from_dict(json.loads((proposed_run / "recipe.json").read_text()))


def test_reloaded_run_reproduces_its_predictions(proposed_run, tiny_data):
    from quantize.data import load_windows, make_tensors
    from quantize.models import load_model

    recipe = TensorRecipe.from_dict(json.loads((proposed_run / "recipe.json").read_text()))
    split = json.loads((proposed_run / "split.json").read_text())
    lw = load_windows(tiny_data, progress=False).select(split["test"])
    x = make_tensors(lw.windows, recipe, progress=False)
    probs = load_model(proposed_run / "model.keras").predict(x, verbose=0)
    with open(proposed_run / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trial_id"] for r in rows] == split["test"]
    assert [int(r["zone"]) for r in rows] == [int(z) for z in lw.zones]
    saved = np.array([[float(r["p_low"]), float(r["p_medium"]), float(r["p_high"])] for r in rows])
    assert np.allclose(probs, saved, atol=2e-6)
    metrics = json.loads((proposed_run / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == lw.labels))


def test_sensor_subset_zeroes_other_sensors_through_the_recipe(tiny_data, tmp_path, capsys):
    out = tmp_path / "three"
    code = quantize_main(["train", "--data", str(tiny_data), "--model", "mlp", "--split", "random",
                          "--seed", "0", "--out", str(out), "--epochs", "1", "--sensors", "RtWt,Back,LtWt"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Accuracy" in printed and "0.567" in printed  # MLP row beside the paper's
    config = json.loads((out / "config.json").read_text())
    assert config["sensors"] == ["LtWt", "RtWt", "Back"]
    recipe = TensorRecipe.from_dict(json.loads((out / "recipe.json").read_text()))
    from quantize.data import load_windows
    from quantize.train import recipe_sensors

    assert recipe_sensors(recipe) == ("LtWt", "RtWt", "Back")

    window = load_windows(tiny_data, progress=False).windows[0]
    rows = np.abs(unwrap_image(tensorize(window, recipe))).max(axis=(1, 2))  # 12 rows: sensor x (A, G)
    for i, sensor in enumerate(SENSORS):
        kept = sensor in ("LtWt", "RtWt", "Back")
        assert (rows[2 * i] > 0.1) == kept and (rows[2 * i + 1] > 0.1) == kept, sensor
        if not kept:
            assert rows[2 * i] < 1e-20 and rows[2 * i + 1] < 1e-20


@pytest.mark.parametrize("argv, message", [
    (["--sensors", "Back,Nose"], "'Nose' is not a sensor"),
    (["--split", "random", "--fold", "2"], "--fold only applies to --split subject"),
    (["--epochs", "0"], "--epochs 0 must be at least 1"),
    (["--margins", "50"], "--margins '50': expected two sample counts PRE,POST"),
    (["--margins", "50,751"], "POST=751 is out of range; expected 0 to 750"),
])
def test_bad_flags_give_one_clear_line(tiny_data, tmp_path, capsys, argv, message):
    code = quantize_main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "cnn"] + argv)
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err


def test_margins_cut_whole_trials_and_reach_the_recipe(tiny_data, tmp_path):
    from quantize.train import load, prepare, make_run_split

    default = load(tiny_data)
    whole = load(tiny_data, margins=(750, 750))
    assert {len(w) for w in default.windows} == {160}  # 50 + (110 - 50 + 1) + 49 samples: clamped at the end
    narrow = load(tiny_data, margins=(10, 5))
    assert {len(w) for w in narrow.windows} == {10 + 61 + 5}
    assert {len(w) for w in whole.windows} == {160}  # the whole trial
    assert all(np.array_equal(n, w[40:116]) for w, n in zip(whole.windows, narrow.windows))
    split = make_run_split(narrow, "random", 0)
    prep = prepare(narrow, split, progress=False, margins=(10, 5))
    assert (prep.recipe.pre_samples, prep.recipe.post_samples) == (10, 5)
    out = tmp_path / "r"
    assert quantize_main(["train", "--data", str(tiny_data), "--out", str(out), "--model", "mlp", "--epochs", "1",
                          "--margins", "10,5", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["margins"] == [10, 5]
    assert json.loads((out / "recipe.json").read_text())["pre_samples"] == 10


def test_missing_data_dir_is_reported(tmp_path, capsys):
    code = quantize_main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "not a directory" in err and "nowhere" in err


def test_saliency_matches_finite_differences():
    import keras

    from quantize.models import build_model
    from quantize.saliency import class_saliency

    model = build_model("mlp", seed=0, dropout=0.0)
    image = np.random.default_rng(1).normal(size=(1, 95, 95, 3)).astype(np.float32)
    sal = class_saliency(model, image, 2)
    head = model.get_layer("softmax")
    features = keras.Model(model.input, head.input)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in head.get_weights())

    def score(img):
        return float((np.asarray(features(img, training=False), dtype=np.float64) @ kernel + bias)[0, 2])

    for pos in [(0, 0, 0), (40, 17, 1), (94, 3, 2)]:
        eps = 1e-2
        up, down = image.copy(), image.copy()
        up[(0,) + pos] += eps
        down[(0,) + pos] -= eps
        fd = abs(score(up) - score(down)) / (2 * eps)
        assert sal[pos] == pytest.approx(fd, rel=0.05, abs=1e-6)


def test_saliency_cli_ranks_imus_and_retrains_with_fewer(proposed_run, capsys):
    code = quantize_main(["saliency", "--run", str(proposed_run), "--sensors", "Back,LtWt,RtWt", "--epochs", "1",
                          "--max-trials", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "IMU ranking by saliency" in out and "all six" in out and "LtWt, RtWt, Back" in out
    sal = proposed_run / "saliency"
    ranking = (sal / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 7
    shares = [float(line.split(",")[2]) for line in ranking[1:]]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0, abs=1e-3)
    maps = np.load(sal / "saliency.npz")["maps"]
    assert maps.shape == (3, 95, 95, 3) and np.all(maps >= 0) and maps.max() > 0
    for png in ("saliency_image.png", "saliency_rows.png"):
        assert png in (sal / "saliency.md").read_text() and (sal / png).is_file()
    assert (sal / "sensors_LtWt-RtWt-Back" / "metrics.json").is_file()


def test_table4_and_sweep_on_tiny_data(tiny_data, tmp_path, capsys):
    out = tmp_path / "t4"
    argv = ["table4", "--data", str(tiny_data), "--seeds", "2", "--out", str(out), "--models", "cnn,mlp",
            "--epochs", "1", "--quiet"]
    assert quantize_main(argv) == 0
    printed = capsys.readouterr().out
    assert "Subject-wise split" in printed and "/ 0.444" in printed  # CNN low F beside the paper's
    with open(out / "table4.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 2  # splits x seeds x models
    # both models of one (split, seed) were tested on the same trials
    a = np.load(out / "preds" / "subject_s1_cnn.npz")
    b = np.load(out / "preds" / "subject_s1_mlp.npz")
    assert np.array_equal(a["trial_ids"], b["trial_ids"]) and np.array_equal(a["y_true"], b["y_true"])
    for png in ("confusion_random.png", "confusion_subject.png"):
        assert (out / png).is_file()
    # resuming trains nothing new
    assert quantize_main(argv) == 0
    assert "8 runs (8 already done)" in capsys.readouterr().err
    assert len((out / "results.jsonl").read_text().splitlines()) == 8
    # a sweep of two settings
    sw = tmp_path / "sweep"
    assert quantize_main(["sweep", "--data", str(tiny_data), "--out", str(sw), "--model", "mlp", "--epochs", "1",
                          "--l2", "1e-5", "--dropout", "0.25", "--lr", "1e-2", "--quiet"]) == 0
    assert len((sw / "sweep.csv").read_text().splitlines()) == 3
    assert (sw / "fig5.png").is_file() and (sw / "fig6.png").is_file()

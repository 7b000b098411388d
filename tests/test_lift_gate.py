"""The lift gate: features, the LiftGate numbers, ``quantize train-gate``, the bundle and the daemon.

Built once per module: four 5-minute simulated shifts (``quantize synth-shift``,
3 lifts per minute, seeds 31-33 for training, 34 held out), the tests' tiny signed bundle
(``tests/test_bundle_kit.py``), a gate trained with the tiny run's recipe
through the real command line, and the run re-exported with that gate.
About 35-50 s on 2 shared cores (the tiny bundle is most of it).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edge.errors import BundleError, ConfigError, TensorError

sys.path.insert(0, str(Path(__file__).parent))
from test_bundle_kit import run_cli, tiny_bundle  # noqa: E402  (shared bundle builder)

TRAIN_SEEDS = (31, 32, 33)
HELD_OUT_SEED = 34
MINUTES = 5


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Shifts, the tiny bundle, a trained gate and a gated bundle."""
    root = tmp_path_factory.mktemp("gate")
    for seed in TRAIN_SEEDS + (HELD_OUT_SEED,):
        status, _, err = run_cli("quantize", ["synth-shift", "--out", root / f"shift{seed}", "--minutes", MINUTES,
                                              "--seed", seed, "--lifts-per-minute", 3])
        assert status == 0, err
    tb = tiny_bundle()
    run = root / "run"
    shutil.copytree(tb.run, run)  # the cached run is shared with other modules: never add gate.json to it
    status, out, err = run_cli("quantize", [
        "train-gate", "--recipe", run / "recipe.json", "--out", run / "gate.json",
        "--shifts", ",".join(str(root / f"shift{s}") for s in TRAIN_SEEDS),
        "--eval-shifts", root / f"shift{HELD_OUT_SEED}"])
    assert status == 0, err
    status, _, err = run_cli("quantize", ["export", "--run", run, "--out", root / "gated.lgb", "--sign", tb.key,
                                          "--model-version", "1.0.0", "--golden", 2])
    assert status == 0, err

    class Kit:
        pass

    k = Kit()
    k.root, k.run, k.tb, k.train_out = root, run, tb, out
    k.gated = root / "gated.lgb"
    k.held_out = root / f"shift{HELD_OUT_SEED}"
    return k


def _recipe(kit):
    from edge.signal_path import TensorRecipe

    return TensorRecipe.load(kit.run / "recipe.json")


def _shift_window(folder: Path, kind: str, recipe):
    """The first event of ``kind`` in a shift, cut with the recipe's margins as the detector cuts it."""
    import csv

    from edge.dataset import read_trial_csv
    from edge.signal_path import cut_lift

    rec = read_trial_csv(folder / "shift.csv")
    with (folder / "events.csv").open() as fh:
        ev = next(e for e in csv.DictReader(fh) if e["kind"] == kind)
    return cut_lift(rec.samples, int(ev["start"]), int(ev["end"]), recipe)


# ------------------------------------------------------------------- features and numbers

def test_features_are_finite_deterministic_and_named(kit):
    from edge.lift_gate import FEATURE_NAMES, gate_features

    recipe = _recipe(kit)
    lift = _shift_window(kit.held_out, "lift", recipe)
    f = gate_features(lift, recipe)
    assert f.shape == (len(FEATURE_NAMES),) and f.dtype == np.float64
    assert np.all(np.isfinite(f))
    assert np.array_equal(f, gate_features(lift.copy(), recipe))
    # the duration feature is the movement's length without the margins, in tens of seconds
    dur = FEATURE_NAMES.index("duration_s")
    assert f[dur] == pytest.approx((lift.shape[0] - recipe.pre_samples - recipe.post_samples) / 25.0 / 10.0)
    # a standing stretch is not tilted and does not move; a lift tilts the back
    stand = _shift_window(kit.held_out, "stand", recipe)
    s = gate_features(stand, recipe)
    assert s[FEATURE_NAMES.index("Back_tilt_max")] < f[FEATURE_NAMES.index("Back_tilt_max")]
    assert s[FEATURE_NAMES.index("moving_share")] < f[FEATURE_NAMES.index("moving_share")]


@pytest.mark.parametrize("window, words", [
    (np.zeros((100, 35)), "shape (100, 35)"),
    (np.zeros((5, 36)), "5 samples"),
    (np.where(np.arange(36) == 7, np.nan, 0.0)[None].repeat(50, 0), "non-finite value at sample 0, channel 7"),
])
def test_bad_windows_are_refused_with_a_clear_message(kit, window, words):
    from edge.lift_gate import gate_features

    with pytest.raises(TensorError, match=words.replace("(", r"\(").replace(")", r"\)")):
        gate_features(window, _recipe(kit))


def test_gate_json_round_trips_and_bad_fields_are_named(kit):
    from edge.lift_gate import FEATURE_NAMES, LiftGate, recipe_fingerprint

    doc = json.loads((kit.run / "gate.json").read_text())
    gate = LiftGate.from_dict(doc, recipe=_recipe(kit))
    assert gate.to_dict() == doc
    assert doc["recipe_sha256"] == recipe_fingerprint(_recipe(kit))
    lift = _shift_window(kit.held_out, "lift", _recipe(kit))
    p = gate.probability(lift)
    assert 0.0 <= p <= 1.0 and gate.is_lift(lift) == (p >= gate.threshold)
    # the probability is the logistic function of the plain numbers
    from edge.lift_gate import gate_features

    z = (gate_features(lift, _recipe(kit)) - np.array(doc["mean"])) / np.array(doc["scale"])
    assert p == pytest.approx(1 / (1 + np.exp(-(z @ np.array(doc["coef"]) + doc["intercept"]))), rel=1e-12)

    for change, words in [({"threshold": 1.5}, "threshold = 1.5; expected a probability"),
                          ({"coef": [0.0] * 3}, f"coef is a list of 3; expected a list of {len(FEATURE_NAMES)}"),
                          ({"scale": [0.0] * len(FEATURE_NAMES)}, r"scale\[0\] = 0.0; expected a number > 0"),
                          ({"version": "lg-gate-0"}, "version = 'lg-gate-0'"),
                          ({"features": ["x"]}, "features do not match"),
                          ({"intercept": "a"}, "intercept = 'a'; expected a finite number")]:
        with pytest.raises(ConfigError, match=words):
            LiftGate.from_dict({**doc, **change}, where="gate.json")
    # a gate trained with another recipe is refused
    other = dict(_recipe(kit).to_dict())
    other["mean"] = [m + 1.0 for m in other["mean"]]
    from edge.signal_path import TensorRecipe

    with pytest.raises(ConfigError, match="trained with recipe"):
        LiftGate.from_dict(doc, recipe=TensorRecipe.from_dict(other))


def test_threshold_keeps_the_asked_recall():
    from quantize.lift_gate import pick_threshold

    probs = np.array([0.9, 0.2, 0.6, 0.05, 0.8])
    assert pick_threshold(probs, 1.0) == 0.05          # keep all five
    assert pick_threshold(probs, 0.8) == 0.2           # four of five
    assert pick_threshold(probs, 0.6) == 0.6           # three of five
    with pytest.raises(Exception, match="no detected lift"):
        pick_threshold(np.array([]), 0.99)


# ------------------------------------------------------------------- train-gate

def test_train_gate_cuts_false_windows_on_a_held_out_shift_and_keeps_the_lifts(kit):
    doc = json.loads((kit.run / "gate.json").read_text())
    m = doc["metrics"]
    assert [s["seed"] for s in m["train_shifts"]] == list(TRAIN_SEEDS)
    assert m["train_with_gate_out_of_fold"]["gate_recall"] >= 0.995
    held = m["held_out"]
    assert [s["seed"] for s in held["shifts"]] == [HELD_OUT_SEED]
    before, after = held["without_gate"], held["with_gate"]
    assert before["detected"] >= 5 and before["false_windows"] >= 2  # the shift has something to gate
    assert after["found"] >= before["detected"] - 1  # at most one detected lift lost to the gate
    assert after["false_windows"] < before["false_windows"]
    report = (kit.run / "gate_report.md").read_text()
    assert "held out" in report and f"| {HELD_OUT_SEED} |" in report
    assert "held out (1 shifts" in kit.train_out


def test_excluded_features_get_no_weight(kit):
    from edge.lift_gate import FEATURE_NAMES
    from quantize.lift_gate import shift_windows, train_gate

    recipe = _recipe(kit)
    train = [shift_windows(kit.root / f"shift{s}", recipe) for s in TRAIN_SEEDS]
    gate, metrics = train_gate(train, recipe, exclude=("bursts", "duration_s"))
    for name in ("bursts", "duration_s"):
        assert gate.coef[FEATURE_NAMES.index(name)] == 0.0
    assert np.count_nonzero(gate.coef) == len(FEATURE_NAMES) - 2
    assert metrics["excluded_features"] == ["bursts", "duration_s"]
    assert metrics["train_with_gate_out_of_fold"]["gate_recall"] >= 0.995


def test_train_gate_refuses_a_held_out_seed_that_was_trained_on(kit, tmp_path):
    status, out, err = run_cli("quantize", ["train-gate", "--recipe", kit.run / "recipe.json",
                                            "--out", tmp_path / "g.json", "--shifts", kit.root / "shift31",
                                            "--eval-shifts", kit.root / "shift31"])
    assert status != 0 and "Traceback" not in err
    assert "share seed(s) [31]" in err


@pytest.mark.parametrize("argv, words", [
    (["--shifts", "/nonexistent/shift"], "shift folder /nonexistent/shift: expected shift.csv and events.csv"),
    (["--seeds", "1,2"], "--seeds/--eval-seeds need --synth-minutes"),
    (["--synth-minutes", "5", "--seeds", "1,x"], "--seeds '1,x'; expected comma-separated integers"),
    (["--shifts", "{shift}", "--min-recall", "0.2"], "--min-recall 0.2; expected 0.5 to 1"),
    (["--shifts", "{shift}", "--exclude-features", "bursts,nope"], "--exclude-features: 'nope' is not a gate feature"),
])
def test_train_gate_bad_arguments_are_named(kit, tmp_path, argv, words):
    argv = [a.replace("{shift}", str(kit.root / "shift31")) for a in argv]
    status, _, err = run_cli("quantize", ["train-gate", "--recipe", kit.run / "recipe.json",
                                          "--out", tmp_path / "g.json"] + argv)
    assert status != 0 and "Traceback" not in err
    assert words in err


# ------------------------------------------------------------------- bundle

def test_export_puts_the_gate_in_the_bundle_and_the_hub_loads_it(kit):
    from edge.bundle import load_bundle, verify_bundle
    from edge.lift_gate import LiftGate

    b = load_bundle(kit.gated, trusted_keys=[kit.tb.pub])
    assert isinstance(b.gate, LiftGate)
    assert b.gate.to_dict() == json.loads((kit.run / "gate.json").read_text())
    assert b.describe()["lift_gate"] == {"threshold": b.gate.threshold}
    assert verify_bundle(kit.gated, trusted_keys=[kit.tb.pub])["lift_gate"]["threshold"] == b.gate.threshold
    # no gate.json, no gate: the old behaviour
    plain = load_bundle(kit.tb.bundle, trusted_keys=[kit.tb.pub])
    assert plain.gate is None and "lift_gate" not in plain.manifest


def test_a_bundle_with_a_broken_gate_is_refused(kit, tmp_path):
    from edge.bundle import load_bundle, read_bundle, write_bundle
    from quantize.keygen import load_private_key

    contents = read_bundle(kit.gated)
    manifest = json.loads(contents.manifest_bytes)
    manifest["lift_gate"] = {**manifest["lift_gate"], "threshold": -0.1}
    members = {n: d for n, d in contents.members.items() if n not in ("manifest.json", "signature.json")}
    bad = tmp_path / "bad.lgb"
    write_bundle(bad, manifest, members, load_private_key(kit.tb.key))
    with pytest.raises(BundleError, match=r"bad.lgb: manifest lift_gate.threshold = -0.1; expected a probability"):
        load_bundle(bad, trusted_keys=[kit.tb.pub])


# ------------------------------------------------------------------- daemon

async def _replay(kit, tmp_path, use_gate: bool):
    from edge.daemon import Hub
    from edge.event_log import read_events
    from edge.hub_config import HubConfig

    factory = MockFactory()
    events = tmp_path / f"events_{use_gate}.jsonl"
    cfg = HubConfig(events=events, source=f"replay://{kit.held_out}?speed=0", bundle=kit.gated, trust=[kit.tb.pub],
                    alert_outputs=["gpio:17"], alert_levels=["low", "medium", "high"])
    hub = Hub(cfg, pin_factory=factory, use_gate=use_gate)
    assert await hub.run() == 0
    return hub, read_events(events)


async def test_the_daemon_logs_non_lifts_without_buzzing_and_no_gate_classifies_everything(kit, tmp_path):
    from edge.classify import detect_in_trial
    from edge.dataset import read_trial_csv

    gated_hub, gated = await _replay(kit, tmp_path, True)
    plain_hub, plain = await _replay(kit, tmp_path, False)
    not_lifts = [e for e in gated if e["type"] == "not_a_lift"]
    lifts = [e for e in gated if e["type"] == "lift"]
    all_lifts = [e for e in plain if e["type"] == "lift"]
    assert not any(e["type"] == "not_a_lift" for e in plain)
    # every window is either gated out or classified, and --no-gate classifies them all
    assert len(not_lifts) + len(lifts) == len(all_lifts) > 0
    assert len(not_lifts) >= 1
    threshold = json.loads((kit.run / "gate.json").read_text())["threshold"]
    assert all(e["p_lift"] < threshold and e["threshold"] == pytest.approx(threshold, abs=1e-5) for e in not_lifts)
    assert all(e["p_lift"] >= threshold and e["buzzed"] for e in lifts)
    # every level buzzes in this configuration, so the buzz count equals the classified windows: none for non-lifts
    assert gated_hub.counts["buzzes"] == len(lifts) and gated_hub.counts["not_a_lift"] == len(not_lifts)
    assert plain_hub.counts["buzzes"] == len(all_lifts)
    # the gate's probability in the hub equals the offline one on the same detector window
    from edge.lift_gate import LiftGate

    gate = LiftGate.from_dict(json.loads((kit.run / "gate.json").read_text()), recipe=_recipe(kit))
    rec = read_trial_csv(kit.held_out / "shift.csv")
    offline = {(w.start_index, w.end_index): gate.probability(w.window)
               for w in detect_in_trial(rec.samples, rec.timestamps, _recipe(kit))}
    for e in not_lifts + lifts:
        assert e["p_lift"] == pytest.approx(offline[(e["lift"]["start"], e["lift"]["end"])], abs=1e-5)


def test_edge_run_has_a_no_gate_flag():
    status, out, err = run_cli("edge", ["run", "--help"])
    assert status == 0 and "--no-gate" in out

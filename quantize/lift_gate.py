"""``quantize train-gate``: learn the hub's lift gate from simulated shifts.

::

    quantize train-gate --recipe RUN/recipe.json --out RUN/gate.json \\
        --shifts SHIFT_A,SHIFT_B --eval-shifts SHIFT_C
    quantize train-gate --recipe RUN/recipe.json --out RUN/gate.json \\
        --synth-minutes 20 --seeds 101,102,103,104,105,106 --eval-seeds 201,202,203

Each shift folder (``quantize synth-shift``: ``shift.csv`` + ``events.csv``)
is streamed through the hub's own aligner and lift detector
(:func:`edge.classify.detect_in_trial`, exactly the daemon's code path). Each
window the detector emits is labelled *lift* when it matches a true lift of
``events.csv`` (:func:`edge.lift_detector.match_lifts`, the same matching the
hub benchmark scores recall with) and *not a lift* otherwise (bends, reaches,
...). Windows the hub would skip (sensor gaps) are left out.

A scikit-learn logistic regression (standardised :func:`edge.lift_gate.gate_features`,
balanced class weights) is fitted on the training shifts. The threshold is
the highest one that passes ``--min-recall`` (default 0.995) of the training
shifts' detected lifts (the lifts the detector misses are beyond the gate's
reach and are reported as such), chosen on *out-of-fold* probabilities (leave-one-shift-out
cross-validation) so that it is not tuned on windows the final weights were
fitted to. The gate (plain numbers) and its metrics go to ``--out``
(``gate.json``); ``quantize export`` puts a ``RUN/gate.json`` into the bundle.

Held-out shifts (``--eval-shifts`` / ``--eval-seeds``; their seeds must not be
training seeds) are scored with and without the gate: lift recall and false
windows per hour. The figures go into ``gate.json`` and ``gate_report.md``
beside it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

HELP = "learn the hub's lift gate (is this window a lift at all?) from simulated shifts"

#: Default lift recall the threshold must keep on the training shifts.
DEFAULT_MIN_RECALL = 0.995


def _int_list(text: str, flag: str) -> List[int]:
    from edge.errors import ConfigError

    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}; expected comma-separated integers such as 101,102") from None
    if not out:
        raise ConfigError(f"{flag} {text!r}; expected at least one integer")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``quantize train-gate``."""
    parser.add_argument("--recipe", required=True, type=Path, help="the run's recipe.json (filter, standardisation)")
    parser.add_argument("--out", required=True, type=Path, help="gate.json to write (gate_report.md goes beside it)")
    parser.add_argument("--shifts", default="", metavar="DIR1,DIR2", help="training shift folders (synth-shift)")
    parser.add_argument("--synth-minutes", type=float, default=None, metavar="M",
                        help="simulate training/evaluation shifts of M minutes for --seeds/--eval-seeds")
    parser.add_argument("--seeds", default="", metavar="S1,S2", help="with --synth-minutes: training shift seeds")
    parser.add_argument("--eval-shifts", default="", metavar="DIR1,DIR2", help="held-out shift folders")
    parser.add_argument("--eval-seeds", default="", metavar="S1,S2",
                        help="with --synth-minutes: held-out shift seeds (must differ from the training seeds)")
    parser.add_argument("--protocols", default="P1,P2,P3", metavar="P1,P2,P3",
                        help="with --synth-minutes: lift protocols of the simulated shifts, taken in turn per seed "
                             "(default P1,P2,P3: lift-hold-return, place elsewhere, lift-and-hold)")
    parser.add_argument("--work", type=Path, default=None,
                        help="where simulated shifts go (default: OUT's folder/gate_shifts); existing ones are reused")
    parser.add_argument("--min-recall", type=float, default=DEFAULT_MIN_RECALL,
                        help=f"share of the training shifts' detected lifts the gate must pass (default {DEFAULT_MIN_RECALL})")
    parser.add_argument("--C", dest="c", type=float, default=0.3, help="inverse L2 strength (default 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the logistic regression's solver (default 0)")
    parser.add_argument("--exclude-features", default="", metavar="NAME1,NAME2",
                        help="features the gate must not use (weight 0), e.g. bursts,duration_s (ablations)")


# ----------------------------------------------------------------------------- data

def shift_seed(folder: Path) -> Optional[int]:
    """The simulator seed of a shift folder (``shift.json``), or None if unknown."""
    try:
        return int(json.loads((folder / "shift.json").read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shift_protocol(folder: Path) -> Optional[str]:
    """The lift protocol (P1/P2/P3) of a shift folder (``shift.json``), or None if unknown."""
    try:
        return str(json.loads((folder / "shift.json").read_text())["options"].get("protocol", "P1"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def ensure_shift(work: Path, seed: int, minutes: float, protocol: str = "P1") -> Path:
    """Simulate the shift of ``seed`` with lift ``protocol`` into ``work/shift_S_P`` unless it is already there."""
    from .liftsim.cli_shift import write_shift
    from .liftsim.options import SimOptions

    folder = work / f"shift_{seed}_{protocol}"
    info = folder / "shift.json"
    if info.is_file() and (folder / "events.csv").is_file():
        try:
            d = json.loads(info.read_text())
            if (d.get("seed") == seed and abs(float(d.get("minutes", -1)) - minutes) < 1e-9
                    and d.get("options", {}).get("protocol") == protocol):
                return folder
        except (OSError, ValueError, AttributeError):
            pass
    write_shift(folder, minutes, seed, SimOptions(protocol=protocol))
    return folder


def read_truth(folder: Path) -> List[tuple]:
    """The lifts of ``events.csv`` as ``(start, end)`` sample indices (end inclusive)."""
    from edge.errors import DataError

    path = folder / "events.csv"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); expected a synth-shift folder") from None
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            if r["kind"] == "lift":
                out.append((int(r["start"]), int(r["end"])))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: line {i}: expected columns start,end,kind with integer start/end; "
                            f"got {r!r}") from None
    return out


def shift_windows(folder: Path, recipe: Any, detector_settings: Any = None) -> Dict[str, Any]:
    """Stream a shift through the hub's aligner and detector; label and featurise each window.

    Returns:
        ``{"folder", "seed", "hours", "truth", "windows": [(start, end)], "labels": (m,) bool,
        "features": (m, F), "skipped": int, "raw": [window arrays]}`` where
        windows the hub would skip are not included.
    """
    from edge.classify import detect_in_trial
    from edge.dataset import read_trial_csv
    from edge.errors import DataError
    from edge.lift_detector import match_lifts
    from edge.lift_gate import FEATURE_NAMES, gate_features

    csv_path = folder / "shift.csv"
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: missing; expected a folder written by 'quantize synth-shift'")
    rec = read_trial_csv(csv_path)
    truth = read_truth(folder)
    wins = detect_in_trial(rec.samples, rec.timestamps, recipe, detector_settings)
    usable = [w for w in wins if w.skip_reason is None]
    spans = [(w.start_index, w.end_index) for w in usable]
    m = match_lifts(spans, truth)
    labels = np.zeros(len(usable), dtype=bool)
    for _, d in m["matches"]:
        labels[d] = True
    feats = (np.stack([gate_features(w.window, recipe) for w in usable]) if usable
             else np.zeros((0, len(FEATURE_NAMES))))
    return {"folder": str(folder), "seed": shift_seed(folder), "protocol": shift_protocol(folder), "hours": rec.samples.shape[0] / recipe.sample_rate_hz
            / 3600.0, "truth": truth, "windows": spans, "labels": labels, "features": feats,
            "skipped": len(wins) - len(usable), "raw": [w.window for w in usable]}


def score(shifts: Sequence[Dict[str, Any]], probs: Sequence[np.ndarray], threshold: Optional[float]) -> Dict[str, Any]:
    """Lift recall and false windows with (``threshold``) or without (None) the gate.

    A true lift counts as found when the detector matched it and the gate
    passed its window; lifts the detector missed count as missed either way
    (``recall`` is against every true lift, ``gate_recall`` against the
    detected ones).
    """
    lifts = found = false = detected = 0
    hours = 0.0
    for sh, p in zip(shifts, probs):
        passed = np.ones(len(sh["labels"]), dtype=bool) if threshold is None else p >= threshold
        lifts += len(sh["truth"])
        found += int(np.sum(passed & sh["labels"]))
        detected += int(np.sum(sh["labels"]))
        false += int(np.sum(passed & ~sh["labels"]))
        hours += sh["hours"]
    return {"lifts": lifts, "detected": detected, "found": found,
            "recall": found / lifts if lifts else float("nan"),
            "gate_recall": found / detected if detected else float("nan"),
            "false_windows": false, "hours": round(hours, 4),
            "false_windows_per_hour": round(false / hours, 2) if hours else float("nan")}


def pick_threshold(lift_probs: np.ndarray, min_recall: float) -> float:
    """The highest threshold that passes at least ``min_recall`` of the detected lifts.

    ``lift_probs`` are the gate probabilities of the windows that are lifts.
    The recall is the gate's own (passed / detected lifts): lifts the
    detector missed are beyond the gate's reach and are reported separately.
    """
    from edge.errors import DataError

    p = np.sort(np.asarray(lift_probs, dtype=np.float64))
    if p.size == 0:
        raise DataError("the training shifts gave no detected lift; expected some")
    need = max(1, int(np.ceil(min_recall * p.size - 1e-9)))
    # keep the `need` most probable lifts: the threshold is the need-th highest probability
    return float(p[p.size - need])


def fit_gate(x: np.ndarray, y: np.ndarray, c: float, seed: int, use: Optional[np.ndarray] = None):
    """Fit standardisation + logistic regression; returns (mean, scale, coef, intercept).

    ``use`` (bool per feature, default all) selects the features the
    regression sees; the others get weight 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    use = np.ones(x.shape[1], dtype=bool) if use is None else use
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 1e-12, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed).fit(z[:, use], y)
    coef = np.zeros(x.shape[1])
    coef[use] = lr.coef_[0]
    return scaler.mean_, scale, coef, float(lr.intercept_[0])


def _probs(mean, scale, coef, intercept, x: np.ndarray) -> np.ndarray:
    s = ((x - mean) / scale) @ coef + intercept
    return 1.0 / (1.0 + np.exp(-np.clip(s, -700, 700)))


def train_gate(train: Sequence[Dict[str, Any]], recipe: Any, *, min_recall: float = DEFAULT_MIN_RECALL,
               c: float = 0.3, seed: int = 0, exclude: Sequence[str] = ()):
    """Fit the gate on featurised training shifts (see :func:`shift_windows`).

    The threshold comes from leave-one-shift-out probabilities (one shift
    only: in-sample probabilities).

    Returns:
        (:class:`edge.lift_gate.LiftGate`, training metrics dict).
    """
    from edge.errors import DataError
    from edge.lift_gate import FEATURE_NAMES, LiftGate, recipe_fingerprint

    use = np.array([n not in set(exclude) for n in FEATURE_NAMES])
    x = np.concatenate([s["features"] for s in train])
    y = np.concatenate([s["labels"] for s in train])
    if y.sum() < 2 or (~y).sum() < 2:
        raise DataError(f"training shifts gave {int(y.sum())} lift and {int((~y).sum())} non-lift windows; "
                        f"expected at least 2 of each (use more or longer shifts)")
    oof: List[np.ndarray] = []
    if len(train) >= 2:
        for k in range(len(train)):
            rest = [s for i, s in enumerate(train) if i != k]
            xr = np.concatenate([s["features"] for s in rest])
            yr = np.concatenate([s["labels"] for s in rest])
            if yr.all() or not yr.any():
                oof.append(np.full(len(train[k]["labels"]), np.nan))
                continue
            params = fit_gate(xr, yr, c, seed, use)
            oof.append(_probs(*params, train[k]["features"]))
        how = "leave-one-shift-out"
    else:
        how = "in-sample (one training shift)"
    params = fit_gate(x, y, c, seed, use)
    if len(train) < 2:
        oof = [_probs(*params, s["features"]) for s in train]
    lift_probs = np.concatenate([p[s["labels"]] for p, s in zip(oof, train)])
    lift_probs = np.where(np.isfinite(lift_probs), lift_probs, 0.0)
    threshold = pick_threshold(lift_probs, min_recall)
    in_sample = [_probs(*params, s["features"]) for s in train]
    metrics = {
        "trained": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "train_shifts": [{"folder": s["folder"], "seed": s["seed"], "protocol": s.get("protocol")} for s in train],
        "train_windows": int(len(y)), "train_lift_windows": int(y.sum()), "train_other_windows": int((~y).sum()),
        "min_recall": min_recall, "threshold_from": how, "C": c, "seed": seed,
        "excluded_features": sorted(set(exclude)),
        "train_without_gate": score(train, in_sample, None),
        "train_with_gate_out_of_fold": score(train, oof, threshold),
        "train_with_gate_in_sample": score(train, in_sample, threshold),
    }
    mean, scale, coef, intercept = params
    gate = LiftGate(mean, scale, coef, intercept, threshold, recipe_fingerprint(recipe), metrics, recipe)
    return gate, metrics


def evaluate(gate: Any, shifts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Held-out figures of ``gate`` on featurised shifts: without and with the gate, overall and per shift."""
    probs = [np.array([gate.probability_of_features(f) for f in s["features"]]) for s in shifts]
    per = []
    for s, p in zip(shifts, probs):
        per.append({"folder": s["folder"], "seed": s["seed"], "protocol": s.get("protocol"), "without": score([s], [p], None),
                    "with": score([s], [p], gate.threshold),
                    "missed_lift_probs": [round(float(v), 4) for v in p[s["labels"] & (p < gate.threshold)]]})
    return {"shifts": per, "without": score(shifts, probs, None), "with": score(shifts, probs, gate.threshold)}


def write_report(path: Path, gate: Any, metrics: Dict[str, Any], held: Optional[Dict[str, Any]]) -> None:
    """Write ``gate_report.md``."""
    from edge.lift_gate import FEATURE_NAMES

    def row(name: str, r: Dict[str, Any]) -> str:
        return (f"| {name} | {r['found']}/{r['lifts']} = {r['recall']:.3f} | {r['found']}/{r['detected']} = "
                f"{r['gate_recall']:.3f} | {r['false_windows']} | {r['false_windows_per_hour']:.1f} |")

    trained_on = ", ".join(f"{s['seed']}/{s.get('protocol')}" for s in metrics["train_shifts"])
    lines = ["# Lift gate report", "",
             f"Written by `quantize train-gate` on {metrics['trained']}. Threshold {gate.threshold:.4f} "
             f"(chosen to pass >= {metrics['min_recall']} of the training shifts' detected lifts, "
             f"{metrics['threshold_from']} probabilities). {len(FEATURE_NAMES)} features"
             + (f" ({', '.join(metrics['excluded_features'])} excluded)" if metrics["excluded_features"] else "")
             + f", logistic regression C={metrics['C']}.", "",
             f"Training: {len(metrics['train_shifts'])} shifts (seed/protocol {trained_on}), "
             f"{metrics['train_windows']} detected "
             f"windows ({metrics['train_lift_windows']} lifts, {metrics['train_other_windows']} not lifts).", "",
             "Lift recall counts every true lift of events.csv (the detector's misses too); gate recall only the "
             "lifts the detector found.", "",
             "| data | lift recall | gate recall | false windows | per hour |", "|---|---|---|---|---|",
             row("training, no gate", metrics["train_without_gate"]),
             row("training, gate (out-of-fold)", metrics["train_with_gate_out_of_fold"]),
             row("training, gate (in-sample)", metrics["train_with_gate_in_sample"])]
    if held:
        lines += [row(f"**held out** ({len(held['shifts'])} shifts), no gate", held["without"]),
                  row(f"**held out** ({len(held['shifts'])} shifts), gate", held["with"]), "",
                  "Held-out shifts:", "",
                  "| seed | protocol | hours | lifts | recall no gate / gate | false windows no gate / gate |",
                  "|---|---|---|---|---|---|"]
        for s in held["shifts"]:
            lines.append(f"| {s['seed']} | {s['protocol']} | {s['without']['hours']:.2f} | {s['without']['lifts']} | "
                         f"{s['without']['recall']:.3f} / {s['with']['recall']:.3f} | "
                         f"{s['without']['false_windows']} / {s['with']['false_windows']} |")
        missed = [p for s in held["shifts"] for p in s["missed_lift_probs"]]
        if missed:
            lines += ["", f"Detected lifts the gate rejected (their probabilities): {missed}"]
    else:
        lines += ["", "No held-out shifts were given (--eval-shifts / --eval-seeds): no held-out figures."]
    lines += ["", "Largest weights (standardised features):", ""]
    order = np.argsort(-np.abs(gate.coef))[:10]
    lines += [f"- `{FEATURE_NAMES[i]}`: {gate.coef[i]:+.3f}" for i in order]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------ CLI

def run(args: argparse.Namespace) -> int:
    """Train, evaluate, write gate.json and gate_report.md."""
    from edge.errors import ConfigError, TensorError
    from edge.signal_path import TensorRecipe

    if not args.recipe.is_file():
        raise ConfigError(f"--recipe {args.recipe}: no such file; expected a run's recipe.json")
    try:
        recipe = TensorRecipe.load(args.recipe)
    except TensorError as exc:
        raise ConfigError(f"--recipe {args.recipe}: {exc}") from None
    if not 0.5 <= args.min_recall <= 1.0:
        raise ConfigError(f"--min-recall {args.min_recall}; expected 0.5 to 1")
    if not args.c > 0:
        raise ConfigError(f"--C {args.c}; expected a number > 0")
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist")
    from edge.lift_gate import FEATURE_NAMES

    exclude = [n.strip() for n in args.exclude_features.split(",") if n.strip()]
    unknown = [n for n in exclude if n not in FEATURE_NAMES]
    if unknown:
        raise ConfigError(f"--exclude-features: {unknown[0]!r} is not a gate feature; expected some of "
                          f"{', '.join(FEATURE_NAMES)}")
    if len(exclude) >= len(FEATURE_NAMES):
        raise ConfigError("--exclude-features excludes every feature; expected at least one left")
    train_dirs = [Path(p) for p in args.shifts.split(",") if p.strip()]
    eval_dirs = [Path(p) for p in args.eval_shifts.split(",") if p.strip()]
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else []
    eval_seeds = _int_list(args.eval_seeds, "--eval-seeds") if args.eval_seeds else []
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bad = [p for p in protocols if p not in ("P1", "P2", "P3")]
    if bad or not protocols:
        raise ConfigError(f"--protocols {args.protocols!r}; expected some of P1, P2, P3 separated by commas")
    if (seeds or eval_seeds) and args.synth_minutes is None:
        raise ConfigError("--seeds/--eval-seeds need --synth-minutes M (the length of the shifts to simulate)")
    if args.synth_minutes is not None and not 1 <= args.synth_minutes <= 24 * 60:
        raise ConfigError(f"--synth-minutes {args.synth_minutes}; expected 1 to 1440")
    if args.synth_minutes is not None and not (seeds or eval_seeds):
        raise ConfigError("--synth-minutes needs --seeds and/or --eval-seeds")
    for d in train_dirs + eval_dirs:
        if not (d / "shift.csv").is_file() or not (d / "events.csv").is_file():
            raise ConfigError(f"shift folder {d}: expected shift.csv and events.csv (quantize synth-shift --out {d})")
    work = args.work or args.out.parent / "gate_shifts"
    if seeds or eval_seeds:
        work.mkdir(parents=True, exist_ok=True)
        for group, dirs in ((seeds, train_dirs), (eval_seeds, eval_dirs)):
            for i, s in enumerate(group):
                proto = protocols[i % len(protocols)]
                print(f"train-gate: shift seed {s}, protocol {proto} ({args.synth_minutes:g} min) ...",
                      file=sys.stderr, flush=True)
                dirs.append(ensure_shift(work, s, args.synth_minutes, proto))
    if not train_dirs:
        raise ConfigError("no training shifts; give --shifts DIR1,DIR2 or --synth-minutes M --seeds S1,S2")
    train_seeds = {shift_seed(d) for d in train_dirs} - {None}
    overlap = sorted(train_seeds & ({shift_seed(d) for d in eval_dirs} - {None}))
    if overlap:
        raise ConfigError(f"held-out shifts share seed(s) {overlap} with the training shifts; expected other seeds")
    if set(map(Path.resolve, train_dirs)) & set(map(Path.resolve, eval_dirs)):
        raise ConfigError("a shift folder is both in the training and the held-out list")

    from tqdm import tqdm

    def load(dirs: List[Path], what: str) -> List[Dict[str, Any]]:
        out = []
        for d in tqdm(dirs, desc=f"train-gate: {what} shifts through the hub's detector", unit="shift",
                      file=sys.stderr):
            out.append(shift_windows(d, recipe))
        return out

    train = load(train_dirs, "training")
    held_shifts = load(eval_dirs, "held-out") if eval_dirs else []
    gate, metrics = train_gate(train, recipe, min_recall=args.min_recall, c=args.c, seed=args.seed,
                               exclude=exclude)
    held = evaluate(gate, held_shifts) if held_shifts else None
    if held:
        gate.metrics["held_out"] = {"shifts": [{"folder": s["folder"], "seed": s["seed"], "protocol": s["protocol"]}
                                               for s in held["shifts"]],
                                    "without_gate": held["without"], "with_gate": held["with"]}
    args.out.write_text(json.dumps(gate.to_dict(), indent=1) + "\n", encoding="utf-8")
    report = args.out.with_name("gate_report.md")
    write_report(report, gate, metrics, held)
    t = metrics["train_with_gate_out_of_fold"]
    print(f"wrote {args.out} (threshold {gate.threshold:.4f}) and {report}")
    print(f"training ({len(train)} shifts, out-of-fold): recall {t['recall']:.3f}, false windows/h "
          f"{metrics['train_without_gate']['false_windows_per_hour']:.1f} -> {t['false_windows_per_hour']:.1f}")
    if held:
        a, b = held["without"], held["with"]
        print(f"held out ({len(held_shifts)} shifts, seeds {', '.join(str(s['seed']) for s in held['shifts'])}): "
              f"recall {a['recall']:.3f} -> {b['recall']:.3f}, false windows/h {a['false_windows_per_hour']:.1f} -> "
              f"{b['false_windows_per_hour']:.1f}")
    return 0

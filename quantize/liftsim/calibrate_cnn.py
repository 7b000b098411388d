"""Recalibrate LiftSim's difficulty kappa with the paper's CNN (issue 3, item 5).

For every kappa and seed this script

1. simulates the default 720-trial cohort with the current generator
   (``python -m quantize synth --out DATA --seed S --difficulty K``),
2. trains the paper's proposed model on a random stratified 75/25 split
   (``python -m quantize train --data DATA --model proposed --split random
   --seed S --out RUN --epochs E --bn-statistics moving``), which uses the
   paper's filter and tensor through :mod:`quantize.data` /
   :mod:`edge.signal_path`, and keeps Keras' moving batch-normalisation
   averages as the paper's training did (``quantize train``'s own default sets
   them exactly from the training tensors; ``--train-arg=--bn-statistics=train``
   calibrates with that instead),
3. reads ``RUN/metrics.json``,

then writes ``OUT/calib_cnn.csv`` (one row per run) and ``OUT/calib_cnn.md``
(one row per kappa: accuracy mean +- SD and min-max, mean recall per class,
whether the mean recalls are ordered low < medium <= high, the per-seed
medium - low recall gap (mean +- standard error, seeds with it positive), and
whether the kappa is accepted: mean accuracy in [0.85, 0.93], mean recalls
ordered, and the low < medium ordering firm - its mean gap more than
:data:`FIRM_SE` standard errors above zero - over at least 5 seeds. The proxy
calibration (:mod:`quantize.liftsim.calibrate`) checks only the means), followed
by where the errors are: per kappa and zone, the test trials pooled over seeds
and what the runs called them (from each run's ``predictions.csv``).

Both steps run as child processes of the ordinary ``quantize`` command line,
so each run is exactly what a user would type, TensorFlow's memory is returned
after every run, and a crash in one run is reported with its log file.

The work is resumable: a cohort folder with its ``synth_done.json`` marker is
not simulated again, and a run folder with ``metrics.json`` is not trained
again, so an interrupted sweep picks up where it stopped. One progress line
per run goes to stderr.

Example::

    nice python -m quantize.liftsim.calibrate_cnn --kappas 1.0 --seeds 0,1,2,3,4 \\
        --epochs 40 --out runs/calib_cnn
    nice python -m quantize.liftsim.calibrate_cnn --kappas 2 --seeds 0-4 --origins paper \\
        --out runs/calib_cnn_paper
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edge.errors import ConfigError, LiftGuardError
from edge.layout import risk_of_zone

HELP = "recalibrate the simulator's difficulty with the paper's proposed CNN (synth + train per kappa and seed)"

#: The paper's three-class accuracy band the calibration must land in.
ACCURACY_BAND = (0.85, 0.93)
#: How many standard errors the mean medium - low recall gap must clear for the ordering to
#: count as firm (about a one-sided 2.5 % test): a mean that a few lucky seeds could flip is
#: not an ordering of the simulator.
FIRM_SE = 2.0
CLASSES = ("low", "medium", "high")
#: The paper's training kept Keras' moving batch-normalisation averages (see quantize.train).
PAPER_BN_STATISTICS = "moving"
#: Epochs at the end of training over which the per-epoch test accuracy is averaged (information only).
LAST_EPOCHS = 5
CSV_FIELDS = ("kappa", "seed", "origins", "accuracy", "rk", "recall_low", "recall_medium", "recall_high", "epochs_max",
              "epochs_run", "best_epoch", "test_acc_last5_mean", "test_acc_last5_min", "test_acc_last5_max",
              "bn_statistics", "synth_seconds", "train_seconds", "n_test", "run")


class CalibrationRunError(LiftGuardError):
    """A child ``quantize synth`` or ``quantize train`` process failed."""


def parse_floats(text: str, flag: str) -> List[float]:
    """Parse a comma-separated list of numbers given to ``flag``.

    Raises:
        ConfigError: If an item is not a number.
    """
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(float(item))
        except ValueError:
            raise ConfigError(f"{flag}: {item!r} is not a number; expected e.g. 1.0,1.25") from None
    if not out:
        raise ConfigError(f"{flag}: empty list; expected at least one value")
    return out


def parse_seeds(text: str) -> List[int]:
    """Parse ``--seeds``: a comma-separated list of integers (``0,1,2``) or a range ``0-4``.

    Raises:
        ConfigError: If an item is not a non-negative integer.
    """
    seeds: List[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if "-" in item:
                lo, hi = (int(p) for p in item.split("-", 1))
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise ConfigError(f"--seeds: {item!r} is not an integer or a range like 0-4") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: expected non-negative integers, e.g. 0,1,2,3,4")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the CNN calibration."""
    parser.add_argument("--kappas", default="1.0", help="comma-separated difficulty values (default 1.0)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="cohort = split = training seeds (default 0,1,2,3,4)")
    parser.add_argument("--epochs", type=int, default=40, help="epoch cap of each training run (default 40)")
    parser.add_argument("--out", type=Path, default=Path("runs/calib_cnn"), help="output folder (default runs/calib_cnn)")
    parser.add_argument("--model", default="proposed", help="model to train (default proposed, the paper's)")
    parser.add_argument("--synth-workers", type=int, default=1, help="processes for quantize synth (default 1)")
    parser.add_argument("--origins", choices=("spread", "paper"), default=None,
                        help="passed to quantize synth --origins (default: the generator's default)")
    parser.add_argument("--synth-arg", action="append", default=[], metavar="FLAG=VALUE",
                        help="another quantize synth flag for every cohort, e.g. --synth-arg=--hold-height=0.44 "
                             "(repeatable; recorded with each run)")
    parser.add_argument("--train-arg", action="append", default=[], metavar="FLAG=VALUE",
                        help="another quantize train flag for every run, e.g. --train-arg=--margins=750,750 "
                             "(repeatable; the run's config.json records what it changes)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep each simulated cohort after its run (default: delete it once trained; the same seed rebuilds it)")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the tables from finished runs")
    parser.add_argument("--plot", type=Path, default=None, help="also write a PNG of per-seed accuracy and recalls")
    parser.add_argument("--plot-with", default="", metavar="DIR[,DIR]",
                        help="other calibration folders whose finished runs the plot shows too")


def split_child_flags(values: Sequence[str], option: str) -> List[str]:
    """``--synth-arg`` / ``--train-arg`` values (``--flag=value`` or ``--flag``) as an argument list.

    Raises:
        ConfigError: If a value is not a long flag.
    """
    out: List[str] = []
    for value in values:
        if not value.startswith("--") or value == "--":
            raise ConfigError(f"{option} {value!r}: expected a flag of the child command, like --hold-height=0.44")
        out.extend(value.split("=", 1))
    return out


def tag(kappa: float, seed: int) -> str:
    """Folder name of one (kappa, seed) run, e.g. ``k1_s0`` or ``k0.75_s3``."""
    return f"k{kappa:g}_s{seed}"


def run_child(cmd: Sequence[str], log_path: Path, what: str) -> float:
    """Run one ``quantize`` child process with its output in ``log_path``; return its wall time.

    Raises:
        CalibrationRunError: If the child exits with a non-zero status.
    """
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        status = subprocess.call(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    if status != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise CalibrationRunError(f"{what} failed (exit {status}); see {log_path}: " + " | ".join(tail))
    return time.monotonic() - t0


def synthesize(data_dir: Path, kappa: float, seed: int, workers: int, origins: Optional[str] = None,
               extra_args: Sequence[str] = ()) -> float:
    """Simulate one cohort unless its marker says it is complete; return seconds spent (0 if reused).

    ``origins`` (``spread`` / ``paper``) is passed to ``quantize synth --origins``; None keeps
    the generator's default. ``extra_args`` are further ``quantize synth`` flags.
    """
    marker = data_dir / "synth_done.json"
    if marker.exists() and (data_dir / "index.csv").exists():
        return float(json.loads(marker.read_text()).get("seconds", 0.0))
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "quantize", "synth", "--out", str(data_dir), "--seed", str(seed),
           "--difficulty", f"{kappa:g}", "--workers", str(workers), "--no-progress"]
    if origins:
        cmd += ["--origins", origins]
    cmd += list(extra_args)
    seconds = run_child(cmd, data_dir.parent / f"{data_dir.name}.synth.log", f"synth kappa {kappa:g} seed {seed}")
    marker.write_text(json.dumps({"kappa": kappa, "seed": seed, "origins": origins, "seconds": round(seconds, 1),
                                  "command": cmd}) + "\n")
    return seconds


def train(data_dir: Path, run_dir: Path, seed: int, epochs: int, model: str, extra_args: Sequence[str] = ()) -> float:
    """Train one model on ``data_dir`` into ``run_dir``; return wall seconds.

    ``extra_args`` are more ``quantize train`` flags; they come last, so they
    override the defaults here (e.g. ``--bn-statistics train``).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "quantize", "train", "--data", str(data_dir), "--model", model, "--split", "random",
           "--seed", str(seed), "--out", str(run_dir), "--epochs", str(epochs), "--quiet",
           "--bn-statistics", PAPER_BN_STATISTICS, *extra_args]
    return run_child(cmd, run_dir.parent / f"{run_dir.name}.train.log", f"train {run_dir.name}")


def read_run(run_dir: Path, kappa: float, seed: int, synth_seconds: float, train_seconds: float,
             origins: str = "") -> Dict[str, object]:
    """One CSV row from ``RUN/metrics.json`` and ``RUN/config.json``.

    Raises:
        CalibrationRunError: If ``metrics.json`` lacks a field this table needs.
    """
    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
        row = {"kappa": kappa, "seed": seed, "accuracy": float(metrics["accuracy"]), "rk": float(metrics["rk"]),
               **{f"recall_{c}": float(metrics[c]["recall"]) for c in CLASSES},
               "n_test": int(metrics["n"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationRunError(f"{path}: cannot read accuracy/rk/recall per class ({exc!r})") from None
    row.update(last_epochs_accuracy(run_dir / "history.json"))
    row.update({"epochs_max": config.get("epochs_max", ""), "epochs_run": config.get("epochs_run", ""),
                "best_epoch": config.get("best_epoch", ""), "origins": origins or "",
                # runs trained before quantize train had --bn-statistics kept Keras' moving averages
                "bn_statistics": config.get("bn_statistics", "moving") if config else "",
                "synth_seconds": round(synth_seconds, 1), "train_seconds": round(train_seconds, 1),
                "run": str(run_dir)})
    return row


def last_epochs_accuracy(history_path: Path, n: int = LAST_EPOCHS) -> Dict[str, object]:
    """Mean/min/max test accuracy over the last ``n`` epochs of ``history.json`` (information only).

    ``quantize train`` evaluates the test set after every epoch to draw its
    curves; it never selects a model with it. The figure of record is
    ``metrics.json`` (weights of the best *training*-loss epoch). The
    last-epochs spread shows how much that figure depends on the epoch it
    happens to come from. Empty values if the history is missing.
    """
    try:
        val = [float(v) for v in json.loads(history_path.read_text())["val_accuracy"]][-n:]
    except (OSError, ValueError, KeyError, TypeError):
        return {"test_acc_last5_mean": "", "test_acc_last5_min": "", "test_acc_last5_max": ""}
    return {"test_acc_last5_mean": round(_mean(val), 4), "test_acc_last5_min": round(min(val), 4),
            "test_acc_last5_max": round(max(val), 4)}


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _sd(xs: Sequence[float]) -> float:
    """Population SD (as in the proxy table, numpy's default)."""
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def summarize(rows: Sequence[Dict[str, object]], wanted_seeds: Optional[Sequence[int]] = None) -> List[Dict[str, object]]:
    """Per kappa: accuracy mean/SD/min/max, mean recalls, ordering and acceptance.

    Args:
        rows: Per-run rows as made by :func:`read_run`.
        wanted_seeds: Seeds asked for; the summary says which of them are missing.

    Returns:
        One dict per kappa, sorted by kappa. ``accepted`` needs the mean accuracy
        inside :data:`ACCURACY_BAND`, mean recalls ordered low < medium <= high,
        at least 5 finished seeds and ``ordered_firmly`` (mean recalls ordered and the
        medium - low gap above ``FIRM_SE`` standard errors). ``gap_mean`` / ``gap_se`` / ``gap_positive`` say how
        firmly low and medium are ordered: the per-seed medium - low recall difference, its
        mean, standard error (sample SD / sqrt(n); None for one seed) and how many seeds
        have it above zero.
    """
    out = []
    for kappa in sorted({float(r["kappa"]) for r in rows}):
        sel = [r for r in rows if float(r["kappa"]) == kappa]
        accs = [float(r["accuracy"]) for r in sel]
        rec = {c: _mean([float(r[f"recall_{c}"]) for r in sel]) for c in CLASSES}
        ordered = rec["low"] < rec["medium"] <= rec["high"]
        gaps = [float(r["recall_medium"]) - float(r["recall_low"]) for r in sel]
        gap_mean = _mean(gaps)
        gap_se = (math.sqrt(sum((g - gap_mean) ** 2 for g in gaps) / (len(gaps) - 1) / len(gaps))
                  if len(gaps) > 1 else None)
        firm = bool(ordered and gap_se is not None and gap_mean > FIRM_SE * gap_se)
        mean_acc = _mean(accs)
        seeds = sorted(int(r["seed"]) for r in sel)
        missing = sorted(set(wanted_seeds or []) - set(seeds))
        out.append({"kappa": kappa, "seeds": seeds, "missing_seeds": missing, "accuracy_mean": mean_acc,
                    "accuracy_sd": _sd(accs), "accuracy_min": min(accs), "accuracy_max": max(accs),
                    "rk_mean": _mean([float(r["rk"]) for r in sel]),
                    "test_acc_last5_mean": (_mean([float(r["test_acc_last5_mean"]) for r in sel])
                                            if all(r.get("test_acc_last5_mean", "") != "" for r in sel) else None),
                    **{f"recall_{c}": rec[c] for c in CLASSES}, "recall_ordered": ordered,
                    "gap_mean": gap_mean, "gap_se": gap_se, "gap_positive": sum(g > 0 for g in gaps),
                    "ordered_firmly": firm,
                    "accepted": bool(ACCURACY_BAND[0] <= mean_acc <= ACCURACY_BAND[1] and firm and len(sel) >= 5),
                    "train_seconds_mean": _mean([float(r["train_seconds"] or 0) for r in sel])})
    return out


def summary_markdown(summary: Sequence[Dict[str, object]], epochs: int) -> str:
    """The CNN calibration table as markdown (one row per kappa)."""
    lines = ["| kappa | seeds | CNN accuracy mean +- SD (min-max) | RK mean | recall low / medium / high | ordered "
             "| medium - low recall: mean +- SE (seeds > 0) | firm | accepted | test accuracy, last 5 epochs (info) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        seeds = f"{len(s['seeds'])}: " + ",".join(str(x) for x in s["seeds"])
        if s["missing_seeds"]:
            seeds += "; unfinished: " + ",".join(str(x) for x in s["missing_seeds"])
        lines.append(f"| {s['kappa']:g} | {seeds} | {s['accuracy_mean']:.3f} +- "
                     f"{s['accuracy_sd']:.3f} ({s['accuracy_min']:.3f}-{s['accuracy_max']:.3f}) | "
                     f"{s['rk_mean']:.3f} | {s['recall_low']:.2f} / {s['recall_medium']:.2f} / "
                     f"{s['recall_high']:.2f} | {'yes' if s['recall_ordered'] else 'no'} | "
                     f"{s['gap_mean']:+.3f}" + (f" +- {s['gap_se']:.3f}" if s.get("gap_se") is not None else "")
                     + f" ({s['gap_positive']} of {len(s['seeds'])}) | {'yes' if s['ordered_firmly'] else 'no'} | "
                     f"{'yes' if s['accepted'] else 'no'} | "
                     + (f"{s['test_acc_last5_mean']:.3f} |" if s.get("test_acc_last5_mean") is not None else "- |"))
    lines.append("")
    lines.append(f"Proposed model, random stratified 75/25 split, at most {epochs} epochs; SD over seeds "
                 f"(population); accepted = mean accuracy in [{ACCURACY_BAND[0]}, {ACCURACY_BAND[1]}], recalls "
                 f"ordered low < medium <= high, firm, >= 5 seeds. Medium - low: per-seed recall difference, mean "
                 f"+- standard error, and the number of seeds where it is positive; firm = that mean above "
                 f"{FIRM_SE:g} standard errors. Last column: mean over runs of the test accuracy "
                 f"averaged over each run's last {LAST_EPOCHS} epochs (from history.json; information only, "
                 f"never used to choose weights).")
    return "\n".join(lines) + "\n"


#: Zone in a simulated trial id (``S01_Z10_R4``), for runs whose predictions.csv predates its zone column.
_ZONE_IN_ID = re.compile(r"_Z(\d+)_")


def _zone_of(prediction: Dict[str, str]) -> Optional[int]:
    """The row's ``zone`` column, else the zone in its trial id, else None."""
    if prediction.get("zone"):
        return int(prediction["zone"])
    m = _ZONE_IN_ID.search(prediction.get("trial_id", ""))
    return int(m.group(1)) if m else None


def zone_errors(rows: Sequence[Dict[str, object]]) -> Dict[float, Dict[int, Dict[str, int]]]:
    """Per kappa and ACGIH zone, test trials pooled over seeds and what they were called.

    Reads every run's ``predictions.csv`` (columns ``zone`` - or, in runs written before
    that column, the zone in ``trial_id`` - and ``predicted``); runs without one, and rows
    without a zone, are left out.

    Returns:
        ``{kappa: {zone: {"n": trials, "low": ..., "medium": ..., "high": ...}}}``.

    Raises:
        CalibrationRunError: A ``zone`` value that is not a whole number 1 to 12,
            named with its file and line.
    """
    out: Dict[float, Dict[int, Dict[str, int]]] = {}
    for r in rows:
        path = Path(str(r.get("run", ""))) / "predictions.csv"
        try:
            with open(path, newline="") as fh:
                preds = list(csv.DictReader(fh))
        except OSError:
            continue
        zones = out.setdefault(float(r["kappa"]), {})
        for line, p in enumerate(preds, start=2):
            try:
                zone = _zone_of(p)
            except ValueError:
                zone = -1
            if zone is not None and not 1 <= zone <= 12:
                raise CalibrationRunError(f"{path}, line {line}: zone {p.get('zone')!r} is not an ACGIH zone; "
                                          f"expected a whole number 1 to 12")
            if zone is None or p.get("predicted") not in CLASSES:
                continue
            cell = zones.setdefault(zone, {"n": 0, **{c: 0 for c in CLASSES}})
            cell["n"] += 1
            cell[p["predicted"]] += 1
    return out


def zone_errors_markdown(errors: Dict[float, Dict[int, Dict[str, int]]]) -> str:
    """One row per kappa and zone: true class, test trials, called low / medium / high, share right."""
    if not errors:
        return ""
    lines = ["Where the errors are (test trials pooled over the seeds above, from each run's predictions.csv):", "",
             "| kappa | zone | true class | test trials | called low / medium / high | right |",
             "|---|---|---|---|---|---|"]
    for kappa in sorted(errors):
        for zone in sorted(errors[kappa]):
            c = errors[kappa][zone]
            true = risk_of_zone(zone)
            lines.append(f"| {kappa:g} | {zone} | {true} | {c['n']} | {c['low']} / {c['medium']} / {c['high']} | "
                         f"{c[true] / c['n']:.2f} |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, rows: Sequence[Dict[str, object]], wanted_seeds: Sequence[int], epochs: int) -> str:
    """Write ``calib_cnn.csv`` and ``calib_cnn.md`` under ``out``; return the markdown."""
    rows = sorted(rows, key=lambda r: (float(r["kappa"]), int(r["seed"])))
    with open(out / "calib_cnn.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in CSV_FIELDS})
    md = summary_markdown(summarize(rows, wanted_seeds), epochs) if rows else "no finished runs\n"
    by_zone = zone_errors(rows)
    if by_zone:
        md += "\n" + zone_errors_markdown(by_zone)
    (out / "calib_cnn.md").write_text(md)
    (out / "calib_cnn.json").write_text(json.dumps({"summary": summarize(rows, wanted_seeds) if rows else [],
                                                    "zone_errors": {f"{k:g}": v for k, v in by_zone.items()},
                                                    "runs": rows}, indent=1) + "\n")
    return md


def setting_label(row: Dict[str, object]) -> str:
    """Plot label of a run's setting: ``"paper, k2"``; runs without an ``origins`` field were
    made before ``--origins`` existed, i.e. with spread origins."""
    return f"{row.get('origins') or 'spread'}, k{float(row['kappa']):g}"


def plot_runs(rows: Sequence[Dict[str, object]], path: Path) -> Path:
    """Per-run accuracy and class recalls per setting (one point per seed), with the paper's band.

    Settings are (origins, kappa) pairs, see :func:`setting_label`.

    Args:
        rows: Per-run rows as made by :func:`read_run` (may come from several folders).
        path: PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kappas = sorted({setting_label(r) for r in rows}, key=lambda lab: (lab.split(",")[0] != "spread", lab))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax = axes[0]
    ax.axhspan(*ACCURACY_BAND, color="tab:green", alpha=0.15, label="paper band 0.85-0.93")
    for i, k in enumerate(kappas):
        sel = [r for r in rows if setting_label(r) == k]
        ax.plot([i] * len(sel), [float(r["accuracy"]) for r in sel], "o", color="tab:blue", alpha=0.7,
                label="accuracy (metrics.json)" if i == 0 else None)
        last = [float(r["test_acc_last5_mean"]) for r in sel if r.get("test_acc_last5_mean", "") != ""]
        ax.plot([i + 0.15] * len(last), last, "x", color="tab:gray",
                label="test accuracy, last 5 epochs (info)" if i == 0 else None)
    ax.set_xticks(range(len(kappas)), kappas)
    ax.set_xlim(-0.5, len(kappas) - 0.5)
    ax.set_xlabel("origins, difficulty kappa")
    ax.set_ylabel("accuracy (180 test trials)")
    ax.set_title("Proposed CNN, random 75/25, one point per seed")
    ax.legend(fontsize=8, loc="best")
    ax = axes[1]
    width = 0.25
    for j, (c, color) in enumerate(zip(CLASSES, ("tab:green", "tab:orange", "tab:red"))):
        for i, k in enumerate(kappas):
            vals = [float(r[f"recall_{c}"]) for r in rows if setting_label(r) == k]
            x = i + (j - 1) * width
            ax.bar(x, sum(vals) / len(vals), width, color=color, alpha=0.5, label=c if i == 0 else None)
            ax.plot([x] * len(vals), vals, ".", color="black", markersize=4)
    ax.set_xticks(range(len(kappas)), kappas)
    ax.set_xlabel("origins, difficulty kappa")
    ax.set_ylabel("recall (bars: mean; dots: seeds)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Recall per class (wanted: low < medium <= high)")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def calibrate(kappas: Sequence[float], seeds: Sequence[int], epochs: int, out: Path, model: str = "proposed",
              synth_workers: int = 1, keep_data: bool = False, summary_only: bool = False,
              origins: Optional[str] = None, synth_args: Sequence[str] = (), train_args: Sequence[str] = ()) -> str:
    """Run (or resume) every (kappa, seed) and write the tables; return the markdown table.

    ``origins`` is passed to ``quantize synth --origins`` (None: the generator's default) and
    recorded per run; keep one origins mode per ``out`` folder. ``synth_args`` are further
    ``quantize synth`` flags for every cohort (recorded in each ``synth_done.json``; keep one
    set per ``out`` folder). ``train_args`` likewise go to every ``quantize train``.
    """
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, object]] = []
    total = len(kappas) * len(seeds)
    t_all = time.monotonic()
    for i, (kappa, seed) in enumerate(((k, s) for k in kappas for s in seeds), start=1):
        name = tag(kappa, seed)
        data_dir, run_dir = out / "data" / name, out / "runs" / name
        timing_path = run_dir / "calib_timing.json"
        if (run_dir / "metrics.json").exists():
            timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
            row = read_run(run_dir, kappa, seed, timing.get("synth_seconds", 0.0), timing.get("train_seconds", 0.0),
                           timing.get("origins", ""))
            status = "done before"
        elif summary_only:
            print(f"[{i}/{total}] kappa {kappa:g} seed {seed}: not run", file=sys.stderr, flush=True)
            continue
        else:
            print(f"[{i}/{total}] kappa {kappa:g} seed {seed}: simulating ...", file=sys.stderr, flush=True)
            synth_s = synthesize(data_dir, kappa, seed, synth_workers, origins, synth_args)
            print(f"[{i}/{total}] kappa {kappa:g} seed {seed}: cohort ready ({synth_s:.0f} s); training {model} "
                  f"(<= {epochs} epochs) ...", file=sys.stderr, flush=True)
            train_s = train(data_dir, run_dir, seed, epochs, model, train_args)
            timing_path.write_text(json.dumps({"synth_seconds": round(synth_s, 1),
                                               "train_seconds": round(train_s, 1), "origins": origins or ""}) + "\n")
            row = read_run(run_dir, kappa, seed, synth_s, train_s, origins or "")
            status = "new"
            if not keep_data:  # the run folder keeps split.json and predictions; the cohort is reproducible
                shutil.rmtree(data_dir)
        rows.append(row)
        print(f"[{i}/{total}] kappa {kappa:g} seed {seed} ({status}): accuracy {row['accuracy']:.3f}, "
              f"RK {row['rk']:.3f}, recall low/medium/high {row['recall_low']:.2f}/{row['recall_medium']:.2f}/"
              f"{row['recall_high']:.2f}, {row['epochs_run']} epochs; synth {row['synth_seconds']:.0f} s, "
              f"train {row['train_seconds']:.0f} s", file=sys.stderr, flush=True)
        write_tables(out, rows, seeds, epochs)  # partial tables after every run
    md = write_tables(out, rows, seeds, epochs)
    print(f"{len(rows)} of {total} runs in the table ({time.monotonic() - t_all:.0f} s this session); "
          f"{out / 'calib_cnn.md'}", file=sys.stderr, flush=True)
    return md


def run(args: argparse.Namespace) -> int:
    """Entry point after parsing; prints the markdown table to stdout."""
    kappas = parse_floats(args.kappas, "--kappas")
    seeds = parse_seeds(args.seeds)
    if args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: expected a positive number of epochs")
    if args.synth_workers < 1:
        raise ConfigError(f"--synth-workers {args.synth_workers}: expected at least 1")
    for k in kappas:
        if not 0.0 <= k <= 5.0:
            raise ConfigError(f"--kappas: {k:g} is out of range; expected 0 to 5 (the generator's difficulty range)")
    md = calibrate(kappas, seeds, args.epochs, args.out, model=args.model, synth_workers=args.synth_workers,
                   keep_data=args.keep_data, summary_only=args.summary_only, origins=args.origins,
                   synth_args=split_child_flags(args.synth_arg, "--synth-arg"),
                   train_args=split_child_flags(args.train_arg, "--train-arg"))
    if args.plot is not None:
        rows = json.loads((Path(args.out) / "calib_cnn.json").read_text())["runs"]
        for other in (d.strip() for d in args.plot_with.split(",") if d.strip()):
            path = Path(other) / "calib_cnn.json"
            if not path.is_file():
                raise ConfigError(f"--plot-with {other}: no calib_cnn.json there; expected a calibrate_cnn --out folder")
            rows = rows + json.loads(path.read_text())["runs"]
        if rows:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            print(f"plot: {plot_runs(rows, args.plot)}", file=sys.stderr)
    print(md, end="")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m quantize.liftsim.calibrate_cnn``: parse, run, and turn errors into one-line messages."""
    parser = argparse.ArgumentParser(prog="python -m quantize.liftsim.calibrate_cnn", description=HELP)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LiftGuardError as exc:
        if args.debug:
            raise
        print(f"calibrate_cnn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("calibrate_cnn: interrupted; finished runs are kept, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
